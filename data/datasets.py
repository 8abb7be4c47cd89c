"""Datasets: the built-in crop table, a user's CSV, and seeded synthetic problems.

Every loader returns a :class:`Dataset` whose X is (n_samples, n_features) and Y is
(n_samples, n_outputs), both C-contiguous in the requested dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import DTypeLike

from gdbench.data.errors import InputError

CROPS_PATH = Path(__file__).with_name("crops.csv")
CROPS_TARGETS = ("Mangoes", "Oranges")


@dataclass(frozen=True)
class Dataset:
    """Features X (n, d) and targets Y (n, k), with the names of their columns."""

    name: str
    X: np.ndarray
    Y: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.Y.shape[1])

    def astype(self, dtype: DTypeLike) -> Dataset:
        """The same data in another floating dtype (float32 or float64)."""
        dt = np.dtype(dtype)
        return replace(
            self,
            X=np.ascontiguousarray(self.X, dtype=dt),
            Y=np.ascontiguousarray(self.Y, dtype=dt),
        )

    def standardized(self) -> Dataset:
        """Features scaled to zero mean and unit variance; a constant column is only centred."""
        X = self.X.astype(np.float64)
        std = X.std(axis=0)
        std[std == 0] = 1.0
        Xs = (X - X.mean(axis=0)) / std
        return replace(self, X=np.ascontiguousarray(Xs, dtype=self.X.dtype))


def load_dataset(
    source: str | Path = "crops",
    targets: Sequence[str] | None = None,
    *,
    standardize: bool = False,
    dtype: DTypeLike = np.float32,
) -> Dataset:
    """Load ``"crops"`` (the built-in 15-region table) or a CSV file.

    In a CSV, the features are the numeric columns that are not targets; a column with no
    numeric value at all (such as a region name) is an identifier and is dropped. Raises
    :class:`InputError` naming the file, column and row for anything it cannot use.
    """
    if str(source) == "crops":
        path, name = CROPS_PATH, "crops"
        targets = list(targets) if targets else list(CROPS_TARGETS)
    else:
        path, name = Path(source), Path(source).stem
    ds = _read_csv(path, name, targets)
    if standardize:
        ds = ds.standardized()
    return ds.astype(dtype)


def _read_csv(path: Path, name: str, targets: Sequence[str] | None) -> Dataset:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a CSV file")
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable CSV file ({first})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.shape[0] == 0:
        raise InputError(f"{path}: the file has a header but no data rows")
    columns = list(frame.columns)
    if not targets:
        raise InputError(
            f"{path}: no target columns given; pass --targets with one or more of: "
            + ", ".join(columns)
        )
    unknown = [t for t in targets if t not in columns]
    if unknown:
        raise InputError(
            f"{path}: unknown target column {unknown[0]!r}; the columns are: " + ", ".join(columns)
        )
    if len(set(targets)) != len(targets):
        raise InputError(f"{path}: a target column is named twice in {list(targets)}")

    numeric: dict[str, np.ndarray] = {}
    for column in columns:
        values = frame[column]
        parsed = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(parsed) & values.notna().to_numpy()
        if column not in targets and bad.any() and np.isnan(parsed).all():
            continue  # an identifier such as a region name (blank cells allowed)
        _check_values(path, column, values, parsed, bad)
        numeric[column] = parsed

    features = [c for c in columns if c in numeric and c not in targets]
    if not features:
        raise InputError(
            f"{path}: no feature columns left after taking the targets "
            f"{', '.join(targets)} and dropping non-numeric columns"
        )
    X = np.column_stack([numeric[c] for c in features])
    Y = np.column_stack([numeric[t] for t in targets])
    return Dataset(name, X, Y, tuple(features), tuple(targets))


def _check_values(
    path: Path, column: str, values: pd.Series, parsed: np.ndarray, bad: np.ndarray
) -> None:
    """Raise for the first value of a numeric column that is missing, non-numeric or infinite.

    Rows are numbered as in the file: the header is line 1, so data row i is line i + 1.
    """
    problems = bad | ~np.isfinite(parsed)
    if not problems.any():
        return
    i = int(np.argmax(problems))
    line = i + 2
    raw = values.iloc[i]
    if bad[i]:
        what = f"non-numeric value {str(raw)!r}"
    elif np.isnan(parsed[i]):
        what = "a missing or NaN value"
    else:
        what = f"infinite value {str(raw)!r}"
    raise InputError(f"{path}: column {column!r}, row {i + 1} (line {line}): {what}")


def synthetic(
    n_samples: int,
    n_features: int,
    n_outputs: int,
    *,
    seed: int = 0,
    noise: float = 0.0,
    dtype: DTypeLike = np.float32,
) -> Dataset:
    """Seeded standard-normal features and targets ``X @ W_true.T + b_true (+ noise)``.

    With ``noise=0`` the problem is exactly solvable: least squares recovers W_true, b_true.
    The data are drawn in float64 and then cast, so float32 and float64 see the same problem.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    W_true = rng.standard_normal((n_outputs, n_features)) / np.sqrt(n_features)
    b_true = rng.standard_normal(n_outputs)
    Y = X @ W_true.T + b_true
    if noise:
        Y = Y + noise * rng.standard_normal(Y.shape)
    ds = Dataset(
        name=f"synthetic-{n_samples}x{n_features}-{n_outputs}",
        X=X,
        Y=Y,
        feature_names=tuple(f"x{j}" for j in range(n_features)),
        target_names=tuple(f"y{j}" for j in range(n_outputs)),
    )
    return ds.astype(dtype)


def least_squares(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The float64 least-squares optimum (W (k, d), b (k,)) of the mean squared error."""
    X = np.column_stack([ds.X.astype(np.float64), np.ones(ds.n_samples)])
    coef, *_ = np.linalg.lstsq(X, ds.Y.astype(np.float64), rcond=None)
    return coef[:-1].T.copy(), coef[-1].copy()


def mse(ds: Dataset, W: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over the whole dataset, computed in float64."""
    diff = ds.X.astype(np.float64) @ np.asarray(W, np.float64).T + np.asarray(b, np.float64)
    diff -= ds.Y
    return float(np.mean(diff * diff))
