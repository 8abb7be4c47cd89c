"""The job matrix on SLURM through submitit: the sbatch file each job would be, and the
same executor running real jobs through submitit's LocalExecutor (real submitit jobs, as
processes here: this machine has no SLURM). Nothing of submitit is faked."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _cluster_jobs
import pytest
from _benchjson import run_args

from gdbench.commands import run as run_command
from gdbench.commands.cli import main
from gdbench.harness import cluster, slurm_executor
from gdbench.harness.slurm_executor import SlurmOptions, parse_time

submitit = pytest.importorskip("submitit", reason="the cluster extra is not installed")


def test_the_sbatch_file_asks_for_the_partition_time_gres_account_and_a_whole_node(
        tmp_path: Path) -> None:
    options = SlurmOptions(partition="gpu", time_min=90, gres="gpu:1", account="lab")
    lines = slurm_executor.sbatch_script(options, tmp_path / "%j").splitlines()
    sbatch = {line for line in lines if line.startswith("#SBATCH")}
    assert {"#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gres=gpu:1",
            "#SBATCH --account=lab", "#SBATCH --exclusive", "#SBATCH --nodes=1",
            "#SBATCH --ntasks-per-node=1", "#SBATCH --job-name=gdbench"} <= sbatch
    assert f"#SBATCH --output={tmp_path}/%j/%j_0_log.out" in sbatch
    # The job itself: submitit's runner, on the node, with this Python's unbuffered output.
    assert lines[-1].endswith("python -u -m submitit.core._submit FOLDER")


def test_without_a_partition_gres_or_account_sbatch_gets_none_of_them(tmp_path: Path) -> None:
    text = slurm_executor.sbatch_script(SlurmOptions(), tmp_path)
    assert "#SBATCH --exclusive" in text
    assert f"#SBATCH --time={slurm_executor.DEFAULT_TIME_MIN}" in text
    for option in ("--partition", "--gres", "--account"):
        assert f"#SBATCH {option}" not in text


def test_every_parameter_is_one_that_submitits_slurm_executor_takes() -> None:
    options = SlurmOptions(partition="cpu", time_min=30, gres="gpu:2", account="a")
    assert set(options.parameters()) <= set(submitit.SlurmExecutor._valid_parameters())


@pytest.mark.parametrize(("text", "minutes"), [
    ("90", 90), ("1:30", 2), ("0:59", 1), ("1:30:00", 90), ("2-0", 2880), ("1-2:30", 1590),
    ("1-00:00:01", 1441)])
def test_slurm_time_limits_read_as_sbatch_reads_them(text: str, minutes: int) -> None:
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["", "0", "1h", "1:2:3:4", "-5", "a-1", "0:00"])
def test_a_bad_slurm_time_is_one_line_exit_2(text: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError):
        parse_time(text)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--executor", "slurm", "--slurm-time", text])
    assert exited.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("srun") is not None, reason="this machine has SLURM")
def test_away_from_slurm_the_slurm_executor_is_one_line_exit_2_and_no_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert main(["run", "--executor", "slurm", "--slurm-partition", "p", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "srun" in err
    assert not out.exists()


def test_submitit_runs_the_jobs_and_the_run_has_every_cell_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Real submitit jobs (LocalExecutor: processes here), running the real suite on crops.
    monkeypatch.chdir(tmp_path)
    engine = submitit.LocalExecutor(folder=tmp_path / "submitit" / "%j")
    engine.update_parameters(timeout_min=5)
    executor = slurm_executor.SlurmExecutor(engine, where="submitit's LocalExecutor",
                                            poll_s=0.1)
    args = run_args(["--backends", "numpy", "--workloads", "crops", "--quick",
                     "--out", str(tmp_path / "runs"), "--", "--benchmark-max-time=0.05"])
    code, saved = run_command.run_suite(args, executor)
    printed = capsys.readouterr().out
    assert code == 0 and saved is not None
    assert list((tmp_path / "runs").iterdir()) == [saved]
    run = json.loads(saved.read_text())
    assert Counter(b["name"] for b in run["benchmarks"]) == Counter(
        {"bench_training[crops-numpy]": 1, "bench_roofline[crops]": 1})
    assert run["machine_info"]["gdbench"]["executor"] == "submitit's LocalExecutor"
    assert "-- numpy (job 1 of 1)" in printed and f"saved {saved}" in printed


@pytest.mark.e2e
def test_sigterm_cancels_the_submitit_jobs_and_keeps_whole_files_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The jobs are stand-ins (tests/_cluster_jobs.py, imported by the job's own process):
    # numpy's comes back at once, jax's hangs. SIGTERM comes while jax's hangs.
    tests = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (tests, os.environ.get("PYTHONPATH")) if p))
    tries = tmp_path / "tries"
    tries.mkdir()
    engine = submitit.LocalExecutor(folder=tmp_path / "submitit" / "%j")
    engine.update_parameters(timeout_min=5)
    run = functools.partial(_cluster_jobs.hangs_on_first_try, str(tries), ("jax",))
    executor = slurm_executor.SlurmExecutor(engine, run=run, poll_s=0.1)
    monkeypatch.setattr(cluster, "probe", _numpy_and_jax_here)  # imports no backend: faster

    def terminate_when_jax_hangs() -> None:
        started = tries / "jax.started"
        deadline = time.monotonic() + 60
        while not (started.exists() and started.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # numpy's job is back by now
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_when_jax_hangs)
    killer.start()
    out = tmp_path / "runs"
    try:
        with pytest.raises(SystemExit) as stopped:
            run_command.run_suite(run_args(["--backends", "numpy", "jax", "--workloads", "crops",
                                            "--out", str(out)]), executor)
    finally:
        killer.join()
    assert stopped.value.code == 128 + signal.SIGTERM
    pid = int((tries / "jax.started").read_text())
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid), "the hanging job was not cancelled"
    [saved] = out.iterdir()  # numpy's job, whole, and nothing half-written beside it
    assert json.loads(saved.read_text())["machine_info"]["gdbench"]["cut_short"] == {
        "kept": ["numpy"], "not_finished": ["jax"]}


def _numpy_and_jax_here(backends: list[str]) -> cluster.Probe:
    """Faked: this host, where every backend asked for can run on the CPU."""
    return cluster.Probe(cluster.this_host(), {name: None for name in backends},
                         {name: "cpu" for name in backends})


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


# --- the executor's parts, on a stand-in engine (submitit's calls, recorded) -------------

@pytest.mark.parametrize(("text", "minutes"), [
    (" 5 ", 5), ("0:30", 1), ("0:01", 1), ("2:00", 2), ("0:0:61", 2), ("1-2", 1560),
    ("1-0:0:30", 1441), ("0-0:1", 1), ("2:00:00", 120)])
def test_more_slurm_time_limits(text: str, minutes: int) -> None:
    assert parse_time(text) == minutes


@pytest.mark.parametrize(("text", "why"), [
    ("1h", "not a SLURM time limit: '1h' (minutes, H:MM:SS or D-HH:MM:SS)"),
    ("1:2:3:4", "not a SLURM time limit: '1:2:3:4' (minutes, H:MM:SS or D-HH:MM:SS)"),
    ("1-1:2:3:4", "not a SLURM time limit: '1-1:2:3:4' (minutes, H:MM:SS or D-HH:MM:SS)"),
    ("x-1", "not a SLURM time limit: 'x-1' (minutes, H:MM:SS or D-HH:MM:SS)"),
    ("0-0", "a SLURM time limit must be positive, got '0-0'"),
    ("0", "a SLURM time limit must be positive, got '0'"),
])
def test_a_bad_slurm_time_says_why(text: str, why: str) -> None:
    with pytest.raises(ValueError) as bad:
        parse_time(text)
    assert str(bad.value) == why


def test_the_parameters_of_every_job() -> None:
    assert SlurmOptions().parameters() == {
        "job_name": "gdbench", "time": 60, "nodes": 1, "ntasks_per_node": 1,
        "exclusive": True}
    assert SlurmOptions("gpu", 5, "gpu:1", "lab").parameters() == {
        "job_name": "gdbench", "time": 5, "nodes": 1, "ntasks_per_node": 1,
        "exclusive": True, "partition": "gpu", "gres": "gpu:1", "account": "lab"}


def test_the_slurm_engine_gets_the_options_or_says_in_one_line_why_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from gdbench.data.errors import InputError

    made: list[tuple[str, Any]] = []

    class Engine:
        def __init__(self, folder: Path) -> None:
            made.append(("folder", folder))

        def update_parameters(self, **parameters: Any) -> None:
            made.append(("parameters", parameters))

    monkeypatch.setattr(submitit, "SlurmExecutor", Engine)
    options = SlurmOptions("p", 7)
    assert isinstance(slurm_executor.slurm_engine(options, tmp_path), Engine)
    assert made == [("folder", tmp_path), ("parameters", options.parameters())]

    def no_srun(folder: Path) -> None:
        raise RuntimeError("Could not detect \"srun\", are you indeed on a slurm cluster?")

    monkeypatch.setattr(submitit, "SlurmExecutor", no_srun)
    with pytest.raises(InputError) as away:
        slurm_executor.slurm_engine(options, tmp_path)
    assert str(away.value) == ("--executor slurm: Could not detect \"srun\", are you indeed on "
                               "a slurm cluster?")
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(InputError) as missing:
        slurm_executor.slurm_engine(options, tmp_path)
    assert str(missing.value) == ("--executor slurm needs submitit; install it with "
                                  "pip install 'gdbench[cluster]'")


class _Job:
    """A stand-in submitit job: done after ``polls`` looks, then its result (or raises)."""

    def __init__(self, job_id: str, result: Any, polls: int = 0) -> None:
        self.job_id, self._result, self.polls = job_id, result, polls
        self.cancelled: list[bool] = []

    def done(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def result(self) -> Any:
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result

    def cancel(self, check: bool = True) -> None:
        self.cancelled.append(check)


class _Engine:
    def __init__(self, jobs: list[_Job] | Exception) -> None:
        self.jobs = jobs
        self.submitted: list[tuple[Any, ...]] = []

    def submit(self, function: Any, *args: Any) -> _Job:
        if isinstance(self.jobs, Exception):
            raise self.jobs
        self.submitted.append((function, *args))
        return self.jobs.pop(0)


def _probe_result() -> cluster.Probe:
    return cluster.Probe(cluster.Host("node1", "k1", "CPU, 64 cores"), {"numpy": None},
                         {"numpy": "cpu"})


def test_the_partitions_machine_is_what_its_probe_job_said() -> None:
    engine = _Engine([_Job("1", _probe_result())])
    executor = slurm_executor.SlurmExecutor(engine, where="SLURM partition p")
    (found,) = executor.machines(["numpy"], {"numpy": "not here"})
    assert engine.submitted == [(cluster.probe, ["numpy"])]
    assert found == cluster.Machine("k1", "CPU, 64 cores", {"numpy": None})
    executor.close()
    # A SLURM job has its node, GPU included: a backend on the GPU there can run.
    gpu = cluster.Probe(cluster.Host("node2", "k2", "CPU, GPU"), {"torch-cuda": None},
                        {"torch-cuda": "cuda"})
    (found,) = slurm_executor.SlurmExecutor(_Engine([_Job("2", gpu)])).machines(
        ["torch-cuda"], {})
    assert found.gpu_backends == {"torch-cuda"} and found.unavailable == {}


def test_a_failed_probe_or_submission_is_one_line_and_an_interrupted_probe_is_cancelled(
        ) -> None:
    from gdbench.data.errors import InputError

    failed = _Job("1", RuntimeError("\n  job 1 failed  \nTraceback ..."))
    executor = slurm_executor.SlurmExecutor(_Engine([failed]), where="SLURM partition p")
    with pytest.raises(InputError) as probe:
        executor.machines(["numpy"], {})
    assert str(probe.value) == "the probe job on SLURM partition p failed: job 1 failed"
    assert failed.cancelled == [False]
    stopped = _Job("2", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        slurm_executor.SlurmExecutor(_Engine([stopped])).machines(["numpy"], {})
    assert stopped.cancelled == [False]
    refused = slurm_executor.SlurmExecutor(_Engine(OSError("sbatch: error: invalid account\n"
                                                           "more")))
    with pytest.raises(InputError) as sbatch:
        refused.machines(["numpy"], {})
    assert str(sbatch.value) == "submitting to SLURM failed: sbatch: error: invalid account"
    with pytest.raises(InputError) as empty:
        slurm_executor.SlurmExecutor(_Engine(OSError())).machines(["numpy"], {})
    assert str(empty.value) == "submitting to SLURM failed: OSError"


def test_the_slurm_jobs_are_marked_announced_and_handed_back_as_they_finish(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Job 2 finishes first (job 1 after two looks), job 3 fails; the driver sleeps
    poll_s only while nothing has finished."""
    slept: list[float] = []
    monkeypatch.setattr(slurm_executor.time, "sleep", slept.append)
    host = cluster.Host("node1", "k1", "label")
    tasks = [cluster.Task("k1", launcher_job(label), n)
             for n, label in enumerate(("numpy", "jax", "torch-cpu"), start=1)]
    outcomes = [object(), object()]
    jobs = [_Job("11", (outcomes[0], host), polls=2), _Job("12", (outcomes[1], host)),
            _Job("13", ValueError("node died\nmore"), polls=3)]
    engine = _Engine(list(jobs))
    executor = slurm_executor.SlurmExecutor(engine, run=len, poll_s=0.5)
    announced: list[int] = []
    done = list(executor.start(tasks, lambda task: announced.append(task.number)))
    assert announced == [1, 2, 3]
    run_id = executor._run_id
    assert engine.submitted == [(cluster.run_remote, len, t.job, f"{run_id}/{n}")
                                for n, t in enumerate(tasks, start=1)]
    assert done == [cluster.Done(tasks[1], outcomes[1], host),
                    cluster.Done(tasks[0], outcomes[0], host),
                    cluster.Done(tasks[2], None, lost="SLURM job 13: node died")]
    assert slept == [0.5]  # one look with nothing finished (the second found job 1 done)
    assert re.fullmatch(r"[0-9a-f]{12}", run_id)  # the run's own mark, unlike any other's
    assert slurm_executor.SlurmExecutor(engine)._run_id != run_id
    assert all(not job.cancelled for job in jobs)
    # The marks go on counting, so that no two jobs of this executor share one.
    engine.jobs = [_Job("14", (outcomes[0], host))]
    again = executor.run(cluster.Machine("k1", "label", {}), launcher_job("numpy"))
    assert again == cluster.Done(cluster.Task("k1", launcher_job("numpy"), 0), outcomes[0],
                                 host)
    assert engine.submitted[-1][-1] == f"{run_id}/4"


