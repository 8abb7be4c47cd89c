"""gdbench audit's own processes: the suite's benchmark timed again (audit.retime), the
standalone timing (gdbench.harness.standalone), and the audit's exit codes on its
failure paths.

What is faked: the processes the audit starts. The launcher builds the real job, command
and environment (recorded here); the process started in its place is a stand-in Python
that saves a constructed pytest-benchmark part (or fails, or saves nothing), so that no
benchmark is timed. Everything between (the launcher's run and read-back, the temporary
folder, picking the training benchmark out of the part) is the audit's own code.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from _benchjson import make_run, run_cli, write_run

from gdbench.commands import audit
from gdbench.commands import run as run_command
from gdbench.data.errors import InputError
from gdbench.harness import launcher, machine, standalone
from gdbench.judge.audit import Row, failures
from gdbench.records.results import read_run
from gdbench.records.run import Run

NAME = "bench_training[large-jax-scan]"

# What a stand-in process does with the constructed part at sys.argv[1]: copy it to the
# command's JSON path (sys.argv[2]), and write down its thread settings (sys.argv[3]).
COPY = ("import json, os, shutil, sys; "
        "open(sys.argv[3], 'w').write(json.dumps({k: os.environ.get(k) for k in "
        "('OMP_NUM_THREADS', 'GDBENCH_THREADS', 'PYTHONUNBUFFERED')})); "
        "shutil.copy(sys.argv[1], sys.argv[2])")


def _training(us: list[float], wakes: list[float]) -> dict[str, Any]:
    """The suite's training benchmark of jax-scan on large with these rounds (µs/step,
    100 steps) and a flat reference."""
    data = [u * 100 / 1e6 for u in us]
    return {"name": NAME, "fullname": f"benches/bench_training.py::{NAME}",
            "stats": {"median": statistics.median(data), "data": data},
            "extra_info": {"kind": "training", "backend": "jax-scan", "workload": "large",
                           "steps": 100, "ref_data": [1.0] * len(us), "ref_s": 1.0,
                           "wake_data": list(wakes), "norm_data": list(data)}}


def _roofline() -> dict[str, Any]:
    return {"name": "bench_roofline[large]", "stats": {"median": 1.0, "data": [1.0]},
            "extra_info": {"kind": "roofline", "workload": "large"}}


class _Processes:
    """launcher.pytest_command wrapped: the real command is recorded, a stand-in runs."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.commands: list[list[str]] = []
        self.json_paths: list[Path] = []
        self.part: str | None = None  # the text the stand-in saves; None: nothing
        self.exit_code = 0
        self.envs = tmp_path / "env.json"
        real = launcher.pytest_command

        def command(args: Any, json_path: Path, selection: Any = ()) -> list[str]:
            self.commands.append(real(args, json_path, selection))
            self.json_paths.append(json_path)
            source = tmp_path / f"part-{len(self.commands)}.json"
            if self.part is None:
                script = f"raise SystemExit({self.exit_code})"
            else:
                source.write_text(self.part)
                script = f"{COPY}; raise SystemExit({self.exit_code})"
            return [sys.executable, "-c", script, str(source), str(json_path), str(self.envs)]

        monkeypatch.setattr(launcher, "pytest_command", command)

    def saves(self, *benchmarks: dict[str, Any], exit_code: int = 0) -> None:
        self.part = json.dumps({"machine_info": {}, "benchmarks": list(benchmarks)})
        self.exit_code = exit_code

    def env(self) -> dict[str, str | None]:
        return json.loads(self.envs.read_text())


@pytest.fixture
def processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Processes:
    return _Processes(tmp_path, monkeypatch)


# --- the suite's benchmark, timed again ------------------------------------------------------

