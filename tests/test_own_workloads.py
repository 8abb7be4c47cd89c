"""The user's own problem: workload definitions (gdbench.data.workloads.define), those
declared in pyproject.toml, gdbench run's --shape / --data, and the suite's
--workload-def. One test runs the real suite on tiny workloads with 0.05 s of rounds."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from _benchjson import run_cli

import gdbench.benches.conftest as suite
from gdbench.commands import audit, options
from gdbench.commands import run as run_command
from gdbench.data.datasets import synthetic
from gdbench.data.errors import InputError
from gdbench.data.loader import BatchPlan
from gdbench.data.workloads import WORKLOADS, declared, define, get_workload, to_json
from gdbench.harness import launcher, standalone
from gdbench.records.results import load_run
from gdbench.records.run import Run

CSV = "region,rain,sun,yield\na,1.0,2.0,3.0\nb,2.0,1.0,4.0\nc,3.0,0.5,5.5\nd,4.0,3.0,7.0\n"


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# --- definitions ------------------------------------------------------------------------------

def test_a_synthetic_definition_builds_its_seeded_problem() -> None:
    w = define("mine", {"shape": "256,8,3", "batch": 32, "epochs": 2, "seed": 5})
    assert w.definition == {"shape": [256, 8, 3], "batch_size": 32, "epochs": 2, "lr": 0.05,
                            "seed": 5, "noise": 0.1}
    problem = w.build("float64")
    expected = synthetic(256, 8, 3, seed=5, noise=0.1, dtype="float64")
    np.testing.assert_array_equal(problem.dataset.X, expected.X)
    np.testing.assert_array_equal(problem.dataset.Y, expected.Y)
    assert len(problem.plan) == 2 * 8 and problem.plan.seed == 5
    np.testing.assert_array_equal(problem.plan.batches()[0],
                                  BatchPlan(256, 32, 2, seed=5).batches()[0])
    assert problem.definition == w.definition and problem.name == "mine"
    assert define("again", json.loads(to_json(w))).definition == w.definition  # round trip


def test_gdbench_s_own_workloads_are_the_same_problems_as_before() -> None:
    small = WORKLOADS["small"].build()
    data = synthetic(1024, 16, 2, seed=0, noise=0.1, dtype=np.float32)
    np.testing.assert_array_equal(small.dataset.X, data.X)
    assert (small.plan.batch_size, small.plan.epochs, small.lr) == (32, 8, 0.05)
    crops = WORKLOADS["crops"].build()
    assert crops.dataset.n_samples == 15 and crops.dataset.target_names == ("Mangoes", "Oranges")
    assert WORKLOADS["crops"].definition["data"] == "crops"


def test_a_csv_definition_reads_the_file_relative_to_its_base(tmp_path: Path) -> None:
    (tmp_path / "farm.csv").write_text(CSV)
    w = define("farm", {"data": "farm.csv", "targets": "yield", "batch_size": 2,
                        "standardize": True}, base=tmp_path)
    assert w.definition["data"] == str(tmp_path / "farm.csv")
    assert w.definition["targets"] == ["yield"] and w.definition["standardize"] is True
    problem = w.build()
    assert problem.dataset.feature_names == ("rain", "sun")  # the region is an identifier
    np.testing.assert_allclose(problem.dataset.X.mean(axis=0), 0.0, atol=1e-6)


@pytest.mark.parametrize(("raw", "message"), [
    ({"shape": [256, 8, 3], "batch_size": 0}, "mine: batch_size must be a positive integer"),
    ({"shape": "256,8", "batch_size": 4}, "mine: shape: expected rows,features,outputs"),
    ({"shape": [256, -8, 3], "batch_size": 4}, "mine: shape: expected three positive"),
    ({"shape": [256, 8, 3]}, "mine: batch_size is missing"),
    ({"batch_size": 4}, "mine: give either shape"),
    ({"shape": [4, 4, 4], "data": "x.csv", "batch_size": 4}, "mine: give either shape"),
    ({"data": "missing.csv", "batch_size": 4}, "missing.csv: no such file"),
    ({"shape": [4, 4, 4], "batch_size": 4, "epochs": 1.5}, "mine: epochs must be a positive"),
    ({"shape": [4, 4, 4], "batch_size": 4, "lr": "fast"}, "mine: lr must be a positive finite"),
    ({"shape": [4, 4, 4], "batch_size": 4, "seed": -1}, "mine: seed must be an integer of 0"),
    ({"shape": [4, 4, 4], "batch_size": 4, "noise": -1}, "mine: noise must be a number of 0"),
    ({"shape": [4, 4, 4], "batch_size": 4, "batches": 4}, "mine: unknown key 'batches'"),
    ({"data": "crops", "targets": [3], "batch_size": 4}, "mine: targets must be a list"),
])
def test_a_bad_definition_is_one_line_naming_where_and_what(raw: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(InputError) as err:
        define("mine", raw, "mine")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_workload_name_must_suit_a_file_and_a_test_id() -> None:
    with pytest.raises(InputError, match="a workload name is letters"):
        define("my workload", {"shape": [4, 4, 4], "batch_size": 2})


# --- pyproject.toml ---------------------------------------------------------------------------

def _project(tmp_path: Path, tables: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "theirs"\n\n{tables}')
    (tmp_path / "farm.csv").write_text(CSV)
    (tmp_path / "src").mkdir()
    return tmp_path / "src"


def test_workloads_declared_in_the_nearest_pyproject_are_found_by_name(tmp_path: Path) -> None:
    below = _project(tmp_path, '[tool.gdbench.workloads.wide]\nshape = [512, 64, 4]\n'
                               'batch_size = 64\nepochs = 2\n\n'
                               '[tool.gdbench.workloads.farm]\ndata = "farm.csv"\n'
                               'targets = ["yield"]\nbatch_size = 2\n')
    found = declared(below)  # from a folder below it, as ruff and pytest look
    assert set(found) == {"wide", "farm"}
    assert found["wide"].definition["shape"] == [512, 64, 4]
    assert found["farm"].definition["data"] == str(tmp_path / "farm.csv")
    with _cwd(below):
        assert get_workload("wide").batch_size == 64
        with pytest.raises(InputError, match="known workloads are: crops, .*, xl, wide, farm"):
            get_workload("narrow")
    assert declared(tmp_path.parent) == {} or "wide" not in declared(tmp_path.parent)


@pytest.mark.parametrize(("tables", "message"), [
    ('[tool.gdbench.workloads.small]\nshape = [4, 4, 4]\nbatch_size = 2\n',
     "'small' is one of gdbench's own workloads"),
    ('[tool.gdbench.workloads.z]\nshape = [4, 4, 4]\nbatch_size = 0\n',
     "[tool.gdbench.workloads.z]: batch_size must be a positive integer"),
    ('[tool.gdbench\nworkloads = 1\n', "cannot read it as TOML"),
    ('[tool.gdbench]\nworkloads = 1\n', "must be a table of tables"),
])
def test_a_bad_pyproject_is_one_line_naming_the_file(tmp_path: Path, tables: str,
                                                     message: str) -> None:
    below = _project(tmp_path, tables)
    with pytest.raises(InputError) as err:
        declared(below)
    assert message in str(err.value) and str(tmp_path / "pyproject.toml") in str(err.value)


# --- gdbench run's options --------------------------------------------------------------------

def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_shape_and_batch_make_one_workload_named_by_them() -> None:
    args = _args("--shape", "4096,32,4", "--batch", "64", "--epochs", "2")
    options.resolve_workloads(args)
    assert args.workloads == ["4096x32x4-b64-e2"]
    ((name, text),) = args.definitions
    assert name == "4096x32x4-b64-e2"
    assert json.loads(text) == {"shape": [4096, 32, 4], "batch_size": 64, "epochs": 2,
                                "lr": 0.05, "seed": 0, "noise": 0.1}
    job = launcher.Job.of(args, "numpy", ["--backends", "numpy"])
    command = job.command(Path("part.json"))
    assert command[command.index("--workload-def") + 1] == f"{name}={text}"
    assert command[command.index("--workloads") + 1] == name


def test_a_csv_and_named_workloads_are_timed_together(tmp_path: Path) -> None:
    below = _project(tmp_path, '[tool.gdbench.workloads.wide]\nshape = [512, 64, 4]\n'
                               'batch_size = 64\n')
    with _cwd(below):
        args = _args("--workloads", "crops", "wide", "--data", "../farm.csv", "--targets",
                     "yield", "--batch-size", "2", "--lr", "0.01")
        options.resolve_workloads(args)
    assert args.workloads == ["crops", "wide", "farm-b2-e1"]
    assert [name for name, _ in args.definitions] == ["wide", "farm-b2-e1"]
    farm = json.loads(args.definitions[1][1])
    assert farm["data"] == str(tmp_path / "farm.csv") and farm["lr"] == 0.01


@pytest.mark.parametrize(("argv", "message"), [
    (["--shape", "4096,32", "--batch", "64"], "argument --shape: expected rows,features"),
    (["--shape", "4096,a,4", "--batch", "64"], "argument --shape: expected three positive"),
    (["--shape", "4096,32,4", "--batch", "0"], "must be a positive integer, got 0"),
    (["--shape", "4096,32,4"], "--batch B is needed with --shape or --data"),
    (["--data", "missing.csv", "--batch", "4"], "/missing.csv: no such file"),
    (["--epochs", "3"], "--epochs describes your own problem"),
    (["--shape", "8,2,1", "--data", "x.csv", "--batch", "2"], "not both"),
    (["--shape", "8,2,1", "--batch", "2", "--targets", "y"], "--targets and --standardize"),
    (["--workloads", "nosuch"], "unknown workload 'nosuch'"),
])
def test_bad_values_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            argv: list[str], message: str) -> None:
    with _cwd(tmp_path):
        code, out, err = run_cli(capsys, "run", "--quick", "--backends", "numpy", *argv,
                                 "--out", str(tmp_path / "runs"))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


# --- the suite --------------------------------------------------------------------------------

def _config(*defs: str) -> Any:
    values = {"workload_defs": list(defs), "backends": ["numpy"], "quick": True,
              "workloads": ["mine"]}
    return SimpleNamespace(getoption=lambda name, default=None: values.get(name, default))


def test_the_suite_times_a_workload_given_with_workload_def() -> None:
    mine = 'mine={"shape": [64, 4, 2], "batch_size": 8}'
    config = _config(mine)
    assert suite.own_workloads(config)["mine"].definition["shape"] == [64, 4, 2]
    assert suite._selected(config) == (["numpy"], ["mine"])
    problems = suite.Problems("float32", suite.known_workloads(config))
    problem, reference = problems.get("mine")
    assert problem.dataset.n_samples == 64 and reference.W.shape == (2, 4)


@pytest.mark.parametrize(("text", "message"), [
    ("mine", "expected NAME=JSON"), ("mine={shape", "--workload-def mine: not JSON"),
    ('mine={"shape": [1, 1], "batch_size": 1}', "--workload-def mine: shape: expected")])
def test_a_bad_workload_def_is_a_usage_error(text: str, message: str) -> None:
    with pytest.raises(pytest.UsageError, match=message):
        suite.own_workloads(_config(text))


def test_gdbench_run_times_a_shape_and_a_declared_workload_and_saves_their_definitions(
        tmp_path: Path) -> None:
    """A real run (numpy only, 0.05 s of rounds per benchmark) of --shape and of a
    workload declared in pyproject.toml; compare shows both."""
    from gdbench.commands.cli import main

    below = _project(tmp_path, '[tool.gdbench.workloads.wide]\nshape = [256, 16, 2]\n'
                               'batch_size = 32\nepochs = 2\n')
    printed = io.StringIO()
    with _cwd(below), contextlib.redirect_stdout(printed):
        code = main(["run", "--quick", "--backends", "numpy", "--workloads", "wide",
                     "--shape", "128,4,2", "--batch", "16", "--out", str(tmp_path / "runs"),
                     "--", "--benchmark-max-time=0.05"])
    assert code == 0, printed.getvalue()
    (saved,) = (tmp_path / "runs").glob("*.json")
    doc = json.loads(saved.read_text())
    infos = {b["name"]: b["extra_info"] for b in doc["benchmarks"]}
    assert infos["bench_training[wide-numpy]"]["workload_def"]["shape"] == [256, 16, 2]
    assert infos["bench_training[128x4x2-b16-e1-numpy]"]["workload_def"] == {
        "shape": [128, 4, 2], "batch_size": 16, "epochs": 1, "lr": 0.05, "seed": 0,
        "noise": 0.1}
    assert infos["bench_roofline[wide]"]["steps"] == 16  # the rooflines time them too
    # Made again from the file: the same definition gives the same problem.
    again = define("wide", infos["bench_training[wide-numpy]"]["workload_def"])
    assert again.build().dataset.n_samples == 256
    frame = load_run(saved)
    assert set(frame["workload"]) == {"wide", "128x4x2-b16-e1"}
    assert "128x4x2-b16-e1" in printed.getvalue() and "wide" in printed.getvalue()
    # gdbench check gates them as any workload: the run against itself passes, row by row.
    gate = io.StringIO()
    with contextlib.redirect_stdout(gate):
        assert main(["check", str(saved), "--baseline", str(saved), "--format", "table"]) == 0
    assert "wide" in gate.getvalue() and "128x4x2-b16-e1" in gate.getvalue()
    # gdbench audit times them again from the definitions the run saved, even where no
    # pyproject.toml declares them (here: a folder away from it).
    run = Run.load(saved)
    with _cwd(tmp_path):
        for name in ("wide", "128x4x2-b16-e1"):
            definition = audit._definition(run, name)
            assert definition is not None
            assert json.loads(definition) == infos[f"bench_training[{name}-numpy]"][
                "workload_def"]
            assert name in standalone._command("numpy", name, "float32", None, 0.1,
                                               definition)
    assert audit._definition(run, "crops") is None  # gdbench's own: known by name


def test_the_audit_times_a_users_workload_again_with_its_definition(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """launcher.run_job is faked: it records the job it was given and fails it."""
    jobs: list[launcher.Job] = []

    def run_job(job: launcher.Job) -> launcher.Outcome:
        jobs.append(job)
        return launcher.Outcome(job, 1, None, 0.0)

    monkeypatch.setattr(launcher, "run_job", run_job)
    assert audit.retime("numpy", "mine", "float32", None, 1.0, '{"shape": [8, 2, 1]}') is None
    command = jobs[0].command(Path("part.json"))
    assert command[command.index("--workload-def") + 1] == 'mine={"shape": [8, 2, 1]}'


@pytest.mark.skipif(not os.environ.get("GDBENCH_SLOW_TESTS"),
                    reason="slow (a real audit, minutes): set GDBENCH_SLOW_TESTS=1")
def test_gdbench_audit_of_a_run_of_the_users_own_workload(tmp_path: Path) -> None:
    from gdbench.commands.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", "--quick", "--backends", "numpy", "--shape", "128,4,2",
                     "--batch", "16", "--out", str(tmp_path), "--",
                     "--benchmark-max-time=0.05"])
    (saved,) = tmp_path.glob("*.json")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["audit", "--run", str(saved), "--seconds", "0.1"])
    assert code in (0, 1), printed.getvalue()  # 1: a verdict failed on a busy machine
    rows = json.loads(saved.read_text())["machine_info"]["gdbench"]["audit"]["rows"]
    assert [r["workload"] for r in rows] == ["128x4x2-b16-e1"]
