"""Every backend trains the same model: its final W and b match the NumPy reference.

The tolerance is gdbench's own (``base.RTOL`` through ``base.agreement``): max(|dW|, |db|)
<= RTOL x max(1, |W_numpy|, |b_numpy|), with RTOL 1e-4 in float32 and 1e-10 in float64.
It is never loosened here. Backends that cannot run on this machine are skipped with
the reason from ``implementations.available()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from gdbench import implementations
from gdbench.data.datasets import Dataset, least_squares, load_dataset, synthetic
from gdbench.data.loader import BatchPlan
from gdbench.data.workloads import Problem, make_problem
from gdbench.implementations.base import RTOL, TrainResult, agreement, prepare, train_once
from gdbench.implementations.reference import loss_and_grads

BACKENDS = implementations.names()
DTYPES = ["float32", "float64"]
# torch.compile compiles every new batch shape in prepare, seconds each on a CPU: these
# backends run the agreement matrix on the problems below (crops; two batch shapes with
# ragged; k = 1 with single-output), in both dtypes, and skip the convergence test.
# tests/test_compile.py checks that they compile in prepare and never in run.
COMPILE_PER_SHAPE = {"torch-compile", "torch-compile-cuda"}
COMPILED_PROBLEMS = {"crops", "ragged", "single-output"}
Train = Callable[[str, Problem], TrainResult]


def _ragged_data(dtype: str) -> Dataset:
    return synthetic(50, 5, 3, seed=1, noise=0.1, dtype=dtype).standardized()


# name -> how to build it in a dtype. Small, so the whole matrix stays fast.
PROBLEMS: dict[str, Callable[[str], Problem]] = {
    # The tutorial: raw crops, batch 3, 50 epochs, lr 1e-6 (250 steps).
    "crops": lambda dtype: make_problem(
        "crops", load_dataset("crops", dtype=dtype), batch_size=3, epochs=50, lr=1e-6),
    # 50 rows in batches of 8: six full batches, then a ragged batch of 2, every epoch.
    "ragged": lambda dtype: make_problem(
        "ragged", _ragged_data(dtype), batch_size=8, epochs=10, lr=0.05),
    # The same data with drop_last: the 2 leftover rows are skipped, every epoch.
    "drop-last": lambda dtype: make_problem(
        "drop-last", _ragged_data(dtype), batch_size=8, epochs=10, lr=0.05, drop_last=True),
    # One target (k = 1): W is (1, d), b is (1,); 40 rows in batches of 6 (ragged 4).
    "single-output": lambda dtype: make_problem(
        "single-output", synthetic(40, 4, 1, seed=2, noise=0.1, dtype=dtype).standardized(),
        batch_size=6, epochs=10, lr=0.05),
    # Wider: 2,000 x 64 -> 8, batch 128 (15 full batches and a ragged 80), 3 epochs.
    "wide": lambda dtype: make_problem(
        "wide", synthetic(2000, 64, 8, seed=3, noise=0.1, dtype=dtype).standardized(),
        batch_size=128, epochs=3, lr=0.05),
}


class Solved:
    """Each (problem, dtype) and its NumPy reference result, built once per module."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[Problem, TrainResult]] = {}

    def __call__(self, problem_name: str, dtype: str) -> tuple[Problem, TrainResult]:
        key = (problem_name, dtype)
        if key not in self._cache:
            problem = PROBLEMS[problem_name](dtype)
            reference, *_ = train_once(implementations.REFERENCE, problem)
            self._cache[key] = (problem, reference)
        return self._cache[key]


@pytest.fixture(scope="module")
def solved() -> Solved:
    return Solved()


def scale_of(result: TrainResult) -> float:
    """The scale the agreement tolerance is relative to: max(1, |W|, |b|)."""
    return max(1.0, float(np.max(np.abs(result.W))), float(np.max(np.abs(result.b))))


def _agreement_cases() -> list[tuple[str, str]]:
    return [(backend, problem) for backend in BACKENDS if backend != implementations.REFERENCE
            for problem in PROBLEMS
            if backend not in COMPILE_PER_SHAPE or problem in COMPILED_PROBLEMS]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("backend", "problem_name"), _agreement_cases(),
                         ids=[f"{b}-{p}" for b, p in _agreement_cases()])
