"""The NumPy reference's hand-derived gradients against central finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from gdbench.data.datasets import load_dataset
from gdbench.data.loader import BatchPlan, init_params
from gdbench.data.workloads import Problem
from gdbench.implementations.base import train_once
from gdbench.implementations.numpy_manual import NumpyManual
from gdbench.implementations.reference import loss_and_grads

# The loss is quadratic in (W, b), so a central difference is exact in exact arithmetic
# for any step h; only float64 rounding remains, about eps * |loss| / h. With h = 1e-3
# that is ~1e-9 of the gradient's scale at worst, so rel 1e-6 is a tolerance no wrong
# formula (a missing factor 2, a mean over rows only, a transposed dW) can pass.
H = 1e-3
RTOL = 1e-6


def loss_only(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    diff = X @ W.T + b - Y
    return float(np.sum(diff * diff) / diff.size)


def finite_difference_grads(
    X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of the batch loss with respect to every entry of W and b."""
    dW = np.zeros_like(W)
    for i, j in np.ndindex(*W.shape):
        up, down = W.copy(), W.copy()
        up[i, j] += H
        down[i, j] -= H
        dW[i, j] = (loss_only(X, Y, up, b) - loss_only(X, Y, down, b)) / (2 * H)
    db = np.zeros_like(b)
    for i in range(b.size):
        up, down = b.copy(), b.copy()
        up[i] += H
        down[i] -= H
        db[i] = (loss_only(X, Y, W, up) - loss_only(X, Y, W, down)) / (2 * H)
    return dW, db


def assert_matches_finite_differences(
    X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray
) -> None:
    loss, dW, db = loss_and_grads(X, Y, W, b)
    assert dW.shape == W.shape and db.shape == b.shape
    assert loss == pytest.approx(loss_only(X, Y, W, b), rel=1e-12)
    fd_W, fd_b = finite_difference_grads(X, Y, W, b)
    scale = max(np.max(np.abs(fd_W)), np.max(np.abs(fd_b)))
    assert scale > 0
    assert np.max(np.abs(dW - fd_W)) <= RTOL * scale
    assert np.max(np.abs(db - fd_b)) <= RTOL * scale


def test_gradients_on_a_random_problem() -> None:
    rng = np.random.default_rng(0)
    n_samples, n_features, n_outputs = 7, 4, 3
    X = rng.standard_normal((n_samples, n_features))
    Y = rng.standard_normal((n_samples, n_outputs))
    W = rng.standard_normal((n_outputs, n_features))
    b = rng.standard_normal(n_outputs)
    assert_matches_finite_differences(X, Y, W, b)


def test_gradients_on_a_single_output_problem() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 3))
    Y = rng.standard_normal((5, 1))
    W = rng.standard_normal((1, 3))
    b = rng.standard_normal(1)
    assert_matches_finite_differences(X, Y, W, b)


def test_gradients_on_the_first_crops_batch() -> None:
    ds = load_dataset("crops", dtype=np.float64)
    idx = next(iter(BatchPlan(15, 3, 50, seed=0)))
    W, b = init_params(3, 2, seed=0, dtype=np.float64)
    assert_matches_finite_differences(ds.X[idx], ds.Y[idx], W, b)


def test_numpy_backend_step_uses_these_gradients() -> None:
    # One step on the whole crops table: W1 = W0 - lr * dW, b1 = b0 - lr * db.
    ds = load_dataset("crops", dtype=np.float64)
    plan = BatchPlan(15, 15, 1, seed=0)
    W0, b0 = init_params(3, 2, seed=0, dtype=np.float64)
    lr = 1e-5
    result, *_ = train_once(NumpyManual(), Problem("crops", ds, plan, W0, b0, lr))
    idx = next(iter(plan))
    _, dW, db = loss_and_grads(ds.X[idx], ds.Y[idx], W0, b0)
    # Same float64 operations in another order: equal to a few rounding units.
    np.testing.assert_allclose(result.W, W0 - lr * dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.b, b0 - lr * db, rtol=1e-12, atol=1e-12)
    assert result.steps == 1
