"""The tutorial's own loop: TensorDataset + DataLoader, autograd, ``w -= w.grad * lr``.

This is the baseline a reader starts from. The DataLoader draws its batches from the
shared BatchPlan (as a batch sampler), so it trains the same model as every other backend;
what it adds is the DataLoader's per-batch collation and the tutorial's ``grad.zero_()``.

The ops are the tutorial's, untuned on purpose, since this is the baseline: the gather is
the DataLoader's (one ``dataset[i]`` per row, then ``torch.stack``); the matmul is
``x @ w.t() + b`` (a GEMM, then the bias added apart); the update ``w -= w.grad * lr``
allocates ``w.grad * lr`` before subtracting it in place. ``torch-cpu`` is the same model
with the ops a PyTorch user tunes to: ``index_select``, ``addmm`` and ``sub_``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, TensorDataset

from gdbench.data.workloads import Problem
from gdbench.implementations.base import TrainResult, make_result
from gdbench.implementations.torch_common import full_precision, unavailable

__all__ = ["TorchTutorial", "unavailable"]


@dataclass
class State:
    problem: Problem
    W0: torch.Tensor  # converted once, in prepare: run only copies them
    b0: torch.Tensor
    loader: DataLoader
    W: torch.Tensor | None = None
    b: torch.Tensor | None = None


def mse_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    difference = predictions - targets
    return torch.sum(difference * difference) / difference.numel()


class TorchTutorial:
    name = "torch-tutorial"
    device = "cpu"
    sync = "none (eager CPU ops finish before returning)"

    def prepare(self, problem: Problem) -> State:
        dataset, plan = problem.dataset, problem.plan
        full_precision()
        tensors = TensorDataset(torch.from_numpy(dataset.X), torch.from_numpy(dataset.Y))
        batches = [idx.tolist() for idx in plan]
        loader = DataLoader(tensors, batch_sampler=batches)
        W0 = torch.from_numpy(problem.W0.copy())
        b0 = torch.from_numpy(problem.b0.copy())
        return State(problem, W0, b0, loader)

    def run(self, state: State) -> None:
        w = state.W0.clone().requires_grad_(True)
        b = state.b0.clone().requires_grad_(True)
        lr = state.problem.lr
        for x, y in state.loader:
            preds = x @ w.t() + b
            loss = mse_loss(preds, y)
            loss.backward()
            with torch.no_grad():  # the tutorial's update, line for line
                w -= w.grad * lr  # type: ignore[operator]
                b -= b.grad * lr  # type: ignore[operator]
                w.grad.zero_()  # type: ignore[union-attr]
                b.grad.zero_()  # type: ignore[union-attr]
        state.W, state.b = w.detach(), b.detach()

    def wait(self, state: State) -> None:
        """The tutorial trains on the CPU, whose eager ops finish before returning."""

    def result(self, state: State) -> TrainResult:
        assert state.W is not None and state.b is not None, "run() before result()"
        return make_result(self.name, state.W.numpy(), state.b.numpy(), state.problem)
