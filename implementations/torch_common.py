"""What the PyTorch backends share: full-precision matmuls and moving the problem to a device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gdbench.data.workloads import Problem


def unavailable(name: str) -> str | None:
    """None when the backend can run here, else why not."""
    if name.endswith("cuda") and not torch.cuda.is_available():
        return "no CUDA device"
    return None


def full_precision() -> None:
    """Float32 matmuls at full precision: TF32 off for matmul and cuDNN."""
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished all queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class DeviceProblem:
    """The dataset, the plan's index arrays and W0, b0, already on the device."""

    device: torch.device
    X: torch.Tensor
    Y: torch.Tensor
    batches: list[torch.Tensor]
    W0: torch.Tensor
    b0: torch.Tensor


def to_device(problem: Problem, device: str) -> DeviceProblem:
    """Copy everything a run needs to the device once, so the timed loop transfers nothing."""
    full_precision()
    dev = torch.device(device)
    on_device = DeviceProblem(
        device=dev,
        X=torch.from_numpy(problem.dataset.X).to(dev),
        Y=torch.from_numpy(problem.dataset.Y).to(dev),
        batches=[torch.from_numpy(idx).to(dev) for idx in problem.plan],
        W0=torch.from_numpy(np.ascontiguousarray(problem.W0)).to(dev),
        b0=torch.from_numpy(np.ascontiguousarray(problem.b0)).to(dev),
    )
    synchronize(dev)
    return on_device
