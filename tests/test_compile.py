"""The compiled PyTorch backends: compiled in prepare, never recompiled in the timed loop.

``torch-compile`` runs here; ``torch-compile-cuda`` and ``torch-cuda-graph`` run only on
a machine with a CUDA device and are skipped elsewhere with the registry's reason.
Compiling costs seconds per batch shape on a CPU, so these tests use small problems
(crops, and a ragged one with two batch shapes) and prepare each backend few times.
"""

from __future__ import annotations

import dataclasses

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
    state = prepared_or_skip("torch-compile-cuda", ragged_problem, backend_status).state
    assert state.cudagraph_skips == 0  # every graph runs as a CUDA graph
    assert state.copied_inputs == 3 * state.graphs  # W, b and the indices; never X or Y


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
