"""One target loss per workload, shared by every backend, and the time to reach it.

The rule: the target is the least-squares optimum's mean squared error times 1.01, and a
plan reaches it at the first checkpoint where the float64 NumPy reference's loss over the
whole dataset is at or below it. Checkpoints fall every ``steps_per_epoch // 8`` steps
(at least every step) and at the end of every epoch, so a workload that trains one or two
epochs still gets a useful count. Every backend agrees with the reference (tested, and
checked in every benchmark), so the reference's step count is every backend's.

Time to target, for a backend whose median step takes ``step_s`` and whose prepare
(conversion, transfer, compilation) took ``prepare_s``:

    hot  = steps × step_s                cold = prepare_s + hot

Break-even: a backend that compiles (prepare ``p_c``, step ``s_c``) overtakes one that
does not (``p_e``, ``s_e``) after ``(p_c - p_e) / (s_e - s_c)`` steps, and never when
its step is not faster.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gdbench.data.datasets import least_squares, mse
from gdbench.data.workloads import Problem
from gdbench.implementations.reference import loss_and_grads

TOLERANCE = 0.01
RULE = ("first checkpoint (every steps_per_epoch // 8 steps and each epoch's end) at which "
        "the float64 NumPy reference's full-data MSE <= 1.01 x the least-squares MSE")


@dataclass(frozen=True)
class Target:
    loss: float  # the target MSE
    optimum_loss: float  # the least-squares MSE
    steps: int | None  # steps of the plan to reach it; None: the plan never does
    plan_steps: int
    checked_every: int
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
                  curve: tuple[list[int], list[float], int] | None = None) -> Target:
    """The workload's target and the steps its plan needs to reach it (see the module);
    ``curve`` is checkpoint_losses(problem), when the caller has it already."""
    optimum = optimum_loss(problem)
    goal = optimum * (1 + tolerance)
    steps, losses, every = curve or checkpoint_losses(problem)
    reached = next((s for s, loss in zip(steps, losses, strict=True) if loss <= goal), None)
    return Target(goal, optimum, reached, len(problem.plan), every)


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
