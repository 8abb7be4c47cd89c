"""Eager PyTorch with the hand-derived gradient and no autograd.

Set beside ``torch-cpu`` it splits the cost of autograd from the cost of eager dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gdbench.data.workloads import Problem
from gdbench.implementations.base import TrainResult, make_result
from gdbench.implementations.torch_common import DeviceProblem, synchronize, to_device, unavailable

__all__ = ["TorchManual", "unavailable"]


@dataclass
class State:
    problem: Problem
    on_device: DeviceProblem
    W: torch.Tensor | None = None
    b: torch.Tensor | None = None


class TorchManual:
    name = "torch-manual"
    device = "cpu"
    sync = "none (eager CPU ops finish before returning)"

    def prepare(self, problem: Problem) -> State:
        return State(problem, to_device(problem, self.device))

    @torch.no_grad()
    def run(self, state: State) -> None:
        p = state.on_device
        lr = state.problem.lr
        W = p.W0.clone()
        b = p.b0.clone()
        for idx in p.batches:
            Xb = p.X[idx]
            G = torch.addmm(b, Xb, W.T).sub_(p.Y[idx])
            G.mul_(2.0 / G.numel())
            W.sub_(G.T @ Xb, alpha=lr)
            b.sub_(G.sum(0), alpha=lr)
        synchronize(p.device)
        state.W, state.b = W, b

    def wait(self, state: State) -> None:
        synchronize(state.on_device.device)

    def result(self, state: State) -> TrainResult:
        assert state.W is not None and state.b is not None, "run() before result()"
        return make_result(self.name, state.W.cpu().numpy(), state.b.cpu().numpy(),
                           state.problem)
