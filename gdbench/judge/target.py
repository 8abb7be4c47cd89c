"""One target loss per workload, shared by every backend, and the time to reach it.

The rule: the target is the least-squares optimum's mean squared error times 1.01, and a
workload reaches it at the first checkpoint where the float64 NumPy reference's loss over
the whole dataset is at or below it. Checkpoints fall every ``steps_per_epoch // 8`` steps
(at least every step) and at the end of every epoch, so a workload that trains one or two
epochs still gets a useful count. Every backend agrees with the reference (tested, and
checked in every benchmark), so the reference's step count is every backend's.

A plan too short to get there is trained on, outside the timed suite, by the float64
reference alone: its later epochs are drawn as the plan draws its own (BatchPlan's
``epoch_order``), until the target or the cap, :data:`CAP_PLANS` times the plan's steps or
:data:`CAP_FLOPS` FLOPs, whichever comes first. A workload that hits the cap says so.

Time to target, for a backend whose median step takes ``step_s`` and whose prepare
(conversion, transfer, compilation) took ``prepare_s``:

    hot  = steps × step_s                cold = prepare_s + hot

Break-even: a backend that compiles (prepare ``p_c``, step ``s_c``) overtakes one that
does not (``p_e``, ``s_e``) after ``(p_c - p_e) / (s_e - s_c)`` steps, and never when
its step is not faster.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gdbench.data.datasets import least_squares, mse
from gdbench.data.workloads import Problem
from gdbench.implementations.reference import loss_and_grads

TOLERANCE = 0.01
# The float64 reference trains on past its plan for at most CAP_PLANS times the plan's
# steps or CAP_FLOPS FLOPs of training, whichever is fewer (the FLOPs keep the largest
# workloads to seconds), and never fewer steps than the plan's.
CAP_PLANS = 50
CAP_FLOPS = 2e11
RULE = ("first checkpoint (every steps_per_epoch // 8 steps and each epoch's end) at which "
        "the float64 NumPy reference's full-data MSE <= 1.01 x the least-squares MSE, "
        "training on past the plan (its later epochs drawn alike) up to the cap: 50 x the "
        "plan's steps or 2e11 FLOPs, whichever is fewer")


@dataclass(frozen=True)
class Target:
    loss: float  # the target MSE
    optimum_loss: float  # the least-squares MSE
    steps: int | None  # steps to reach it, past the plan if need be; None: not by the cap
    plan_steps: int
    checked_every: int
    cap_steps: int | None = None  # the most steps trained to get there (None: the plan's)
    rule: str = RULE

    def record(self) -> dict[str, Any]:
        """The fields saved in each benchmark's extra_info, prefixed ``target_``."""
        return {f"target_{k}": v for k, v in asdict(self).items()}


