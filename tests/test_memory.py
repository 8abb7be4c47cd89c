"""Memory per run: every CPU backend reports what its library can count, outside timing.

The real instruments run on every CPU backend; each library's path is also driven by a
fake instrument (torch's profiler, torch.cuda's counters, a JAX device's memory_stats and
XLA's memory analysis) with known figures, so that each figure's arithmetic is checked
exactly, the GPU paths included on a machine without a GPU. The fakes come first: they
take no library's start-up.
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


def test_a_cuda_graph_backend_reports_its_graph_pool_not_the_runs_allocations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fakes torch.cuda's counters (no GPU here): a graph replay allocates nothing, so the
    # allocator's peak during the run reads zero; the memory is the pool that prepare's
    # capture reserved, which the backend's state recorded.
    counters = {"allocation.all.allocated": 7, "allocated_bytes.all.allocated": 4096}
    cuda = types.SimpleNamespace(
        synchronize=lambda: None, reset_peak_memory_stats=lambda: None,
        memory_allocated=lambda: 1000, max_memory_allocated=lambda: 1000,
        memory_stats=lambda: dict(counters))
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    backend = _Runs("torch-fake-graph", "cuda")
    state = types.SimpleNamespace(graph_pool_bytes=6 << 20)
    m = memory.measure(Prepared(backend, state, 0.0), steps=4)  # type: ignore[arg-type]
    assert backend.runs == 1
    assert m == memory.Memory(
        "torch-cuda-graph-pool", peak_bytes=float(6 << 20), allocations_per_step=0.0,
        allocated_bytes_per_step=0.0,
        note="the CUDA graph pool: memory reserved while prepare captured the graphs; the "
             "run allocates from it")


class _Compiled:
    """A compiled JAX call whose memory_analysis() XLA answered (None: it did not)."""

    def __init__(self, temp: int | None, output: int = 0) -> None:
        self.analysis = None if temp is None else types.SimpleNamespace(
            temp_size_in_bytes=temp, output_size_in_bytes=output, argument_size_in_bytes=10**9)

    def memory_analysis(self) -> Any:
        return self.analysis


def _jax_device(monkeypatch: pytest.MonkeyPatch, platform: str,
                stats: dict[str, int] | None) -> types.SimpleNamespace:
    """Fakes jax with one device of ``platform`` whose memory_stats() reads ``stats`` (None:
    the device keeps none, as the CPU)."""
    device = types.SimpleNamespace(
        platform=platform, memory_stats=lambda: None if stats is None else dict(stats))
    monkeypatch.setitem(sys.modules, "jax", types.SimpleNamespace(devices=lambda: [device]))
    return device


def test_jax_on_a_gpu_gives_the_devices_peak_when_it_rose_during_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fakes a jax GPU device: its peak since start (5,000 bytes, from prepare) rises to
    # 7,300 during the run, which starts with 300 bytes in use.
    stats = {"bytes_in_use": 300, "peak_bytes_in_use": 5000}
    _jax_device(monkeypatch, "gpu", stats)
    backend = _Runs("jax-fake", during=lambda: stats.update(peak_bytes_in_use=7300))
    state = types.SimpleNamespace(compiled={"step": _Compiled(100)})
    m = memory.measure(Prepared(backend, state, 0.0), steps=10)  # type: ignore[arg-type]
    assert backend.runs == 1
    assert m == memory.Memory("jax-device", 7000.0, None, None,
                              "the device's peak, which rose during the run, above its "
                              "starting use")


def test_jax_on_a_gpu_whose_peak_did_not_rise_gives_xlas_analysis_not_an_old_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fakes a jax GPU device whose peak (5,000 bytes, from compilation) the run does not
    # reach: that peak is not the run's. The compiled calls of two batch shapes need 120
    # and 308 bytes beyond their arguments: the larger is the run's figure.
    _jax_device(monkeypatch, "gpu", {"bytes_in_use": 300, "peak_bytes_in_use": 5000})
    backend = _Runs("jax-fake")
    state = types.SimpleNamespace(compiled={(8,): _Compiled(100, 20), (2,): _Compiled(300, 8),
                                            (1,): _Compiled(None)})
    m = memory.measure(Prepared(backend, state, 0.0), steps=10)  # type: ignore[arg-type]
    assert backend.runs == 1
    assert m == memory.Memory(
        "jax-memory-analysis", 308.0, None, None,
        "XLA's memory analysis: temporaries and outputs of the largest compiled call (the "
        "device's peak did not rise during the run)")


def test_jax_on_the_cpu_which_keeps_no_statistics_gives_xlas_analysis_or_says_why_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fakes jax's CPU device, which keeps no memory statistics.
    _jax_device(monkeypatch, "cpu", None)
    backend = _Runs("jax-fake")
    state = types.SimpleNamespace(compiled={"scan": _Compiled(4096, 64)})
    m = memory.measure(Prepared(backend, state, 0.0), steps=10)  # type: ignore[arg-type]
    assert m == memory.Memory(
        "jax-memory-analysis", 4160.0, None, None,
        "XLA's memory analysis: temporaries and outputs of the largest compiled call (the "
        "cpu device keeps no memory statistics)")
    # Neither a statistic nor an analysis: no figure, and why, after one run all the same.
    m = memory.measure(Prepared(backend, types.SimpleNamespace(compiled={"scan": _Compiled(
        None)}), 0.0), steps=10)  # type: ignore[arg-type]
    assert backend.runs == 2
    assert m == memory.Memory("jax-device", None, None, None,
                              "the cpu device keeps no memory statistics, and XLA gave no "
                              "memory analysis")


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
        import jax

        data_bytes = problem.dataset.X.nbytes + problem.dataset.Y.nbytes
        if jax.devices()[0].platform == "cpu":  # keeps no statistics: XLA's analysis
            assert m.method == "jax-memory-analysis"
            assert "cpu device keeps no memory statistics" in m.note
        else:  # a GPU keeps them: its peak when the run raised it, else XLA's analysis
            assert m.method in ("jax-device", "jax-memory-analysis")
        # One call's temporaries and outputs: more than W and b, less than the data.
        assert m.peak_bytes is not None and 2 * 4 * 16 < m.peak_bytes < data_bytes
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