def test_retime_runs_the_suites_benchmark_alone_as_gdbench_run_does_and_reads_it_back(
        processes: _Processes) -> None:
    again = _training([245.0] * 20, [50e-6] * 20)
    processes.saves(_roofline(), again)
    found = audit.retime("jax-scan", "large", "float64", 2, 1.5)
    assert found == again  # the training benchmark of the part, read back as saved
    (cmd,) = processes.commands
    assert cmd[:3] == [sys.executable, "-m", "pytest"] and cmd[3] == str(launcher.BENCHES)
    assert "--dtype=float64" in cmd and "--threads=2" in cmd and "--quick" not in cmd
    assert "--workload-def" not in cmd  # gdbench's own workload: known by name
    assert f"--benchmark-json={processes.json_paths[0]}" in cmd
    # One backend on one workload, no rooflines, no memory instrumentation, the run's
    # seconds of rounds: the options come last, after the suite's own.
    assert cmd[-10:] == ["--isolated", "--backends", "jax-scan", "--roofline", "without",
                         "--workloads", "large", "--memory", "off", "--benchmark-max-time=1.5"]
    assert cmd.count("--backends") == 1 and cmd.count("--workloads") == 1
    # The run's thread settings are in the process's environment from its start.
    assert processes.env() == {"OMP_NUM_THREADS": "2", "GDBENCH_THREADS": "2",
                               "PYTHONUNBUFFERED": "1"}
    # The part went to a temporary folder, removed after.
    assert processes.json_paths[0].parent.name.startswith("gdbench-job-")
    assert not processes.json_paths[0].parent.exists()


def test_retime_of_a_users_workload_gives_its_process_the_definition(
        processes: _Processes) -> None:
    processes.saves(_training([245.0] * 20, [50e-6] * 20))
    definition = json.dumps({"shape": [64, 4, 2], "batch_size": 8, "epochs": 1})
    assert audit.retime("jax-scan", "large", "float32", None, None, definition) is not None
    (cmd,) = processes.commands
    at = cmd.index("--workload-def")
    assert cmd[at + 1] == f"large={definition}"


def test_retime_without_a_thread_limit_or_a_saved_round_time_adds_neither(
        processes: _Processes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GDBENCH_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's own: left as it is
    processes.saves(_training([245.0] * 20, [50e-6] * 20))
    assert audit.retime("jax-scan", "large", "float32", None, None) is not None
    (cmd,) = processes.commands
    assert cmd[-9:] == ["--isolated", "--backends", "jax-scan", "--roofline", "without",
                        "--workloads", "large", "--memory", "off"]
    assert "--dtype=float32" in cmd
    assert not any(a.startswith(("--threads", "--benchmark-max-time=")) for a in cmd)
    assert processes.env() == {"OMP_NUM_THREADS": "5", "GDBENCH_THREADS": None,
                               "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("outcome", ["failed", "saved nothing", "not JSON", "roofline only",
                                     "no references"])
def test_retime_answers_none_when_the_process_gives_no_timing_to_compare(
        processes: _Processes, outcome: str) -> None:
    good = _training([245.0] * 20, [50e-6] * 20)
    if outcome == "failed":  # it saved a part, but its benchmark failed
        processes.saves(good, exit_code=1)
    elif outcome == "not JSON":
        processes.part = '{"benchmarks": ['
    elif outcome == "roofline only":
        processes.saves(_roofline())
    elif outcome == "no references":  # nothing to judge how settled it was by
        processes.saves({**good, "extra_info": {**good["extra_info"], "ref_data": []}})
    assert audit.retime("jax-scan", "large", "float32", None, None) is None
    assert len(processes.commands) == 1


