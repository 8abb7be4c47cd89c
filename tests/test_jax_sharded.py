"""jax-sharded: the mesh's devices and when they cannot be had, one compiled shape for a
ragged plan, the loop without its psum, and the replicas checked at the end.

This process has two CPU devices (tests/conftest.py asks before JAX starts); the cases
where JAX started first with one are run in fresh processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from gdbench import implementations  # noqa: E402
from gdbench.data.datasets import load_dataset  # noqa: E402
from gdbench.data.workloads import Problem, make_problem  # noqa: E402
from gdbench.implementations import jax_sharded  # noqa: E402
from gdbench.implementations.base import agreement, prepare, train_once  # noqa: E402


def crops(batch_size: int = 7, epochs: int = 5) -> Problem:
    return make_problem("crops", load_dataset("crops"), batch_size=batch_size, epochs=epochs,
                        lr=1e-6)


def test_this_process_has_the_two_devices_jax_sharded_needs() -> None:
    assert len(jax.devices()) >= 2
    assert implementations.why_unavailable("jax-sharded") is None


def _in_fresh_process(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_it_asks_jax_for_the_devices_even_after_the_other_jax_backends() -> None:
    # jax_jit imported first (as gdbench verify does, through the registry) starts nothing.
    out = _in_fresh_process(
        "from gdbench import implementations as i; i.get('jax-scan'); "
        "print(i.why_unavailable('jax-sharded')); import jax; print(len(jax.devices()))")
    assert out.splitlines() == ["None", "2"]


def test_jax_started_with_one_device_first_makes_it_unavailable_with_the_fix() -> None:
    out = _in_fresh_process(
        "import jax; jax.devices(); from gdbench import implementations as i; "
        "print(i.why_unavailable('jax-sharded'))")
    assert out == ("JAX started with 1 CPU device(s) before jax-sharded could ask for 2 "
                   "(something in this process used JAX first); run it in a process of its "
                   "own, as gdbench run does, or set JAX_NUM_CPU_DEVICES=2")


def test_too_few_accelerators_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    one_gpu = [SimpleNamespace(platform="gpu")]  # a fake device list: no GPU here
    monkeypatch.setattr(jax_sharded.jax, "devices", lambda: one_gpu)
    monkeypatch.setenv("GDBENCH_WORLD", "2")
    assert jax_sharded.unavailable("jax-sharded") == "needs 2 gpu devices (--world 2), found 1"


def test_a_ragged_plan_compiles_once_and_agrees() -> None:
    problem = crops(batch_size=7)  # 7, 7, 1: the tail's rank 1 has no row
    prepared = prepare("jax-sharded", problem)
    assert list(prepared.state.compiled) == [True]  # one shape, one executable
    assert prepared.compile_s > 0
    prepared.run()
    reference, *_ = train_once("numpy", problem)
    assert agreement(prepared.result(), reference, "float32")[2]


def test_the_loop_without_psum_trains_one_replica_per_device_apart() -> None:
    problem = crops(batch_size=3)
    prepared = prepare("jax-sharded", problem)
    prepared.run()
    trained = prepared.result()
    state = prepared.state
    prepared.backend.run_compute_only(state)  # type: ignore[attr-defined]
    W, b = state.compiled[False](*state.args)
    assert W.shape == (2, *trained.W.shape) and b.shape == (2, *trained.b.shape)
    assert not np.array_equal(np.asarray(W[0]), np.asarray(W[1]))  # no sum: each its own rows
    np.testing.assert_array_equal(prepared.result().W, trained.W)  # the trained run is kept


def test_result_refuses_replicas_that_differ() -> None:
    prepared = prepare("jax-sharded", crops())
    prepared.run()
    W, b = prepared.state.params
    # A replicated array whose two copies differ, as a missing psum would leave them.
    copies = [jax.device_put(np.asarray(W) + i, d) for i, d in enumerate(W.sharding.mesh.devices)]
    broken = jax.make_array_from_single_device_arrays(W.shape, W.sharding, copies)
    prepared.state.params = (broken, b)
    with pytest.raises(RuntimeError, match="the replica on .* differs"):
        prepared.result()