def checkpoint_losses(problem: Problem) -> tuple[list[int], list[float], int]:
    """The float64 reference's full-data MSE at step 0 and at every checkpoint:
    (steps, losses, checked_every)."""
    ds = problem.dataset.astype(np.float64)
    plan = problem.plan
    every = max(1, plan.steps_per_epoch // 8)
    X, Y = ds.X, ds.Y
    W, b = problem.W0.astype(np.float64), problem.b0.astype(np.float64)
    steps, losses = [0], [mse(ds, W, b)]
    with np.errstate(all="ignore"):
        for step, idx in enumerate(plan, start=1):
            _, dW, db = loss_and_grads(X[idx], Y[idx], W, b)
            W -= problem.lr * dW
            b -= problem.lr * db
            if step % every == 0 or step % plan.steps_per_epoch == 0:
                steps.append(step)
                losses.append(mse(ds, W, b))
    return steps, losses, every


def optimum_loss(problem: Problem) -> float:
    """The least-squares MSE, in float64: from the normal equations when they are well
    conditioned (seconds faster than an SVD at large), else from lstsq."""
    ds = problem.dataset.astype(np.float64)
    A = np.column_stack([ds.X, np.ones(ds.n_samples)])
    gram = A.T @ A
    if np.linalg.cond(gram) < 1e8:
        coef = np.linalg.solve(gram, A.T @ ds.Y)
        return mse(ds, coef[:-1].T, coef[-1])
    return mse(ds, *least_squares(ds))


def shared_target(problem: Problem, tolerance: float = TOLERANCE,
                  curve: tuple[list[int], list[float], int] | None = None,
                  cap: int | None = None) -> Target:
    """The workload's target and the steps needed to reach it (see the module), trained
    past the plan up to ``cap`` steps (default :func:`cap_steps`); ``curve`` is
    checkpoint_losses(problem), when the caller has it already."""
    optimum = optimum_loss(problem)
    goal = optimum * (1 + tolerance)
    steps, losses, every = curve or checkpoint_losses(problem)
    reached = next((s for s, loss in zip(steps, losses, strict=True) if loss <= goal), None)
    cap = cap_steps(problem) if cap is None else cap
    if reached is None and cap > len(problem.plan):
        reached = steps_to_target(problem, goal, cap)
    return Target(goal, optimum, reached, len(problem.plan), every, cap)


def cap_steps(problem: Problem, plans: int = CAP_PLANS, flops: float = CAP_FLOPS) -> int:
    """The most steps the reference trains to reach the target: ``plans`` times the plan's
    or ``flops`` FLOPs' worth, whichever is fewer, and at least the plan's."""
    plan_steps = len(problem.plan)
    by_flops = int(flops // (problem.flops / plan_steps))
    return max(plan_steps, min(plans * plan_steps, by_flops))


def _epoch_batches(order: np.ndarray, problem: Problem) -> list[np.ndarray]:
    """One epoch's batches of row indices, cut from its order as BatchPlan cuts them."""
    plan = problem.plan
    full = [order[i * plan.batch_size:(i + 1) * plan.batch_size]
            for i in range(plan.full_batches)]
    cut = plan.full_batches * plan.batch_size
    return full + ([order[cut:cut + plan.tail_size]] if plan.tail_size else [])


def steps_to_target(problem: Problem, goal: float, cap: int) -> int | None:
    """The first checkpoint (as :func:`checkpoint_losses` places them) at which the float64
    reference's full-data MSE is at or below ``goal``, training the plan's epochs and then
    later ones drawn alike; None when it is not there after ``cap`` steps.

    The MSE comes from the data's Gram matrix, so that a checkpoint costs (d+1)²·k
    multiply-adds however many rows there are."""
    ds = problem.dataset.astype(np.float64)
    A = np.column_stack([ds.X, np.ones(ds.n_samples)])
    gram, cross, yy = A.T @ A, A.T @ ds.Y, float(np.sum(ds.Y * ds.Y))
    numel = ds.Y.size

    def loss(W: np.ndarray, b: np.ndarray) -> float:
        theta = np.vstack([W.T, b])
        return float(np.sum(theta * (gram @ theta)) - 2 * np.sum(theta * cross) + yy) / numel

    W, b = problem.W0.astype(np.float64), problem.b0.astype(np.float64)
    if loss(W, b) <= goal:
        return 0
    plan, X, Y = problem.plan, ds.X, ds.Y
    every, step = max(1, plan.steps_per_epoch // 8), 0
    with np.errstate(all="ignore"):
        for epoch in itertools.count():
            for idx in _epoch_batches(plan.epoch_order(epoch), problem):
                _, dW, db = loss_and_grads(X[idx], Y[idx], W, b)
                W -= problem.lr * dW
                b -= problem.lr * db
                step += 1
                if (step % every == 0 or step % plan.steps_per_epoch == 0) and \
                        loss(W, b) <= goal:
                    return step
                if step >= cap:
                    return None
    return None  # unreachable: the loop above ends only by returning


def time_to_target(steps: int | None, step_s: float, prepare_s: float) -> tuple[float, float]:
    """(hot, cold) seconds to reach the target; NaN when the plan never reaches it."""
    if steps is None:
        return math.nan, math.nan
    hot = steps * step_s
    return hot, prepare_s + hot


def break_even_steps(prepare_compiled_s: float, step_compiled_s: float,
                     prepare_eager_s: float, step_eager_s: float) -> float:
    """Steps after which the compiled backend's total time drops below the eager one's
    (inf when its step is not faster; 0 when it is ahead from the start)."""
    if step_compiled_s >= step_eager_s:
        return math.inf
    return max(0.0, (prepare_compiled_s - prepare_eager_s) / (step_eager_s - step_compiled_s))
