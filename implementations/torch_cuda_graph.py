"""The whole plan as one CUDA graph: PyTorch's counterpart of ``jax-scan``.

``prepare`` captures every step of every epoch (gather, ``addmm``, ``F.mse_loss``,
``backward``, the SGD update: the loop of ``torch-cuda``, autograd included) into one
``torch.cuda.CUDAGraph``; ``run`` replays it with one launch. A graph replays fixed
memory addresses, so W and b are static buffers: ``run`` first copies W0 and b0 into them
on the device (part of the timed cost, as a user's own loop would pay), then replays and
synchronizes.

The ops are ``torch-cuda``'s, so that the pair differs only in launching: the gather is
``index_select`` (not ``X[idx]``, whose ``aten::index`` is PyTorch's slower general
indexing), the forward ``addmm``, the update ``sub_`` in place, which a graph needs
anyway: it replays into the same W and b.

Autograd inside a capture follows PyTorch's whole-network recipe: a few warm-up steps on
a side stream first, so that cuBLAS handles, workspaces and autograd's device thread are
set up outside the capture; gradients are set to None before each backward, so every
gradient is allocated from the graph's private pool.

The graph holds every step's kernels (about a dozen per step), so capture time and graph
memory grow with the number of steps; the capture seconds are ``state.compile_s``, and the
memory the caching allocator reserved for the graph's private pool while capturing is
``state.graph_pool_bytes`` (a replay allocates nothing else: gdbench.harness.memory
reports the pool).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdbench.data.workloads import Problem
from gdbench.implementations.base import TrainResult, make_result
from gdbench.implementations.torch_common import DeviceProblem, synchronize, to_device

__all__ = ["TorchCudaGraph", "unavailable"]

WARMUP_STEPS = 3  # per batch shape, on the side stream (PyTorch's CUDA-graph docs use 3)


def unavailable(name: str) -> str | None:
    """None when the backend can run here, else why not."""
    return None if torch.cuda.is_available() else "no CUDA device"


def train(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, Y: torch.Tensor,
          batches: Iterable[torch.Tensor], lr: float) -> None:
    """Gradient descent on W and b (leaves that require grad) in place, batch by batch."""
    for idx in batches:
        pred = torch.addmm(b, X.index_select(0, idx), W.T)
        loss = F.mse_loss(pred, Y.index_select(0, idx))  # sum(diff**2) / numel
        loss.backward()
        with torch.no_grad():
            W.sub_(W.grad, alpha=lr)  # type: ignore[arg-type]  # set by backward()
            b.sub_(b.grad, alpha=lr)  # type: ignore[arg-type]
        W.grad = None  # the next backward allocates fresh gradients (from the graph's pool)
        b.grad = None


@dataclass
class State:
    problem: Problem
    on_device: DeviceProblem
    W: torch.Tensor  # the captured parameter buffers: the graph reads and writes these
    b: torch.Tensor
    graph: torch.cuda.CUDAGraph
    compile_s: float = 0.0  # warm-up and capture
    graph_pool_bytes: int = 0  # reserved by the allocator while capturing: the graph's pool
    ran: bool = False  # W and b hold the warm-up's values until the first replay


class TorchCudaGraph:
    name = "torch-cuda-graph"
    device = "cuda"
    sync = "torch.cuda.synchronize"

    def prepare(self, problem: Problem) -> State:
        p = to_device(problem, self.device)  # TF32 off before anything is captured
        W = p.W0.clone().requires_grad_(True)
        b = p.b0.clone().requires_grad_(True)
        start = time.perf_counter()
        side = torch.cuda.Stream(p.device)
        side.wait_stream(torch.cuda.current_stream(p.device))
        with torch.cuda.stream(side):
            for idx in {idx.shape[0]: idx for idx in p.batches}.values():  # full, ragged
                train(W, b, p.X, p.Y, [idx] * WARMUP_STEPS, problem.lr)
        torch.cuda.current_stream(p.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        reserved = torch.cuda.memory_reserved(p.device)
        with torch.cuda.graph(graph):
            train(W, b, p.X, p.Y, p.batches, problem.lr)
        synchronize(p.device)
        pool = torch.cuda.memory_reserved(p.device) - reserved
        return State(problem, p, W, b, graph, time.perf_counter() - start, pool)

    def run(self, state: State) -> None:
        p = state.on_device
        with torch.no_grad():  # W and b are leaves that require grad
            state.W.copy_(p.W0)
            state.b.copy_(p.b0)
        state.graph.replay()
        synchronize(p.device)
        state.ran = True

    def wait(self, state: State) -> None:
        synchronize(state.on_device.device)

    def result(self, state: State) -> TrainResult:
        assert state.ran, "run() before result()"
        return make_result(self.name, state.W.detach().cpu().numpy(),
                           state.b.detach().cpu().numpy(), state.problem)
