"""Data-parallel PyTorch: ``world`` rank processes in a ``torch.distributed`` process
group (gloo on the CPU, NCCL on CUDA), one all-reduce of the gradients per step.

Each rank holds the whole dataset and, per step, its share of the batch,
``array_split(batch, world)[rank]`` (see :mod:`gdbench.implementations.data_parallel`).
It runs torch-cpu's four lines on its rows, with the loss scaled by the global batch's
element count so that the ranks' gradients sum to the single-process gradient, copies
dW and db into one flat buffer, sums the buffer over the ranks with one
``dist.all_reduce``, and updates its replica; the replicas stay identical, and
``result`` checks that they are.

Why not ``DistributedDataParallel``: it exists to overlap the all-reduce of many
parameters' gradients with the rest of backward, gathering them into buckets of about
25 MB as autograd produces them. This model has one (k, d) weight and a (k,) bias whose
backward is a single GEMM: there is nothing to overlap, the whole gradient fits in one
bucket, and DDP's reducer would add its hooks and bookkeeping to every step for the same
single collective that this loop issues by hand.

The ranks (:mod:`gdbench.implementations.rank_pool`) start once per process, in the
first ``prepare``, and stay; every later ``prepare`` loads its problem into them. Each
rank runs with one thread (``threads_per_rank``), so ``world`` ranks use ``world``
cores; under ``--threads N`` they share the N CPUs the run is pinned to. ``run`` sends
every rank the command and returns when all have answered; a rank answers after its
last all-reduce (and, on CUDA, a synchronize), so the answers are the barrier and the
caller's clock times the whole loop across ranks. A rank that raises,
dies or hangs ends the run with one line naming it, within the process group's timeout
(:data:`TIMEOUT_S`, 30 s), and the ranks are stopped.

``run_compute_only`` runs the same loop on the same ranks without the all-reduce: the
suite times both, in turns, and the difference is what the collective costs per step.
"""

from __future__ import annotations

import argparse
import itertools
import os
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gdbench.data.workloads import Problem
from gdbench.implementations import rank_pool
from gdbench.implementations.base import TrainResult, make_result
from gdbench.implementations.data_parallel import rank_batches, step_numels, world_size
from gdbench.implementations.torch_common import full_precision

TIMEOUT_S = 30.0  # the process group's timeout: a collective waiting longer fails
ENTRY = f"{__name__}:rank_main"

__all__ = ["TorchDDP", "cpu", "cuda", "unavailable"]


def unavailable(name: str) -> str | None:
    """None when the backend can run here, else why not."""
    import torch.distributed as dist

    if os.name != "posix":
        return "its ranks need a POSIX system"
    if not dist.is_available():
        return "this torch build has no torch.distributed"
    world = world_size()
    if name.endswith("cuda"):
        if not torch.cuda.is_available():
            return "no CUDA device"
        if not dist.is_nccl_available():
            return "this torch build has no NCCL"
        found = torch.cuda.device_count()
        if found < world:
            return f"needs {world} CUDA devices (one per rank, --world {world}), found {found}"
    elif not dist.is_gloo_available():
        return "this torch build has no gloo"
    return None


# --- the benchmark process's side --------------------------------------------------------------

_POOLS: dict[tuple[str, int, int, float], rank_pool.Pool] = {}
_KEYS = itertools.count()


def _pool(device: str, world: int, threads: int, timeout_s: float) -> rank_pool.Pool:
    """The process's ranks for these settings, started on first use (and again after a
    fault closed them)."""
    key = (device, world, threads, timeout_s)
    pool = _POOLS.get(key)
    if pool is None or pool.closed:
        pool = _POOLS[key] = _start(device, world, threads, timeout_s)
    return pool


def _start(device: str, world: int, threads: int, timeout_s: float,
           fault: tuple[int, str] | None = None) -> rank_pool.Pool:
    label = "torch-ddp" if device == "cpu" else "torch-ddp-cuda"
    return rank_pool.Pool(label, ENTRY, world, timeout_s=timeout_s, threads=threads,
                          args=["--device", device, "--threads", str(threads)], fault=fault)