def test_backend_matches_numpy(
    backend: str, problem_name: str, dtype: str, solved: Solved, train_backend: Train
) -> None:
    problem, reference = solved(problem_name, dtype)
    result = train_backend(backend, problem)
    assert result.backend == backend
    assert result.steps == len(problem.plan)
    assert result.W.shape == reference.W.shape and result.b.shape == reference.b.shape
    assert result.W.dtype == np.dtype(dtype) and result.b.dtype == np.dtype(dtype)
    assert np.isfinite(result.final_loss)
    dW, db, ok = agreement(result, reference, dtype)
    assert ok, (
        f"{backend} on {problem_name} ({dtype}): max|dW| {dW:.3g}, max|db| {db:.3g} > "
        f"{RTOL[dtype]:g} x {scale_of(reference):.3g}"
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("problem_name", list(PROBLEMS))
def test_the_reference_is_the_plain_replay_of_the_maths(
    problem_name: str, dtype: str, solved: Solved
) -> None:
    # The numpy backend's buffered loop against the maths written plainly, step by step.
    problem, reference = solved(problem_name, dtype)
    X, Y = problem.dataset.X, problem.dataset.Y
    W, b = problem.W0.copy(), problem.b0.copy()
    lr = X.dtype.type(problem.lr)
    for idx in problem.plan:
        _, dW, db = loss_and_grads(X[idx], Y[idx], W, b)
        W -= lr * dW
        b -= lr * db
    # The same operations in the same dtype, only fused differently: a few rounding units.
    tol = {"float32": 1e-5, "float64": 1e-13}[dtype] * scale_of(reference)
    assert np.max(np.abs(reference.W - W)) <= tol
    assert np.max(np.abs(reference.b - b)) <= tol


@pytest.mark.parametrize("problem_name", list(PROBLEMS))
def test_problems_move_the_weights_far_beyond_the_tolerance(
    problem_name: str, solved: Solved
) -> None:
    # Agreement would mean nothing if training barely moved the weights from W0.
    problem, reference = solved(problem_name, "float32")
    moved = max(np.max(np.abs(reference.W - problem.W0)), np.max(np.abs(reference.b - problem.b0)))
    assert moved > 100 * RTOL["float32"] * scale_of(reference)


def test_tolerance_tells_a_different_batch_order_apart(
    solved: Solved, train_backend: Train
) -> None:
    problem, reference = solved("crops", "float32")
    reordered = dataclasses.replace(problem, plan=BatchPlan(15, 3, 50, seed=1))
    assert not agreement(train_backend("numpy", reordered), reference, "float32")[2]


def test_tolerance_tells_a_one_percent_different_lr_apart(
    solved: Solved, train_backend: Train
) -> None:
    problem, reference = solved("crops", "float32")
    other_lr = dataclasses.replace(problem, lr=problem.lr * 1.01)
    assert not agreement(train_backend("numpy", other_lr), reference, "float32")[2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_twice_restarts_from_the_initial_weights(
    backend: str, solved: Solved, backend_status: dict[str, str | None]
) -> None:
    if backend_status[backend]:
        pytest.skip(f"backend {backend}: {backend_status[backend]}")
    problem, reference = solved("ragged", "float32")
    prepared = prepare(backend, problem)
    prepared.run()
    first = prepared.result()
    prepared.run()
    second = prepared.result()
    # Same work from the same start on the same machine: identical to the bit. Had the
    # second run continued from the first's weights, it would have trained 20 epochs.
    np.testing.assert_array_equal(first.W, second.W)
    np.testing.assert_array_equal(first.b, second.b)
    assert agreement(second, reference, "float32")[2]
    np.testing.assert_array_equal(problem.W0, PROBLEMS["ragged"]("float32").W0)  # W0 untouched


# --- convergence to the least-squares optimum --------------------------------------------

# Noise-free, so every batch's gradient vanishes at the optimum and gradient descent
# converges linearly to it. Standardised features put the Hessian's eigenvalues near
# 2/k x [0.77, 1.27]; with lr 0.2 each step shrinks the error by ~10%, so 20 epochs
# (320 steps) take it from ~2.5 (relative) to ~1e-15, below either dtype's rounding.
CONVERGENCE_EPOCHS = 20
CONVERGENCE_LR = 0.2
# Relative distance ||(W, b) - (W_ls, b_ls)|| / ||(W_ls, b_ls)|| at the end. float32
# stalls at its rounding floor, measured at 1e-7 to 3e-7 for every backend here; 1e-5
# leaves a 30x margin for other BLAS libraries and still sits 5 orders below the start.
# float64 ends at ~2e-15; 1e-12 leaves room for summation order alone.
CONVERGENCE_RTOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.fixture(scope="module")
def convergence_problems() -> dict[str, tuple[Problem, np.ndarray, np.ndarray]]:
    out = {}
    for dtype in DTYPES:
        ds = synthetic(512, 8, 3, seed=0, noise=0.0, dtype=dtype).standardized()
        problem = make_problem("converge", ds, batch_size=32, epochs=CONVERGENCE_EPOCHS,
                               lr=CONVERGENCE_LR)
        W_ls, b_ls = least_squares(ds)
        out[dtype] = (problem, W_ls, b_ls)
    return out


def relative_distance(W: np.ndarray, b: np.ndarray, W_ls: np.ndarray, b_ls: np.ndarray) -> float:
    W, b = W.astype(np.float64), b.astype(np.float64)
    gap = np.sqrt(np.sum((W - W_ls) ** 2) + np.sum((b - b_ls) ** 2))
    return float(gap / np.sqrt(np.sum(W_ls**2) + np.sum(b_ls**2)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", [n for n in BACKENDS if n not in COMPILE_PER_SHAPE])
def test_backend_reaches_the_least_squares_optimum(
    backend: str,
    dtype: str,
    convergence_problems: dict[str, tuple[Problem, np.ndarray, np.ndarray]],
    train_backend: Train,
) -> None:
    problem, W_ls, b_ls = convergence_problems[dtype]
    start = relative_distance(problem.W0, problem.b0, W_ls, b_ls)
    assert start > 1.0  # W0 is nowhere near the optimum
    result = train_backend(backend, problem)
    assert relative_distance(result.W, result.b, W_ls, b_ls) <= CONVERGENCE_RTOL[dtype]


def test_numpy_reaches_the_optimum_tightly_in_float64(
    convergence_problems: dict[str, tuple[Problem, np.ndarray, np.ndarray]],
    train_backend: Train,
) -> None:
    problem, W_ls, b_ls = convergence_problems["float64"]
    result = train_backend("numpy", problem)
    assert relative_distance(result.W, result.b, W_ls, b_ls) <= 1e-12
    # Y is exactly linear in X, so the optimum's loss is zero up to float64 rounding.
    assert result.final_loss < 1e-24
