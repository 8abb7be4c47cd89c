"""The job matrix on SLURM through submitit: the sbatch file each job would be, and the
same executor running real jobs through submitit's LocalExecutor (real submitit jobs, as
processes here: this machine has no SLURM). Nothing of submitit is faked."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

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
