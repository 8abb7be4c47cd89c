"""Named benchmark workloads, from overhead-bound (crops) to GEMM-bound (large, xl).

A workload fixes a dataset, a BatchPlan and a learning rate; :func:`build` turns it into a
:class:`Problem`, the NumPy inputs every backend's ``prepare`` takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

from gdbench.data.datasets import Dataset, load_dataset, synthetic
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

    def build(self, dtype: DTypeLike = np.float32, seed: int = 0) -> Problem:
        return make_problem(
            self.name, self.make_dataset(np.dtype(dtype)), batch_size=self.batch_size,
            epochs=self.epochs, lr=self.lr, seed=seed,
        )


def _synthetic(n: int, d: int, k: int) -> Callable[[np.dtype], Dataset]:
    return lambda dtype: synthetic(n, d, k, seed=0, noise=0.1, dtype=dtype)


def _crops(dtype: np.dtype) -> Dataset:
    return load_dataset("crops", dtype=dtype)


# Sizes are chosen so one round (one whole training run) takes milliseconds to about a
# second on a 2-core machine; "quick" variants keep the shapes but train fewer epochs.
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("crops", _crops, 3, 50, 1e-6, "the tutorial: 15 x 3 -> 2, batch 3, 50 epochs"),
        Workload("small", _synthetic(1024, 16, 2), 32, 8, 0.05, "1,024 x 16 -> 2, batch 32"),
        Workload("medium", _synthetic(16384, 128, 8), 256, 2, 0.05, "16,384 x 128 -> 8, batch 256"),
        Workload("large", _synthetic(65536, 256, 16), 1024, 1, 0.05,
                 "65,536 x 256 -> 16, batch 1,024"),
        Workload("xl", _synthetic(262144, 1024, 64), 4096, 1, 0.05,
                 "262,144 x 1,024 -> 64, batch 4,096 (opt-in)"),
    ]
}

DEFAULT = ["crops", "small", "medium", "large"]
QUICK = ["crops", "small", "medium"]


def get_workload(name: str) -> Workload:
    if name not in WORKLOADS:
        known = ", ".join(WORKLOADS)
        raise InputError(f"unknown workload {name!r}; the known workloads are: {known}")
    return WORKLOADS[name]
