"""NumPy with hand-derived gradients: the reference every other backend is checked against.

The maths is :func:`gdbench.implementations.reference.loss_and_grads`, written here into
preallocated buffers, so a step allocates nothing (the gather writes into a buffer too).

The ops, and why: the gather is ``np.take(..., out=, mode="clip")``, a row copy into the
buffer (``X[idx]`` would allocate a new array every step); the matmuls are
``np.matmul(..., out=)``, one BLAS GEMM each; the update scales the gradient in place and
subtracts it in place (``W -= dW``), the idiom of a NumPy loop that allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdbench.data.workloads import Problem
from gdbench.implementations.base import TrainResult, make_result


@dataclass
class _Buffers:
    Xb: np.ndarray  # (B, d) gathered rows
    Yb: np.ndarray  # (B, k)
    P: np.ndarray  # (B, k) prediction, then residual, then G
    dW: np.ndarray  # (k, d)
    db: np.ndarray  # (k,)
    scale: np.floating  # 2 / numel


@dataclass
class State:
    problem: Problem
    batches: list[np.ndarray]
    buffers: dict[int, _Buffers]
    W: np.ndarray
    b: np.ndarray


class NumpyManual:
    name = "numpy"
    device = "cpu"
    sync = "none"

    def prepare(self, problem: Problem) -> State:
        dataset, plan = problem.dataset, problem.plan
        dt = dataset.X.dtype
        d, k = dataset.n_features, dataset.n_outputs
        buffers = {}
        for rows in set(plan.batch_sizes()):
            buffers[rows] = _Buffers(
                Xb=np.empty((rows, d), dt),
                Yb=np.empty((rows, k), dt),
                P=np.empty((rows, k), dt),
                dW=np.empty((k, d), dt),
                db=np.empty(k, dt),
                scale=dt.type(2.0 / (rows * k)),
            )
        return State(
            problem, plan.batches(), buffers,
            W=np.array(problem.W0, dtype=dt), b=np.array(problem.b0, dtype=dt),
        )

    def run(self, state: State) -> None:
        problem = state.problem
        X, Y = problem.dataset.X, problem.dataset.Y
        W, b = state.W, state.b
        W[...] = problem.W0
        b[...] = problem.b0
        lr = X.dtype.type(problem.lr)
        buffers = state.buffers
        take, matmul, subtract, multiply = np.take, np.matmul, np.subtract, np.multiply
        with np.errstate(over="ignore", invalid="ignore"):
            for idx in state.batches:
                buf = buffers[len(idx)]
                Xb, P = buf.Xb, buf.P
                # mode="clip": the plan's indices are in range by construction, and the
                # default mode="raise" gathers into a temporary first (twice the copying).
                take(X, idx, axis=0, out=Xb, mode="clip")
                take(Y, idx, axis=0, out=buf.Yb, mode="clip")
                matmul(Xb, W.T, out=P)
                P += b
                subtract(P, buf.Yb, out=P)
                multiply(P, buf.scale, out=P)  # P is now G
                matmul(P.T, Xb, out=buf.dW)
                P.sum(axis=0, out=buf.db)
                buf.dW *= lr
                buf.db *= lr
                W -= buf.dW
                b -= buf.db

    def wait(self, state: State) -> None:
        """NumPy's calls return when their work is done: nothing to wait for."""

    def result(self, state: State) -> TrainResult:
        return make_result(self.name, state.W.copy(), state.b.copy(), state.problem)
