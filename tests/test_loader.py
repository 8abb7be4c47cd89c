"""BatchPlan and init_params: the batch order and starting point every backend shares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gdbench.data.errors import InputError
from gdbench.data.loader import BatchPlan, init_params

ROOT = Path(__file__).resolve().parent.parent


def epochs_of(plan: BatchPlan) -> list[list[np.ndarray]]:
    """The plan's batches grouped by epoch."""
    batches = plan.batches()
    per_epoch = plan.steps_per_epoch
    return [batches[e * per_epoch:(e + 1) * per_epoch] for e in range(plan.epochs)]


def test_same_arguments_give_the_same_plan() -> None:
    first = BatchPlan(23, 5, 4, seed=7).batches()
    second = BatchPlan(23, 5, 4, seed=7).batches()
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_plan_is_the_same_in_processes_with_other_hash_seeds() -> None:
    # Hash randomisation must not leak into the order: compare with two fresh interpreters.
    script = (
        "import json\n"
        "from data.loader import BatchPlan, init_params\n"
        "plan = BatchPlan(23, 5, 4, seed=7)\n"
        "W, b = init_params(4, 2, seed=7)\n"
        "print(json.dumps({'batches': [i.tolist() for i in plan],"
        " 'W': W.tolist(), 'b': b.tolist()}))\n"
    )
    here = BatchPlan(23, 5, 4, seed=7)
    W, b = init_params(4, 2, seed=7)
    expected = {"batches": [i.tolist() for i in here], "W": W.tolist(), "b": b.tolist()}
    for hash_seed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
            check=True, timeout=60,
        )
        assert json.loads(out.stdout) == expected


@pytest.mark.parametrize(("n_samples", "batch_size"), [(15, 3), (23, 5), (7, 10), (1, 1)])
def test_every_epoch_visits_every_row_exactly_once(n_samples: int, batch_size: int) -> None:
    plan = BatchPlan(n_samples, batch_size, 3, seed=1)
    for epoch in epochs_of(plan):
        rows = np.concatenate(epoch)
        np.testing.assert_array_equal(np.sort(rows), np.arange(n_samples))


def test_ragged_last_batch_is_kept_with_its_real_rows() -> None:
    plan = BatchPlan(23, 5, 2, seed=0)
    sizes = [len(idx) for idx in plan]
    assert sizes == [5, 5, 5, 5, 3] * 2
    assert plan.batch_sizes() == sizes
    assert len(plan) == 10


def test_batch_larger_than_the_data_is_one_ragged_batch_per_epoch() -> None:
    plan = BatchPlan(7, 10, 3, seed=0)
    assert [len(idx) for idx in plan] == [7, 7, 7]


def test_drop_last_drops_the_ragged_batch() -> None:
    plan = BatchPlan(23, 5, 2, seed=0, drop_last=True)
    assert [len(idx) for idx in plan] == [5] * 8
    assert plan.batch_sizes() == [5] * 8
    assert len(plan) == 8
    for epoch in epochs_of(plan):
        rows = np.concatenate(epoch)
        assert len(np.unique(rows)) == 20  # 20 distinct rows; the other 3 wait for next epoch
    # The rows kept are the first 20 of each epoch's permutation, as without drop_last.
    kept = BatchPlan(23, 5, 2, seed=0)
    np.testing.assert_array_equal(plan.batches()[0], kept.batches()[0])


def test_drop_last_with_an_exact_fit_drops_nothing() -> None:
    assert len(BatchPlan(15, 3, 50, drop_last=True)) == len(BatchPlan(15, 3, 50)) == 250


@pytest.mark.parametrize(
    ("n_samples", "batch_size", "epochs", "drop_last"),
    [(15, 3, 50, False), (23, 5, 4, False), (23, 5, 4, True), (7, 10, 2, False), (1, 1, 1, False)],
)
def test_len_is_the_number_of_steps(
    n_samples: int, batch_size: int, epochs: int, drop_last: bool
) -> None:
    plan = BatchPlan(n_samples, batch_size, epochs, drop_last=drop_last)
    assert len(plan) == len(list(plan)) == len(plan.batch_sizes())
    assert len(plan) == epochs * plan.steps_per_epoch


