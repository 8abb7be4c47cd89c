"""A GPU's own yardsticks, measured with torch on the device, and whether work is queued.

The limit of a step on a GPU comes from what that GPU does (:mod:`gdbench.judge.limits`),
measured in the same run as the step, never from the CPU's roofline:

- its compute roof: :func:`roofline_loop`, per step of the plan ``P = X_b @ W.T`` and
  ``dW = P.T @ X_b`` with ``torch.mm`` into preallocated outputs on the device, each
  step's real batch size, TF32 off (as every backend), one synchronize at the end;
- its memory roofs: :func:`copy_bandwidth`, a device-to-device copy as large as the
  workload's dataset, repeated between two synchronizes so that a small copy measures the
  copy and not the synchronize.

torch is imported only when a function is called: this module is imported by every
benchmark process, most of which never touch a GPU.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gdbench.harness import timing

DEVICE = "cuda"  # the one GPU device the yardsticks are measured on (torch's CUDA)
# A timed copy lasts at least this long: a lone copy of a 1 MiB buffer takes about a
# microsecond on a GPU, far less than the synchronize that ends it.
COPY_ROUND_S = 1e-3


def unavailable(device: str = DEVICE) -> str | None:
    """None when torch can measure ``device`` here, else why not."""
    if device != DEVICE:
        return f"gdbench measures GPU yardsticks on {DEVICE} only, not {device}"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (the GPU yardsticks are measured with torch)"
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return None


def _torch_device(device: str) -> Any:
    import torch

    from gdbench.implementations.torch_common import full_precision

    full_precision()  # TF32 off, as in every backend: the roof of a full-precision step
    return torch.device(device)


def roofline_loop(X: np.ndarray, W: np.ndarray, batch_sizes: list[int],
                  device: str = DEVICE) -> tuple[Callable[[], None], float]:
    """The workload's roofline loop on ``device`` and its FLOPs per call: the GEMM pair of
    :func:`gdbench.harness.timing.roofline_loop`, as ``torch.mm`` on the device, returning
    when the device is done (any torch device: the tests measure the CPU)."""
    import torch

    from gdbench.implementations.torch_common import synchronize

    dev = _torch_device(device)
    k, d = W.shape
    WT = torch.from_numpy(np.ascontiguousarray(W)).to(dev).T
    buffers = {r: (torch.from_numpy(np.ascontiguousarray(X[:r])).to(dev),
                   torch.empty((r, k), dtype=WT.dtype, device=dev),
                   torch.empty((k, d), dtype=WT.dtype, device=dev)) for r in set(batch_sizes)}
    steps = [buffers[r] for r in batch_sizes]
    mm = torch.mm

    def run() -> None:
        for Xb, P, dW in steps:
            mm(Xb, WT, out=P)
            mm(P.T, Xb, out=dW)
        synchronize(dev)

    synchronize(dev)
    return run, float(sum(4 * r * d * k for r in batch_sizes))


def copy_bandwidth(nbytes: int, device: str = DEVICE, repeats: int = 5,
                   clock: timing.Clock = time.perf_counter) -> float:
    """Bytes per second of a device-to-device copy of an ``nbytes`` buffer (float32): the
    best of ``repeats`` timed calls, each of as many copies as fill COPY_ROUND_S, then one
    synchronize. A copy reads and writes every byte, so it moves 2·nbytes."""
    import torch

    from gdbench.implementations.torch_common import synchronize

    dev = _torch_device(device)
    source = torch.ones(max(1, nbytes // 4), dtype=torch.float32, device=dev)
    dest = torch.empty_like(source)

    def copies(times: int) -> Callable[[], None]:
        def copy() -> None:
            for _ in range(times):
                dest.copy_(source)
            synchronize(dev)
        return copy

    once = timing.fastest(copies(1), clock)
    times = max(1, math.ceil(COPY_ROUND_S / once))
    best = min(timing.timed(copies(times), clock) for _ in range(repeats))
    return 2.0 * source.numel() * source.element_size() * times / best


def work_queued(device: str) -> bool | None:
    """Whether torch still has work queued on ``device``'s current stream (None: not a CUDA
    device, or torch has not started CUDA in this process, as in a jax process). Asked
    right after a timed call that must return only when the device is done, it must read
    False whatever the workload: unlike timing, it shows a missing synchronize even where
    the GPU keeps up with the launches."""
    torch = sys.modules.get("torch")
    if device != DEVICE or torch is None or not torch.cuda.is_initialized():
        return None
    return not torch.cuda.current_stream().query()
