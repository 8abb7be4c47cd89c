"""Eager PyTorch with the hand-derived gradient and no autograd.

Set beside ``torch-cpu`` it splits the cost of autograd from the cost of eager dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gdbench.data.datasets import Dataset
from gdbench.data.loader import BatchPlan
from gdbench.implementations.base import TrainResult, make_result
from gdbench.implementations.torch_common import DeviceProblem, synchronize, to_device, unavailable

__all__ = ["TorchManual", "unavailable"]


@dataclass
class State:
    dataset: Dataset
    plan: BatchPlan
    W0: np.ndarray
    b0: np.ndarray
    lr: float
    problem: DeviceProblem
    W: torch.Tensor | None = None
    b: torch.Tensor | None = None


class TorchManual:
    name = "torch-manual"
    device = "cpu"
    sync = "none (eager CPU ops finish before returning)"

    def prepare(
        self, dataset: Dataset, plan: BatchPlan, W0: np.ndarray, b0: np.ndarray, lr: float
    ) -> State:
        return State(dataset, plan, W0, b0, lr, to_device(dataset, plan, W0, b0, self.device))

    @torch.no_grad()
    def run(self, state: State) -> None:
        p = state.problem
        lr = state.lr
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

    def result(self, state: State) -> TrainResult:
        assert state.W is not None and state.b is not None, "run() before result()"
        return make_result(
            self.name, state.W.cpu().numpy(), state.b.cpu().numpy(), state.dataset,
            state.plan, state.W0, state.b0, state.lr,
        )
