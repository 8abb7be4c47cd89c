"""Eager PyTorch with autograd, on the CPU or a CUDA device.

Forward, loss, backward and update are four plain lines. The data and the plan's index
arrays live on the device from ``prepare`` on; nothing in the loop waits for the device,
and ``run`` ends with a synchronize so the timer sees the finished work.

The ops, and why (``torch-manual`` uses the same, less autograd; tests/test_ops.py counts
them):

- gather: ``X.index_select(0, idx)``, a row copy. Advanced indexing (``X[idx]``) goes
  through ``aten::index``, PyTorch's general indexing kernel, which is far slower for a
  large batch and would be timed as if it were autograd's cost.
- matmul: ``torch.addmm(b, Xb, W.T)``, the bias folded into the GEMM, as ``nn.Linear``
  computes it; backward's ``mm`` is autograd's.
- update: ``W.sub_(W.grad, alpha=lr)`` in place under ``no_grad``, as ``torch.optim.SGD``
  updates, and the gradients set to None, as ``zero_grad()`` does by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdbench.data.workloads import Problem
from gdbench.implementations.base import TrainResult, make_result
from gdbench.implementations.torch_common import DeviceProblem, synchronize, to_device, unavailable

__all__ = ["TorchAutograd", "cpu", "cuda", "unavailable"]


@dataclass
class State:
    problem: Problem
    on_device: DeviceProblem
    W: torch.Tensor | None = None
    b: torch.Tensor | None = None


class TorchAutograd:
    sync = "torch.cuda.synchronize"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.name = f"torch-{device}"
        if device == "cpu":
            self.sync = "none (eager CPU ops finish before returning)"

    def prepare(self, problem: Problem) -> State:
        return State(problem, to_device(problem, self.device))

    def run(self, state: State) -> None:
        p = state.on_device
        lr = state.problem.lr
        W = p.W0.clone().requires_grad_(True)
        b = p.b0.clone().requires_grad_(True)
        for idx in p.batches:
            pred = torch.addmm(b, p.X.index_select(0, idx), W.T)
            loss = F.mse_loss(pred, p.Y.index_select(0, idx))  # sum(diff**2) / numel
            loss.backward()
            with torch.no_grad():
                W.sub_(W.grad, alpha=lr)  # type: ignore[arg-type]  # set by backward()
                b.sub_(b.grad, alpha=lr)  # type: ignore[arg-type]
            W.grad = None  # set_to_none: the next backward writes fresh gradients
            b.grad = None
        synchronize(p.device)
        state.W, state.b = W.detach(), b.detach()

    def wait(self, state: State) -> None:
        synchronize(state.on_device.device)

    def result(self, state: State) -> TrainResult:
        assert state.W is not None and state.b is not None, "run() before result()"
        return make_result(self.name, state.W.cpu().numpy(), state.b.cpu().numpy(),
                           state.problem)


def cpu() -> TorchAutograd:
    return TorchAutograd("cpu")


def cuda() -> TorchAutograd:
    return TorchAutograd("cuda")
