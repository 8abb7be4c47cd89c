"""Memory per run: every CPU backend reports what its library can count, outside timing.

The real instruments run on every CPU backend; each library's path is also driven by a
fake instrument (torch's profiler, torch.cuda's counters, a JAX device's memory_stats)
with known figures, so that each figure's arithmetic is checked exactly, the GPU paths
included on a machine without a GPU. The fakes come first: they take no library's start-up.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from gdbench import implementations
from gdbench.data.workloads import WORKLOADS
from gdbench.harness import memory
from gdbench.implementations.base import Prepared, prepare

CPU_BACKENDS = [n for n in implementations.names() if "cuda" not in n]


class _Runs:
    """A backend that only counts its runs; ``during`` is called inside each run."""

    sync = "none"
    seen: object = None  # what ``during`` saw, for the test

    def __init__(self, name: str, device: str = "cpu",
                 during: Callable[[], None] = lambda: None) -> None:
        self.name, self.device, self.during, self.runs = name, device, during, 0

    def run(self, state: object) -> None:
        self.runs += 1
        self.during()


def _prepared(backend: _Runs) -> Any:
    return Prepared(backend, object(), 0.0)  # type: ignore[arg-type]


def _event(name: str, start: int, self_bytes: int = 0, total_bytes: int = 0) -> Any:
    return types.SimpleNamespace(name=name, time_range=types.SimpleNamespace(start=start),
                                 self_cpu_memory_usage=self_bytes,
                                 cpu_memory_usage=total_bytes)


class _FakeProfile:
    """torch.profiler.profile, replaying a known list of events; says when it is active."""

    def __init__(self, events: list[Any]) -> None:
        self._events = events
        self.active = False
        self.kwargs: dict[str, Any] = {}

    def __call__(self, **kwargs: Any) -> _FakeProfile:
        self.kwargs = kwargs
        return self

    def __enter__(self) -> _FakeProfile:
        print("profiler_start")  # as torch's profiler does
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False
        print("profiler_stop")

    def events(self) -> list[Any]:
        return self._events


def test_torch_cpu_counts_each_allocating_op_once_per_step_from_the_profiler(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two steps, in time order: each step an op allocates 100 bytes (its children's
    # included in cpu_memory_usage, not counted), another 60; an op allocates nothing;
    # both blocks are freed. Between the steps, 40 bytes come from no recorded op. Listed
    # out of order: the profiler does not promise time order.
    step = [("mm", 100, 150), ("add", 60, 60), ("view", 0, 0), ("[memory]", 0, -100),
            ("[memory]", 0, -60)]
    timeline = [(f"{name}", self_b, total_b) for name, self_b, total_b in step] + [
        ("[memory]", 0, 40)] + step
    events = [_event(name, start, self_b if name != "[memory]" else 0, total_b)
              for start, (name, self_b, total_b) in enumerate(timeline)]
    profile = _FakeProfile(events[::-1])
    monkeypatch.setitem(sys.modules, "torch.profiler", types.SimpleNamespace(
        ProfilerActivity=types.SimpleNamespace(CPU="cpu"), profile=profile))
    backend = _Runs("torch-fake", during=lambda: setattr(backend, "seen", profile.active))
    m = memory.measure(_prepared(backend), steps=2)
    assert backend.runs == 1 and backend.seen  # one run, inside the profiler
    assert profile.kwargs == {"activities": ["cpu"], "profile_memory": True}
    assert m == memory.Memory("torch-profiler", peak_bytes=200.0, allocations_per_step=2.0,
                              allocated_bytes_per_step=(2 * 160 + 40) / 2,
                              note="tensor allocations by ops (one per allocating op)")
    assert capsys.readouterr().out == ""  # the profiler's own lines are not gdbench's


def test_torch_cuda_reads_the_allocators_counters_around_one_run_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    counters = {"allocation.all.allocated": 7, "allocated_bytes.all.allocated": 4096}
    allocated = {"now": 1000, "max": 99_999}

    def run_on_the_gpu() -> None:  # 3 steps: 12 blocks, 3,000 bytes, peaks 2,500 above
        calls.append("run")
        counters["allocation.all.allocated"] += 12
        counters["allocated_bytes.all.allocated"] += 3000
        allocated["max"] = 3500

    cuda = types.SimpleNamespace(
        synchronize=lambda: calls.append("synchronize"),
        reset_peak_memory_stats=lambda: calls.append("reset"),
        memory_allocated=lambda: allocated["now"],
        max_memory_allocated=lambda: allocated["max"],
        memory_stats=lambda: dict(counters))
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    backend = _Runs("torch-fake-cuda", "cuda", during=run_on_the_gpu)
    m = memory.measure(_prepared(backend), steps=3)
    assert calls == ["synchronize", "reset", "run"]
    assert m == memory.Memory("torch-cuda", peak_bytes=2500.0, allocations_per_step=4.0,
                              allocated_bytes_per_step=1000.0,
                              note="the CUDA caching allocator's counters")


def test_jax_reads_the_devices_peak_above_the_runs_starting_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stats = {"bytes_in_use": 300, "peak_bytes_in_use": 5000}
    device = types.SimpleNamespace(platform="gpu", memory_stats=lambda: dict(stats))
    monkeypatch.setitem(sys.modules, "jax", types.SimpleNamespace(devices=lambda: [device]))
    backend = _Runs("jax-fake", during=lambda: stats.update(peak_bytes_in_use=2300))
    m = memory.measure(_prepared(backend), steps=10)
    assert backend.runs == 1
    assert m == memory.Memory("jax-device", 2000.0, None, None,
                              "the device's peak since start, above the run's starting use")
    # A device that keeps no statistics still runs once, and says which it was.
    device.memory_stats = lambda: None
    m = memory.measure(_prepared(backend), steps=10)
    assert backend.runs == 2
    assert m == memory.Memory("jax-device", None, None, None,
                              "the gpu device keeps no memory statistics")


def test_a_memory_record_prefixes_every_field() -> None:
    assert memory.Memory("m", 1.0, 2.0, 3.0, "n").record() == {
        "memory_method": "m", "memory_peak_bytes": 1.0, "memory_allocations_per_step": 2.0,
        "memory_allocated_bytes_per_step": 3.0, "memory_note": "n"}


def test_tracemalloc_sees_a_run_that_allocates_and_leaves_tracing_as_it_found_it() -> None:
    import tracemalloc

    import numpy as np

    class Allocates:
        name, device, sync = "allocates", "cpu", "none"

        def prepare(self, problem: object) -> list[np.ndarray]:
            return []

        def run(self, state: list[np.ndarray]) -> None:
            state.clear()
            state.append(np.ones(1_000_000))  # 8 MB

    problem = WORKLOADS["crops"].build()
    prepared = prepare(Allocates(), problem)  # type: ignore[arg-type]
    m = memory.measure(prepared, 250)
    assert m == memory.Memory("tracemalloc", m.peak_bytes, None, None,
                              "NumPy buffers and Python objects; no allocation count")
    assert m.peak_bytes is not None and 8_000_000 <= m.peak_bytes < 8_100_000
    assert not tracemalloc.is_tracing()  # it started tracing, so it stopped it
    tracemalloc.start()  # someone else's tracing: measured inside it, and left on
    try:
        big = np.ones(2_000_000)  # 16 MB before the run: not the run's
        m = memory.measure(prepared, 250)
        assert tracemalloc.is_tracing()
        del big
    finally:
        tracemalloc.stop()
    assert m.peak_bytes is not None and 8_000_000 <= m.peak_bytes < 8_100_000


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_memory_fields_for_every_cpu_backend(
    name: str, backend_status: dict[str, str | None]
) -> None:
    if backend_status[name]:
        pytest.skip(f"backend {name}: {backend_status[name]}")
    problem = WORKLOADS["small"].build()
    prepared = prepare(name, problem)
    prepared.run()
    m = memory.measure(prepared, len(problem.plan))
    record = m.record()
    assert set(record) == {"memory_method", "memory_peak_bytes", "memory_allocations_per_step",
                           "memory_allocated_bytes_per_step", "memory_note"}
    assert m.note  # every figure says what it covers
    if name == "torch-ddp":  # its ranks are other processes: nothing here to measure
        assert (m.method, m.peak_bytes, m.allocations_per_step) == ("none", None, None)
        assert "processes of their own" in m.note
    elif name.startswith("jax"):
        assert m.method == "jax-device"
        assert m.peak_bytes is None and "no memory statistics" in m.note  # the CPU keeps none
    elif name.startswith("torch"):
        assert m.method == "torch-profiler"
        assert m.peak_bytes is not None and m.peak_bytes > 0
        assert m.allocations_per_step is not None and m.allocations_per_step >= 1
        if name in ("torch-cpu", "torch-manual", "torch-tutorial"):
            # Eager torch allocates every op's output, every step: at least the
            # gathered batch and a (32, 2) float32 prediction.
            assert m.allocations_per_step >= 2
            assert m.allocated_bytes_per_step >= 32 * 2 * 4
        assert m.allocated_bytes_per_step is not None and m.allocated_bytes_per_step > 0
        # Per step, not per run: a step makes a few dozen tensors at most (not one per step
        # of the run's 256), and allocates less than the whole dataset, placed in prepare.
        assert m.allocations_per_step < 64
        data_bytes = problem.dataset.X.nbytes + problem.dataset.Y.nbytes
        assert m.allocated_bytes_per_step < data_bytes and m.peak_bytes < data_bytes
    else:
        assert m.method == "tracemalloc"
        assert m.peak_bytes is not None and m.peak_bytes > 0
        # numpy writes into buffers made in prepare: far less than one batch per step.
        assert m.peak_bytes < len(problem.plan) * 32 * 16 * 4
