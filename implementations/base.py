"""The contract every backend keeps, the one place its three phases run, and agreement.

A backend trains ``pred = X @ W.T + b`` by mini-batch gradient descent on
``sum((pred - Y_b)**2) / numel`` in three phases (see :class:`Backend`). The sequence
prepare -> run -> result is written once, in :func:`prepare` and :func:`train_once`;
the CLI, the timed suite, the plots and the tests all go through it.

Agreement: a backend agrees with the NumPy reference when max(|W - W_ref|, |b - b_ref|)
<= RTOL[dtype] x max(1, |W_ref|, |b_ref|) (:func:`agreement`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gdbench.data.datasets import mse
from gdbench.data.errors import InputError
from gdbench.data.workloads import Problem
from gdbench.implementations.reference import loss_and_grads


@dataclass(frozen=True)
class TrainResult:
    """What a backend trained: W (k, d), b (k,), and the float64 MSE of the whole dataset."""

    backend: str
    W: np.ndarray
    b: np.ndarray
    final_loss: float
    steps: int


class Backend(Protocol):
    """One way of training. Each method's promise is part of the timing rules.

    A data-parallel backend (torch-ddp, jax-sharded) also has ``world`` (its workers),
    ``workers`` ("processes" or "devices"), ``single_process`` (the one-process backend
    it is set against) and ``run_compute_only(state)``: the same loop on the same workers
    without its collective, which the suite times beside ``run`` for the collective's cost.
    """

    name: str  # the registry key: "numpy", "torch-cpu", "jax-scan", ...
    device: str  # "cpu" or "cuda"
    sync: str  # how run() waits for the device: "none", "torch.cuda.synchronize", ...

    def prepare(self, problem: Problem) -> Any:
        """Untimed: convert the data, move it to the device, compile and warm up.

        Returns the backend's own state, which holds ``problem`` for :meth:`result`. A
        compiling backend records its compile seconds as ``state.compile_s``.
        """
        ...

    def run(self, state: Any) -> None:
        """Timed: the whole training loop, from ``problem.W0`` and ``problem.b0``.

        Every call starts again from the initial weights, so every round does the same
        work. It returns only after the device has finished, and does nothing a user's own
        loop would not do: no transfer, conversion or copy that the loop does not need.
        """
        ...

    def result(self, state: Any) -> TrainResult:
        """Untimed: the final weights of the last :meth:`run` as NumPy, via make_result."""
        ...

    def wait(self, state: Any) -> None:
        """Block until every operation of the last :meth:`run` has finished on the device.

        :meth:`run` already does this; ``gdbench audit`` calls it once more to prove that
        the second wait finds nothing left to wait for. A no-op on synchronous backends.
        """
        ...


class DivergenceError(InputError):
    """Training produced a non-finite loss or weight (a user-facing error: lr too large)."""


def make_result(backend: str, W: Any, b: Any, problem: Problem) -> TrainResult:
    """Wrap final weights in a TrainResult, raising DivergenceError if any is non-finite.

    Backends do not check finiteness inside the timed loop (that would sync the device
    every step), so on a non-finite result the plan is replayed in NumPy, in the same
    dtype, to name the first step whose loss or weights stopped being finite.
    """
    W = np.asarray(W)
    b = np.asarray(b)
    finite = np.isfinite(W).all() and np.isfinite(b).all()
    loss = mse(problem.dataset, W, b) if finite else np.nan
    if not np.isfinite(loss):
        step = first_divergent_step(problem)
        raise DivergenceError(
            f"backend {backend} diverged at step {step} of {len(problem.plan)} with "
            f"lr={problem.lr:g}: the loss or weights are no longer finite; try a smaller "
            "--lr or --standardize"
        )
    return TrainResult(backend, W, b, loss, len(problem.plan))


def first_divergent_step(problem: Problem) -> int:
    """The 1-based step at which the NumPy replay first has a non-finite loss or weight."""
    X, Y = problem.dataset.X, problem.dataset.Y
    W, b = problem.W0.copy(), problem.b0.copy()
    lr = X.dtype.type(problem.lr)
    with np.errstate(all="ignore"):
        for step, idx in enumerate(problem.plan, start=1):
            loss, dW, db = loss_and_grads(X[idx], Y[idx], W, b)
            W -= lr * dW
            b -= lr * db
            if not (np.isfinite(loss) and np.isfinite(W).all() and np.isfinite(b).all()):
                return step
    return len(problem.plan)


# --- the three phases, written once --------------------------------------------------------

@dataclass
class Prepared:
    """A backend with its prepared state: ``run()`` is the timed call."""

    backend: Backend
    state: Any
    prepare_s: float  # seconds of prepare, compilation included

    @property
    def compile_s(self) -> float:
        """Seconds of compilation inside prepare (0 for backends that do not compile)."""
        return float(getattr(self.state, "compile_s", 0.0))

    def run(self) -> None:
        self.backend.run(self.state)

    def wait(self) -> None:
        self.backend.wait(self.state)

    def result(self) -> TrainResult:
        return self.backend.result(self.state)


def prepare(backend: str | Backend, problem: Problem) -> Prepared:
    """Prepare a backend (a registry name or an instance) on a problem, timing prepare."""
    if isinstance(backend, str):
        from gdbench import implementations  # the registry imports this module

        backend = implementations.get(backend)
    start = time.perf_counter()
    state = backend.prepare(problem)
    return Prepared(backend, state, time.perf_counter() - start)


def train_once(backend: str | Backend, problem: Problem) -> tuple[TrainResult, float, float]:
    """Prepare, run once and take the result: (result, seconds of run, seconds of prepare)."""
    prepared = prepare(backend, problem)
    start = time.perf_counter()
    prepared.run()
    seconds = time.perf_counter() - start
    return prepared.result(), seconds, prepared.prepare_s


# --- agreement -----------------------------------------------------------------------------

# float32 agreement: max |W - W_numpy| relative to the weights' scale. Each step rounds
# at ~6e-8 (float32 eps/2); backends sum in different orders, so the drift grows at most
# linearly with the steps. 1e-4 is ~1,000 rounding units, far above the ~1e-7 seen on the
# crops and synthetic problems yet far below any real difference in the maths.
RTOL = {"float32": 1e-4, "float64": 1e-10}


def agreement(result: TrainResult, reference: TrainResult, dtype: str) -> tuple[float, float, bool]:
    """(max |W - W_ref|, max |b - b_ref|, agrees) with the tolerance relative to the scale."""
    dW = float(np.max(np.abs(result.W.astype(np.float64) - reference.W)))
    db = float(np.max(np.abs(result.b.astype(np.float64) - reference.b)))
    scale = max(1.0, float(np.max(np.abs(reference.W))), float(np.max(np.abs(reference.b))))
    return dW, db, max(dW, db) <= RTOL[dtype] * scale
