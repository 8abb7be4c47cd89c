"""The launcher's jobs: a picklable description, run here by run_job or an executor, and a
run cut short that keeps the jobs that finished.

The benchmark processes are stand-ins (small Python scripts that write a constructed run),
so nothing here times anything."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from _benchjson import make_run, run_args

from gdbench.commands import run as run_command
from gdbench.harness import launcher


def _args(**over: Any) -> argparse.Namespace:
    base = dict(dtype="float64", quick=True, threads=1, backends=["jax"],
                workloads=["crops"], pytest_args=["--", "--benchmark-max-time=1"])
    return argparse.Namespace(**{**base, **over})


def test_a_job_is_plain_picklable_data_that_builds_the_same_command() -> None:
    job = launcher.Job.of(_args(), "jax", ["--isolated", "--backends", "jax"])
    assert pickle.loads(pickle.dumps(job)) == job
    cmd = job.command(Path("/tmp/p.json"))
    assert cmd == launcher.pytest_command(_args(), Path("/tmp/p.json"),
                                          ["--isolated", "--backends", "jax"])
    for option in ("--quick", "--threads=1", "--dtype=float64", "--benchmark-max-time=1",
                   "--benchmark-json=/tmp/p.json"):
        assert option in cmd
    env = job.env()
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert "PYTHONPATH" not in env or env["PYTHONPATH"] == os.environ.get("PYTHONPATH")


def test_a_job_from_another_checkout_runs_its_suite_and_its_code(tmp_path: Path) -> None:
    job = launcher.Job.of(_args(threads=None), "numpy", ["--backends", "numpy"],
                          tree=str(tmp_path))
    cmd = job.command(tmp_path / "p.json")
    theirs = str(tmp_path / "benches")
    assert theirs in cmd and f"--rootdir={theirs}" in cmd
    assert str(launcher.BENCHES) not in cmd
    assert job.env()["PYTHONPATH"] == str(tmp_path)
    assert "OMP_NUM_THREADS" not in job.env() or \
        job.env()["OMP_NUM_THREADS"] == os.environ.get("OMP_NUM_THREADS")


def _stand_in(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    def command(args: Any, json_path: Path, selection: Any = ()) -> list[str]:
        return [sys.executable, "-c", script, str(json_path)]
    monkeypatch.setattr(launcher, "pytest_command", command)


def test_run_job_reads_back_the_run_and_leaves_no_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    source = tmp_path / "source.json"
    source.write_text(json.dumps(doc))
    _stand_in(monkeypatch, f"import shutil, sys; shutil.copy({str(source)!r}, sys.argv[1])")
    seen: list[str] = []
    monkeypatch.setattr(launcher.tempfile, "TemporaryDirectory",
                        _recording_tempdir(seen, launcher.tempfile.TemporaryDirectory))
    outcome = launcher.LocalExecutor().run(launcher.Job("numpy"))
    assert outcome.code == 0 and not outcome.failed and outcome.part == doc
    assert outcome.seconds > 0 and outcome.job == launcher.Job("numpy")
    assert seen and not Path(seen[0]).exists()  # its temporary folder is gone
    kept = tmp_path / "kept.json"
    assert launcher.run_job(launcher.Job("numpy"), keep=kept).part == doc
    assert json.loads(kept.read_text()) == doc


def _recording_tempdir(seen: list[str], real: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> Any:
        tmp = real(*args, **kwargs)
        seen.append(tmp.name)
        return tmp
    return make


@pytest.mark.parametrize(("script", "code"), [
    ("raise SystemExit(3)", 3),  # pytest failed
    ("pass", 0),  # exited 0 but saved nothing
    ("import sys; open(sys.argv[1], 'w').write('{\"benchmarks\": 1}')", 0),  # not a run
])
def test_a_job_that_fails_or_saves_no_run_is_failed(
        monkeypatch: pytest.MonkeyPatch, script: str, code: int) -> None:
    _stand_in(monkeypatch, script)
    outcome = launcher.run_job(launcher.Job("numpy"))
    assert outcome.code == code and outcome.part is None and outcome.failed


def test_run_fails_and_names_a_backend_that_exited_0_without_a_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "numpy.json"
    source.write_text(json.dumps(make_run(workloads=("crops",), backends=("numpy",))))

    def command(args: Any, json_path: Path, selection: Any = ()) -> list[str]:
        if "numpy" in selection:
            return [sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], "
                    "sys.argv[2])", str(source), str(json_path)]
        return [sys.executable, "-c", "pass"]
    monkeypatch.setattr(launcher, "pytest_command", command)
    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        (name, ["--backends", name]) for name in backends])
    args = run_args(["--backends", "numpy", "jax", "--workloads", "crops",
                     "--out", str(tmp_path / "runs")])
    code, saved = run_command.run_suite(args)
    err = capsys.readouterr().err
    assert code == 1 and saved is not None
    assert err.strip().splitlines()[-1] == (
        "gdbench run: the jax process failed (it exited 0 but saved no readable run): its "
        "benchmarks are not in the saved run")


