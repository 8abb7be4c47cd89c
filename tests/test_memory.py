"""Memory per run: every CPU backend reports what its library can count, outside timing."""

from __future__ import annotations

import pytest

from gdbench import implementations
from gdbench.data.workloads import WORKLOADS
from gdbench.harness import memory
from gdbench.implementations.base import prepare

CPU_BACKENDS = [n for n in implementations.names() if "cuda" not in n]


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
    if name.startswith("jax"):
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
    else:
        assert m.method == "tracemalloc"
        assert m.peak_bytes is not None and m.peak_bytes > 0
        # numpy writes into buffers made in prepare: far less than one batch per step.
        assert m.peak_bytes < len(problem.plan) * 32 * 16 * 4


def test_tracemalloc_sees_a_run_that_allocates() -> None:
    import numpy as np

    class Allocates:
        name, device, sync = "allocates", "cpu", "none"

        def prepare(self, problem: object) -> list[np.ndarray]:
            return []

        def run(self, state: list[np.ndarray]) -> None:
            state.clear()
            state.append(np.ones(1_000_000))  # 8 MB

    problem = WORKLOADS["crops"].build()
    m = memory.measure(prepare(Allocates(), problem), 250)  # type: ignore[arg-type]
    assert m.peak_bytes is not None and m.peak_bytes >= 8_000_000
