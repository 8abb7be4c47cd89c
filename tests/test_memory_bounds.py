"""Memory figures on the paths that run on a CPU, checked exactly or bounded on both sides.

The instruments here are the real ones (tracemalloc, torch's profiler, a JAX CPU device);
what is faked is the backend: a stand-in whose run makes allocations of known sizes and
counts, so that each figure has one right answer. The real CPU backends are then held to
bounds that follow from what one step of the model makes, above as well as below.
(tests/test_memory.py drives each path with fake instruments instead.)
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from gdbench import implementations
from gdbench.data.workloads import WORKLOADS
from gdbench.harness import memory
from gdbench.implementations.base import Prepared, prepare


class _Stand:
    """A backend that only runs ``work``, counting its runs."""

    sync = "none"

    def __init__(self, name: str, work: Callable[[], Any]) -> None:
        self.name, self.device, self.work, self.runs = name, "cpu", work, 0

    def run(self, state: object) -> None:
        self.runs += 1
        self.work()


def _measure(name: str, work: Callable[[], Any], steps: int) -> tuple[memory.Memory, _Stand]:
    backend = _Stand(name, work)
    m = memory.measure(Prepared(backend, None, 0.0), steps)  # type: ignore[arg-type]
    return m, backend


# --- tracemalloc (NumPy and anything pure Python) ----------------------------------------------

MB = 1_000_000


def test_tracemalloc_gives_the_peak_of_what_was_alive_at_once_not_the_total() -> None:
    def one_at_a_time() -> None:
        for _ in range(4):
            np.ones(MB // 8)  # 1 MB, freed at once

    def all_at_once() -> None:
        kept = [np.ones(MB // 8) for _ in range(4)]
        del kept

    m, backend = _measure("numpy-stand", one_at_a_time, steps=4)
    assert backend.runs == 1
    assert m.method == "tracemalloc" and m.allocations_per_step is None
    assert m.allocated_bytes_per_step is None
    assert m.peak_bytes is not None and MB <= m.peak_bytes < MB + 64_000
    m, _ = _measure("numpy-stand", all_at_once, steps=4)
    assert m.peak_bytes is not None and 4 * MB <= m.peak_bytes < 4 * MB + 64_000


def test_tracemalloc_of_a_run_that_allocates_nothing_is_near_zero() -> None:
    m, _ = _measure("numpy-stand", lambda: None, steps=10)
    assert m.peak_bytes is not None and 0 <= m.peak_bytes < 4_000


def test_tracemalloc_inside_someone_elses_tracing_counts_the_run_alone() -> None:
    # A 16 MB peak before the run, freed before it: not the run's, though tracing saw it.
    tracemalloc.start()
    try:
        big = np.ones(2 * MB)
        del big
        m, _ = _measure("numpy-stand", lambda: np.ones(MB // 8), steps=1)
        assert tracemalloc.is_tracing()  # left on, as it was found
    finally:
        tracemalloc.stop()
    assert m.peak_bytes is not None and MB <= m.peak_bytes < MB + 64_000


def test_tracemalloc_stops_the_tracing_it_started_when_the_run_fails() -> None:
    def fails() -> None:
        raise RuntimeError("diverged")

    assert not tracemalloc.is_tracing()
    with pytest.raises(RuntimeError, match="diverged"):
        _measure("numpy-stand", fails, steps=1)
    assert not tracemalloc.is_tracing()


# --- torch's profiler on the CPU -------------------------------------------------------------


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


def test_the_torch_profiler_counts_each_allocation_of_each_step_exactly(torch: Any) -> None:
    # Each of 5 steps allocates one 4,000-byte tensor and drops it: one allocation and
    # 4,000 bytes a step, and never more than one tensor alive.
    def freed_each_step() -> None:
        for _ in range(5):
            torch.empty(1000, dtype=torch.float32)

    m, backend = _measure("torch-stand", freed_each_step, steps=5)
    assert backend.runs == 1
    assert m == memory.Memory("torch-profiler", 4000.0, 1.0, 4000.0,
                              "tensor allocations by ops (one per allocating op)")


def test_the_torch_profilers_peak_is_what_was_alive_at_once(torch: Any) -> None:
    # Each step allocates two tensors (4,000 and 800 bytes) and keeps them to the end.
    def kept() -> None:
        alive = []
        for _ in range(5):
            alive.append(torch.empty(1000, dtype=torch.float32))
            alive.append(torch.empty(100, dtype=torch.float64))
        del alive

    m, _ = _measure("torch-stand", kept, steps=5)
    assert m == memory.Memory("torch-profiler", 5 * 4800.0, 2.0, 4800.0,
                              "tensor allocations by ops (one per allocating op)")


def test_one_byte_blocks_and_blocks_kept_past_the_run_count_as_the_profiler_saw_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The profiler is faked here, to replay edge cases in time order: an op that
    # allocates 1 byte (a one-element bool tensor), 1 byte from no recorded op, an op
    # whose 8 bytes outlive the run (the trained weights), an event of no bytes, and the
    # 1-byte block freed.
    import sys
    import types

    timeline = [("aten::empty", 1, 1), ("[memory]", 0, 1), ("aten::mm", 8, 8),
                ("[memory]", 0, 0), ("[memory]", 0, -1)]
    events = [types.SimpleNamespace(name=name, time_range=types.SimpleNamespace(start=t),
                                    self_cpu_memory_usage=own, cpu_memory_usage=total)
              for t, (name, own, total) in enumerate(timeline)]

    class Profile:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> Profile:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def events(self) -> list[Any]:
            return events

    monkeypatch.setitem(sys.modules, "torch.profiler", types.SimpleNamespace(
        ProfilerActivity=types.SimpleNamespace(CPU="cpu"), profile=Profile))
    m, backend = _measure("torch-stand", lambda: None, steps=2)
    assert backend.runs == 1
    # Two allocating ops; 1 + 1 + 8 bytes allocated; 10 alive at most, over 2 steps.
    assert m == memory.Memory("torch-profiler", 10.0, 1.0, 5.0,
                              "tensor allocations by ops (one per allocating op)")


def test_a_memory_figure_is_a_value_with_an_empty_note_unless_given() -> None:
    import dataclasses

    m = memory.Memory("tracemalloc", 1.0, None, None)
    assert m.note == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.peak_bytes = 2.0  # type: ignore[misc]


# --- a JAX CPU device --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jax_cpu() -> Any:
    jax = pytest.importorskip("jax")
    if jax.devices()[0].memory_stats():
        pytest.skip(f"this JAX {jax.devices()[0].platform} device keeps memory statistics")
    return jax


class _JaxState:
    def __init__(self, compiled: dict[str, Any]) -> None:
        self.compiled = compiled


def test_jax_on_the_cpu_gives_xlas_analysis_of_the_largest_real_compiled_call(
        jax_cpu: Any) -> None:
    # Two calls really compiled by XLA, each doubling a float32 vector: their outputs
    # take 4,000 and 1,000 bytes and they need no temporaries.
    jnp = jax_cpu.numpy
    double = jax_cpu.jit(lambda x: x * 2.0)
    compiled = {"big": double.lower(jnp.ones(1000, jnp.float32)).compile(),
                "small": double.lower(jnp.ones(250, jnp.float32)).compile()}
    backend = _Stand("jax-stand", lambda: None)
    m = memory.measure(Prepared(backend, _JaxState(compiled), 0.0), 10)  # type: ignore[arg-type]
    assert backend.runs == 1
    platform = jax_cpu.devices()[0].platform
    assert m == memory.Memory(
        "jax-memory-analysis", 4000.0, None, None,
        "XLA's memory analysis: temporaries and outputs of the largest compiled call (the "
        f"{platform} device keeps no memory statistics)")


def test_jax_on_the_cpu_without_a_compiled_call_runs_once_and_says_why_no_figure(
        jax_cpu: Any) -> None:
    platform = jax_cpu.devices()[0].platform
    for state in (None, _JaxState({})):
        backend = _Stand("jax-stand", lambda: None)
        m = memory.measure(Prepared(backend, state, 0.0), steps=10)  # type: ignore[arg-type]
        assert backend.runs == 1
        assert m == memory.Memory("jax-device", None, None, None,
                                  f"the {platform} device keeps no memory statistics, and "
                                  "XLA gave no memory analysis")


# --- the real CPU backends, bounded on both sides ----------------------------------------------

TORCH_CPU = [n for n in implementations.names() if n.startswith("torch") and "cuda" not in n]


@pytest.mark.parametrize("workload", ["crops", "small"])
@pytest.mark.parametrize("name", TORCH_CPU)
def test_a_torch_cpu_backends_figures_fit_what_one_step_makes(
        name: str, workload: str, backend_status: dict[str, str | None]) -> None:
    if backend_status[name]:
        pytest.skip(f"backend {name}: {backend_status[name]}")
    if getattr(implementations.get(name), "workers", None) == "processes":
        pytest.skip(f"{name}'s ranks run in processes of their own: not measured")
    problem = WORKLOADS[workload].build()
    steps = len(problem.plan)
    prepared = prepare(name, problem)
    prepared.run()
    m = memory.measure(prepared, steps)
    assert m.method == "torch-profiler"
    assert m.peak_bytes is not None and m.allocations_per_step is not None
    assert m.allocated_bytes_per_step is not None
    rows, d, k = problem.plan.batch_size, problem.dataset.n_features, problem.dataset.n_outputs
    # Every step makes at least its gradients, dW (k, d) and db (k,), in float32 (a
    # compiled step makes exactly those, in one buffer); no array of a step is larger
    # than the gathered batch (rows, d), W's shape or the prediction's (rows, k).
    gradients = 4 * k * (d + 1)
    largest = 4 * max(rows * d, k * d, rows * k)
    # Per step, not per run: a step's allocations are a handful of arrays.
    assert 1 <= m.allocations_per_step <= 32
    assert gradients <= m.allocated_bytes_per_step <= 32 * largest
    # The run frees each step's arrays: what is alive at once is a few steps' worth,
    # and never more than the run allocated in all.
    assert 0 < m.peak_bytes <= 4 * m.allocated_bytes_per_step
    assert m.peak_bytes <= m.allocated_bytes_per_step * steps


def test_numpy_allocates_less_than_one_batch_per_run() -> None:
    # numpy gathers into buffers made in prepare: the run allocates less than one batch
    # of rows (X[idx] would allocate one every step), Python's small change included.
    problem = WORKLOADS["medium"].build()
    prepared = prepare("numpy", problem)
    prepared.run()
    m = memory.measure(prepared, len(problem.plan))
    rows, d = problem.plan.batch_size, problem.dataset.n_features
    assert m.method == "tracemalloc"
    assert m.peak_bytes is not None and 0 < m.peak_bytes < 4 * rows * d
