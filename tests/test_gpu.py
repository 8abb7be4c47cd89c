"""gdbench.harness.gpu, the GPU's yardsticks, and the suite's benchmark that saves them.

There is no GPU here: torch's CPU device stands in for the GPU where the measurement
itself is checked (the same torch calls, a device that needs no synchronize), and a fake
torch module, or a fake pytest-benchmark fixture, where the CUDA-only branches are.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import gdbench.benches.bench_training as bench
from gdbench.data.workloads import WORKLOADS
from gdbench.harness import gpu

torch = pytest.importorskip("torch")


def test_the_gpu_roofline_loop_is_each_steps_gemm_pair_as_torch_mm(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The CPU device stands in for the GPU; torch.mm is wrapped to record its shapes.
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    real_mm = torch.mm

    def mm(a: Any, b: Any, *, out: Any) -> Any:
        shapes.append((tuple(a.shape), tuple(b.shape)))
        return real_mm(a, b, out=out)

    monkeypatch.setattr(torch, "mm", mm)
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((10, 3)).astype(np.float32), np.ones((2, 3), np.float32)
    run, flops = gpu.roofline_loop(X, W, [4, 4, 2], device="cpu")
    assert flops == 4 * 3 * 2 * (4 + 4 + 2)  # 4·B·d·k per step
    assert shapes == []  # nothing runs until the loop is called
    run()
    # Per step, P = X_b @ W.T then dW = P.T @ X_b, with the step's own batch size.
    assert shapes == [((4, 3), (3, 2)), ((2, 4), (4, 3))] * 2 + [((2, 3), (3, 2)),
                                                                ((2, 2), (2, 3))]
    assert torch.backends.cuda.matmul.allow_tf32 is False  # the roof of a full-precision step


def test_the_device_copy_is_bytes_moved_over_seconds_in_copies_that_fill_a_round() -> None:
    # The CPU device stands in for the GPU; the clock is faked: every reading is 2**-13 s
    # (122 µs) after the one before, so one timed call of any number of copies lasts that.
    tick = 2.0**-13
    ticks = iter(range(10_000))
    rate = gpu.copy_bandwidth(4000, device="cpu", repeats=3, clock=lambda: next(ticks) * tick)
    # A lone copy reads 122 µs, so a round of COPY_ROUND_S (1 ms) holds 9 copies; each
    # reads and writes its 4,000 bytes once.
    assert gpu.COPY_ROUND_S == 1e-3
    assert rate == pytest.approx(2 * 4000 * 9 / tick)
    real = gpu.copy_bandwidth(1 << 20, device="cpu", repeats=2)
    assert 1e8 < real < 1e13  # a real copy moves MB/s to TB/s, never 0 or inf


def test_the_yardsticks_say_why_they_cannot_be_measured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu.unavailable("tpu") == "gdbench measures GPU yardsticks on cuda only, not tpu"
    # Fakes torch's view of the machine: no CUDA device, then one.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.unavailable() == "torch sees no CUDA device"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu.unavailable() is None
    monkeypatch.setattr(gpu.importlib.util, "find_spec", lambda name: None)  # no torch
    assert gpu.unavailable() == "torch is not installed (the GPU yardsticks are measured " \
                                "with torch)"


@pytest.mark.parametrize(("idle", "queued"), [(True, False), (False, True)])
def test_work_queued_asks_torchs_current_cuda_stream(
        monkeypatch: pytest.MonkeyPatch, idle: bool, queued: bool) -> None:
    # Fakes torch with CUDA started, whose current stream answers query() with ``idle``.
    stream = SimpleNamespace(query=lambda: idle)
    fake = SimpleNamespace(cuda=SimpleNamespace(is_initialized=lambda: True,
                                                current_stream=lambda: stream))
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert gpu.work_queued("cuda") is queued
    assert gpu.work_queued("cpu") is None  # a CPU backend is never asked
    fake.cuda.is_initialized = lambda: False  # torch loaded, CUDA never started (jax's run)
    assert gpu.work_queued("cuda") is None
    monkeypatch.delitem(sys.modules, "torch")
    assert gpu.work_queued("cuda") is None  # torch not loaded: a jax process is not asked


class _Benchmark:
    """pytest-benchmark's fixture with timing disabled: pedantic() calls the target once."""

    disabled = True
    stats = None

    def __init__(self) -> None:
        self.extra_info: dict[str, Any] = {}
        self.group: str | None = None
        self.calls = 0

    def pedantic(self, target: Any, **kwargs: Any) -> None:
        self.calls += 1
        target()


def test_the_suite_saves_the_gpus_yardsticks_as_a_roofline_row_of_the_gpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Fakes a CUDA device: the yardsticks are measured on the CPU device instead, and the
    # copy reads a fixed 500 GB/s.
    monkeypatch.setattr(gpu, "unavailable", lambda device=gpu.DEVICE: None)
    real_loop = gpu.roofline_loop
    monkeypatch.setattr(gpu, "roofline_loop", lambda X, W, sizes: real_loop(X, W, sizes, "cpu"))
    copied: list[int] = []
    monkeypatch.setattr(gpu, "copy_bandwidth", lambda nbytes: copied.append(nbytes) or 5e11)
    b = _Benchmark()
    request = SimpleNamespace(node=SimpleNamespace(user_properties=[]))
    problems = SimpleNamespace(get=lambda name: (WORKLOADS[name].build(), None))
    bench.bench_gpu_roofline(b, request, "small", problems, SimpleNamespace(dtype="float32"))
    problem = WORKLOADS["small"].build()
    data_bytes = problem.dataset.X.nbytes + problem.dataset.Y.nbytes
    assert copied == [max(bench.MIN_COPY_BYTES, data_bytes)]
    info = b.extra_info
    assert (info["kind"], info["backend"], info["device"]) == ("roofline", "roofline-cuda",
                                                               "cuda")
    assert info["bandwidth_gbs"] == 500.0 and info["copy_threads"] == 0
    assert info["copy_bytes"] == copied[0] and info["flops"] == 256 * 4 * 32 * 16 * 2
    assert (info["workload"], info["steps"], info["agrees"]) == ("small", 256, True)
    assert "target_loss" not in info  # the shared target is the CPU roofline's to record
    assert b.group == "small" and b.calls == 1


def test_without_a_gpu_the_suites_gpu_yardsticks_skip_with_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "unavailable", lambda device=gpu.DEVICE: "torch sees no CUDA device")
    with pytest.raises(pytest.skip.Exception, match="GPU yardsticks: torch sees no CUDA device"):
        bench.bench_gpu_roofline(_Benchmark(), None, "crops", None,
                                 SimpleNamespace(dtype="float32"))