@pytest.mark.parametrize(
    ("n_samples", "batch_size", "drop_last"),
    [(23, 5, False), (23, 5, True), (15, 3, False), (15, 3, True), (7, 10, False)],
)
def test_as_arrays_matches_iteration_order(
    n_samples: int, batch_size: int, drop_last: bool
) -> None:
    plan = BatchPlan(n_samples, batch_size, 3, seed=5, drop_last=drop_last)
    full, tail = plan.as_arrays()
    assert full.shape == (3, n_samples // batch_size, batch_size)
    rebuilt = []
    for e in range(plan.epochs):
        rebuilt.extend(full[e])
        if tail is not None:
            rebuilt.append(tail[e])
    has_tail = n_samples % batch_size != 0 and not drop_last
    assert (tail is not None) == has_tail
    batches = plan.batches()
    assert len(rebuilt) == len(batches)
    for a, b in zip(rebuilt, batches, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(idx.dtype == np.int64 for idx in batches)


def test_different_seeds_give_different_orders() -> None:
    a = np.concatenate(BatchPlan(50, 10, 2, seed=0).batches())
    b = np.concatenate(BatchPlan(50, 10, 2, seed=1).batches())
    assert not np.array_equal(a, b)


def test_each_epoch_is_shuffled_afresh() -> None:
    plan = BatchPlan(50, 10, 3, seed=0)
    orders = [plan.epoch_order(e) for e in range(3)]
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], np.arange(50))  # shuffled, not in file order


def test_drop_last_with_batch_larger_than_data_raises() -> None:
    with pytest.raises(InputError, match=r"batch size 20 is larger than the 15 rows"):
        BatchPlan(15, 20, 1, drop_last=True)


@pytest.mark.parametrize("field", ["n_samples", "batch_size", "epochs"])
@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_non_positive_or_non_integer_sizes_raise(field: str, bad: object) -> None:
    args = {"n_samples": 15, "batch_size": 3, "epochs": 2, field: bad}
    with pytest.raises(InputError, match=field):
        BatchPlan(**args)  # type: ignore[arg-type]


def test_flops_count_each_steps_real_rows() -> None:
    plan = BatchPlan(23, 5, 2)  # 2 epochs of 23 rows
    d, k = 4, 3
    assert plan.flops(d, k) == 2 * 23 * (4 * d * k + 6 * k)
    dropped = BatchPlan(23, 5, 2, drop_last=True)  # 2 epochs of 20 rows
    assert dropped.flops(d, k) == 2 * 20 * (4 * d * k + 6 * k)


def test_init_params_shapes_and_dtypes() -> None:
    W, b = init_params(3, 2, seed=0)
    assert W.shape == (2, 3) and b.shape == (2,)
    assert W.dtype == np.float32 and b.dtype == np.float32
    W64, b64 = init_params(3, 2, seed=0, dtype=np.float64)
    assert W64.dtype == np.float64 and b64.dtype == np.float64


def test_init_params_is_deterministic_and_seeded() -> None:
    W1, b1 = init_params(5, 4, seed=3)
    W2, b2 = init_params(5, 4, seed=3)
    np.testing.assert_array_equal(W1, W2)
    np.testing.assert_array_equal(b1, b2)
    W3, _ = init_params(5, 4, seed=4)
    assert not np.array_equal(W1, W3)


def test_float32_and_float64_start_from_the_same_values() -> None:
    W32, b32 = init_params(6, 3, seed=2, dtype=np.float32)
    W64, b64 = init_params(6, 3, seed=2, dtype=np.float64)
    np.testing.assert_array_equal(W32, W64.astype(np.float32))
    np.testing.assert_array_equal(b32, b64.astype(np.float32))


# --- exact values: the documented formulas, so a changed seed or shape is caught --------------

