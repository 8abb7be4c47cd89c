"""Which PyTorch ops each torch backend's step calls: counted by torch.profiler, not timed.

torch-manual exists to show the cost of autograd alone, so it must call the same gather,
forward and update ops as torch-cpu and differ only in how the gradient is computed. The
gather is the op that matters most: advanced indexing (``X[idx]``, ``aten::index``)
gathers a large batch far slower than ``index_select``, by more than autograd costs, so
a backend that slipped back to it would time indexing instead. The counts
come from one real run of each backend on a small problem (CPU activity only), so a
change to a backend's ops fails here whatever the machine's speed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from gdbench.data.datasets import synthetic
from gdbench.data.workloads import Problem, make_problem
from gdbench.implementations.base import prepare

torch = pytest.importorskip("torch")
profiler = pytest.importorskip("torch.profiler")

EAGER = ["torch-cpu", "torch-cuda", "torch-manual"]
# The residual's scale G = 2/numel (pred - Y_b): torch-manual scales in place, where
# autograd's mse_loss_backward computes residual and scale in one op of its own.
ONLY_IN_MANUAL = {"aten::mul_"}
# Out-of-place arithmetic: an update written as W = W - lr * dW, or a matmul through
# the generic matmul instead of the mm and addmm that the backward and forward use.
OUT_OF_PLACE = {"aten::sub", "aten::mul", "aten::add", "aten::matmul"}


def ops_of(call: Callable[[], object]) -> Counter[str]:
    """How many times each op (aten:: and autograd's own events) ran during ``call()``."""
    with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
        call()
    return Counter(event.name for event in prof.events())


@pytest.fixture(scope="module")
def problem() -> Problem:
    """50 rows in batches of 8, one epoch: 7 steps, six of 8 rows and a ragged one of 2."""
    data = synthetic(50, 5, 3, seed=1, noise=0.1, dtype="float32").standardized()
    return make_problem("ragged", data, batch_size=8, epochs=1, lr=0.05)


@pytest.fixture(scope="module")
def run_ops(problem: Problem, backend_status: dict[str, str | None]
            ) -> Callable[[str], Counter[str]]:
    """The ops of one timed run() of a prepared backend (skipped where it cannot run)."""
    cache: dict[str, Counter[str]] = {}

    def ops(name: str) -> Counter[str]:
        if backend_status[name]:
            pytest.skip(f"backend {name}: {backend_status[name]}")
        if name not in cache:
            prepared = prepare(name, problem)
            prepared.run()  # first-call set-up (thread pools, allocator) stays out
            cache[name] = ops_of(prepared.run)
        return cache[name]

    return ops


@pytest.mark.parametrize("name", EAGER)
def test_eager_backends_gather_each_batch_with_index_select_and_never_advanced_indexing(
    name: str, problem: Problem, run_ops: Callable[[str], Counter[str]]
) -> None:
    ops = run_ops(name)
    assert ops["aten::index"] == 0, f"{name} gathers with advanced indexing (X[idx])"
    assert ops["aten::index_select"] == 2 * len(problem.plan)  # X and Y, every step


@pytest.mark.parametrize("name", EAGER)
def test_eager_backends_compute_the_forward_with_one_addmm_and_update_in_place(
    name: str, problem: Problem, run_ops: Callable[[str], Counter[str]]
) -> None:
    ops = run_ops(name)
    steps = len(problem.plan)
    assert ops["aten::addmm"] == steps
    assert ops["aten::mm"] == steps  # dW's matmul: autograd's backward of addmm, or by hand
    assert ops["aten::sub_"] >= 2 * steps  # W and b, in place
    assert not OUT_OF_PLACE & set(ops), f"{name}: {sorted(OUT_OF_PLACE & set(ops))}"


def test_torch_manual_calls_no_op_that_torch_cpu_does_not_but_its_residual_scale(
    run_ops: Callable[[str], Counter[str]]
) -> None:
    # Same gather, forward and update: what torch-manual leaves out is autograd, and what
    # it adds is only the in-place scale that autograd's mse_loss_backward fuses.
    manual, autograd = run_ops("torch-manual"), run_ops("torch-cpu")
    assert "MseLossBackward0" in autograd and "MseLossBackward0" not in manual
    assert set(manual) - set(autograd) == ONLY_IN_MANUAL


def test_torch_compile_traces_a_step_that_gathers_with_index_select() -> None:
    # The function torch.compile traces, run eagerly here (no compiler): the graph it
    # compiles has the same gather.
    from gdbench.implementations.torch_compile import step

    X, Y = torch.randn(50, 5), torch.randn(50, 3)
    W, b, idx = torch.randn(3, 5), torch.randn(3), torch.arange(8)
    ops = ops_of(lambda: step(W, b, X, Y, idx, 0.05))
    assert ops["aten::index"] == 0
    assert ops["aten::index_select"] == 2


def test_torch_cuda_graph_captures_steps_that_gather_with_index_select() -> None:
    # The loop the graph captures, run here on CPU tensors (no CUDA device needed): the
    # same ops as the captured kernels, step by step.
    from gdbench.implementations.torch_cuda_graph import train

    X, Y = torch.randn(50, 5), torch.randn(50, 3)
    W = torch.randn(3, 5).requires_grad_(True)
    b = torch.randn(3).requires_grad_(True)
    batches = [torch.arange(8), torch.arange(8, 16), torch.arange(16, 18)]
    ops = ops_of(lambda: train(W, b, X, Y, batches, 0.05))
    assert ops["aten::index"] == 0
    assert ops["aten::index_select"] == 2 * len(batches)
    assert ops["aten::sub_"] == 2 * len(batches)