def test_a_suite_timing_mostly_unsettled_is_replaced_by_the_one_timed_again(
        processes: _Processes, capsys: pytest.CaptureFixture[str]) -> None:
    # The suite timed jax-scan while the host woke threads slowly (70 µs probe, 420
    # µs/step); alone, and in the process timed again, it was fast (50 µs, 240-245).
    alone = standalone.Standalone(step_us=240.0, ref_s=1.0, sync_change=0.0, doubled_ratio=2.0,
                             busy_cores=0.0, harness_share=1e-4, rounds=20,
                             round_us=(240.0,) * 20, round_ref_s=(1.0,) * 20,
                             round_wake_s=(50e-6,) * 20)
    slow = {**_training([420.0] * 20, [70e-6] * 20)}
    slow["extra_info"]["memory_method"] = "tracemalloc"
    fast = _training([245.0] * 20, [50e-6] * 20)
    processes.saves(_roofline(), fast)
    doc = {"benchmarks": [_roofline(), slow], "machine_info": {"gdbench": {}}}
    row = Row("large", "jax-scan", 420.0, 1.0, alone).with_suite(slow)
    kept = audit._resettle_suite(row, Run(doc), NAME, "float32", None, 2.0)
    assert len(processes.commands) == 1  # settled the first time: not again
    assert processes.commands[0][-1] == "--benchmark-max-time=2.0"
    assert kept.suite_us == pytest.approx(245.0) and failures(kept) == []
    saved = doc["benchmarks"][1]
    assert saved["stats"] == fast["stats"]
    assert saved["extra_info"]["memory_method"] == "tracemalloc"  # the first one's memory
    assert doc["machine_info"]["gdbench"]["resettled"] == [
        {"benchmark": NAME, "by": "audit", "unsettled_first": 1.0, "unsettled_again": 0.0,
         "kept": "again"}]
    assert capsys.readouterr().out == ("      the machine was unsettled while the suite timed "
                                       "it: the suite again\n")


def test_a_suite_timing_whose_re_run_fails_stays_and_nothing_is_recorded(
        processes: _Processes) -> None:
    alone = standalone.Standalone(step_us=240.0, ref_s=1.0, sync_change=0.0, doubled_ratio=2.0,
                             busy_cores=0.0, harness_share=1e-4, rounds=20,
                             round_us=(240.0,) * 20, round_ref_s=(1.0,) * 20,
                             round_wake_s=(50e-6,) * 20)
    slow = _training([420.0] * 20, [70e-6] * 20)
    processes.saves(_training([245.0] * 20, [50e-6] * 20), exit_code=1)
    doc = {"benchmarks": [slow], "machine_info": {"gdbench": {}}}
    row = Row("large", "jax-scan", 420.0, 1.0, alone).with_suite(slow)
    assert audit._resettle_suite(row, Run(doc), NAME, "float32", None, None) == row
    assert len(processes.commands) == 1  # a failure is not retried
    assert doc == {"benchmarks": [slow], "machine_info": {"gdbench": {}}}


# --- the standalone timing --------------------------------------------------------------------

def test_standalone_reads_the_childs_last_line_and_gives_it_the_thread_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The child is a stand-in that prints a constructed Standalone after other output,
    # with the thread settings it started with in it.
    built: list[tuple[Any, ...]] = []
    result = standalone.Standalone(step_us=12.5, ref_s=0.25, sync_change=0.01,
                                   doubled_ratio=1.9, busy_cores=0.1, harness_share=0.001,
                                   rounds=30)
    script = ("import json, os, sys; print('warming up'); print('still'); "
              "d = json.loads(sys.argv[1]); "
              "d['ref_s'] = float(os.environ['OMP_NUM_THREADS']); print(json.dumps(d))")

    def child(*args: Any) -> list[str]:
        built.append(args)
        return [sys.executable, "-c", script, json.dumps(asdict(result))]

    monkeypatch.setattr(standalone, "_command", child)
    alone = standalone.standalone("jax", "small", "float64", 3, 0.5)
    assert built == [("jax", "small", "float64", 3, 0.5, None)]
    # Field by field, as JSON has them (its lists for the tuples of rounds).
    assert json.loads(json.dumps(asdict(alone))) == json.loads(json.dumps(asdict(
        replace(result, ref_s=3.0))))


def test_the_standalone_childs_command_carries_the_runs_settings() -> None:
    assert standalone._command("jax", "small", "float64", 3, 0.5) == [
        sys.executable, "-m", "gdbench.harness.standalone", "jax", "small",
        "--dtype", "float64", "--seconds", "0.5", "--threads=3"]
    assert standalone._command("numpy", "crops", "float32", None, 1.5)[-2:] == [
        "--seconds", "1.5"]
    assert standalone._command("numpy", "mine", "float32", None, 1.5, '{"x": 1}')[-2:] == [
        "--definition", '{"x": 1}']


