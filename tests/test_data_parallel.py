"""How a data-parallel backend splits each batch: the world size, each rank's rows, the
padded plan of jax-sharded, and that the ranks' gradients sum to the whole batch's."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from gdbench.data.datasets import load_dataset, synthetic
from gdbench.data.errors import InputError
from gdbench.data.loader import BatchPlan
from gdbench.data.workloads import Problem, make_problem
from gdbench.implementations.base import TrainResult, agreement, train_once
from gdbench.implementations.data_parallel import (
    WORLD_ENV,
    padded_plan,
    rank_batches,
    step_numels,
    world_size,
)
from gdbench.implementations.reference import loss_and_grads


def test_world_size_defaults_to_two_and_reads_gdbench_world(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORLD_ENV, raising=False)
    assert world_size() == 2
    monkeypatch.setenv(WORLD_ENV, "3")
    assert world_size() == 3


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5"])
def test_a_bad_world_size_is_an_input_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(WORLD_ENV, text)
    with pytest.raises(InputError, match=f"GDBENCH_WORLD must be a positive integer.*{text}"):
        world_size()


def test_each_rank_takes_its_array_split_of_every_batch() -> None:
    plan = BatchPlan(15, 7, 2, seed=0)  # batches of 7, 7 and a ragged 1, twice
    shares = [rank_batches(plan, 2, rank) for rank in range(2)]
    for step, batch in enumerate(plan):
        np.testing.assert_array_equal(np.concatenate([s[step] for s in shares]), batch)
        assert [len(s[step]) for s in shares] == [len(r) for r in np.array_split(batch, 2)]
    assert [len(s[2]) for s in shares] == [1, 0]  # rank 1 has no row of the ragged batch
    assert step_numels(plan, 2) == [14, 14, 2] * 2  # the global batch's rows x k


def test_the_padded_plan_holds_each_workers_rows_then_masked_padding() -> None:
    plan = BatchPlan(15, 7, 1, seed=0)
    padded = padded_plan(plan, 2, 2, np.dtype(np.float32))
    assert padded.per_worker == 4  # ceil(7 / 2)
    assert padded.idx.shape == padded.mask.shape == (3, 8)
    assert padded.mask.dtype == np.float32
    for step, batch in enumerate(plan):
        for rank, rows in enumerate(np.array_split(batch, 2)):
            block = slice(4 * rank, 4 * rank + 4)
            np.testing.assert_array_equal(padded.idx[step, block][:len(rows)], rows)
            np.testing.assert_array_equal(padded.mask[step, block],
                                          [1] * len(rows) + [0] * (4 - len(rows)))
            assert not padded.idx[step, block][len(rows):].any()  # padding gathers row 0
    np.testing.assert_allclose(padded.inv_numel, [1 / 14, 1 / 14, 1 / 2])


@pytest.mark.parametrize("world", [2, 3, 8])
def test_the_ranks_gradients_sum_to_the_whole_batchs(world: int) -> None:
    # float64, so that only the order of the additions differs: a few rounding units.
    ds = synthetic(20, 4, 3, seed=0, noise=0.1, dtype="float64")
    plan = BatchPlan(20, 6, 1, seed=0)  # 6, 6, 6 and a ragged 2: world 3 and 8 leave ranks empty
    rng = np.random.default_rng(1)
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    numels = step_numels(plan, 3)
    for step, batch in enumerate(plan):
        _, dW, db = loss_and_grads(ds.X[batch], ds.Y[batch], W, b)
        sum_dW, sum_db = np.zeros_like(W), np.zeros_like(b)
        for rank in range(world):
            rows = rank_batches(plan, world, rank)[step]
            G = (ds.X[rows] @ W.T + b - ds.Y[rows]) * (2.0 / numels[step])
            sum_dW += G.T @ ds.X[rows]
            sum_db += G.sum(axis=0)
        np.testing.assert_allclose(sum_dW, dW, rtol=0, atol=1e-13)
        np.testing.assert_allclose(sum_db, db, rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["torch-ddp", "jax-sharded"])
def test_a_rank_with_no_rows_still_agrees_with_numpy(
        backend: str, dtype: str, train_backend: Callable[[str, Problem], TrainResult]) -> None:
    # crops in batches of 7: 7, 7, then a ragged 1, whose array_split leaves rank 1 empty.
    problem = make_problem("crops", load_dataset("crops", dtype=dtype), batch_size=7,
                           epochs=20, lr=1e-6)
    assert [len(r) for r in np.array_split(problem.plan.batches()[2], 2)] == [1, 0]
    reference, *_ = train_once("numpy", problem)
    result = train_backend(backend, problem)
    dW, db, ok = agreement(result, reference, dtype)
    assert ok, f"{backend} ({dtype}): max|dW| {dW:.3g}, max|db| {db:.3g}"
