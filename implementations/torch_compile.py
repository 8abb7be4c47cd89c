"""PyTorch's compiler: the autograd step of ``torch-cpu``, compiled whole by ``torch.compile``.

One step (gather, forward ``addmm``, ``F.mse_loss``, gradient, SGD update) is a single
graph, compiled with ``fullgraph=True, dynamic=False``: on the CPU by Inductor's C++
backend (``torch-compile``), on a GPU with ``mode="reduce-overhead"``, which replays each
step as a CUDA graph (``torch-compile-cuda``).

The ops are ``torch-cpu``'s, so that the compiler is what differs: the gather is
``index_select``, the forward ``addmm``; only the update, ``W.sub(dW, alpha=lr)``, is out
of place, because the step is pure (below).

Why ``torch.func.grad``: with ``fullgraph=True`` the step must trace without a graph
break, and Dynamo (torch 2.13) refuses both ``loss.backward()`` ("Unsupported
Tensor.backward() call") and ``torch.autograd.grad`` (unless the experimental
``trace_autograd_ops`` is set). ``torch.func.grad`` traces: AOTAutograd derives the
same gradient that eager autograd computes, and the step becomes a pure function of
(W, b, batch) -> (W', b'), as in JAX. Being pure, it never writes W0, and under
CUDA graphs it mutates no input (an input mutation would disable the graphs).

Compilation happens in ``prepare``: every distinct batch shape (the full batch and a
ragged tail) is compiled and run once (three times on CUDA, so the graph is recorded
too), and the seconds are ``state.compile_s``. ``run`` then holds the stance
``fail_on_recompile``: a recompile inside the timed loop raises instead of hiding its
seconds in the timing. ``state.graphs`` counts the graphs compiled in prepare.

On CUDA each batch shape is a CUDA graph of its own, and a replay's outputs live in the
graphs' shared memory pool. Where the batch shape changes (into a ragged tail and out of
it), the step's inputs W and b are the outputs of the other shape's graph; ``run`` clones
them there first (``state.fresh``: twice an epoch at most, a (k, d) copy), so that no
graph reads, as its input, memory that a graph recorded apart may hand out again. Triton
compiles the kernels and builds its launcher with a C compiler against Python's headers:
without any of them the backend is skipped with the reason, never crashes.
``state.graph_pool_bytes`` is what the caching allocator reserved while prepare compiled
and recorded the graphs: their pool, from which the run allocates.

Measured on a shared 2-core AMD EPYC VM, torch 2.13 CPU (``gdbench run --backends
torch-cpu torch-compile --workloads crops small``): the first compile in a process took
15 s with an empty Inductor cache and 2.4-3.8 s with a warm one, a further shape 0.4-2.3
s; the compiled step ran crops at 48-64 µs/step against torch-cpu's 103-108, and small
(--threads 1) at 50 against 114. Elsewhere the compiled step has been slower than eager
(76 against 44 µs/step on crops): compare on your own machine.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdbench.data.workloads import Problem
from gdbench.implementations.base import TrainResult, make_result
from gdbench.implementations.torch_common import DeviceProblem, synchronize, to_device

__all__ = ["TorchCompile", "compiled_graphs", "cpu", "cuda", "shape_changes", "unavailable"]

Step = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def unavailable(name: str) -> str | None:
    """None when the backend can run here, else why not."""
    if name.endswith("cuda"):
        return "no CUDA device" if not torch.cuda.is_available() else triton_unavailable()
    # Inductor compiles C++ on the CPU, with $CXX or g++ (its config's default, read here
    # without importing Inductor, which takes seconds); without one, compiling fails.
    compiler = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    if shutil.which(compiler) is None:
        return f"torch.compile needs a C++ compiler on the CPU; {compiler!r} is not on PATH"
    return None


def triton_unavailable() -> str | None:
    """None when Triton can compile here, else why not. Inductor's CUDA kernels are Triton
    kernels, and Triton builds a C launcher for them at the first compile: with $CC, else
    gcc, else clang (Triton's own search), against Python's headers."""
    if importlib.util.find_spec("triton") is None:
        return ("torch.compile on CUDA needs Triton, which is not installed (torch's Linux "
                "CUDA wheels bring it)")
    compiler = os.environ.get("CC")
    if compiler:
        if shutil.which(compiler) is None:
            return f"Triton builds its launcher with $CC={compiler!r}, which is not found"
    elif shutil.which("gcc") is None and shutil.which("clang") is None:
        return ("Triton builds its launcher with a C compiler: neither gcc nor clang is on "
                "PATH (or set CC)")
    header = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if not os.path.isfile(header):
        return (f"Triton builds its launcher against Python's headers, and {header} is "
                "missing (install the Python development headers)")
    return None


def shape_changes(batches: list[torch.Tensor]) -> list[bool]:
    """For each step, whether its batch has another size than the step before's (never the
    first step: its inputs are W0 and b0)."""
    sizes = [idx.shape[0] for idx in batches]
    return [i > 0 and size != sizes[i - 1] for i, size in enumerate(sizes)]


def loss(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(torch.addmm(b, X, W.T), Y)  # sum(diff**2) / numel


_gradient = torch.func.grad(loss, argnums=(0, 1))


def step(
    W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, idx: torch.Tensor,
    lr: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One gradient-descent step on the rows ``idx``: (W - lr dW, b - lr db)."""
    dW, db = _gradient(W, b, X.index_select(0, idx), Y.index_select(0, idx))
    return W.sub(dW, alpha=lr), b.sub(db, alpha=lr)


