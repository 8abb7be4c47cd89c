"""What the data-parallel backends (torch-ddp, jax-sharded) share: the world size and how
each step's batch is split across the workers.

Data parallelism here is the same maths as every other backend: each worker takes its
share of the step's rows, ``np.array_split(batch, world)[rank]``, computes its part of
``dW = G.T @ X_b`` and ``db = G.sum(0)`` with G scaled by the *global* batch's element
count (the real rows of the whole, possibly ragged, batch times k), and one collective
sums the parts. A worker whose share is empty (a ragged batch with fewer rows than
workers) contributes zeros. The sum equals the single-process gradient up to the order
of the additions, so these backends agree with numpy like any other.

The world size comes from ``GDBENCH_WORLD`` (default 2), which ``--world N`` sets for the
process and its children before any backend is built; the worker processes and JAX's
host devices are sized from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from gdbench.data.errors import InputError
from gdbench.data.loader import BatchPlan

WORLD_ENV = "GDBENCH_WORLD"
DEFAULT_WORLD = 2


def world_size() -> int:
    """The number of data-parallel workers: ``GDBENCH_WORLD``, else 2."""
    text = os.environ.get(WORLD_ENV, "").strip()
    if not text:
        return DEFAULT_WORLD
    try:
        world = int(text)
    except ValueError:
        world = 0
    if world <= 0:
        raise InputError(f"{WORLD_ENV} must be a positive integer (the data-parallel "
                         f"workers), got {text!r}")
    return world


def rank_batches(plan: BatchPlan, world: int, rank: int) -> list[np.ndarray]:
    """Rank ``rank``'s rows of every step, in training order (possibly empty arrays)."""
    return [np.array_split(idx, world)[rank] for idx in plan]


def step_numels(plan: BatchPlan, n_outputs: int) -> list[int]:
    """Each step's global element count, real rows x k: what every worker scales G by."""
    return [size * n_outputs for size in plan.batch_sizes()]


@dataclass(frozen=True)
class PaddedPlan:
    """The whole plan in one shape, for a compiled loop over a device mesh.

    ``idx`` and ``mask`` are (steps, world * per_worker): worker w's block of columns
    ``[w * per_worker, (w + 1) * per_worker)`` holds its rows ``array_split(batch,
    world)[w]`` then padding (index 0, mask 0), so a ragged batch compiles to the same
    shape as a full one and trains on its real rows only. ``inv_numel`` (steps,) is 1 over
    each step's global element count.
    """

    idx: np.ndarray  # int64
    mask: np.ndarray  # the dataset's dtype: 1 for a real row, 0 for padding
    inv_numel: np.ndarray  # the dataset's dtype
    per_worker: int


def padded_plan(plan: BatchPlan, world: int, n_outputs: int, dtype: np.dtype) -> PaddedPlan:
    """The plan padded to ``world`` blocks of ceil(batch_size / world) rows per step."""
    per_worker = -(-plan.batch_size // world)
    steps = len(plan)
    idx = np.zeros((steps, world, per_worker), dtype=np.int64)
    mask = np.zeros((steps, world, per_worker), dtype=dtype)
    for step, batch in enumerate(plan):
        for rank, rows in enumerate(np.array_split(batch, world)):
            idx[step, rank, :len(rows)] = rows
            mask[step, rank, :len(rows)] = 1
    numel = np.asarray(step_numels(plan, n_outputs), dtype=np.float64)
    return PaddedPlan(idx.reshape(steps, world * per_worker),
                      mask.reshape(steps, world * per_worker),
                      (1.0 / numel).astype(dtype), per_worker)