def test_closing_the_stream_early_cancels_the_slurm_jobs_not_finished(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm_executor.time, "sleep", lambda s: None)
    host = cluster.Host("node1", "k1", "label")
    jobs = [_Job("1", (None, host)), _Job("2", (None, host), polls=100),
            _Job("3", (None, host), polls=100)]
    executor = slurm_executor.SlurmExecutor(_Engine(list(jobs)))
    stream = executor.start([cluster.Task("k1", launcher_job(str(n)), n) for n in (1, 2, 3)],
                            lambda task: None)
    assert next(stream).task.number == 1
    stream.close()
    assert [job.cancelled for job in jobs] == [[], [False], [False]]


def launcher_job(label: str) -> Any:
    from gdbench.harness import launcher

    return launcher.Job(label)


def test_by_default_the_driver_asks_slurm_every_poll_s(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(slurm_executor.time, "sleep", slept.append)
    host = cluster.Host("node1", "k1", "label")
    executor = slurm_executor.SlurmExecutor(_Engine([_Job("1", (None, host), polls=1)]))
    assert [d.task.number for d in executor.start(
        [cluster.Task("k1", launcher_job("numpy"), 1)], lambda task: None)] == [1]
    assert slept == [slurm_executor.POLL_S] and slurm_executor.POLL_S > 0