def test_each_epoch_is_the_documented_permutation() -> None:
    plan = BatchPlan(23, 5, 3, seed=7)
    for e in range(3):
        expected = np.random.default_rng([7, e]).permutation(23)
        np.testing.assert_array_equal(plan.epoch_order(e), expected)
        steps = plan.batches()[e * 5:(e + 1) * 5]
        np.testing.assert_array_equal(np.concatenate(steps), expected)
        np.testing.assert_array_equal(steps[-1], expected[20:])  # the ragged tail, in order


def test_init_params_are_the_documented_draws() -> None:
    W, b = init_params(3, 2, seed=5, dtype=np.float64)
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(W, rng.standard_normal((2, 3)))
    np.testing.assert_array_equal(b, rng.standard_normal(2))
    W32, _ = init_params(3, 2, seed=5)
    assert W32.dtype == np.float32
    W0, _ = init_params(3, 2)
    np.testing.assert_array_equal(W0, init_params(3, 2, seed=0)[0])


def test_plan_attributes_and_repr() -> None:
    plan = BatchPlan(23, 5, 4, seed=3)
    assert (plan.n_samples, plan.batch_size, plan.epochs, plan.seed, plan.drop_last) == (
        23, 5, 4, 3, False)
    assert (plan.full_batches, plan.tail_size, plan.steps_per_epoch) == (4, 3, 5)
    assert repr(plan) == "BatchPlan(n_samples=23, batch_size=5, epochs=4, seed=3, drop_last=False)"
    dropped = BatchPlan(23, 5, 4, drop_last=1)  # type: ignore[arg-type]
    assert dropped.drop_last is True and dropped.tail_size == 0
    assert dropped.steps_per_epoch == 4
    assert BatchPlan(23, 5, 4).seed == 0


def test_whole_number_floats_and_numpy_integers_are_sizes() -> None:
    plan = BatchPlan(23.0, np.int64(5), np.int32(2))  # type: ignore[arg-type]
    assert (plan.n_samples, plan.batch_size, plan.epochs) == (23, 5, 2)
    assert all(type(v) is int for v in (plan.n_samples, plan.batch_size, plan.epochs))
    assert [len(i) for i in plan] == [5, 5, 5, 5, 3] * 2


@pytest.mark.parametrize("field", ["n_samples", "batch_size", "epochs"])
@pytest.mark.parametrize("bad", [float("inf"), float("nan"), "3", None, 1e-9, 0])
def test_other_sizes_are_refused_with_the_value(field: str, bad: object) -> None:
    args = {"n_samples": 15, "batch_size": 3, "epochs": 2, field: bad}
    with pytest.raises(InputError) as info:
        BatchPlan(**args)  # type: ignore[arg-type]
    assert str(info.value) == f"{field} must be a positive integer, got {bad!r}"


def test_drop_last_with_batch_larger_than_data_message() -> None:
    with pytest.raises(InputError) as info:
        BatchPlan(15, 16, 1, drop_last=True)
    assert str(info.value) == ("batch size 16 is larger than the 15 rows, and drop_last would "
                               "leave no batch to train on")


def test_drop_last_with_one_batch_of_all_the_rows() -> None:
    plan = BatchPlan(15, 15, 2, drop_last=True)
    assert [len(i) for i in plan] == [15, 15]


def test_as_arrays_shapes_and_tail() -> None:
    plan = BatchPlan(23, 5, 2, seed=1)
    full, tail = plan.as_arrays()
    assert full.shape == (2, 4, 5) and tail is not None and tail.shape == (2, 3)
    for e in range(2):
        order = plan.epoch_order(e)
        np.testing.assert_array_equal(full[e].ravel(), order[:20])
        np.testing.assert_array_equal(tail[e], order[20:])
    full, tail = BatchPlan(20, 5, 2).as_arrays()
    assert tail is None and full.shape == (2, 4, 5)


def test_batch_sizes_without_a_tail_and_with_one() -> None:
    assert BatchPlan(20, 5, 2).batch_sizes() == [5] * 8
    assert BatchPlan(7, 3, 2).batch_sizes() == [3, 3, 1, 3, 3, 1]
    assert BatchPlan(7, 3, 2, drop_last=True).batch_sizes() == [3, 3, 3, 3]