@dataclass
class State:
    problem: Problem
    pool: rank_pool.Pool
    key: int
    trained: bool = False


class TorchDDP:
    sync = "every rank answers after its last all-reduce (a barrier); run returns then"

    def __init__(self, device: str = "cpu", world: int | None = None, *,
                 threads_per_rank: int = 1, timeout_s: float = TIMEOUT_S,
                 fault: tuple[int, str] | None = None) -> None:
        self.device = device
        self.name = "torch-ddp" if device == "cpu" else "torch-ddp-cuda"
        self.world = world_size() if world is None else world
        self.workers = "processes"  # the ranks: not this process, so not its memory
        self.single_process = "torch-cpu" if device == "cpu" else "torch-cuda"
        self.threads_per_rank = threads_per_rank
        self.timeout_s = timeout_s
        if device == "cuda":
            self.sync = "every rank synchronizes, then answers after its last all-reduce"
        self._own_pool = None if fault is None else _start(
            device, self.world, threads_per_rank, timeout_s, fault)

    def prepare(self, problem: Problem) -> State:
        pool = self._own_pool or _pool(self.device, self.world, self.threads_per_rank,
                                       self.timeout_s)
        key, dropped = next(_KEYS), _DROPPED.pop(pool, [])
        pool.ask_each([("load", key, _shard(problem, self.world, rank), dropped)
                       for rank in range(self.world)], during="while loading the problem")
        state = State(problem, pool, key)
        weakref.finalize(state, _forget, pool, key)
        return state

    def run(self, state: State) -> None:
        state.pool.ask(("run", state.key, True))
        state.trained = True

    def run_compute_only(self, state: State) -> None:
        """The same loop on the same ranks without the all-reduce (the replicas drift
        apart; ``result`` keeps the last ``run``'s weights)."""
        state.pool.ask(("run", state.key, False))

    def wait(self, state: State) -> None:
        """Nothing left: every rank had finished its loop when it answered."""

    def result(self, state: State) -> TrainResult:
        assert state.trained, "run() before result()"
        replicas = state.pool.ask(("result", state.key), during="while reading the weights")
        W, b = replicas[0]
        for rank, (W_r, b_r) in enumerate(replicas[1:], start=1):
            if not (np.array_equal(W_r, W, equal_nan=True) and
                    np.array_equal(b_r, b, equal_nan=True)):
                raise RuntimeError(f"{self.name}: rank {rank}'s weights differ from rank 0's "
                                   "after the same all-reduced steps")
        return make_result(self.name, W, b, state.problem)


# The keys of dropped states, per pool: their problems are freed in the ranks with the next
# load, never from the finalizer itself, which may run inside a timed round.
_DROPPED: weakref.WeakKeyDictionary[rank_pool.Pool, list[int]] = weakref.WeakKeyDictionary()


def _forget(pool: rank_pool.Pool, key: int) -> None:
    _DROPPED.setdefault(pool, []).append(key)


def _shard(problem: Problem, world: int, rank: int) -> dict[str, Any]:
    """What rank ``rank`` needs of a problem: the data, its rows of each step, each
    step's global element count, W0, b0 and lr."""
    ds = problem.dataset
    return {
        "X": ds.X, "Y": ds.Y, "W0": problem.W0, "b0": problem.b0, "lr": problem.lr,
        "batches": rank_batches(problem.plan, world, rank),
        "numels": step_numels(problem.plan, ds.n_outputs),
    }


def cpu() -> TorchDDP:
    return TorchDDP("cpu")


def cuda() -> TorchDDP:
    return TorchDDP("cuda")


# --- a rank's side -----------------------------------------------------------------------------

@dataclass
class RankProblem:
    """One problem in one rank: tensors on its device, and the last trained weights."""

    X: torch.Tensor
    Y: torch.Tensor
    W0: torch.Tensor
    b0: torch.Tensor
    lr: float
    steps: list[tuple[torch.Tensor, int]]  # (this rank's rows, the global numel)
    grads: torch.Tensor  # flat (k*d + k,): dW then db, the one all-reduced buffer
    W: torch.Tensor | None = None
    b: torch.Tensor | None = None


