"""The contract every backend keeps, the result it hands back, and the divergence check.

A backend trains ``pred = X @ W.T + b`` by mini-batch gradient descent on
``sum((pred - Y_b)**2) / numel`` in three phases:

* ``prepare(dataset, plan, W0, b0, lr)`` (untimed): convert, move to the device, compile,
  warm up. Returns the backend's own state object.
* ``run(state)`` (timed): the whole training loop from W0, b0. It returns only when the
  device has finished, and starts again from W0, b0 on every call.
* ``result(state)`` (untimed): the final W (k, d) and b (k,) as NumPy, via
  :func:`make_result`, which also stops on a non-finite weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from gdbench.data.datasets import Dataset, mse
from gdbench.data.errors import InputError
from gdbench.data.loader import BatchPlan


@dataclass(frozen=True)
class TrainResult:
    """What a backend trained: W (k, d), b (k,), and the float64 MSE of the whole dataset."""

    backend: str
    W: np.ndarray
    b: np.ndarray
    final_loss: float
    steps: int


class Backend(Protocol):
    name: str
    device: str  # "cpu" or "cuda"
    sync: str  # how run() waits for the device: "none", "torch.cuda.synchronize", ...

    def prepare(
        self, dataset: Dataset, plan: BatchPlan, W0: np.ndarray, b0: np.ndarray, lr: float
    ) -> Any: ...

    def run(self, state: Any) -> None: ...

    def result(self, state: Any) -> TrainResult: ...


class DivergenceError(InputError):
    """Training produced a non-finite loss or weight (a user-facing error: lr too large)."""


def make_result(
    backend: str,
    W: np.ndarray,
    b: np.ndarray,
    dataset: Dataset,
    plan: BatchPlan,
    W0: np.ndarray,
    b0: np.ndarray,
    lr: float,
) -> TrainResult:
    """Wrap final weights in a TrainResult, raising DivergenceError if any is non-finite.

    Backends do not check finiteness inside the timed loop (that would sync the device
    every step), so on a non-finite result the plan is replayed in NumPy, in the same
    dtype, to name the first step whose loss or weights stopped being finite.
    """
    W = np.asarray(W)
    b = np.asarray(b)
    loss = mse(dataset, W, b) if np.isfinite(W).all() and np.isfinite(b).all() else np.nan
    if not np.isfinite(loss):
        step = first_divergent_step(dataset, plan, W0, b0, lr)
        raise DivergenceError(
            f"backend {backend} diverged at step {step} of {len(plan)} with lr={lr:g}: "
            "the loss or weights are no longer finite; try a smaller --lr or --standardize"
        )
    return TrainResult(backend, W, b, loss, len(plan))


def first_divergent_step(
    dataset: Dataset, plan: BatchPlan, W0: np.ndarray, b0: np.ndarray, lr: float
) -> int:
    """The 1-based step at which the NumPy replay first has a non-finite loss or weight."""
    from gdbench.implementations.numpy_manual import loss_and_grads  # the reference's own maths

    X, Y = dataset.X, dataset.Y
    W, b = W0.copy(), b0.copy()
    lr_t = X.dtype.type(lr)
    with np.errstate(all="ignore"):
        for step, idx in enumerate(plan, start=1):
            loss, dW, db = loss_and_grads(X[idx], Y[idx], W, b)
            W -= lr_t * dW
            b -= lr_t * db
            if not (np.isfinite(loss) and np.isfinite(W).all() and np.isfinite(b).all()):
                return step
    return len(plan)
