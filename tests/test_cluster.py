"""The job matrix on dask.distributed: real clusters (a LocalCluster of worker processes,
or of workers in this process), real jobs where the figures matter, stand-ins elsewhere.

Faked, and said so where it is: the benchmark processes (stand-in scripts or a stand-in
``run``, as in test_jobs.py), and the GPU a probe reports. dask itself is never faked.
How ``gdbench run`` drives several machines, whatever the executor, is tested on a
stand-in executor in test_driver.py."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _cluster_jobs
import pytest
from _benchjson import counted_names, make_run, run_args

from gdbench import implementations
from gdbench.commands import run as run_command
from gdbench.commands.cli import main
from gdbench.harness import cluster, launcher

distributed = pytest.importorskip("distributed", reason="the cluster extra is not installed")
dask = pytest.importorskip("dask")
from gdbench.harness import dask_executor  # noqa: E402  (needs distributed)

QUIET = {"dashboard_address": ":0"}  # no dashboard on a fixed port


# This process's environment before any nanny ran in it.
ENVIRON = dict(os.environ)


@pytest.fixture(scope="module")
def two_workers() -> Iterator[str]:
    """A real dask cluster: a scheduler and two worker processes (each under a nanny that
    restarts it), one thread and one bench slot each; its address. The nannies run in this
    process and set their workers' variables (OMP_NUM_THREADS=1, ...) in its environment
    too: it is put back afterwards."""
    try:
        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                      resources={"bench": 1}, **QUIET) as local:
            yield local.scheduler_address
    finally:
        for name in [*dask.config.get("distributed.nanny.pre-spawn-environ"), "PYTHONHASHSEED"]:
            if name in ENVIRON:
                os.environ[name] = ENVIRON[name]
            else:
                os.environ.pop(name, None)


@pytest.fixture
def in_process() -> Iterator[Any]:
    """A real dask cluster whose two workers are threads of this process (so that the
    stand-in benchmark processes patched in below reach them), a bench slot each."""
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  resources={"bench": 1}, **QUIET) as local:
        yield local


@pytest.mark.e2e
def test_two_bench_workers_run_numpy_and_jax_on_crops_and_small_each_cell_once(
        two_workers: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if implementations.why_unavailable("jax"):
        pytest.skip(f"jax: {implementations.why_unavailable('jax')}")
    executor = dask_executor.DaskExecutor(distributed.Client(two_workers, set_as_default=False))
    args = run_args(["--backends", "numpy", "jax", "--workloads", "crops", "small", "--quick",
                     "--out", str(tmp_path), "--", "--benchmark-max-time=0.05"])
    code, saved = run_command.run_suite(args, executor)
    printed = capsys.readouterr().out
    assert code == 0 and saved is not None
    assert list(tmp_path.iterdir()) == [saved]  # one machine, one run
    assert counted_names(saved) == Counter({
        f"bench_{kind}[{cell}]": 1 for kind, cells in (
            ("training", ("crops-numpy", "small-numpy", "crops-jax", "small-jax")),
            ("roofline", ("crops", "small"))) for cell in cells})
    info = json.loads(saved.read_text())["machine_info"]["gdbench"]
    assert info["executor"] == f"dask scheduler {two_workers}"
    # The benchmark processes had this process's thread settings, not the ones dask's
    # nanny gives its workers (OMP_NUM_THREADS=1, ...).
    assert info["thread_env"] == {name: ENVIRON.get(name) for name in info["thread_env"]}
    assert f"through dask scheduler {two_workers}, on 1 kind(s) of machine" in printed
    assert "-- numpy (job 1 of 2)" in printed and "-- jax (job 2 of 2)" in printed
    assert f"saved {saved}" in printed and "crops" in printed and "jax" in printed


def test_a_worker_killed_in_the_middle_of_a_job_runs_it_again_and_keeps_every_cell_once(
        two_workers: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The stand-in jax job hangs on its first try; that try's worker process is killed.
    tries = tmp_path / "tries"
    tries.mkdir()
    run = functools.partial(_cluster_jobs.hangs_on_first_try, str(tries), ("jax",))
    executor = dask_executor.DaskExecutor(
        distributed.Client(two_workers, set_as_default=False), run=run)
    killed: list[int] = []

    def kill_the_worker_of_the_first_try() -> None:
        started = tries / "jax.started"
        deadline = time.monotonic() + 60
        while not (started.exists() and started.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        killed.append(int(started.read_text()))
        os.kill(killed[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_worker_of_the_first_try)
    killer.start()
    try:
        args = run_args(["--backends", "numpy", "jax", "--workloads", "crops",
                         "--out", str(tmp_path / "runs")])
        code, saved = run_command.run_suite(args, executor)
    finally:
        killer.join()
    assert code == 0 and saved is not None, capsys.readouterr().err
    assert counted_names(saved) == Counter({"bench_training[crops-numpy]": 1,
                                     "bench_training[crops-jax]": 1, "bench_roofline[crops]": 1})
    assert len(list(tries.glob("jax.*.finished"))) == 1  # run again exactly once
    assert int(next(tries.glob("jax.*.finished")).read_text()) != killed[0]
    assert "lost" not in capsys.readouterr().out


def _stand_in_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        hang: str = "") -> Path:
    """Stand-in benchmark processes for two jobs, numpy and jax: each copies its part of a
    constructed run into place and exits, except ``hang``'s, which writes its process id
    into the file returned and sleeps for a minute."""
    started = tmp_path / "hanging.pid"

    def command(args: Any, json_path: Path, selection: Any = ()) -> list[str]:
        backend = list(selection)[list(selection).index("--backends") + 1]
        if backend == hang:
            return [sys.executable, "-c", "import os, sys, time; open(sys.argv[1], 'w')"
                    ".write(str(os.getpid())); time.sleep(60)", str(started)]
        source = tmp_path / f"{backend}.json"
        source.write_text(json.dumps(make_run(workloads=("crops",), backends=(backend,),
                                              slow_share=0.0)))
        return [sys.executable, "-c", "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])",
                str(source), str(json_path)]

    monkeypatch.setattr(launcher, "pytest_command", command)
    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        (name, ["--isolated", "--backends", name]) for name in ("numpy", "jax")])
    return started


def test_sigterm_cancels_the_remote_jobs_stops_their_processes_and_keeps_whole_files_only(
        in_process: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    started = _stand_in_processes(tmp_path, monkeypatch, hang="jax")
    out = tmp_path / "runs"
    executor = dask_executor.DaskExecutor(distributed.Client(in_process, set_as_default=False))

    def terminate_when_jax_runs() -> None:
        deadline = time.monotonic() + 30
        while not (started.exists() and started.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # numpy's job (no wait) is back by now
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_when_jax_runs)
    killer.start()
    began = time.monotonic()
    try:
        with pytest.raises(SystemExit) as stopped:
            run_command.run_suite(run_args(["--backends", "numpy", "--workloads", "crops",
                                            "--out", str(out)]), executor)
    finally:
        killer.join()
    assert stopped.value.code == 128 + signal.SIGTERM
    assert time.monotonic() - began < 30  # it did not wait for the jax job
    pid = int(started.read_text())
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid), "the hanging benchmark process was left running"
    saved = list(out.iterdir())
    assert len(saved) == 1 and saved[0].suffix == ".json"  # no partial file beside it
    doc = json.loads(saved[0].read_text())
    assert doc["machine_info"]["gdbench"]["cut_short"] == {"kept": ["numpy"],
                                                           "not_finished": ["jax"]}
    assert counted_names(saved[0]) == Counter({"bench_training[crops-numpy]": 1,
                                        "bench_roofline[crops]": 1})
    assert "stopped before the end; kept the finished processes (numpy), lost jax" in \
        capsys.readouterr().err


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_failed_remote_job_is_named_and_the_other_jobs_are_saved(
        in_process: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _stand_in_processes(tmp_path, monkeypatch)
    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        ("numpy", ["--isolated", "--backends", "numpy"]), ("jax", ["--fail"])])
    real = launcher.pytest_command

    def command(args: Any, json_path: Path, selection: Any = ()) -> list[str]:
        if "--fail" in selection:
            return [sys.executable, "-c", "raise SystemExit(3)"]
        return real(args, json_path, selection)

    monkeypatch.setattr(launcher, "pytest_command", command)
    executor = dask_executor.DaskExecutor(distributed.Client(in_process, set_as_default=False))
    code, saved = run_command.run_suite(run_args(["--backends", "numpy", "--workloads", "crops",
                                                  "--out", str(tmp_path / "runs")]), executor)
    assert code == 3 and saved is not None
    assert counted_names(saved) == Counter({"bench_training[crops-numpy]": 1,
                                     "bench_roofline[crops]": 1})
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "gdbench run: the jax process failed (pytest exit 3): its benchmarks are not in the "
        "saved run; its output is in the log of the worker that ran it")


def test_a_machine_whose_bench_workers_are_all_gone_loses_its_waiting_jobs(
        in_process: Any) -> None:
    executor = dask_executor.DaskExecutor(distributed.Client(in_process, set_as_default=False),
                                          run=_cluster_jobs.constructed, lost_after_s=0.2)
    try:
        [found] = executor.machines(["numpy"], {})
        in_process.scale(0)  # every bench worker of the machine goes away
        deadline = time.monotonic() + 10
        while executor.client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.05)
        job = launcher.Job("numpy")
        done = executor.run(found, job)
    finally:
        executor.close()
    assert done.outcome is None and done.task.job == job
    assert done.lost == "no bench worker of its machine was seen for 0.2 s"


# --- GPU jobs go only to a worker that declared a GPU ------------------------------------

RAN_ON: list[tuple[str, str]] = []  # (job, worker): the workers are threads of this process


def _record_worker(job: launcher.Job) -> launcher.Outcome:
    RAN_ON.append((job.label, str(distributed.get_worker().name)))
    return _cluster_jobs.constructed(job)


def _probe_with_a_gpu(backends: list[str]) -> cluster.Probe:
    """Faked: this host as it is, but with a CUDA device for the CUDA backends."""
    cuda = {name: name.endswith("cuda") for name in backends}
    return cluster.Probe(cluster.this_host(), {name: None for name in backends},
                         {name: "cuda" if cuda[name] else "cpu" for name in backends})


@pytest.fixture
def cpu_and_gpu_workers() -> Iterator[Any]:
    """Two workers in this process: "cpu" with a bench slot, "gpu" with a bench slot and a
    GPU resource (the GPU itself is not there: the probe says it is)."""
    spec = {name: {"cls": distributed.Worker, "options": {"nthreads": 1, "resources": res}}
            for name, res in (("cpu", {"bench": 1}), ("gpu", {"bench": 1, "GPU": 1}))}
    with distributed.SpecCluster(workers=spec, scheduler={
            "cls": distributed.Scheduler, "options": QUIET}) as spec_cluster:
        yield spec_cluster


def test_a_cuda_job_goes_only_to_the_worker_with_a_gpu(
        cpu_and_gpu_workers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "probe", _probe_with_a_gpu)
    RAN_ON.clear()
    for _ in range(3):  # the scheduler may pick either worker for numpy; never for CUDA
        executor = dask_executor.DaskExecutor(
            distributed.Client(cpu_and_gpu_workers, set_as_default=False), run=_record_worker)
        args = run_args(["--backends", "numpy", "torch-cuda", "--workloads", "crops",
                         "--out", str(tmp_path)])
        assert run_command.run_suite(args, executor)[0] == 0
    # The GPU's yardsticks (the limit of the GPU rows) are a job that holds the GPU too.
    assert {worker for job, worker in RAN_ON if job.endswith("cuda")} == {"gpu"}
    assert Counter(job for job, _ in RAN_ON) == {"numpy": 3, "torch-cuda": 3,
                                                 "roofline-cuda": 3}


def test_without_a_gpu_worker_the_cuda_backends_are_skipped_with_the_reason(
        in_process: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cluster, "probe", _probe_with_a_gpu)  # a GPU, but no worker holds it
    executor = dask_executor.DaskExecutor(distributed.Client(in_process, set_as_default=False),
                                          run=_cluster_jobs.constructed)
    code, saved = run_command.run_suite(run_args(
        ["--backends", "numpy", "torch-cuda", "--workloads", "crops", "--out", str(tmp_path)]),
        executor)
    assert code == 0 and saved is not None
    unavailable = json.loads(saved.read_text())["machine_info"]["gdbench"]["unavailable"]
    assert unavailable == {"torch-cuda": dask_executor.NO_GPU_SLOT}
    assert f"skipped torch-cuda: {dask_executor.NO_GPU_SLOT}" in capsys.readouterr().out


def test_a_real_probe_on_a_machine_without_cuda_skips_the_cuda_backends(
        in_process: Any) -> None:
    executor = dask_executor.DaskExecutor(distributed.Client(in_process, set_as_default=False))
    try:
        [found] = executor.machines(["numpy", "torch-cuda"], {})
    finally:
        executor.close()
    assert found.key == cluster.this_host().fingerprint
    assert found.status["numpy"] is None
    assert found.status["torch-cuda"] == implementations.why_unavailable("torch-cuda")
    assert found.gpu_backends == (frozenset({"torch-cuda"}) if not found.status["torch-cuda"]
                                  else frozenset())


# --- the unit of a GPU slot, of a probe, of stopping a job ----------------------------

def test_a_backend_on_the_gpu_needs_a_gpu_slot_else_it_is_skipped_saying_so() -> None:
    host = cluster.Host("node", "f1", "CPU, 8 cores")
    found = cluster.Probe(host, {"numpy": None, "torch-cuda": None, "jax": "jax is missing"},
                          {"numpy": "cpu", "torch-cuda": "cuda", "jax": None})
    with_gpu = cluster.on_probe(found, ("h1",), gpu_slot=True)
    assert with_gpu.gpu_backends == {"torch-cuda"} and with_gpu.where == ("h1",)
    assert with_gpu.unavailable == {"jax": "jax is missing"}
    without = cluster.on_probe(found, gpu_slot=False, no_gpu_slot="no GPU slot")
    assert without.gpu_backends == frozenset()
    assert without.unavailable == {"torch-cuda": "no GPU slot", "jax": "jax is missing"}


def test_the_gpu_models_are_read_from_the_nvidia_driver(tmp_path: Path) -> None:
    for i, model in enumerate(["NVIDIA H100 80GB HBM3", "NVIDIA A10"]):
        (tmp_path / f"0000:0{i}:00.0").mkdir()
        (tmp_path / f"0000:0{i}:00.0" / "information").write_text(
            f"Model: \t\t {model}\nIRQ:   42\n")
    assert cluster.gpu_models(tmp_path) == ["NVIDIA H100 80GB HBM3", "NVIDIA A10"]
    assert cluster.gpu_models(tmp_path / "none") == []


def test_stop_jobs_stops_the_marked_processes_and_no_other() -> None:
    run = uuid.uuid4().hex  # marks of this test's own: no other process has them
    marks = [f"{run}1/1", f"{run}1/2", f"{run}2/1"]
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              env={**os.environ, cluster.JOB_MARK: mark}) for mark in marks]
    try:
        assert cluster.stop_jobs(f"{run}1/1") == [procs[0].pid]
        assert procs[0].wait(timeout=10) == -signal.SIGTERM
        assert cluster.stop_jobs(f"{run}1/") == [procs[1].pid]  # every job of the run
        assert procs[1].wait(timeout=10) == -signal.SIGTERM
        assert procs[2].poll() is None  # another run's job goes on
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_gpu_model_is_read_line_by_line_and_an_unreadable_file_is_passed_over(
        tmp_path: Path) -> None:
    (tmp_path / "0000:02:00.0").mkdir()
    (tmp_path / "0000:02:00.0" / "information").write_text("IRQ: 1\n  Model :  NVIDIA A10\n"
                                                           "Model name: other\n")
    (tmp_path / "0000:01:00.0" / "information").mkdir(parents=True)  # cannot be read
    (tmp_path / "0000:00:00.0").mkdir()
    (tmp_path / "0000:00:00.0" / "information").write_text("Model: NVIDIA L4\n")
    assert cluster.gpu_models(tmp_path) == ["NVIDIA L4", "NVIDIA A10"]  # in the bus's order


@pytest.mark.parametrize(("known_gpu", "label"), [
    (None, "Test CPU, 4 cores, NVIDIA L4"),  # the driver's model, with no CUDA library asked
    ("NVIDIA A100", "Test CPU, 4 cores, NVIDIA A100"),  # what the machine facts said
])
def test_this_host_names_its_gpu_from_the_driver_when_nothing_else_did(
        monkeypatch: pytest.MonkeyPatch, known_gpu: str | None, label: str) -> None:
    import platform

    asked: list[bool] = []

    def describe(load_libraries: bool = True) -> dict[str, Any]:
        asked.append(load_libraries)
        info: dict[str, Any] = {"cpu_model": "Test CPU", "cpu_count": 4}
        return {**info, "gpu": known_gpu} if known_gpu else info

    monkeypatch.setattr(cluster.machine, "describe", describe)
    monkeypatch.setattr(cluster, "gpu_models", lambda: ["NVIDIA L4", "NVIDIA T4"])
    host = cluster.this_host()
    assert asked == [False]
    assert host.node == platform.node() and host.label == label
    gpu = known_gpu or "NVIDIA L4"
    assert host.fingerprint == cluster.machine.fingerprint({
        "gdbench": {"cpu_model": "Test CPU", "cpu_count": 4, "gpu": gpu},
        **cluster.machine.platform_info()})


def test_a_probe_asks_a_fresh_process_and_names_the_host_when_it_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    found = cluster.probe(["numpy"])
    assert found.host == cluster.this_host()
    assert (found.status, found.devices) == ({"numpy": None}, {"numpy": "cpu"})
    node = cluster.this_host().node
    with pytest.raises(RuntimeError) as failed:
        cluster.probe(["no-such-backend"])
    assert str(failed.value).startswith(f"asking {node} which backends can run there failed: ")
    assert "no-such-backend" in str(failed.value).splitlines()[-1]
    monkeypatch.setattr(cluster, "_PROBE", "import sys; print('x\\ny', file=sys.stderr); "
                        "sys.exit(3)")
    with pytest.raises(RuntimeError) as said:
        cluster.probe(["numpy"])
    assert str(said.value) == f"asking {node} which backends can run there failed: y"
    monkeypatch.setattr(cluster, "_PROBE", "pass")  # ends well, says nothing
    with pytest.raises(RuntimeError, match=f"^asking {node} which backends can run there "
                                           "failed: no output$"):
        cluster.probe(["numpy"])
    monkeypatch.setattr(cluster, "_PROBE", "print('[1]'); print('{\"numpy\": [null, \"cpu\"]}')")
    assert cluster.probe(["numpy"]).status == {"numpy": None}  # its last line is the answer


def test_this_machine_alone_runs_each_job_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    monkeypatch.setattr(cluster.implementations, "get", lambda name: SimpleNamespace(
        device="cuda" if name.endswith("cuda") else "cpu"))
    ran: list[str] = []

    class Executor:
        def run(self, job: launcher.Job) -> launcher.Outcome:
            ran.append(job.label)
            return launcher.Outcome(job, 0, {"benchmarks": []}, 1.0)

    assert isinstance(cluster.LocalMatrix().executor, launcher.LocalExecutor)
    matrix = cluster.LocalMatrix(Executor())  # type: ignore[arg-type]
    assert matrix.where == cluster.HERE == "here"
    status = {"numpy": None, "torch-cuda": None, "jax-cuda": "no GPU", "jax": None}
    (here,) = matrix.machines(["numpy", "torch-cuda", "jax-cuda"], status)
    info = cluster.machine.describe()
    assert (here.key, here.label) == (info["fingerprint"],
                                      cluster.machine.label({"gdbench": info}))
    assert here.status == {"numpy": None, "torch-cuda": None, "jax-cuda": "no GPU"}
    assert here.gpu_backends == {"torch-cuda"} and here.where == ()
    assert here.unavailable == {"jax-cuda": "no GPU"}
    tasks = [cluster.Task(here.key, launcher.Job(label), n)
             for n, label in enumerate(("numpy", "jax"), start=1)]
    announced: list[int] = []
    done = matrix.start(tasks, lambda task: announced.append(task.number))
    first = next(done)
    assert (first.task, first.host, first.lost) == (tasks[0], None, "")
    assert announced == [1] and ran == ["numpy"]  # one job at a time, announced as it goes
    assert [d.task for d in done] == [tasks[1]] and announced == [1, 2]
    again = matrix.run(here, launcher.Job("numpy"))
    assert again.task == cluster.Task(here.key, launcher.Job("numpy"), 0)
    assert again.outcome is not None and again.outcome.seconds == 1.0
    matrix.close()


def test_a_remote_job_first_stops_what_an_earlier_try_left_and_is_marked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[str] = []
    monkeypatch.setattr(cluster, "stop_jobs", stopped.append)
    seen: list[launcher.Job] = []

    def run(job: launcher.Job) -> launcher.Outcome:
        assert stopped == ["run1/3"]  # before the job starts
        seen.append(job)
        return launcher.Outcome(job, 0, None, 2.0)

    job = launcher.Job("numpy", extra_env=(("A", "1"),))
    outcome, host = cluster.run_remote(run, job, "run1/3")
    assert seen[0].extra_env == (("A", "1"), (cluster.JOB_MARK, "run1/3"))
    assert outcome == launcher.Outcome(job, 0, None, 2.0)  # the job as it was handed over
    assert host == cluster.this_host()


def _fake_proc(root: Path, processes: dict[int, tuple[bytes, str]]) -> Path:
    """A /proc of ``processes``: {pid: (environ, state)}; environ None: unreadable."""
    for pid, (environ, state) in processes.items():
        (root / str(pid)).mkdir(parents=True)
        if environ is None:
            (root / str(pid) / "environ").mkdir()
        else:
            (root / str(pid) / "environ").write_bytes(environ)
        (root / str(pid) / "stat").write_text(f"{pid} (python3) {state} 1 2 3\n")
    return root


def test_stop_jobs_kills_what_is_still_running_after_the_grace_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read from a fake /proc, signals recorded, not sent: 11 ends at once, 12 stays a
    zombie (it has ended), 13 ignores SIGTERM and is killed; 14 and 15 are not this job's
    ("run1/10" is not "run1/1"), 16 cannot be read."""
    mark = cluster.JOB_MARK
    proc = _fake_proc(tmp_path, {
        11: (f"A=1\0{mark}=run1/1\0".encode(), "S"), 12: (f"{mark}=run1/1".encode(), "Z"),
        13: (f"{mark}=run1/1\0B=2".encode(), "R"), 14: (f"{mark}=run1/10".encode(), "S"),
        15: (f"X{mark}=run1/1".encode(), "S"), 16: (None, "S")})
    sent: list[tuple[list[int], int]] = []

    def signal_(pids: list[int], signum: int) -> None:
        sent.append((sorted(pids), signum))
        if signum == signal.SIGTERM and 11 in pids:
            (proc / "11").rename(proc / "gone")  # it ended

    monkeypatch.setattr(cluster, "_signal", signal_)
    began = time.monotonic()
    assert sorted(cluster.stop_jobs("run1/1", proc, grace_s=0.3)) == [11, 12, 13]
    assert time.monotonic() - began >= 0.3  # 13 was given its grace time
    assert sent == [([11, 12, 13], signal.SIGTERM), ([13], signal.SIGKILL)]
    sent.clear()
    assert sorted(cluster.stop_jobs("run1/", proc, grace_s=0.0)) == [12, 13, 14]
    assert sent == [([12, 13, 14], signal.SIGTERM), ([13, 14], signal.SIGKILL)]
    sent.clear()
    (proc / "13" / "stat").write_text("13 (python3) Z 1\n")
    (proc / "14" / "stat").unlink()
    began = time.monotonic()
    assert sorted(cluster.stop_jobs("run1/", proc, grace_s=30.0)) == [12, 13, 14]
    assert time.monotonic() - began < 10  # nothing left running: no waiting out the grace
    assert sent == [([12, 13, 14], signal.SIGTERM), ([], signal.SIGKILL)]


