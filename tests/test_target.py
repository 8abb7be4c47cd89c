"""The shared target, the time to reach it, and the break-even arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gdbench.data.datasets import least_squares, load_dataset, mse, synthetic
from gdbench.data.workloads import make_problem
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