def compiled_graphs() -> int:
    """Graphs Dynamo has compiled in this process so far (all functions, every recompile)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def _cudagraph_counts() -> tuple[int, int]:
    """(graphs Inductor compiled without CUDA graphs, inputs copied by recorded graphs)."""
    inductor = torch._dynamo.utils.counters["inductor"]
    return inductor["cudagraph_skips"], inductor["cudagraph_recorded_non_static_inputs"]


def _own_step() -> Step:
    """A copy of :func:`step` with a code object of its own.

    Dynamo keeps its compiled graphs per code object, and after ``recompile_limit`` (8)
    of them silently runs that code eagerly. Each prepared state compiles its own copy,
    so no number of problems in one process can push a state past the limit, and a new
    problem never adds guards for the other states' loops to evaluate.
    """
    return types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__)


@dataclass
class State:
    problem: Problem
    on_device: DeviceProblem
    step: Step
    compile_s: float = 0.0
    graphs: int = 0  # graphs compiled in prepare: one per distinct batch shape
    # reduce-overhead only: graphs that fell back to no CUDA graph (0 when all is well),
    # and inputs each replay copies into the graph's buffers (W, b and the batch indices
    # of each graph; X and Y are static)
    cudagraph_skips: int = 0
    copied_inputs: int = 0
    # per step: clone W and b before it (reduce-overhead only: the batch shape changes, so
    # the inputs come out of another CUDA graph's pool); all False on the CPU
    fresh: list[bool] | None = None
    graph_pool_bytes: int | None = None  # reduce-overhead: reserved while recording
    W: torch.Tensor | None = None
    b: torch.Tensor | None = None


class TorchCompile:
    sync = "torch.cuda.synchronize"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.name = "torch-compile" if device == "cpu" else f"torch-compile-{device}"
        # CUDA: every step replays a CUDA graph; the CPU has no launch overhead to save.
        self.mode = "reduce-overhead" if device == "cuda" else None
        if device == "cpu":
            self.sync = "none (compiled CPU code finishes before returning)"

    def prepare(self, problem: Problem) -> State:
        p = to_device(problem, self.device)
        if p.device.type == "cuda":
            # X and Y keep their address: without this, every replay would first copy the
            # whole dataset into the graph's own input buffers.
            torch._dynamo.mark_static_address(p.X)
            torch._dynamo.mark_static_address(p.Y)
        compiled = torch.compile(_own_step(), fullgraph=True, dynamic=False, mode=self.mode)
        graphs = self.mode == "reduce-overhead"
        state = State(problem, p, compiled,
                      fresh=shape_changes(p.batches) if graphs else [False] * len(p.batches))
        # One batch of each shape, in plan order (the full batch, then any ragged tail).
        shapes = {idx.shape[0]: idx for idx in p.batches}
        # CUDA graph trees run a function eagerly once, record it on the second call and
        # replay from the third. Warm-up calls start from W0 each time, never from a
        # previous call's outputs, which the next recording invalidates.
        calls = 3 if graphs else 1
        before, (skips, copied) = compiled_graphs(), _cudagraph_counts()
        reserved = torch.cuda.memory_reserved(p.device) if graphs else 0
        start = time.perf_counter()
        with warnings.catch_warnings():
            # Inductor's first import trips torch's own deprecation of torch.jit.script_method.
            warnings.filterwarnings("ignore", r".*torch\.jit\.script_method", DeprecationWarning)
            for idx in shapes.values():
                for _ in range(calls):
                    compiled(p.W0, p.b0, p.X, p.Y, idx, problem.lr)
        synchronize(p.device)
        state.compile_s = time.perf_counter() - start
        if graphs:
            state.graph_pool_bytes = torch.cuda.memory_reserved(p.device) - reserved
        state.graphs = compiled_graphs() - before
        skips_after, copied_after = _cudagraph_counts()
        state.cudagraph_skips, state.copied_inputs = skips_after - skips, copied_after - copied
        return state

    def run(self, state: State) -> None:
        p = state.on_device
        step, lr = state.step, state.problem.lr
        W, b = p.W0, p.b0  # the step is pure: W0 and b0 are read, never written
        fresh = state.fresh or [False] * len(p.batches)
        with torch.compiler.set_stance("fail_on_recompile"):
            for idx, changed in zip(p.batches, fresh, strict=True):
                if changed:  # out of another graph's pool: see the module's docstring
                    W, b = W.clone(), b.clone()
                W, b = step(W, b, p.X, p.Y, idx, lr)
        synchronize(p.device)
        state.W, state.b = W, b

    def wait(self, state: State) -> None:
        synchronize(state.on_device.device)

    def result(self, state: State) -> TrainResult:
        assert state.W is not None and state.b is not None, "run() before result()"
        return make_result(self.name, state.W.cpu().numpy(), state.b.cpu().numpy(),
                           state.problem)


def cpu() -> TorchCompile:
    return TorchCompile("cpu")


def cuda() -> TorchCompile:
    return TorchCompile("cuda")
