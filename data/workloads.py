"""Named benchmark workloads, from overhead-bound (crops) to GEMM-bound (large, xl), and
the user's own.

A workload fixes a dataset, a BatchPlan and a learning rate; :func:`build` turns it into a
:class:`Problem`, the NumPy inputs every backend's ``prepare`` takes. Every workload has a
definition, a plain dict that a run saves and that :func:`define` builds it again from:
gdbench's own below, the user's from ``gdbench run --shape``/``--data`` or from a table
``[tool.gdbench.workloads.NAME]`` in the nearest pyproject.toml (:func:`declared`)::

    [tool.gdbench.workloads.mine]
    shape = [4096, 32, 4]      # synthetic, seeded: rows, features, outputs; or
    # data = "my.csv"          # a CSV (relative to this file), with
    # targets = ["price"]      # its target columns, and optionally standardize = true
    batch_size = 64
    epochs = 2                 # optional: 1
    lr = 0.05                  # optional: 0.05
    seed = 0                   # optional: 0 (the data, the batch order, the weights)
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from gdbench.data.datasets import CROPS_TARGETS, Dataset, load_dataset, synthetic
from gdbench.data.errors import InputError
from gdbench.data.loader import BatchPlan, init_params


@dataclass(frozen=True)
class Problem:
    """Everything a backend needs: data, batch order, initial parameters, learning rate."""

    name: str
    dataset: Dataset
    plan: BatchPlan
    W0: np.ndarray
    b0: np.ndarray
    lr: float
    definition: dict[str, Any] = field(default_factory=dict)  # its workload's, when it has one

    @property
    def dtype(self) -> np.dtype:
        return self.dataset.X.dtype

    @property
    def flops(self) -> float:
        """FLOPs of the whole training loop (4*B*d*k + 6*B*k per step)."""
        return self.plan.flops(self.dataset.n_features, self.dataset.n_outputs)


def make_problem(
    name: str,
    dataset: Dataset,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    seed: int = 0,
    drop_last: bool = False,
) -> Problem:
    """Build the plan and initial parameters for a dataset, validating lr."""
    if isinstance(lr, bool) or not np.isfinite(lr) or lr <= 0:
        raise InputError(f"learning rate must be a positive finite number, got {lr!r}")
    plan = BatchPlan(dataset.n_samples, batch_size, epochs, seed=seed, drop_last=drop_last)
    W0, b0 = init_params(dataset.n_features, dataset.n_outputs, seed=seed, dtype=dataset.X.dtype)
    return Problem(name, dataset, plan, W0, b0, float(lr))


@dataclass(frozen=True)
class Workload:
    """A named benchmark problem: a dataset recipe, batch size, epochs and lr."""

    name: str
    make_dataset: Callable[[np.dtype], Dataset]
    batch_size: int
    epochs: int
    lr: float
    description: str
    seed: int = 0  # of the batch order and the initial weights
    definition: dict[str, Any] = field(default_factory=dict)  # what define() builds it from

    def build(self, dtype: DTypeLike = np.float32, seed: int | None = None) -> Problem:
        """Its Problem in ``dtype``; ``seed`` (default: the workload's own) seeds the batch
        order and the initial weights."""
        problem = make_problem(
            self.name, self.make_dataset(np.dtype(dtype)), batch_size=self.batch_size,
            epochs=self.epochs, lr=self.lr, seed=self.seed if seed is None else seed,
        )
        return replace(problem, definition=dict(self.definition))


# --- definitions ---------------------------------------------------------------------------

KEYS = ("shape", "data", "targets", "standardize", "noise", "batch_size", "epochs", "lr",
        "seed", "description")
DEFAULT_EPOCHS = 1
DEFAULT_LR = 0.05
DEFAULT_NOISE = 0.1  # of a synthetic workload's targets, as gdbench's own
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_shape(value: Any, where: str = "--shape") -> tuple[int, int, int]:
    """(rows, features, outputs) from "N,D,K" (or "NxDxK") or a list of three integers;
    InputError naming ``where`` otherwise."""
    parts = re.split(r"[,x×]", value) if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or len(parts) != 3:
        raise InputError(f"{where}: expected rows,features,outputs such as 4096,32,4, "
                         f"got {value!r}")
    try:
        n, d, k = (_positive_int(p.strip() if isinstance(p, str) else p, where)
                   for p in parts)
    except InputError:
        raise InputError(f"{where}: expected three positive integers rows,features,outputs "
                         f"such as 4096,32,4, got {value!r}") from None
    return n, d, k


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{where} must be a positive integer, got {value!r}")
    return value


def _positive_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise InputError(f"{where} must be a positive finite number, got {value!r}")
    return float(value)


def define(name: str, raw: Mapping[str, Any], where: str = "",
           base: Path | None = None) -> Workload:
    """The workload ``name`` from its definition (see the module's docstring), checked:
    InputError, one line naming ``where`` (its source) and the key, for any bad value. A
    CSV path is taken relative to ``base`` (default: the current directory) and loaded
    once here, with gdbench train's loader, so that a bad file fails now and not in a
    benchmark process. The workload's ``definition`` is ``raw`` normalised: the path made
    absolute, the defaults filled in."""
    at = where or f"workload {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"{at}: a workload name is letters, digits, '.', '_' and '-', "
                         f"got {name!r}")
    if not isinstance(raw, Mapping):
        raise InputError(f"{at}: expected a table of keys ({', '.join(KEYS)})")
    unknown = sorted(set(raw) - set(KEYS) - {"batch"})
    if unknown:
        raise InputError(f"{at}: unknown key {unknown[0]!r}; the keys are: {', '.join(KEYS)}")
    if ("shape" in raw) == ("data" in raw):
        raise InputError(f"{at}: give either shape = [rows, features, outputs] (synthetic "
                         "data) or data = a CSV file")
    batch = raw.get("batch_size", raw.get("batch"))
    if batch is None:
        raise InputError(f"{at}: batch_size is missing")
    definition: dict[str, Any] = {
        "batch_size": _positive_int(batch, f"{at}: batch_size"),
        "epochs": _positive_int(raw.get("epochs", DEFAULT_EPOCHS), f"{at}: epochs"),
        "lr": _positive_float(raw.get("lr", DEFAULT_LR), f"{at}: lr"),
        "seed": _seed(raw.get("seed", 0), f"{at}: seed"),
    }
    if "shape" in raw:
        n, d, k = parse_shape(raw["shape"], f"{at}: shape")
        noise = raw.get("noise", DEFAULT_NOISE)
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or \
                not math.isfinite(noise) or noise < 0:
            raise InputError(f"{at}: noise must be a number of 0 or more, got {noise!r}")
        definition.update(shape=[n, d, k], noise=float(noise))
        make = _synthetic(n, d, k, definition["seed"], float(noise))
        text = f"{n:,} x {d:,} -> {k:,}"
    else:
        make, text = _csv(raw, definition, at, base)
    if "description" in raw:
        definition["description"] = str(raw["description"])
    description = definition.get("description") or (
        f"{text}, batch {definition['batch_size']:,}, {definition['epochs']} epochs")
    return Workload(name, make, definition["batch_size"], definition["epochs"],
                    definition["lr"], description, definition["seed"], definition)


def _seed(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{where} must be an integer of 0 or more, got {value!r}")
    return value


def _csv(raw: Mapping[str, Any], definition: dict[str, Any], at: str,
         base: Path | None) -> tuple[Callable[[np.dtype], Dataset], str]:
    """The dataset recipe of a CSV workload and its description; fills ``definition``."""
    data, targets = raw["data"], raw.get("targets")
    if not isinstance(data, str) or not data:
        raise InputError(f"{at}: data must be a CSV file's path or 'crops', got {data!r}")
    if isinstance(targets, str):
        targets = [targets]
    if targets is not None and (not isinstance(targets, list) or not targets or
                                not all(isinstance(t, str) and t for t in targets)):
        raise InputError(f"{at}: targets must be a list of column names, got {targets!r}")
    standardize = raw.get("standardize", False)
    if not isinstance(standardize, bool):
        raise InputError(f"{at}: standardize must be true or false, got {standardize!r}")
    if data == "crops" and targets is None:  # gdbench's own table, as shipped
        source, chosen, text = data, list(CROPS_TARGETS), "crops"
    else:
        source = data if data == "crops" else str(
            ((base or Path.cwd()) / Path(data).expanduser()).resolve())
        try:
            ds = load_dataset(source, targets, standardize=standardize)  # checked, once
        except InputError as exc:
            raise InputError(f"{at}: {exc}") from None
        chosen = list(ds.target_names)
        text = f"{ds.name}: {ds.n_samples:,} x {ds.n_features} -> {ds.n_outputs}"
    definition.update(data=source, targets=chosen, standardize=standardize)

    def make(dtype: np.dtype) -> Dataset:
        return load_dataset(source, chosen, standardize=standardize, dtype=dtype)

    return make, text


def _synthetic(n: int, d: int, k: int, seed: int = 0,
               noise: float = DEFAULT_NOISE) -> Callable[[np.dtype], Dataset]:
    return lambda dtype: synthetic(n, d, k, seed=seed, noise=noise, dtype=dtype)


def _builtin(name: str, description: str, **definition: Any) -> Workload:
    return _described(define(name, definition), description)


def _described(workload: Workload, description: str) -> Workload:
    """``workload`` with its description replaced (gdbench's own have hand-written ones)."""
    return Workload(workload.name, workload.make_dataset, workload.batch_size,
                    workload.epochs, workload.lr, description, workload.seed,
                    workload.definition)


# Sizes are chosen so one round (one whole training run) takes milliseconds to about a
# second on a 2-core machine; "quick" variants keep the shapes but train fewer epochs.
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        _builtin("crops", "the tutorial: 15 x 3 -> 2, batch 3, 50 epochs",
                 data="crops", batch_size=3, epochs=50, lr=1e-6),
        _builtin("small", "1,024 x 16 -> 2, batch 32",
                 shape=[1024, 16, 2], batch_size=32, epochs=8, lr=0.05),
        _builtin("medium", "16,384 x 128 -> 8, batch 256",
                 shape=[16384, 128, 8], batch_size=256, epochs=2, lr=0.05),
        _builtin("large", "65,536 x 256 -> 16, batch 1,024",
                 shape=[65536, 256, 16], batch_size=1024, epochs=1, lr=0.05),
        _builtin("xl", "262,144 x 1,024 -> 64, batch 4,096 (opt-in)",
                 shape=[262144, 1024, 64], batch_size=4096, epochs=1, lr=0.05),
    ]
}

DEFAULT = ["crops", "small", "medium", "large"]
QUICK = ["crops", "small", "medium"]


def get_workload(name: str, own: Mapping[str, Workload] | None = None) -> Workload:
    """gdbench's workload ``name``, else the user's: those in ``own``, or, when ``own``
    is None, those declared in the nearest pyproject.toml (:func:`declared`); InputError
    listing the known names otherwise."""
    if name in WORKLOADS:
        return WORKLOADS[name]
    users = declared() if own is None else own
    if name not in users:
        known = ", ".join([*WORKLOADS, *users])
        raise InputError(f"unknown workload {name!r}; the known workloads are: {known}")
    return users[name]


# --- the user's pyproject.toml -------------------------------------------------------------

def pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml with a [tool.gdbench] table, from ``start`` (default: the
    current directory) up; None when there is none."""
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        path = folder / "pyproject.toml"
        if path.is_file() and "gdbench" in _read_toml(path).get("tool", {}):
            return path
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as TOML ({exc})") from None


def declared(start: Path | None = None) -> dict[str, Workload]:
    """{name: workload} of the tables [tool.gdbench.workloads.NAME] in the nearest
    pyproject.toml (:func:`pyproject`), checked by :func:`define`; a CSV path is taken
    relative to that file. A name that is one of gdbench's own is an InputError."""
    path = pyproject(start)
    if path is None:
        return {}
    tables = _read_toml(path)["tool"]["gdbench"].get("workloads", {})
    if not isinstance(tables, dict):
        raise InputError(f"{path}: [tool.gdbench.workloads] must be a table of tables")
    out = {}
    for name, raw in tables.items():
        where = f"{path} [tool.gdbench.workloads.{name}]"
        if name in WORKLOADS:
            raise InputError(f"{where}: {name!r} is one of gdbench's own workloads; "
                             "choose another name")
        out[name] = define(name, raw, where, base=path.parent)
    return out


def to_json(workload: Workload) -> str:
    """A workload's definition as one line of JSON (what the suite's --workload-def takes)."""
    return json.dumps(workload.definition, sort_keys=True)
