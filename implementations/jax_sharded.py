"""Data-parallel JAX: ``shard_map`` over a mesh of ``world`` devices, ``psum`` of the
gradients every step, the whole plan in one compiled ``lax.scan``.

Each device holds the whole dataset and, per step, its block of the batch, which is
``array_split(batch, world)[device]`` padded to ceil(batch_size / world) rows with a mask
(:func:`gdbench.implementations.data_parallel.padded_plan`): a ragged batch has the shape
of a full one, so the plan is one array and compiles once, and a padded row's residual
is multiplied by 0, so it adds nothing. The loss is scaled by the global batch's element
count, ``jax.grad`` gives the device's part of the gradient, and one ``psum`` sums the
parts: jax-scan's step, data-parallel.

Why one scan: dispatching sharded per-step programs back to back deadlocked XLA:CPU in
its all-reduce rendezvous in a prototype; one program per run, waited for, cannot
interleave two steps' collectives.

Devices: the default backend's. On the CPU, JAX makes one device unless asked before it
starts, so importing this module asks for ``world`` CPU devices (``jax_num_cpu_devices``).
That only works if nothing in the process has started JAX yet: ``gdbench run`` times
each backend in a process of its own, and no gdbench backend starts JAX on import. If JAX
started first with too few devices, :func:`unavailable` says so.

``shard_map`` runs without its replication check (``check_vma=False``), so that
``jax.grad`` inside it is each device's own gradient, summed by the explicit ``psum``:
the one collective per step, as torch-ddp's all-reduce. ``run_compute_only`` compiles
the same scan without the ``psum`` (each device updates its own replica), so that the
suite can time what the collective costs.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gdbench.data.workloads import Problem
from gdbench.implementations.base import TrainResult, make_result
from gdbench.implementations.data_parallel import padded_plan, world_size

# jax.shard_map with check_vma (jax 0.7 on); an older jax makes the backend unavailable.
shard_map: Any = getattr(jax, "shard_map", None)
HIGHEST = jax.lax.Precision.HIGHEST
AXIS = "data"


def _host_device_flag() -> int:
    """The CPU device count XLA_FLAGS already asks for (0: none)."""
    for flag in os.environ.get("XLA_FLAGS", "").split():
        name, _, value = flag.partition("=")
        if name == "--xla_force_host_platform_device_count" and value.isdigit():
            return int(value)
    return 0


def request_cpu_devices(n: int) -> None:
    """Ask JAX for at least ``n`` CPU devices; possible only before JAX starts."""
    asked = getattr(jax.config, "jax_num_cpu_devices", None)
    if asked is None:  # an older jax: only XLA_FLAGS can ask, before jax is imported
        return
    if max(asked, _host_device_flag() if asked < 0 else 0) >= n:
        return
    with contextlib.suppress(RuntimeError):  # JAX has started: unavailable() says so
        jax.config.update("jax_num_cpu_devices", n)


request_cpu_devices(world_size())


def unavailable(name: str) -> str | None:
    """None when the mesh can be built here, else why not."""
    if shard_map is None:
        return f"this jax ({jax.__version__}) has no jax.shard_map; upgrade jax"
    world = world_size()
    devices = jax.devices()
    if len(devices) >= world:
        return None
    platform = devices[0].platform
    if platform == "cpu":
        return (f"JAX started with {len(devices)} CPU device(s) before jax-sharded could ask "
                f"for {world} (something in this process used JAX first); run it in a "
                f"process of its own, as gdbench run does, or set JAX_NUM_CPU_DEVICES={world}")
    return f"needs {world} {platform} devices (--world {world}), found {len(devices)}"


# --- the step, on one device's block ----------------------------------------------------------

def local_loss(params: tuple[jax.Array, jax.Array], X: jax.Array, Y: jax.Array,
               mask: jax.Array, inv_numel: jax.Array) -> jax.Array:
    """This device's rows' share of the global batch loss (padding masked out)."""
    W, b = params
    diff = (jnp.matmul(X, W.T, precision=HIGHEST) + b - Y) * mask[:, None]
    return jnp.sum(diff * diff) * inv_numel


def train_block(params: tuple[jax.Array, jax.Array], X: jax.Array, Y: jax.Array,
                idx: jax.Array, mask: jax.Array, inv_numel: jax.Array, lr: jax.Array, *,
                collective: bool = True) -> tuple[jax.Array, jax.Array]:
    """The whole plan on one device: per step, its rows' gradient, summed over the mesh
    by psum (unless ``collective`` is False), then the update."""

    def one_step(p: Any, step: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[Any, None]:
        rows, keep, inv = step
        grads = jax.grad(local_loss)(p, X[rows], Y[rows], keep, inv)
        if collective:
            grads = jax.lax.psum(grads, AXIS)
        return jax.tree.map(lambda q, g: q - lr * g, p, grads), None

    params, _ = jax.lax.scan(one_step, params, (idx, mask, inv_numel))
    if collective:
        return params
    return jax.tree.map(lambda q: q[None], params)  # one replica per device


def sharded_train(mesh: Mesh, collective: bool) -> Any:
    """train_block over the mesh: the plan's columns split by device, the rest replicated."""
    rep, split = P(), P(None, AXIS)

    def block(*args: Any) -> Any:
        return train_block(*args, collective=collective)

    return shard_map(block, mesh=mesh, in_specs=(rep, rep, rep, split, split, rep, rep),
                     out_specs=rep if collective else P(AXIS), check_vma=False)


