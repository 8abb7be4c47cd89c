"""JAX: ``jax.grad`` + ``jit``, one compiled call per step (``jax``), or the whole plan
fused into one compiled ``lax.scan`` (``jax-scan``).

The step is a pure function of (params, batch indices). Every matmul asks for
``Precision.HIGHEST``, so float32 is never computed in TF32 or bfloat16 passes on a GPU.
Compilation happens in ``prepare`` and is timed there, apart from the training loop.

``run`` passes the initial weights, already on the device, straight to the compiled
calls. Nothing is donated: donating W0 would force a fresh device copy of it before every
run, a cost a user's own loop does not pay, and at these sizes donation saves nothing.

The ops, and why: the gather is ``X[idx]``, which compiles to one XLA gather (XLA clamps
the indices itself; the fix-up of negative indices is fused into it), the form JAX users
write; ``jnp.take`` compiles to the same gather, with an out-of-range mask on top in its
default mode. The matmul is ``jnp.matmul`` at ``HIGHEST`` precision, its gradient
derived by ``jax.grad``. The update is the pure ``p - lr * g``: arrays are immutable, and
the update is compiled into the same call as the gradient, with no dispatch of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gdbench.data.workloads import Problem
from gdbench.implementations.base import TrainResult, make_result

HIGHEST = jax.lax.Precision.HIGHEST


def loss(params: tuple[jax.Array, jax.Array], X: jax.Array, Y: jax.Array) -> jax.Array:
    W, b = params
    diff = jnp.matmul(X, W.T, precision=HIGHEST) + b - Y
    return jnp.sum(diff * diff) / diff.size


def step(
    params: tuple[jax.Array, jax.Array], X: jax.Array, Y: jax.Array, idx: jax.Array, lr: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One gradient-descent step on the rows ``idx``: gather, loss, grad, update."""
    grads = jax.grad(loss)(params, X[idx], Y[idx])
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def train_scan(
    params: tuple[jax.Array, jax.Array],
    X: jax.Array,
    Y: jax.Array,
    full: jax.Array,
    tail: jax.Array | None,
    lr: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The whole plan: per epoch, scan over the full batches, then the ragged tail batch."""

    def one_batch(p: Any, idx: jax.Array) -> tuple[Any, None]:
        return step(p, X, Y, idx, lr), None

    def one_epoch(p: Any, epoch: tuple[jax.Array, jax.Array | None]) -> tuple[Any, None]:
        full_e, tail_e = epoch
        p, _ = jax.lax.scan(one_batch, p, full_e)
        if tail_e is not None:
            p = step(p, X, Y, tail_e, lr)
        return p, None

    params, _ = jax.lax.scan(one_epoch, params, (full, tail))
    return params


def _enable_dtype(dtype: np.dtype) -> None:
    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)


@dataclass
class State:
    problem: Problem
    X: jax.Array
    Y: jax.Array
    W0_dev: jax.Array
    b0_dev: jax.Array
    lr_dev: jax.Array
    compile_s: float = 0.0
    compiled: dict[Any, Any] = field(default_factory=dict)
    batches: list[jax.Array] = field(default_factory=list)
    full: jax.Array | None = None
    tail: jax.Array | None = None
    params: tuple[jax.Array, jax.Array] | None = None


def _to_device(problem: Problem) -> State:
    dt = problem.dtype
    _enable_dtype(dt)
    return State(
        problem,
        X=jax.device_put(problem.dataset.X), Y=jax.device_put(problem.dataset.Y),
        W0_dev=jax.device_put(problem.W0), b0_dev=jax.device_put(problem.b0),
        lr_dev=jax.device_put(np.asarray(problem.lr, dtype=dt)),
    )


class _JaxBase:
    name = "jax"
    sync = "block_until_ready"

    @property
    def device(self) -> str:
        # Asked when read, not at import: importing a backend must not start JAX, so that
        # jax-sharded, imported later in the same process, can still ask for its devices.
        return "cuda" if jax.default_backend() == "gpu" else jax.default_backend()

    def wait(self, state: State) -> None:
        jax.block_until_ready(state.params)

    def result(self, state: State) -> TrainResult:
        assert state.params is not None, "run() before result()"
        W, b = (np.asarray(p) for p in state.params)
        return make_result(self.name, W, b, state.problem)


class JaxJit(_JaxBase):
    """One jitted call per step; each distinct batch shape is compiled once, in prepare."""

    name = "jax"

    def prepare(self, problem: Problem) -> State:
        state = _to_device(problem)
        state.batches = [jax.device_put(idx) for idx in problem.plan]
        jitted = jax.jit(step)
        params = (state.W0_dev, state.b0_dev)
        start = time.perf_counter()
        for idx in state.batches:
            if idx.shape not in state.compiled:
                lowered = jitted.lower(params, state.X, state.Y, idx, state.lr_dev)
                state.compiled[idx.shape] = lowered.compile()
        state.compile_s = time.perf_counter() - start
        return state

    def run(self, state: State) -> None:
        compiled, X, Y, lr = state.compiled, state.X, state.Y, state.lr_dev
        params = (state.W0_dev, state.b0_dev)
        for idx in state.batches:
            params = compiled[idx.shape](params, X, Y, idx, lr)
        state.params = jax.block_until_ready(params)


class JaxScan(_JaxBase):
    """The whole plan as one compiled lax.scan, compiled ahead of time in prepare."""

    name = "jax-scan"

    def prepare(self, problem: Problem) -> State:
        state = _to_device(problem)
        full, tail = problem.plan.as_arrays()
        state.full = jax.device_put(full)
        state.tail = None if tail is None else jax.device_put(tail)
        start = time.perf_counter()
        lowered = jax.jit(train_scan).lower(
            (state.W0_dev, state.b0_dev), state.X, state.Y, state.full, state.tail, state.lr_dev
        )
        state.compiled["scan"] = lowered.compile()
        state.compile_s = time.perf_counter() - start
        return state

    def run(self, state: State) -> None:
        params = state.compiled["scan"](
            (state.W0_dev, state.b0_dev), state.X, state.Y, state.full, state.tail, state.lr_dev
        )
        state.params = jax.block_until_ready(params)
