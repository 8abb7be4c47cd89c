"""BatchPlan: the one batch order that every backend trains on, and the initial weights."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import DTypeLike

from gdbench.data.errors import InputError


class BatchPlan:
    """Seeded mini-batch index arrays, in training order.

    Epoch ``e`` is the permutation drawn from ``default_rng([seed, e])``, cut into
    ``batch_size`` rows at a time. A ragged last batch is trained on its real rows unless
    ``drop_last`` is set. Iterating yields int64 index arrays; ``len(plan)`` is the number
    of steps. The same arguments give the same plan in every process.
    """

    def __init__(
        self,
        n_samples: int,
        batch_size: int,
        epochs: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        for label, value in (("n_samples", n_samples), ("batch_size", batch_size),
                             ("epochs", epochs)):
            if (isinstance(value, bool) or not isinstance(value, (int, np.integer, float))
                    or not np.isfinite(value) or int(value) != value or value <= 0):
                raise InputError(f"{label} must be a positive integer, got {value!r}")
        n_samples, batch_size, epochs = int(n_samples), int(batch_size), int(epochs)
        if drop_last and batch_size > n_samples:
            raise InputError(
                f"batch size {batch_size} is larger than the {n_samples} rows, and drop_last "
                "would leave no batch to train on"
            )
        self.n_samples = n_samples
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.full_batches = n_samples // batch_size
        self.tail_size = 0 if drop_last else n_samples % batch_size
        self._orders = np.stack([self.epoch_order(e) for e in range(epochs)])

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of row indices for one epoch (int64)."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_samples)

    @property
    def steps_per_epoch(self) -> int:
        return self.full_batches + (1 if self.tail_size else 0)

    def __len__(self) -> int:
        return self.epochs * self.steps_per_epoch

    def __iter__(self) -> Iterator[np.ndarray]:
        full, tail = self.as_arrays()
        for e in range(self.epochs):
            yield from full[e]
            if tail is not None:
                yield tail[e]

    def batches(self) -> list[np.ndarray]:
        """Every step's index array, in training order."""
        return list(self)

    def batch_sizes(self) -> list[int]:
        """The number of rows in each step, in training order."""
        sizes = [self.batch_size] * self.full_batches + ([self.tail_size] if self.tail_size else [])
        return sizes * self.epochs

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The whole plan as arrays, for backends that fuse the loop.

        Returns ``full`` of shape (epochs, full_batches, batch_size) and ``tail`` of shape
        (epochs, tail_size), or None when there is no ragged batch. Epoch e trains on
        ``full[e, 0], ..., full[e, -1]`` and then on ``tail[e]``.
        """
        cut = self.full_batches * self.batch_size
        full = self._orders[:, :cut].reshape(self.epochs, self.full_batches, self.batch_size)
        tail = None
        if self.tail_size:
            tail = self._orders[:, cut:]
        return full, tail

    def flops(self, n_features: int, n_outputs: int) -> float:
        """FLOPs of the whole plan: 4*B*d*k + 6*B*k per step, with each step's real B."""
        rows = self.epochs * (self.full_batches * self.batch_size + self.tail_size)
        return float(rows) * (4.0 * n_features * n_outputs + 6.0 * n_outputs)

    def __repr__(self) -> str:
        return (
            f"BatchPlan(n_samples={self.n_samples}, batch_size={self.batch_size}, "
            f"epochs={self.epochs}, seed={self.seed}, drop_last={self.drop_last})"
        )


def init_params(
    n_features: int, n_outputs: int, *, seed: int = 0, dtype: DTypeLike = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal initial weights W (n_outputs, n_features) and bias b (n_outputs,).

    Drawn in float64 and then cast, so float32 and float64 runs start from the same point.
    """
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_outputs, n_features))
    b = rng.standard_normal(n_outputs)
    return W.astype(dtype), b.astype(dtype)