def test_a_process_whose_name_holds_a_paren_is_read_by_its_state(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text("7 (a) Z (b) S 1 2\n")
    assert cluster._running(7, tmp_path)  # "S", after the name's last ")"
    (tmp_path / "7" / "stat").write_text("7 (a) S (b) Z 1 2\n")
    assert not cluster._running(7, tmp_path)
    assert not cluster._running(8, tmp_path)


def test_stop_jobs_kills_a_real_process_that_ignores_sigterm() -> None:
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")
    mark = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            env={**os.environ, cluster.JOB_MARK: f"{mark}/1"})
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert cluster.stop_jobs(f"{mark}/1", grace_s=0.5) == [proc.pid]
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


# --- what the user sees when dask cannot be used ---------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_scheduler_where_nothing_listens_is_one_line_exit_2_and_no_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    out = tmp_path / "runs"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["run", "--executor", "dask", "--scheduler", address, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"gdbench run: error: cannot reach the dask scheduler at {address}")
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_cluster_without_a_bench_worker_says_how_to_start_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                                  **QUIET) as local:
        code = main(["run", "--executor", "dask", "--scheduler", local.scheduler_address,
                     "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "has no bench worker" in err and "dask worker --nthreads 1 --resources bench=1" in err
    assert not (tmp_path / "runs").exists()


def test_without_the_cluster_extra_dask_names_the_extra(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    assert main(["run", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "pip install 'gdbench[cluster]'" in capsys.readouterr().err


def test_without_a_scheduler_address_dask_asks_for_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    with dask.config.set({"scheduler-address": None}):
        assert main(["run", "--executor", "dask"]) == 2
    assert "--executor dask needs --scheduler tcp://HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--scheduler", "tcp://h:1"], ["--slurm-partition", "p"],
                                    ["--slurm-time", "10"]])
def test_an_option_of_another_executor_is_one_line_exit_2(
        option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *option]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is an option of --executor" in err


# --- the dask executor's parts, on a stand-in client ---------------------------------------

class _Client:
    """A stand-in dask client: its workers (address -> info), what it was asked to run,
    submit and cancel, and what gather gives back (or raises)."""

    def __init__(self, workers: dict[str, dict[str, Any]], gathered: Any = None) -> None:
        self.scheduler = type("Scheduler", (), {"address": "tcp://sched:8786"})()
        self.workers = workers
        self.gathered = gathered
        self.calls: list[tuple[Any, ...]] = []

    def scheduler_info(self) -> dict[str, Any]:
        return {"workers": self.workers}

    def run(self, function: Any, *args: Any, workers: Any = None) -> Any:
        self.calls.append(("run", function, args, workers))
        if function is cluster.this_host:
            return {a: cluster.Host(f"n{a[-1]}", info["kind"], f"label {info['kind']}")
                    for a, info in self.workers.items() if a in workers}
        return None

    def submit(self, function: Any, *args: Any, **options: Any) -> tuple[Any, ...]:
        self.calls.append(("submit", function, args, options))
        return args

    def gather(self, futures: dict[str, Any]) -> Any:
        if isinstance(self.gathered, Exception):
            raise self.gathered
        return {key: self.gathered[key] for key in futures}

    def cancel(self, futures: list[Any]) -> None:
        self.calls.append(("cancel", futures))


def _worker(host: str, kind: str, **resources: int) -> dict[str, Any]:
    return {"host": host, "kind": kind, "resources": resources}


def test_the_dask_machines_are_the_bench_workers_grouped_by_fingerprint() -> None:
    client = _Client({"tcp://a:1": _worker("a", "k1", bench=1),
                      "tcp://b:1": _worker("b", "k1", bench=1, GPU=1),
                      "tcp://c:1": _worker("c", "k2", bench=1),
                      "tcp://d:1": _worker("d", "k2"), "tcp://e:1": _worker("e", "k3")})
    probes = {key: cluster.Probe(cluster.Host("n", key, f"label {key}"),
                                 {"numpy": None, "torch-cuda": None},
                                 {"numpy": "cpu", "torch-cuda": "cuda"}) for key in ("k1", "k2")}
    client.gathered = probes
    executor = dask_executor.DaskExecutor(client)
    assert executor.where == "dask scheduler tcp://sched:8786"
    k1, k2 = executor.machines(["numpy", "torch-cuda"], {"numpy": "not here"})
    assert client.calls[0] == ("run", cluster.this_host, (),
                               ["tcp://a:1", "tcp://b:1", "tcp://c:1"])  # bench workers only
    submits = [c for c in client.calls if c[0] == "submit"]
    assert [(c[1], c[2], c[3]) for c in submits] == [
        (cluster.probe, (["numpy", "torch-cuda"],), {"workers": ["tcp://a:1"],
                                                      "resources": {"bench": 1}, "pure": False}),
        (cluster.probe, (["numpy", "torch-cuda"],), {"workers": ["tcp://c:1"],
                                                      "resources": {"bench": 1}, "pure": False})]
    assert (k1.key, k1.label, k1.where, k1.gpu_backends) == ("k1", "label k1", ("a", "b"),
                                                             {"torch-cuda"})
    assert k1.status == {"numpy": None, "torch-cuda": None}  # theirs, not this host's
    assert (k2.where, k2.gpu_backends) == (("c",), frozenset())
    assert k2.unavailable == {"torch-cuda": "its dask workers have no GPU resource (start "
                                            "the worker of a GPU host with --resources "
                                            "bench=1,GPU=1)"}
    # A GPU job holds the GPU where the backend trains on one, and the GPU's yardsticks too.
    task = functools.partial(cluster.Task, number=1)
    assert executor._resources(task("k1", launcher.Job("torch-cuda"))) == {"bench": 1, "GPU": 1}
    assert executor._resources(task("k1", launcher.Job(launcher.GPU_YARDSTICKS))) == {
        "bench": 1, "GPU": 1}
    assert executor._resources(task("k1", launcher.Job("numpy"))) == {"bench": 1}
    assert executor._resources(task("k2", launcher.Job("torch-cuda"))) == {"bench": 1}


def test_a_dask_host_whose_probe_fails_is_one_line_and_no_bench_worker_says_how_to_start_one(
        ) -> None:
    from gdbench.data.errors import InputError

    client = _Client({"tcp://a:1": _worker("a", "k1", bench=1)},
                     gathered=RuntimeError("asking n1 which backends can run there failed: x"))
    with pytest.raises(InputError) as failed:
        dask_executor.DaskExecutor(client).machines(["numpy"], {})
    assert str(failed.value) == "asking n1 which backends can run there failed: x"
    none = _Client({"tcp://a:1": _worker("a", "k1"), "tcp://b:1": _worker("b", "k1", bench=0),
                    "tcp://c:1": {"host": "c", "kind": "k1", "resources": None}})
    with pytest.raises(InputError) as no_bench:
        dask_executor.DaskExecutor(none).machines(["numpy"], {})
    assert str(no_bench.value) == (
        "the dask scheduler at tcp://sched:8786 has no bench worker (3 worker(s) without a "
        "bench resource): start one on each machine with dask worker --nthreads 1 "
        "--resources bench=1 tcp://sched:8786")


def test_a_machine_loses_its_waiting_jobs_only_after_no_bench_worker_for_lost_after_s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(dask_executor.time, "monotonic", lambda: now[0])
    client = _Client({"tcp://a:1": _worker("a", "k1", bench=1),
                      "tcp://c:1": _worker("c", "k2")})  # k2's host is there, not as a bench
    executor = dask_executor.DaskExecutor(client, lost_after_s=5.0)
    executor._machines = {key: cluster.Machine(key, key, {}, where=(host,))
                          for key, host in (("k1", "a"), ("k2", "c"))}
    futures = {"f1": cluster.Task("k1", launcher.Job("numpy"), 1),
               "f2": cluster.Task("k2", launcher.Job("numpy"), 2),
               "f3": cluster.Task("k2", launcher.Job("jax"), 3)}
    gone: dict[str, float] = {}
    assert executor._lost(set(futures), futures, gone) == [] and gone == {"k2": 100.0}
    now[0] = 104.9
    assert executor._lost(set(futures), futures, gone) == []
    assert not [c for c in client.calls if c[0] == "cancel"]
    now[0] = 105.0
    assert sorted(executor._lost(set(futures), futures, gone)) == ["f2", "f3"]
    assert [sorted(c[1]) for c in client.calls if c[0] == "cancel"] == [["f2", "f3"]]
    client.workers["tcp://c:1"] = _worker("c", "k2", bench=1)  # back: its clock starts again
    assert executor._lost({"f2"}, futures, gone) == [] and gone == {}
    client.workers["tcp://c:1"] = _worker("c", "k2")
    now[0] = 109.0
    assert executor._lost({"f2"}, futures, gone) == [] and gone == {"k2": 109.0}


def test_cancelling_stops_the_runs_processes_or_says_why_it_could_not(
        capsys: pytest.CaptureFixture[str]) -> None:
    client = _Client({})
    executor = dask_executor.DaskExecutor(client)
    executor._cancel([])
    assert client.calls == []  # nothing left running: nothing to ask
    executor._cancel(["f1"])
    assert client.calls == [("cancel", ["f1"]),
                            ("run", cluster.stop_jobs, (f"{executor._run_id}/",), None)]

    def gone(futures: list[Any]) -> None:
        raise OSError("the scheduler is gone")

    client.cancel = gone  # type: ignore[method-assign]
    executor._cancel(["f1"])
    assert capsys.readouterr().err == ("gdbench: could not stop the jobs on the dask workers: "
                                       "the scheduler is gone\n")


class _Future:
    def __init__(self, status: str, value: Any) -> None:
        self.status, self.value = status, value

    def exception(self) -> Any:
        return self.value

    def result(self) -> Any:
        return self.value


def test_a_finished_dask_job_gives_its_outcome_and_a_failed_one_why_it_was_lost() -> None:
    task = cluster.Task("k1", launcher.Job("numpy"), 1)
    host = cluster.Host("n1", "k1", "label")
    outcome = launcher.Outcome(task.job, 0, None, 1.0)
    assert dask_executor._done(task, _Future("finished", (outcome, host))) == cluster.Done(
        task, outcome, host)
    for error, why in ((ValueError("bad value\nmore"), "ValueError: bad value"),
                       (KeyError(), "KeyError"), (OSError("  "), "OSError")):
        assert dask_executor._done(task, _Future("error", error)) == cluster.Done(
            task, None, lost=why)


def test_a_dask_job_runs_without_what_the_nanny_set_for_its_worker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {"distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1,
                                                        "MALLOC_TRIM_THRESHOLD_": 65536,
                                                        "MKL_NUM_THREADS": None},
                "distributed.nanny.environ": {"USER_SET": "x", "OPENBLAS_NUM_THREADS": 1,
                                              "MALLOC_ARENA_MAX": 2}}
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setenv("MKL_NUM_THREADS", "None")
    monkeypatch.setenv("USER_SET", "y")  # not the nanny's value: the user's own
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("PYTHONHASHSEED", dask_executor.NANNY_HASH_SEED)
    with dask.config.set(settings):
        assert dask_executor.nanny_environ() == ["OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_",
                                                 "MALLOC_ARENA_MAX", "PYTHONHASHSEED"]
        monkeypatch.setenv("PYTHONHASHSEED", "0")
        monkeypatch.delenv("MALLOC_ARENA_MAX")
        assert dask_executor.nanny_environ() == ["OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_"]
        ran: list[tuple[Any, ...]] = []
        monkeypatch.setattr(cluster, "run_remote", lambda *a: ran.append(a) or "done")
        job = launcher.Job("numpy", unset_env=("A",))
        assert dask_executor.run_on_worker(len, job, "r/1") == "done"
    assert ran == [(len, launcher.Job("numpy", unset_env=("A", "OMP_NUM_THREADS",
                                                          "MALLOC_TRIM_THRESHOLD_")), "r/1")]


def test_connecting_to_dask_says_in_one_line_why_it_cannot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gdbench.data.errors import InputError

    made: list[tuple[str, bool]] = []
    failure: list[Exception] = []

    def client(address: str, set_as_default: bool = True) -> _Client:
        made.append((address, set_as_default))
        if failure:
            raise failure[0]
        return _Client({})

    monkeypatch.setattr(distributed, "Client", client)
    with dask.config.set({"scheduler-address": "tcp://configured:8786"}):
        assert dask_executor.connect(None).where == "dask scheduler tcp://sched:8786"
        dask_executor.connect("tcp://given:1")
    assert made == [("tcp://configured:8786", False), ("tcp://given:1", False)]
    for error, why in ((OSError("Timed out trying to connect\nafter 1 s"),
                        "Timed out trying to connect"), (TimeoutError(), "TimeoutError"),
                       (ValueError("  \nbad address"), "bad address")):
        failure[:] = [error]
        with pytest.raises(InputError) as refused:
            dask_executor.connect("tcp://h:1")
        assert str(refused.value) == f"cannot reach the dask scheduler at tcp://h:1: {why}"
    with dask.config.set({"scheduler-address": None}), pytest.raises(InputError) as none:
        dask_executor.connect("")
    assert str(none.value) == ("--executor dask needs --scheduler tcp://HOST:PORT (or dask's "
                               "scheduler-address setting)")
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(InputError) as missing:
        dask_executor.connect("tcp://h:1")
    assert str(missing.value) == ("--executor dask needs dask.distributed; install it with "
                                  "pip install 'gdbench[cluster]'")


def test_each_dask_job_is_submitted_held_to_its_machine_with_a_key_of_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import re

    class Future:
        status = "finished"

        def __init__(self, job: launcher.Job) -> None:
            self.job = job

        def done(self) -> bool:
            return True

        def result(self) -> tuple[launcher.Outcome, cluster.Host]:
            return launcher.Outcome(self.job, 0, None, 1.0), cluster.Host("n", "k1", "l")

    client = _Client({})
    client.submit = lambda function, run, job, mark, **options: (  # type: ignore[method-assign]
        client.calls.append(("submit", function, run, job, mark, options)) or Future(job))
    client.as_current = contextlib.nullcontext  # type: ignore[attr-defined]
    waited: list[dict[str, Any]] = []
    monkeypatch.setattr(distributed, "wait", lambda futures, **kw: waited.append(kw))
    executor = dask_executor.DaskExecutor(client, run=len)
    executor._machines = {"k1": cluster.Machine("k1", "l", {}, frozenset({"torch-cuda"}),
                                                ("hostA", "hostB"))}
    tasks = [cluster.Task("k1", launcher.Job(label), n)
             for n, label in enumerate(("numpy", "torch-cuda"), start=1)]
    done = list(executor.start(tasks, lambda task: None))
    assert sorted((d.task for d in done), key=lambda t: t.number) == tasks
    run_id = executor._run_id
    assert re.fullmatch(r"[0-9a-f]{12}", run_id)
    submitted = [c[1:] for c in client.calls if c[0] == "submit"]
    assert submitted == [
        (dask_executor.run_on_worker, len, tasks[0].job, f"{run_id}/1",
         {"key": f"gdbench-numpy-{run_id}-1", "workers": ["hostA", "hostB"],
          "allow_other_workers": False, "resources": {"bench": 1}, "retries": 1,
          "pure": False}),
        (dask_executor.run_on_worker, len, tasks[1].job, f"{run_id}/2",
         {"key": f"gdbench-torch-cuda-{run_id}-2", "workers": ["hostA", "hostB"],
          "allow_other_workers": False, "resources": {"bench": 1, "GPU": 1}, "retries": 1,
          "pure": False})]
    assert waited == [{"timeout": dask_executor.POLL_S, "return_when": "FIRST_COMPLETED"}]
    assert not [c for c in client.calls if c[0] == "cancel"]  # all finished: none to stop
    again = executor.run(executor._machines["k1"], launcher.Job("numpy"))
    assert again.task == cluster.Task("k1", launcher.Job("numpy"), 0)
    assert client.calls[-1][4] == f"{run_id}/3"  # the marks go on counting


def test_a_nanny_sets_the_hash_seed_gdbench_takes_for_its_own(two_workers: str) -> None:
    if "PYTHONHASHSEED" in ENVIRON:
        pytest.skip("PYTHONHASHSEED is set here: a nanny keeps it")
    with distributed.Client(two_workers, set_as_default=False) as client:
        seeds = set(client.run(os.environ.get, "PYTHONHASHSEED").values())
    assert seeds == {dask_executor.NANNY_HASH_SEED}
