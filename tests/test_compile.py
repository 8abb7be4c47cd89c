"""The compiled PyTorch backends: compiled in prepare, never recompiled in the timed loop.

``torch-compile`` runs here; ``torch-compile-cuda`` and ``torch-cuda-graph`` run only on
a machine with a CUDA device and are skipped elsewhere with the registry's reason.
Compiling costs seconds per batch shape on a CPU, so these tests use small problems
(crops, and a ragged one with two batch shapes) and prepare each backend few times.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from gdbench.commands import cli
from gdbench.data.datasets import load_dataset, synthetic
from gdbench.data.workloads import Problem, make_problem
from gdbench.implementations.base import Prepared, agreement, prepare, train_once

COMPILED = ["torch-compile", "torch-compile-cuda"]


def crops(dtype: str = "float32") -> Problem:
    return make_problem("crops", load_dataset("crops", dtype=dtype), batch_size=3, epochs=50,
                        lr=1e-6)


def ragged() -> Problem:
    """50 rows in batches of 8: six full batches and a ragged one of 2, for 10 epochs."""
    data = synthetic(50, 5, 3, seed=1, noise=0.1, dtype="float32").standardized()
    return make_problem("ragged", data, batch_size=8, epochs=10, lr=0.05)


def prepared_or_skip(name: str, problem: Problem,
                     backend_status: dict[str, str | None]) -> Prepared:
    if backend_status[name]:
        pytest.skip(f"backend {name}: {backend_status[name]}")
    return prepare(name, problem)


@pytest.fixture(scope="module")
def ragged_problem() -> Problem:
    return ragged()


@pytest.mark.parametrize("name", COMPILED)
def test_prepare_compiles_each_batch_shape_once_and_run_never_recompiles(
    name: str, ragged_problem: Problem, backend_status: dict[str, str | None]
) -> None:
    prepared = prepared_or_skip(name, ragged_problem, backend_status)
    from gdbench.implementations.torch_compile import compiled_graphs

    state = prepared.state
    assert state.graphs == 2  # the full batch of 8 and the ragged batch of 2
    # Clones where the shape changes only under CUDA graphs: the CPU's loop has none.
    assert sum(state.fresh) == (0 if name == "torch-compile" else
                                2 * ragged_problem.plan.epochs - 1)
    assert 0 < prepared.compile_s <= prepared.prepare_s  # compiled inside prepare
    before = compiled_graphs()
    for _ in range(3):  # 3 x 70 steps, alternating the two shapes
        prepared.run()
    assert compiled_graphs() == before  # no graph was compiled inside the timed loop
    reference, *_ = train_once("numpy", ragged_problem)
    assert agreement(prepared.result(), reference, "float32")[2]


def test_a_recompile_inside_run_is_an_error_not_a_hidden_cost(
    backend_status: dict[str, str | None],
) -> None:
    # The guards are real: a changed lr fails them, and run's fail_on_recompile stance
    # turns the recompile that would follow into an error.
    prepared = prepared_or_skip("torch-compile", crops(), backend_status)
    prepared.state.problem = dataclasses.replace(prepared.state.problem, lr=2e-6)
    with pytest.raises(RuntimeError, match="recompile"):
        prepared.run()


def test_every_prepared_state_compiles_its_own_step(
    backend_status: dict[str, str | None],
) -> None:
    # Dynamo stops compiling a code object after recompile_limit graphs and runs it
    # eagerly; with the limit at 1, two problems prove that each state owns its step.
    torch = pytest.importorskip("torch")
    problems = [crops("float32"), crops("float64")]
    with torch._dynamo.config.patch(recompile_limit=1):
        states = [prepared_or_skip("torch-compile", p, backend_status) for p in problems]
        for prepared, problem in zip(states, problems, strict=True):
            assert prepared.state.graphs == 1
            prepared.run()  # under fail_on_recompile: raises if it were not compiled
            reference, *_ = train_once("numpy", problem)
            assert agreement(prepared.result(), reference, str(problem.dtype))[2]


def test_verify_numpy_and_torch_compile_on_crops(
    capsys: pytest.CaptureFixture[str], backend_status: dict[str, str | None]
) -> None:
    code = cli.main(["verify", "--backends", "numpy", "torch-compile"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.split() and line.split()[0] in ("numpy", "torch-compile")}
    why = backend_status["torch-compile"]
    if why:
        assert code == 0 and f"skipped: {why}" in rows["torch-compile"]
        return
    assert code == 0, out
    assert rows["torch-compile"].split()[-1] == "yes", out


def test_reduce_overhead_replays_cuda_graphs_with_x_and_y_static(
    ragged_problem: Problem, backend_status: dict[str, str | None]
) -> None:
    prepared = prepared_or_skip("torch-compile-cuda", ragged_problem, backend_status)
    state = prepared.state
    assert state.cudagraph_skips == 0  # every graph runs as a CUDA graph
    assert state.copied_inputs == 3 * state.graphs  # W, b and the indices; never X or Y
    assert state.graph_pool_bytes > 0  # recording the graphs reserved their pool
    # The ragged tail and the step after it start from clones (see the next test).
    assert sum(state.fresh) == 2 * ragged_problem.plan.epochs - 1
    reference, *_ = train_once("numpy", ragged_problem)
    results = []
    for _ in range(3):  # the tail's inputs come out of the full batch's graph, each epoch
        prepared.run()
        results.append(prepared.result())
    np.testing.assert_array_equal(results[0].W, results[2].W)
    assert agreement(results[2], reference, "float32")[2]


def _recording_step(calls: list[tuple[Any, Any]]) -> Any:
    """A stand-in for the compiled step (a CUDA graph replay on a GPU): it records the W it
    was given and returns new tensors, as a replay returns its pool's outputs."""
    def step(W: Any, b: Any, X: Any, Y: Any, idx: Any, lr: float) -> tuple[Any, Any]:
        outputs = (W - lr, b - lr)
        calls.append((W, outputs[0]))
        return outputs
    return step