# --- the backend ---------------------------------------------------------------------------

@dataclass
class State:
    problem: Problem
    mesh: Mesh
    args: tuple[Any, ...]  # (params0, X, Y, idx, mask, inv_numel, lr), placed on the mesh
    compile_s: float = 0.0
    compiled: dict[bool, Any] = field(default_factory=dict)  # collective -> executable
    params: tuple[jax.Array, jax.Array] | None = None


def _place(problem: Problem, mesh: Mesh, world: int) -> tuple[Any, ...]:
    dt = problem.dtype
    if dt == np.float64:
        jax.config.update("jax_enable_x64", True)
    rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(None, AXIS))
    plan = padded_plan(problem.plan, world, problem.dataset.n_outputs, dt)
    return (
        (jax.device_put(problem.W0, rep), jax.device_put(problem.b0, rep)),
        jax.device_put(problem.dataset.X, rep), jax.device_put(problem.dataset.Y, rep),
        jax.device_put(plan.idx, split), jax.device_put(plan.mask, split),
        jax.device_put(plan.inv_numel, rep),
        jax.device_put(np.asarray(problem.lr, dtype=dt), rep),
    )


class JaxSharded:
    name = "jax-sharded"
    sync = "block_until_ready"

    def __init__(self, world: int | None = None) -> None:
        self.world = world_size() if world is None else world
        self.workers = "devices"
        self.single_process = "jax-scan"

    @property
    def device(self) -> str:
        platform = jax.devices()[0].platform
        return "cuda" if platform == "gpu" else platform

    def prepare(self, problem: Problem) -> State:
        mesh = Mesh(np.array(jax.devices()[:self.world]), (AXIS,))
        state = State(problem, mesh, _place(problem, mesh, self.world))
        start = time.perf_counter()
        self._compiled(state, collective=True)
        state.compile_s = time.perf_counter() - start
        return state

    def _compiled(self, state: State, collective: bool) -> Any:
        if collective not in state.compiled:
            lowered = jax.jit(sharded_train(state.mesh, collective)).lower(*state.args)
            state.compiled[collective] = lowered.compile()
        return state.compiled[collective]

    def run(self, state: State) -> None:
        state.params = jax.block_until_ready(state.compiled[True](*state.args))

    def run_compute_only(self, state: State) -> None:
        """The same scan without the psum, compiled on first use (outside compile_s: a
        user never pays it)."""
        jax.block_until_ready(self._compiled(state, collective=False)(*state.args))

    def wait(self, state: State) -> None:
        jax.block_until_ready(state.params)

    def result(self, state: State) -> TrainResult:
        assert state.params is not None, "run() before result()"
        W, b = (np.asarray(p) for p in state.params)
        for p, whole in zip(state.params, (W, b), strict=True):
            for shard in p.addressable_shards:
                if not np.array_equal(np.asarray(shard.data), whole, equal_nan=True):
                    raise RuntimeError(f"{self.name}: the replica on {shard.device} differs "
                                       "from the others after the same psum'd steps")
        return make_result(self.name, W, b, state.problem)
