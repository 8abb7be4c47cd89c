"""Eager PyTorch with the hand-derived gradient and no autograd.

Set beside ``torch-cpu`` it splits the cost of autograd from the cost of eager dispatch,
so the two differ only in how the gradient is computed; every other op is the same:

- gather: ``X.index_select(0, idx)`` and ``Y.index_select(0, idx)``, torch-cpu's gather.
  Advanced indexing (``X[idx]``) dispatches to ``aten::index``, PyTorch's general
  indexing kernel, which computes an offset per element where ``index_select`` copies
  whole rows; at large batches that gather, not the gradient, would set this backend's
  time, and the comparison with torch-cpu would measure indexing, not autograd.
- matmul: the forward is torch-cpu's ``torch.addmm(b, Xb, W.T)``; the gradient's
  ``torch.mm(G.T, Xb)`` is the ``aten::mm`` that autograd's backward of addmm calls.
- update: ``W.sub_(dW, alpha=lr)`` in place, as torch-cpu updates under ``no_grad``.

What autograd adds and this loop leaves out: the scalar loss (``F.mse_loss``), which
only backward needs, the graph's bookkeeping and the gradients' ``.grad`` fields. The
residual and its scale ``G = 2/numel (pred - Y_b)`` are written in place into ``pred``.
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
            Xb = p.X.index_select(0, idx)
            G = torch.addmm(b, Xb, W.T).sub_(p.Y.index_select(0, idx))
            G.mul_(2.0 / G.numel())
            W.sub_(torch.mm(G.T, Xb), alpha=lr)
            b.sub_(G.sum(0), alpha=lr)
        synchronize(p.device)
        state.W, state.b = W, b

    def wait(self, state: State) -> None:
        synchronize(state.on_device.device)

    def result(self, state: State) -> TrainResult:
        assert state.W is not None and state.b is not None, "run() before result()"
        return make_result(self.name, state.W.cpu().numpy(), state.b.cpu().numpy(),
                           state.problem)
