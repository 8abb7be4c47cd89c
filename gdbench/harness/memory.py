"""What one training run costs in memory, measured outside the timed rounds.

Each library is asked with its own instrument, and each figure says what it covers:

tracemalloc       NumPy backends (and anything pure Python). Peak bytes above the start
                  of the run, of every NumPy buffer and Python object allocated during
                  it. Python cannot count allocations, so none is given.
torch-profiler    PyTorch on the CPU. torch.profiler with profile_memory: the bytes and
                  the number of tensor allocations made by the ops of one run (each op
                  that allocates counts once, a lower bound of the allocator calls), and
                  the peak of allocated-minus-freed bytes over the run.
torch-cuda        PyTorch on a GPU. torch.cuda.max_memory_allocated after
                  reset_peak_memory_stats, and the allocator's own allocation counter.
jax-device        JAX. The device's memory_stats() peak, where the device keeps them (GPUs
                  do, the CPU does not: then no figure, and the reason).

Each covers the run alone: the data, the plan and the initial weights were placed in
prepare and are not counted.
"""

from __future__ import annotations

import contextlib
import io
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Any

from gdbench.implementations.base import Prepared


@dataclass(frozen=True)
class Memory:
    method: str
    peak_bytes: float | None  # above the start of the run
    allocations_per_step: float | None
    allocated_bytes_per_step: float | None
    note: str = ""

    def record(self) -> dict[str, Any]:
        """The fields saved in extra_info, prefixed ``memory_``."""
        return {f"memory_{k}": v for k, v in asdict(self).items()}


def measure(prepared: Prepared, steps: int) -> Memory:
    """One extra, instrumented run of a prepared backend (never a timed one)."""
    name = prepared.backend.name
    device = prepared.backend.device
    if getattr(prepared.backend, "workers", None) == "processes":
        return Memory("none", None, None, None,
                      "its ranks run in processes of their own: not measured")
    if name.startswith("torch"):
        return _torch_cuda(prepared, steps) if device == "cuda" else _torch_cpu(prepared, steps)
    if name.startswith("jax"):
        return _jax(prepared)
    return _tracemalloc(prepared)


def _tracemalloc(prepared: Prepared) -> Memory:
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        prepared.run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    return Memory("tracemalloc", float(peak - before), None, None,
                  "NumPy buffers and Python objects; no allocation count")


def _torch_cpu(prepared: Prepared, steps: int) -> Memory:
    from torch.profiler import ProfilerActivity, profile

    # The profiler prints its own start and stop lines; they are not gdbench's output.
    with contextlib.redirect_stdout(io.StringIO()), profile(
            activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        prepared.run()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    allocations = 0
    allocated = current = peak = 0.0
    for e in events:
        # An op's own allocation is its self memory; frees show as [memory] events.
        delta = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if e.name != "[memory]" and delta > 0:
            allocations += 1
            allocated += delta
        if e.name == "[memory]" and delta > 0:
            allocated += delta  # an allocation outside any recorded op
        current += delta
        peak = max(peak, current)
    return Memory("torch-profiler", peak, allocations / steps, allocated / steps,
                  "tensor allocations by ops (one per allocating op)")


def _torch_cuda(prepared: Prepared, steps: int) -> Memory:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    count = torch.cuda.memory_stats().get("allocation.all.allocated", 0)
    bytes_before = torch.cuda.memory_stats().get("allocated_bytes.all.allocated", 0)
    prepared.run()
    stats = torch.cuda.memory_stats()
    return Memory("torch-cuda", float(torch.cuda.max_memory_allocated() - before),
                  (stats.get("allocation.all.allocated", 0) - count) / steps,
                  (stats.get("allocated_bytes.all.allocated", 0) - bytes_before) / steps,
                  "the CUDA caching allocator's counters")


def _jax(prepared: Prepared) -> Memory:
    import jax

    device = jax.devices()[0]
    stats = device.memory_stats()
    if not stats:
        prepared.run()
        return Memory("jax-device", None, None, None,
                      f"the {device.platform} device keeps no memory statistics")
    before = stats.get("bytes_in_use", 0)
    prepared.run()
    stats = device.memory_stats() or {}
    return Memory("jax-device", float(stats.get("peak_bytes_in_use", 0) - before), None, None,
                  "the device's peak since start, above the run's starting use")
