"""The shared target, the time to reach it, and the break-even arithmetic."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from gdbench.data.datasets import least_squares, load_dataset, mse, synthetic
from gdbench.data.workloads import Problem, make_problem
from gdbench.judge import target


def test_the_optimum_loss_is_the_least_squares_mse() -> None:
    problem = make_problem("s", synthetic(500, 6, 2, seed=4, noise=0.3), batch_size=50,
                           epochs=1, lr=0.05)
    ds = problem.dataset.astype(np.float64)
    assert target.optimum_loss(problem) == pytest.approx(mse(ds, *least_squares(ds)),
                                                         rel=1e-10)
    crops = make_problem("crops", load_dataset("crops"), batch_size=3, epochs=1, lr=1e-6)
    ds = crops.dataset.astype(np.float64)  # raw crops: ill-conditioned, lstsq path
    assert target.optimum_loss(crops) == pytest.approx(mse(ds, *least_squares(ds)), rel=1e-10)


def test_the_target_is_the_first_checkpoint_within_one_percent() -> None:
    # Noise 0.3: the optimum's MSE is about 0.09; lr 0.1 gets within 1% at step 44.
    problem = make_problem("s", synthetic(500, 6, 2, seed=4, noise=0.3).standardized(),
                           batch_size=50, epochs=8, lr=0.1)
    t = target.shared_target(problem)
    assert t.loss == pytest.approx(1.01 * t.optimum_loss)
    assert t.checked_every == 1 and t.plan_steps == 80
    steps, losses, _ = target.checkpoint_losses(problem)
    assert t.steps == 44
    i = steps.index(t.steps)
    assert losses[i] <= t.loss < min(losses[:i])  # the first one at or below the target
    # The same rule computed by hand from the float64 replay.
    assert t.steps == next(s for s, loss in zip(steps, losses, strict=True)
                           if loss <= 1.01 * t.optimum_loss)


def test_a_plan_that_never_gets_there_by_the_cap_says_so() -> None:
    problem = make_problem("crops", load_dataset("crops"), batch_size=3, epochs=50, lr=1e-6)
    t = target.shared_target(problem)
    assert t.steps is None and t.plan_steps == 250
    assert t.cap_steps == target.CAP_PLANS * 250  # tiny steps: the FLOPs never bind
    assert all(math.isnan(x) for x in target.time_to_target(t.steps, 1e-6, 0.5))


def test_checkpoints_fall_every_eighth_of_an_epoch_and_at_each_epochs_end() -> None:
    problem = make_problem("s", synthetic(100, 3, 1, seed=0), batch_size=6, epochs=2, lr=0.01)
    steps, losses, every = target.checkpoint_losses(problem)
    assert every == 2  # 17 steps per epoch (16 full + 1 ragged) // 8
    assert steps[:4] == [0, 2, 4, 6] and 17 in steps and 34 in steps
    assert len(steps) == len(losses)


def test_hot_and_cold_time_to_target() -> None:
    assert target.time_to_target(100, 20e-6, 1.5) == pytest.approx((2e-3, 1.502))


@pytest.mark.parametrize(("args", "expected"), [
    ((3.0, 1e-6, 0.0, 11e-6), 3.0 / 10e-6),  # 3 s of compile, 10 µs a step saved
    ((0.1, 1e-6, 0.5, 11e-6), 0.0),  # ahead from the start
    ((3.0, 12e-6, 0.0, 11e-6), math.inf),  # slower per step: never
    ((3.0, 11e-6, 0.0, 11e-6), math.inf),  # equal per step: never
])
def test_break_even(args: tuple[float, float, float, float], expected: float) -> None:
    assert target.break_even_steps(*args) == pytest.approx(expected)


def test_the_record_saved_in_a_run_names_its_rule() -> None:
    t = target.Target(0.0101, 0.01, 128, 256, 4)
    assert t.record() == {"target_loss": 0.0101, "target_optimum_loss": 0.01,
                          "target_steps": 128, "target_plan_steps": 256,
                          "target_checked_every": 4, "target_cap_steps": None,
                          "target_rule": target.RULE}
    assert "1.01 x the least-squares MSE" in target.RULE and "every steps_per_epoch // 8" in \
        target.RULE


def test_a_plan_too_short_is_trained_on_as_a_longer_plan_would_be() -> None:
    """The 8-epoch plan reaches the target at step 44 (above); its first 2 epochs, trained
    on past their plan with later epochs drawn alike, reach it at the same step."""
    data = synthetic(500, 6, 2, seed=4, noise=0.3).standardized()
    short = make_problem("s", data, batch_size=50, epochs=2, lr=0.1)
    long = make_problem("s", data, batch_size=50, epochs=8, lr=0.1)
    t = target.shared_target(short)
    assert t.plan_steps == 20 and t.steps == 44 == target.shared_target(long).steps
    assert t.cap_steps == target.CAP_PLANS * 20
    assert target.shared_target(short, cap=40).steps is None  # the cap binds first
    assert target.shared_target(short, cap=40).cap_steps == 40


def test_the_gram_form_loss_finds_the_same_first_checkpoint_as_the_full_mse() -> None:
    problem = make_problem("s", synthetic(500, 6, 2, seed=4, noise=0.3).standardized(),
                           batch_size=50, epochs=8, lr=0.1)
    t = target.shared_target(problem, cap=0)  # the plan's own curve: the full-data MSE
    assert t.steps == 44
    assert target.steps_to_target(problem, t.loss, cap=10_000) == 44


def test_the_cap_is_fifty_plans_or_the_flops_whichever_is_fewer() -> None:
    small = make_problem("s", synthetic(100, 3, 1, seed=0), batch_size=10, epochs=1, lr=0.01)
    assert target.cap_steps(small) == 50 * 10
    per_step = 10 * (4 * 3 * 1 + 6 * 1)
    assert target.cap_steps(small, flops=100 * per_step) == 100  # the FLOPs bind
    assert target.cap_steps(small, flops=per_step) == 10  # never fewer than the plan's


def test_the_rule_saved_in_a_run_says_the_cap_the_code_uses() -> None:
    assert target.RULE == (
        "first checkpoint (every steps_per_epoch // 8 steps and each epoch's end) at which "
        "the float64 NumPy reference's full-data MSE <= 1.01 x the least-squares MSE, "
        "training on past the plan (its later epochs drawn alike) up to the cap: 50 x the "
        "plan's steps or 2e11 FLOPs, whichever is fewer")
    assert f"{target.CAP_PLANS} x the plan's steps" in target.RULE
    assert f"{target.CAP_FLOPS:.0e} FLOPs".replace("e+", "e") in target.RULE
    assert f"{target.TOLERANCE + 1:g} x the least-squares MSE" in target.RULE


def test_a_target_cannot_be_changed_once_made() -> None:
    t = target.Target(0.0101, 0.01, 128, 256, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.steps = 1  # type: ignore[misc]


@pytest.mark.parametrize(("cond", "solved"), [(0.99e8, True), (1e8, False), (1.5e8, False)])
def test_the_normal_equations_only_when_the_gram_matrix_is_well_conditioned(
        monkeypatch: pytest.MonkeyPatch, cond: float, solved: bool) -> None:
    problem = make_problem("s", synthetic(60, 3, 2, seed=1, noise=0.2), batch_size=10,
                           epochs=1, lr=0.05)
    used = []
    monkeypatch.setattr(target.np.linalg, "cond", lambda a: cond)
    monkeypatch.setattr(target, "least_squares",
                        lambda ds: used.append("lstsq") or least_squares(ds))
    ds = problem.dataset.astype(np.float64)
    assert target.optimum_loss(problem) == pytest.approx(mse(ds, *least_squares(ds)),
                                                         rel=1e-10)
    assert used == ([] if solved else ["lstsq"])


def _problem() -> Problem:
    return make_problem("s", synthetic(500, 6, 2, seed=4, noise=0.3).standardized(),
                        batch_size=50, epochs=8, lr=0.1)


def test_a_checkpoint_exactly_at_the_target_reaches_it() -> None:
    problem = _problem()
    goal = target.optimum_loss(problem) * (1 + target.TOLERANCE)
    curve = ([0, 5, 10], [2 * goal, goal, goal / 2], 5)
    assert target.shared_target(problem, curve=curve, cap=0).steps == 5


def test_a_curve_whose_steps_and_losses_differ_in_length_is_refused() -> None:
    with pytest.raises(ValueError):
        target.shared_target(_problem(), curve=([0, 5, 10], [1.0, 1.0], 5), cap=0)


def test_the_reference_trains_past_the_plan_only_when_the_plan_falls_short_and_the_cap_is_longer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = target.steps_to_target
    monkeypatch.setattr(target, "steps_to_target",
                        lambda problem, goal, cap: calls.append(cap) or real(problem, goal, cap))
    problem = _problem()  # reaches the target at step 44 of its 80
    assert target.shared_target(problem, cap=4000).steps == 44 and calls == []
    short = make_problem("s", problem.dataset, batch_size=50, epochs=2, lr=0.1)
    assert target.shared_target(short, cap=20).steps is None and calls == []  # cap = plan
    assert target.shared_target(short, cap=21).steps is None and calls == [21]
    assert target.shared_target(short, cap=100).steps == 44 and calls == [21, 100]


def test_an_epochs_batches_are_cut_as_the_plan_cuts_them() -> None:
    # 100 rows in batches of 6: 16 full batches and a ragged one of 4 rows.
    problem = make_problem("s", synthetic(100, 3, 1, seed=0), batch_size=6, epochs=2, lr=0.01)
    plan = problem.plan
    batches = plan.batches()
    for epoch in range(2):
        cut = target._epoch_batches(plan.epoch_order(epoch), problem)
        own = batches[17 * epoch:17 * (epoch + 1)]
        assert [b.tolist() for b in cut] == [b.tolist() for b in own]
    assert [len(b) for b in cut] == [6] * 16 + [4]


def _zero_problem(b0: float) -> Problem:
    """X = 0 and Y = 0 with one output, 4 steps an epoch: only b trains, and lr 0.5 takes
    it from b0 to exactly 0 in one step, so the loss is exactly 0 from step 1 on."""
    ds = synthetic(8, 2, 1, seed=0, dtype=np.float64)
    ds = replace(ds, X=np.zeros_like(ds.X), Y=np.zeros_like(ds.Y))
    problem = make_problem("zero", ds, batch_size=2, epochs=2, lr=0.5)
    return replace(problem, b0=np.array([b0]))


def test_a_model_already_at_the_goal_needs_no_step_and_an_exact_hit_counts() -> None:
    problem = _zero_problem(0.3)  # a checkpoint every step
    assert target.steps_to_target(problem, goal=1e300, cap=100) == 0
    assert target.steps_to_target(_zero_problem(0.0), goal=0.0, cap=100) == 0
    assert target.steps_to_target(problem, goal=0.0, cap=100) == 1  # exactly 0 after step 1


def test_past_the_plan_the_checkpoints_are_the_plans_own_and_the_cap_is_the_last_step() -> None:
    """For goals between one checkpoint's loss and the next, training on past the plan stops
    at the checkpoint the plan's own full-data curve names; 17 steps an epoch (16 full
    batches and a ragged one) put checkpoints on every second step and at 17, 34 and 51."""
    problem = make_problem("s", synthetic(100, 3, 1, seed=0, noise=0.5), batch_size=6,
                           epochs=3, lr=0.02)
    steps, losses, every = target.checkpoint_losses(problem)
    assert every == 2 and {17, 34, 51} <= set(steps) and 35 not in steps
    levels = sorted(set(losses))
    tried = 0
    for lo, hi in itertools.pairwise(levels):
        if hi - lo < 1e-9 * hi:
            continue  # too close to tell the Gram-form loss from the direct one
        goal = (lo + hi) / 2
        first = next((s for s, loss in zip(steps, losses, strict=True) if loss <= goal), None)
        assert target.steps_to_target(problem, goal, cap=len(problem.plan)) == first, goal
        if first:
            # The cap is the last step trained: one short of the checkpoint, it is not reached.
            assert target.steps_to_target(problem, goal, cap=first - 1) is None
        tried += 1
    assert tried > 20