def test_run_clones_w_and_b_before_a_step_whose_batch_shape_changes(
    ragged_problem: Problem,
) -> None:
    # Fakes torch-compile-cuda's replays with a recording step on the CPU device: run's
    # loop is the CUDA one, with the plan of clones that prepare makes in reduce-overhead.
    pytest.importorskip("torch")
    from gdbench.implementations import torch_compile
    from gdbench.implementations.torch_common import to_device

    p = to_device(ragged_problem, "cpu")
    sizes = [int(idx.shape[0]) for idx in p.batches]
    fresh = torch_compile.shape_changes(p.batches)
    # 7 batches an epoch: 6 of 8 rows, then 2. The tail, and the full batch after it, change.
    assert sizes[:8] == [8] * 6 + [2, 8]
    assert fresh[:8] == [False] * 6 + [True, True]
    assert fresh == [i > 0 and sizes[i] != sizes[i - 1] for i in range(len(sizes))]
    calls: list[tuple[Any, Any]] = []
    state = torch_compile.State(ragged_problem, p, _recording_step(calls), fresh=fresh)
    torch_compile.TorchCompile("cpu").run(state)
    assert len(calls) == len(sizes)
    assert calls[0][0] is p.W0  # the first step reads W0 itself
    for i in range(1, len(calls)):
        given, previous_output = calls[i][0], calls[i - 1][1]
        if fresh[i]:  # a clone: equal values, memory of its own
            assert given is not previous_output
            assert given.data_ptr() != previous_output.data_ptr()
            assert bool((given == previous_output).all())
        else:  # the same shape's output, handed on as it is
            assert given is previous_output


@pytest.mark.parametrize(("what", "found", "expected"), [
    ("no CUDA device", {}, "no CUDA device"),
    ("no Triton", {"cuda": True, "triton": False},
     "torch.compile on CUDA needs Triton, which is not installed (torch's Linux CUDA wheels "
     "bring it)"),
    ("no C compiler", {"cuda": True},
     "Triton builds its launcher with a C compiler: neither gcc nor clang is on PATH (or set "
     "CC)"),
    ("clang only", {"cuda": True, "clang": True, "headers": True}, None),
    ("gcc only", {"cuda": True, "gcc": True, "headers": True}, None),
    ("CC not found", {"cuda": True, "gcc": True, "CC": "icx", "headers": True},
     "Triton builds its launcher with $CC='icx', which is not found"),
    ("CC found", {"cuda": True, "CC": "icx", "icx": True, "headers": True}, None),
    ("no Python headers", {"cuda": True, "gcc": True},
     "Triton builds its launcher against Python's headers, and /py/include/Python.h is "
     "missing (install the Python development headers)"),
])
def test_torch_compile_cuda_is_skipped_with_the_reason_triton_could_not_compile(
    monkeypatch: pytest.MonkeyPatch, what: str, found: dict[str, Any], expected: str | None
) -> None:
    # Fakes what Triton needs: a CUDA device (torch.cuda.is_available), the triton module
    # (importlib's find_spec), gcc, clang and $CC on PATH (shutil.which) and Python.h.
    pytest.importorskip("torch")
    from gdbench.implementations import torch_compile

    monkeypatch.setattr(torch_compile.torch.cuda, "is_available", lambda: found.get("cuda", False))
    monkeypatch.setattr(torch_compile.importlib.util, "find_spec",
                        lambda name: object() if found.get(name, True) else None)
    monkeypatch.setattr(torch_compile.shutil, "which",
                        lambda cmd: f"/usr/bin/{cmd}" if found.get(cmd) else None)
    monkeypatch.setattr(torch_compile.sysconfig, "get_paths", lambda: {"include": "/py/include"})
    monkeypatch.setattr(torch_compile.os.path, "isfile",
                        lambda path: found.get("headers", False) and path == "/py/include/Python.h")
    if "CC" in found:
        monkeypatch.setenv("CC", found["CC"])
    else:
        monkeypatch.delenv("CC", raising=False)
    assert torch_compile.unavailable("torch-compile-cuda") == expected, what


def test_cuda_graph_replays_the_captured_plan(
    ragged_problem: Problem, backend_status: dict[str, str | None]
) -> None:
    prepared = prepared_or_skip("torch-cuda-graph", ragged_problem, backend_status)
    reference, *_ = train_once("numpy", ragged_problem)
    results = []
    for _ in range(2):
        prepared.run()
        results.append(prepared.result())
    np.testing.assert_array_equal(results[0].W, results[1].W)  # each replay starts at W0
    assert agreement(results[1], reference, "float32")[2]
    assert 0 < prepared.compile_s <= prepared.prepare_s  # the capture's, inside prepare
    assert prepared.state.graph_pool_bytes > 0  # the capture reserved the graph's pool