def test_a_standalone_child_that_fails_is_one_line_naming_backend_and_workload(
        monkeypatch: pytest.MonkeyPatch) -> None:
    script = "import sys; print('Traceback ...', file=sys.stderr); sys.exit('jax: out of memory')"
    monkeypatch.setattr(standalone, "_command", lambda *a: [sys.executable, "-c", script])
    with pytest.raises(InputError) as info:
        standalone.standalone("jax", "large", "float32", None, 0.5)
    assert str(info.value) == "standalone timing of jax on large failed: jax: out of memory"
    monkeypatch.setattr(standalone, "_command",
                        lambda *a: [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(InputError, match="failed: no output$"):
        standalone.standalone("jax", "large", "float32", None, 0.5)


def test_the_standalone_child_pins_its_threads_before_timing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pinned: list[int] = []
    measured: list[tuple[Any, ...]] = []
    monkeypatch.setattr(machine, "pin_threads", pinned.append)
    figure = standalone.Standalone(1.0, 2.0, 0.0, 2.0, 0.0, 0.0, 5)

    def measure(backend: str, problem: Any, doubled: Any,
                seconds: float) -> standalone.Standalone:
        measured.append((backend, problem.name, str(problem.dtype), len(doubled.plan)
                         == 2 * len(problem.plan), seconds, list(pinned)))
        return figure

    monkeypatch.setattr(standalone, "measure", measure)
    assert standalone.main(["numpy", "crops", "--dtype", "float64", "--seconds", "0.2",
                            "--threads", "1"]) == 0
    assert measured == [("numpy", "crops", "float64", True, 0.2, [1])]
    assert capsys.readouterr().out.splitlines()[-1] == json.dumps(asdict(figure))
    assert standalone.main(["numpy", "crops"]) == 0 and pinned == [1]  # no --threads: no pin
    assert measured[-1][2:5] == ("float32", True, standalone.STANDALONE_S)


# --- the audit's exit codes -------------------------------------------------------------------

@pytest.mark.parametrize(("run_code", "code"), [(0, 1), (3, 3)])
def test_an_audit_whose_run_saved_nothing_exits_with_the_runs_code_or_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        run_code: int, code: int) -> None:
    monkeypatch.setattr(run_command, "run_suite", lambda args: (run_code, None))
    monkeypatch.setattr(audit, "standalone", lambda *a: pytest.fail("nothing to audit"))
    assert run_cli(capsys, "audit", "--seconds", "0.1")[0] == code


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("gdbench audit: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_an_audit_of_a_missing_run_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "audit", "--run", str(tmp_path / "missing.json"))
    _one_line_error(code, err, str(tmp_path / "missing.json"))
    assert out == ""


def test_an_audit_of_a_run_without_training_benchmarks_is_one_line_and_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["extra_info"]["kind"] != "training"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    before = path.read_text()
    code, _, err = run_cli(capsys, "audit", "--run", str(path))
    _one_line_error(code, err)
    assert err == f"gdbench audit: error: {path}: no training benchmark to audit\n"
    assert path.read_text() == before


def test_an_audit_with_a_bad_threshold_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run.json", workloads=("crops",), backends=("numpy",))
    code, _, err = run_cli(capsys, "audit", "--run", str(run), "--threshold", "15")
    _one_line_error(code, err, "15")


def test_an_audit_whose_standalone_timing_fails_is_one_line_and_saves_no_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run.json", workloads=("crops",), backends=("numpy",))
    script = "import sys; sys.exit('numpy: it broke')"
    monkeypatch.setattr(standalone, "_command", lambda *a: [sys.executable, "-c", script])
    code, _, err = run_cli(capsys, "audit", "--run", str(run), "--seconds", "0.1")
    _one_line_error(code, err, "standalone timing of numpy on crops failed: numpy: it broke")
    assert "audit" not in read_run(run)["machine_info"]["gdbench"]