def train(p: RankProblem, all_reduce: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop: torch-cpu's step on this rank's rows, the gradients summed over the
    ranks by ``all_reduce`` (in place, on the flat buffer) before the update."""
    W = p.W0.clone().requires_grad_(True)
    b = p.b0.clone().requires_grad_(True)
    grads = p.grads
    dW, db = grads[:W.numel()].view_as(W), grads[W.numel():]
    lr = p.lr
    for idx, numel in p.steps:
        pred = torch.addmm(b, p.X.index_select(0, idx), W.T)
        loss = F.mse_loss(pred, p.Y.index_select(0, idx), reduction="sum") / numel
        loss.backward()
        torch.cat((W.grad.view(-1), b.grad), out=grads)  # type: ignore[union-attr,arg-type]
        all_reduce(grads)
        with torch.no_grad():
            W.sub_(dW, alpha=lr)
            b.sub_(db, alpha=lr)
        W.grad = None
        b.grad = None
    return W.detach(), b.detach()


def _no_collective(grads: torch.Tensor) -> None:
    """run_compute_only's stand-in for the all-reduce."""


class Rank:
    """One rank: joins the process group, then holds problems and runs the loop."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch.distributed as dist

        extra = argparse.ArgumentParser()
        extra.add_argument("--device", default="cpu")
        extra.add_argument("--threads", type=int, default=1)
        own = extra.parse_args(args.extra)
        torch.set_num_threads(own.threads)
        if own.device == "cuda":
            self.device = torch.device("cuda", args.rank)
            torch.cuda.set_device(self.device)
            backend = "nccl"
        else:
            self.device = torch.device("cpu")
            backend = "gloo"
        full_precision()
        try:
            dist.init_process_group(backend, init_method=f"file://{args.store}",
                                    rank=args.rank, world_size=args.world,
                                    timeout=timedelta(seconds=args.timeout))
        except Exception as exc:
            raise rank_pool.CollectiveError(f"joining the group: {exc}") from exc
        self.problems: dict[int, RankProblem] = {}

    @staticmethod
    def all_reduce(grads: torch.Tensor) -> None:
        """The sum over the ranks, in place; its failure is the collective's, not this
        rank's own (see rank_pool.CollectiveError)."""
        try:
            torch.distributed.all_reduce(grads)
        except Exception as exc:
            raise rank_pool.CollectiveError(f"all_reduce: {exc}") from exc

    def load(self, key: int, shard: dict[str, Any], dropped: list[int]) -> None:
        for old in dropped:
            self.problems.pop(old, None)
        dev = self.device
        W0 = torch.from_numpy(np.ascontiguousarray(shard["W0"])).to(dev)
        b0 = torch.from_numpy(np.ascontiguousarray(shard["b0"])).to(dev)
        self.problems[key] = RankProblem(
            X=torch.from_numpy(shard["X"]).to(dev), Y=torch.from_numpy(shard["Y"]).to(dev),
            W0=W0, b0=b0, lr=float(shard["lr"]),
            steps=[(torch.from_numpy(idx).to(dev), numel)
                   for idx, numel in zip(shard["batches"], shard["numels"], strict=True)],
            grads=torch.empty(W0.numel() + b0.numel(), dtype=W0.dtype, device=dev),
        )
        self._synchronize()

    def run(self, key: int, collective: bool) -> None:
        p = self.problems[key]
        W, b = train(p, self.all_reduce if collective else _no_collective)
        self._synchronize()
        if collective:
            p.W, p.b = W, b

    def result(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        p = self.problems[key]
        assert p.W is not None and p.b is not None, "run before result"
        return p.W.cpu().numpy(), p.b.cpu().numpy()

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _is_collective_error(exc: BaseException) -> bool:
    """torch.distributed's own errors (timeouts and broken connections outside the
    all-reduce wrapper)."""
    dist_error = getattr(torch.distributed, "DistError", None)
    return dist_error is not None and isinstance(exc, dist_error)


def rank_main(argv: list[str]) -> int:
    """A rank process's entry point (started by the pool; see rank_pool.rank_main)."""
    return rank_pool.rank_main(argv, Rank, _is_collective_error)
