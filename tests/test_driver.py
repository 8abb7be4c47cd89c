"""How ``gdbench run`` drives its jobs (commands/run.py's driver), whatever runs them: one
run saved per kind of machine, the jobs lost or failed named, a spoiled benchmark timed
again on its own kind of machine, and a run cut short keeping each machine's finished jobs.

Faked, and said so: the executor (a stand-in that hands every job back at once, with a
constructed part) and so the hosts. The dask and SLURM executors themselves are tested in
test_cluster.py and test_slurm.py."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import _cluster_jobs
import pytest
from _benchjson import counted_names, machine_info, make_run, run_args

from gdbench.commands import run as run_command
from gdbench.data.errors import InputError
from gdbench.harness import cluster, launcher
from gdbench.judge import retime

CPUS = {"fa": "CPU A", "fb": "CPU B"}
KINDS = (("fa", "CPU A, 4 cores", ("a1",)), ("fb", "CPU B, 8 cores", ("b1", "b2")))


def _cpu(path: Path) -> str:
    return str(json.loads(path.read_text())["machine_info"]["gdbench"]["cpu_model"])


@dataclass
class StandInCluster:
    """Not dask: a stand-in executor whose machines are "fa" (CPU A, one host) and "fb"
    (CPU B, two hosts), or those of ``kinds``. Every job comes back at once, in the reverse
    order of handing over, with a constructed part from its machine's CPU, or the part
    ``parts`` gives for (machine, job). The (machine, job) pairs in ``lose`` come back
    lost. ``mixed``: one machine (a SLURM partition) whose jax job runs on a host of
    another kind. ``stop_after``: the run is stopped (Ctrl-C) after that many jobs came
    back. A job timed again (``run``) comes back with ``again``'s part for (machine, job),
    from a host of the kind it names."""

    lose: frozenset[tuple[str, str]] = frozenset()
    mixed: bool = False
    where: str = "a stand-in cluster"
    kinds: tuple[tuple[str, str, tuple[str, ...]], ...] = KINDS
    parts: Mapping[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    again: Mapping[tuple[str, str], tuple[dict[str, Any], str]] = field(default_factory=dict)
    stop_after: int | None = None
    handed: list[str] = field(default_factory=list)
    ran_again: list[str] = field(default_factory=list)

    def machines(self, backends: Any, status: Any) -> list[cluster.Machine]:
        return [cluster.Machine(key, label, {name: None for name in backends}, where=where)
                for key, label, where in self.kinds[:1 if self.mixed else None]]

    def start(self, tasks: Any, announce: Any) -> Generator[cluster.Done, None, None]:
        for task in tasks:
            announce(task)
            self.handed.append(f"{task.machine}:{task.job.label}")
        for n, task in enumerate(reversed(tasks)):
            if n == self.stop_after:
                raise KeyboardInterrupt
            yield self._done(task)

    def run(self, machine: cluster.Machine, job: launcher.Job) -> cluster.Done:
        key = (machine.key, job.label)
        self.ran_again.append(f"{machine.key}:{job.label}:{' '.join(job.selection)}")
        part, kind = self.again[key]
        return cluster.Done(cluster.Task(machine.key, job, 0),
                            launcher.Outcome(job, 0, part, 0.0), self._host(kind))

    def close(self) -> None:
        pass

    def _host(self, kind: str) -> cluster.Host:
        return cluster.Host(f"{kind}-node", kind, f"{CPUS[kind]}, node")

    def _done(self, task: cluster.Task) -> cluster.Done:
        key = (task.machine, task.job.label)
        if key in self.lose:
            return cluster.Done(task, None, lost="its node died")
        kind = "fb" if self.mixed and task.job.label == "jax" else task.machine
        if key in self.parts:
            outcome = launcher.Outcome(task.job, 0, self.parts[key], 0.0)
        else:
            outcome = _cluster_jobs.constructed(task.job, CPUS[kind])
        return cluster.Done(task, outcome, self._host(kind))


def test_each_machine_runs_every_job_and_gets_its_own_run_and_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    executor = StandInCluster()
    code, first = run_command.run_suite(run_args(
        ["--backends", "numpy", "jax", "--workloads", "crops", "--out", str(tmp_path)]),
        executor)
    printed = capsys.readouterr().out
    assert code == 0 and first is not None
    assert sorted(executor.handed) == ["fa:jax", "fa:numpy", "fb:jax", "fb:numpy"]
    saved = sorted(tmp_path.iterdir(), key=_cpu)
    assert first == saved[0]  # the first machine's run
    assert [_cpu(p) for p in saved] == ["CPU A", "CPU B"]
    for path in saved:
        assert counted_names(path) == Counter({"bench_training[crops-numpy]": 1,
                                        "bench_training[crops-jax]": 1,
                                        "bench_roofline[crops]": 1})
        gdbench = json.loads(path.read_text())["machine_info"]["gdbench"]
        assert gdbench["executor"] == "a stand-in cluster"
        assert gdbench["resettled"] == []
    lines = printed.splitlines()
    assert lines[:3] == ["gdbench run: crops profile through a stand-in cluster, on 2 kind(s) "
                         "of machine:",
                         "  CPU A, 4 cores (hosts a1)",
                         "  CPU B, 8 cores (hosts b1, b2)"]
    assert "-- numpy on CPU A, 4 cores (job 1 of 2)" in lines
    assert "-- jax on CPU B, 8 cores (job 2 of 2)" in lines
    assert "   jax on CPU B, 8 cores: 0 s" in lines
    for label in ("CPU A, 4 cores", "CPU B, 8 cores"):
        assert f"== {label}" in lines
    assert [line for line in lines if line.startswith("saved ")] == [
        f"saved {path}" for path in saved]


def test_on_one_machine_nothing_names_the_machine_and_each_job_is_a_process(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, saved = run_command.run_suite(run_args(
        ["--backends", "numpy", "--quick", "--out", str(tmp_path)]),
        StandInCluster(where=cluster.HERE, kinds=KINDS[:1]))
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and saved is not None
    assert lines[0] == "gdbench run: quick profile on CPU A, 4 cores"
    assert "-- numpy (process 1 of 1)" in lines and "   numpy: 0 s" in lines
    assert not any(line.startswith("== CPU") for line in lines)
    gdbench = json.loads(saved.read_text())["machine_info"]["gdbench"]
    assert "executor" not in gdbench  # as a run here always was
    assert saved.name.endswith("_quick.json")


def test_a_lost_job_is_named_and_fails_the_run_while_every_other_cell_is_saved(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_command.run_suite(run_args(
        ["--backends", "numpy", "jax", "--workloads", "crops", "--out", str(tmp_path)]),
        StandInCluster(lose=frozenset({("fb", "jax")})))
    captured = capsys.readouterr()
    assert code == 1
    by_cpu = {_cpu(p): counted_names(p) for p in tmp_path.iterdir()}
    assert by_cpu["CPU B"] == Counter({"bench_training[crops-numpy]": 1,
                                       "bench_roofline[crops]": 1})
    assert len(by_cpu["CPU A"]) == 3
    assert "   jax on CPU B, 8 cores: lost" in captured.out.splitlines()
    assert captured.err.strip().splitlines() == [
        "gdbench run: the jax process on CPU B, 8 cores was lost (its node died): its "
        "benchmarks are not in the saved run"]


def test_a_machine_where_every_job_was_lost_saves_nothing_and_fails_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lost = frozenset({("fb", "numpy"), ("fb", "jax")})
    code, first = run_command.run_suite(run_args(
        ["--backends", "numpy", "jax", "--workloads", "crops", "--out", str(tmp_path)]),
        StandInCluster(lose=lost))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and first is not None
    assert [_cpu(p) for p in tmp_path.iterdir()] == ["CPU A"]
    assert err[-1] == ("gdbench run: no backend ran on CPU B, 8 cores (every one skipped or "
                       "failed); nothing saved")
    assert len(err) == 3  # each lost job, then the machine


def test_a_partition_that_mixes_kinds_of_host_gives_one_run_per_kind(
        tmp_path: Path) -> None:
    code, _ = run_command.run_suite(run_args(
        ["--backends", "numpy", "jax", "--workloads", "crops", "--out", str(tmp_path)]),
        StandInCluster(mixed=True))
    assert code == 0
    by_cpu = {_cpu(p): counted_names(p) for p in tmp_path.iterdir()}
    assert by_cpu == {"CPU A": Counter({"bench_training[crops-numpy]": 1,
                                        "bench_roofline[crops]": 1}),
                      "CPU B": Counter({"bench_training[crops-jax]": 1})}


# --- a spoiled benchmark, timed again on its own kind of machine ----------------------------

def _medium(backend: str, slowness: float, cpu: str, rooflines: bool = False) -> dict[str, Any]:
    """One backend's part on medium from a machine with ``cpu``, every round (and its
    reference) ``slowness`` times slower than on a settled machine."""
    doc = make_run(workloads=("medium",), backends=(backend,), drift=[slowness], sigma=0.01,
                   info=machine_info(cpu=cpu))
    doc["benchmarks"] = [b for b in doc["benchmarks"]
                         if rooflines or b["extra_info"]["kind"] == "training"]
    return doc


def _spoiled_on(key: str, again_kind: str, again_slowness: float = 1.0) -> StandInCluster:
    """Both machines run numpy, torch-manual, jax and torch-cpu on medium; on ``key``,
    torch-cpu's first part was timed while the machine ran 1.5x slower, and timed again it
    comes back ``again_slowness`` times slower, from a host of ``again_kind``."""
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    for machine, cpu in CPUS.items():
        for backend in ("numpy", "torch-manual", "jax", "torch-cpu"):
            slow = 1.5 if (machine, backend) == (key, "torch-cpu") else 1.0
            parts[machine, backend] = _medium(backend, slow, cpu, rooflines=backend == "numpy")
    again = {(key, "torch-cpu"): (_medium("torch-cpu", again_slowness, CPUS[key]), again_kind)}
    return StandInCluster(parts=parts, again=again)


@pytest.fixture
def four_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    # The stand-ins take no time to time: any budget fits, every pass.
    monkeypatch.setattr(retime, "RUN", replace(retime.RUN, budget_share=100.0))
    monkeypatch.setattr(launcher, "processes", lambda backends, status: [
        (name, ["--isolated", "--backends", name])
        for name in ("numpy", "torch-manual", "jax", "torch-cpu")])


@pytest.mark.usefixtures("four_backends")
def test_a_spoiled_benchmark_is_timed_again_on_its_machine_and_the_settled_timing_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    executor = _spoiled_on("fb", "fb")
    code, _ = run_command.run_suite(run_args(["--out", str(tmp_path)]), executor)
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    assert executor.ran_again == ["fb:torch-cpu:--isolated --backends torch-cpu --roofline "
                                  "without --workloads medium"]
    assert ("-- torch-cpu on CPU B, 8 cores (again: 100% of its rounds on medium had a "
            "reference over 25% above the quiet level)") in printed
    runs = {_cpu(p): json.loads(p.read_text()) for p in tmp_path.iterdir()}
    again = executor.again["fb", "torch-cpu"][0]["benchmarks"][0]
    kept = {b["name"]: b for b in runs["CPU B"]["benchmarks"]}
    assert kept["bench_training[medium-torch-cpu]"]["stats"] == again["stats"]
    assert len(runs["CPU B"]["benchmarks"]) == 5  # no duplicate
    assert runs["CPU B"]["machine_info"]["gdbench"]["resettled"] == [{
        "benchmark": "bench_training[medium-torch-cpu]", "by": "run", "unsettled_first": 1.0,
        "unsettled_again": 0.0, "kept": "again"}]
    assert runs["CPU A"]["machine_info"]["gdbench"]["resettled"] == []


@pytest.mark.usefixtures("four_backends")
def test_a_benchmark_timed_again_on_another_kind_of_machine_keeps_its_first_timing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    executor = _spoiled_on("fb", "fa")
    code, _ = run_command.run_suite(run_args(["--out", str(tmp_path)]), executor)
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    # Still spoiled after each pass: tried once a pass, each time on the wrong kind.
    assert len(executor.ran_again) == 2
    assert printed.count("   torch-cpu: timed again on another kind of machine (CPU A, node); "
                         "its first timings are kept") == 2
    run = json.loads(next(p for p in tmp_path.iterdir() if _cpu(p) == "CPU B").read_text())
    first = executor.parts["fb", "torch-cpu"]["benchmarks"][0]
    kept = {b["name"]: b for b in run["benchmarks"]}
    assert kept["bench_training[medium-torch-cpu]"]["stats"] == first["stats"]
    assert run["machine_info"]["gdbench"]["resettled"] == []


# --- a run stopped before its end ------------------------------------------------------------

def test_a_run_stopped_keeps_each_machines_finished_jobs_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Jobs come back fb:jax, fb:numpy, fa:jax, fa:numpy; stopped after three: CPU B's run is
    # whole and saved as it ends; CPU A kept jax and lost numpy (and with it the roofline).
    with pytest.raises(KeyboardInterrupt):
        run_command.run_suite(run_args(["--backends", "numpy", "jax", "--workloads", "crops",
                                        "--out", str(tmp_path)]), StandInCluster(stop_after=3))
    captured = capsys.readouterr()
    runs = {_cpu(p): p for p in tmp_path.iterdir()}
    assert sorted(runs) == ["CPU A", "CPU B"]
    assert not runs["CPU B"].name.endswith("-cut-short.json")
    assert len(counted_names(runs["CPU B"])) == 3
    assert runs["CPU A"].name.endswith("_crops-cut-short.json")
    assert counted_names(runs["CPU A"]) == Counter({"bench_training[crops-jax]": 1})
    doc = json.loads(runs["CPU A"].read_text())
    assert doc["machine_info"]["gdbench"]["cut_short"] == {"kept": ["jax"],
                                                           "not_finished": ["numpy"]}
    assert captured.err.strip().splitlines() == [
        "gdbench run: stopped before the end; kept the finished processes (jax), lost numpy"]
    assert f"saved {runs['CPU A']}" in captured.out.splitlines()


def test_a_run_stopped_before_any_training_job_finished_saves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_command.run_suite(run_args(["--backends", "numpy", "jax", "--workloads", "crops",
                                        "--out", str(tmp_path)]), StandInCluster(stop_after=0))
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err == ""


def test_a_run_stopped_names_every_job_it_kept_and_lost(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--backends", "numpy", "jax", "torch-cpu", "--workloads", "crops", "--out",
            str(tmp_path)]
    one = StandInCluster(kinds=KINDS[:1], stop_after=1)
    with pytest.raises(KeyboardInterrupt):  # torch-cpu came back, then the stop
        run_command.run_suite(run_args(argv), one)
    assert capsys.readouterr().err == ("gdbench run: stopped before the end; kept the finished "
                                       "processes (torch-cpu), lost numpy, jax\n")
    two = StandInCluster(kinds=KINDS[:1], stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_command.run_suite(run_args([*argv, "--out", str(tmp_path / "two")]), two)
    assert capsys.readouterr().err == ("gdbench run: stopped before the end; kept the finished "
                                       "processes (torch-cpu, jax), lost numpy\n")


def test_a_failed_remote_job_points_to_its_workers_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Failing(StandInCluster):
        def _done(self, task: cluster.Task) -> cluster.Done:
            done = super()._done(task)
            if task.job.label != "jax" or done.outcome is None:
                return done
            return cluster.Done(task, launcher.Outcome(task.job, 3, None, 0.0), done.host)

    code, _ = run_command.run_suite(run_args(
        ["--backends", "numpy", "jax", "--workloads", "crops", "--out", str(tmp_path)]),
        Failing(kinds=KINDS[:1]))
    assert code == 3
    assert capsys.readouterr().err == (
        "gdbench run: the jax process failed (pytest exit 3): its benchmarks are not in the "
        "saved run; its output is in the log of the worker that ran it\n")


def test_a_machine_without_hosts_listed_and_a_backend_it_cannot_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Skipping(StandInCluster):
        def machines(self, backends: Any, status: Any) -> list[cluster.Machine]:
            return [cluster.Machine("fa", "CPU A, 4 cores", {"numpy": None,
                                                             "torch-cuda": "no CUDA here"})]

    out = tmp_path / "deep" / "er"  # made, parents and all
    code, saved = run_command.run_suite(run_args(
        ["--backends", "numpy", "torch-cuda", "--workloads", "crops", "--out", str(out)]),
        Skipping())
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and saved is not None and saved.parent == out
    assert lines[:2] == ["gdbench run: crops profile through a stand-in cluster, on 1 kind(s) "
                         "of machine:", "  CPU A, 4 cores"]
    assert "skipped torch-cuda: no CUDA here" in lines


def test_a_folder_where_runs_cannot_go_is_one_line_before_any_job(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs go")
    executor = StandInCluster()
    with pytest.raises(InputError) as refused:
        run_command.run_suite(run_args(["--out", str(blocker)]), executor)
    assert str(refused.value) == f"{blocker}: cannot save runs there (File exists)"
    assert executor.handed == []


@pytest.mark.parametrize(("argv", "profile"), [
    ([], "default"), (["--quick"], "quick"), (["--threads", "2"], "default-2t"),
    (["--workloads", "crops", "small"], "crops-small"),
    (["--quick", "--workloads", "large", "--threads", "1"], "large-1t")])
def test_the_profile_in_a_runs_name(argv: list[str], profile: str) -> None:
    assert run_command._profile(run_args(argv)) == profile
