"""NumPy with hand-derived gradients: the reference every other backend is checked against.

For the loss ``L = sum((X_b @ W.T + b - Y_b)**2) / numel`` with numel = rows * k:
``G = 2/numel * (pred - Y_b)``, ``dL/dW = G.T @ X_b`` and ``dL/db = G.sum(0)``.
The hot loop writes into preallocated buffers, so a step allocates nothing but the gather.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gdbench.data.datasets import Dataset
from gdbench.data.loader import BatchPlan
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
    dataset: Dataset
    plan: BatchPlan
    W0: np.ndarray
    b0: np.ndarray
    lr: float
    batches: list[np.ndarray]
    buffers: dict[int, _Buffers]
    W: np.ndarray
    b: np.ndarray


def loss_and_grads(
    X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """The batch loss and its hand-derived gradients (dW (k, d), db (k,))."""
    diff = X @ W.T + b - Y
    G = diff * (2.0 / diff.size)
    return float(np.sum(diff * diff) / diff.size), G.T @ X, G.sum(axis=0)


class NumpyManual:
    name = "numpy"
    device = "cpu"
    sync = "none"

    def prepare(
        self, dataset: Dataset, plan: BatchPlan, W0: np.ndarray, b0: np.ndarray, lr: float
    ) -> State:
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
            dataset, plan, W0, b0, lr, plan.batches(), buffers,
            W=np.array(W0, dtype=dt), b=np.array(b0, dtype=dt),
        )

    def run(self, state: State) -> None:
        X, Y = state.dataset.X, state.dataset.Y
        W, b = state.W, state.b
        W[...] = state.W0
        b[...] = state.b0
        lr = X.dtype.type(state.lr)
        buffers = state.buffers
        take, matmul, subtract, multiply = np.take, np.matmul, np.subtract, np.multiply
        with np.errstate(over="ignore", invalid="ignore"):
            for idx in state.batches:
                buf = buffers[len(idx)]
                Xb, P = buf.Xb, buf.P
                take(X, idx, axis=0, out=Xb)
                take(Y, idx, axis=0, out=buf.Yb)
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

    def result(self, state: State) -> TrainResult:
        return make_result(
            self.name, state.W.copy(), state.b.copy(), state.dataset, state.plan,
            state.W0, state.b0, state.lr,
        )
