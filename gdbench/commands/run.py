"""Run the benchmark suite (benches/) through pytest, save the run, and print the table.

Each backend is timed in a pytest process of its own (the numpy process also times the
rooflines; when a backend trains on a GPU, one more process times the GPU's yardsticks),
so that no other library's threads share the machine with it; thread settings
(--threads) are in the environment before any library is imported. A training benchmark
that a host neighbour spoiled for most of its rounds (its paired reference more than 25%
over the workload's quiet level) is timed again in a fresh process of its backend, and
the better-settled timing is kept (machine_info.gdbench.resettled says which). Stopped
before its end (Ctrl-C, SIGTERM), it still saves what its finished jobs measured, named
``...-cut-short`` (``machine_info.gdbench.cut_short`` says what was kept). The
processes' runs are merged into one pytest-benchmark JSON (with every round's time)
under results/runs/ in the current directory (or --out), named by time, machine and
profile so that no run overwrites another: ``pytest-benchmark compare``, pandas and
``gdbench compare`` all read it. Extra arguments after ``--`` go to every pytest
process, e.g. ``gdbench run --quick -- --benchmark-max-time=2``.

Your own problem: ``--shape N,D,K --batch B --epochs E`` times synthetic, seeded data of
that shape; ``--data my.csv --targets COL --batch B`` a CSV file, read as gdbench train
reads it. Workloads declared in your pyproject.toml, as tables
``[tool.gdbench.workloads.NAME]`` (keys: shape or data and targets, batch_size, epochs,
lr, seed, standardize), are timed by name with ``--workloads NAME``. Each workload's
definition is saved with its benchmarks (``extra_info.workload_def``).

--executor dask or slurm runs the same jobs on a cluster: every job on every kind of
machine the cluster has (dask), or each as a SLURM job with a node to itself, one timed
job per host at a time. One run is saved per machine, as soon as its jobs are done, and
each machine's table is printed (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdbench import implementations
from gdbench.commands import executors
from gdbench.commands.options import (
    add_own_problem,
    add_world_argument,
    positive_int,
    resolve_workloads,
)
from gdbench.data.errors import InputError
from gdbench.harness import cluster, gpu, launcher
from gdbench.judge import retime
from gdbench.records.results import write_atomic
from gdbench.records.run import Run, merge, run_name, unused_path
from gdbench.report import tables

# Relative: results go under the directory gdbench run is started from, never into
# site-packages.
RUNS = Path("results") / "runs"

def add_arguments(parser: argparse.ArgumentParser, where: bool = True) -> None:
    """gdbench run's options; ``where``: with those that choose where its jobs run
    (:mod:`gdbench.commands.executors`), which gdbench audit leaves out."""
    parser.add_argument("--quick", action="store_true",
                        help="the CI profile: crops, small and medium, 1.5 s of rounds per "
                             "benchmark (default: crops to large, 2 s)")
    parser.add_argument("--backends", nargs="+", metavar="NAME",
                        help="only these backends (default: every backend but the "
                             "data-parallel ones, which run when named; unavailable ones are "
                             "listed as skipped with their reason)")
    parser.add_argument("--workloads", nargs="+", metavar="NAME",
                        help="only these workloads (default: crops small medium large; "
                             "xl is opt-in)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="pin the run to N CPUs and cap BLAS, OpenMP, torch and XLA at N "
                             "threads; the CI gate uses 1 (recorded either way)")
    add_world_argument(parser)
    parser.add_argument("--out", type=Path, default=RUNS, metavar="DIR",
                        help=f"where to save the run JSON (default: {RUNS}, under the current "
                             "directory)")
    parser.add_argument("--format", choices=["table", "md", "csv", "html"], default="table",
                        help="format of the printed table (default: table)")
    parser.add_argument("--suite-path", action="store_true",
                        help="print the folder of the benchmark suite and exit (to run it "
                             "with pytest directly from an install)")
    add_own_problem(parser)
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="after --, extra arguments for pytest / pytest-benchmark")
    if where:
        executors.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    if getattr(args, "suite_path", False):
        print(launcher.BENCHES)
        return 0
    return run_suite(args)[0]

def _selection(args: argparse.Namespace) -> tuple[dict[str, str | None], list[str]]:
    """{backend: why it cannot run here, or None} and the backends asked for; InputError
    for a suite missing from the install or a name that is not a backend or workload."""
    if not (launcher.BENCHES / "bench_training.py").is_file():
        raise InputError(f"{launcher.BENCHES}: the benchmark suite is missing from this "
                         "install; reinstall gdbench")
    status = implementations.available()
    backends = list(args.backends or implementations.default_names())
    for name in backends:
        if name not in status:
            raise InputError(f"unknown backend {name!r}; the known backends are: "
                             f"{', '.join(status)}")
    resolve_workloads(args)
    return status, backends


def _profile(args: argparse.Namespace) -> str:
    """The run's profile, in its file name: quick, default or its workloads, and threads."""
    profile = "quick" if args.quick else "default"
    if args.workloads:
        profile = "-".join(args.workloads)
    return profile + (f"-{args.threads}t" if args.threads else "")


def run_suite(args: argparse.Namespace,
              executor: cluster.MatrixExecutor | None = None) -> tuple[int, Path | None]:
    """Run, save and print the suite: (the exit code of the first benchmark process that
    failed, else 0; the saved run, the first machine's when there are several, or None).
    Each machine's run keeps the parts of the processes that passed; each failed process
    is named on stderr, last. ``executor``: where the jobs run (default: what ``args``
    ask for, :func:`gdbench.commands.executors.from_args`)."""
    status, backends = _selection(args)
    chosen = executor if executor is not None else executors.from_args(args)
    try:
        code, saved = _Driver(args, chosen).run(backends, status)
    finally:
        chosen.close()
    return code, saved[0] if saved else None


@dataclass
class _Board:
    """One machine's jobs as they come back: the parts of those that passed (with the host
    that ran each), each job's seconds, and the runs saved from them."""

    machine: cluster.Machine
    labels: list[str]  # its jobs, in the order they were given
    finished: int = 0
    kept: list[str] = field(default_factory=list)  # the jobs whose part is kept
    parts: list[tuple[cluster.Host | None, dict[str, Any]]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)
    closed: bool = False  # its runs are saved (or it had nothing to save)


class _Driver:
    """One ``gdbench run``: every job on every machine of the executor, one run saved per
    machine as soon as its jobs are done (here: one machine, the jobs in turn)."""

    def __init__(self, args: argparse.Namespace, executor: cluster.MatrixExecutor) -> None:
        self.args, self.executor = args, executor
        self.profile = _profile(args)
        self.started = time.time()
        self.code = 0
        self.failures: list[str] = []  # one line per failed process, said last
        self.boards: dict[str, _Board] = {}
        self.local = executor.where == cluster.HERE  # as before: here, the jobs in turn
        self.first_began = time.perf_counter()

    def run(self, backends: list[str], status: dict[str, str | None]) -> tuple[int, list[Path]]:
        with launcher.terminate_as_exit():  # stopped by SIGTERM, it cleans up as on Ctrl-C
            machines = self.executor.machines(backends, status)
            try:  # once the machines are known (a refused cluster leaves no folder)
                self.args.out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file in the way, no permission: before any job
                raise InputError(f"{self.args.out}: cannot save runs there "
                                 f"({exc.strerror or exc})") from None
            self._header(machines)
            tasks = []
            for m in machines:
                # The GPU's yardsticks, where a backend trains on the machine's GPU.
                devices = [gpu.DEVICE] if m.gpu_backends else []
                procs = (launcher.processes(backends, m.status)
                         + launcher.yardstick_processes(devices))
                self.boards[m.key] = _Board(m, [label for label, _ in procs])
                tasks += [cluster.Task(m.key, launcher.Job.of(self.args, label, selection), i)
                          for i, (label, selection) in enumerate(procs, start=1)]
            try:
                self.first_began = time.perf_counter()
                # closing: interrupted, the jobs not yet finished are cancelled first
                with contextlib.closing(self.executor.start(tasks, self._announce)) as stream:
                    for done in stream:
                        self._take(done)
            except (KeyboardInterrupt, SystemExit):
                for board in self.boards.values():
                    if not board.closed:
                        _keep_cut_short(board, self._save)
                raise
        return self._report()

    def _take(self, done: cluster.Done) -> None:
        """A job is back: keep its part, and close its machine when it was the last."""
        board = self.boards[done.task.machine]
        part = self._record(board, done)
        board.finished += 1
        if part is not None:
            board.parts.append((done.host, part))
            board.kept.append(done.task.job.label)
        if board.finished == len(board.labels):
            self._close(board)

    @property
    def _several(self) -> bool:
        return len(self.boards) > 1

    def _on(self, machine: cluster.Machine) -> str:
        return f" on {machine.label}" if self._several else ""

    def _header(self, machines: list[cluster.Machine]) -> None:
        if self.local:
            print(f"gdbench run: {self.profile} profile on {machines[0].label}", flush=True)
            return
        print(f"gdbench run: {self.profile} profile through {self.executor.where}, on "
              f"{len(machines)} kind(s) of machine:", flush=True)
        for m in machines:
            hosts = f" (hosts {', '.join(m.where)})" if m.where else ""
            print(f"  {m.label}{hosts}", flush=True)

    def _announce(self, task: cluster.Task) -> None:
        board = self.boards[task.machine]
        kind = "process" if self.local else "job"
        print(f"-- {task.job.label}{self._on(board.machine)} ({kind} {task.number} of "
              f"{len(board.labels)})", flush=True)

    def _record(self, board: _Board, done: cluster.Done, again: str = "") -> dict[str, Any] | None:
        """Say how the job went and return its part; None when it failed or was lost (its
        part is dropped: a failed benchmark's figures are not saved)."""
        label, on = done.task.job.label, self._on(board.machine)
        if again:
            whose, kept = f"timing {label}{on} again", "its first timings are kept"
        else:
            whose, kept = f"the {label} process{on}", "its benchmarks are not in the saved run"
        outcome = done.outcome
        if outcome is None:
            self.code = self.code or 1
            print(f"   {label}{on}: lost", flush=True)
            self.failures.append(f"gdbench run: {whose} was lost ({done.lost}): {kept}")
            return None
        board.seconds[label] = outcome.seconds
        print(f"   {label}{on}: {outcome.seconds:.0f} s", flush=True)
        if not outcome.failed:
            return outcome.part
        self.code = self.code or outcome.code or 1
        how = (f"pytest exit {outcome.code}" if outcome.code else
               "it exited 0 but saved no readable run")
        # A process that exited 0 had its output echoed only in its progress lines.
        output = "" if not outcome.code else "; its output is above" if self.local else \
            "; its output is in the log of the worker that ran it"
        self.failures.append(f"gdbench run: {whose} failed ({how}): {kept}{output}")
        return None

    def _close(self, board: _Board) -> None:
        """Time again what the machine's unsettled moments spoiled, then save its run: one
        per kind of host that ran its jobs (one, unless a SLURM partition mixes kinds)."""
        kinds: dict[str, list[dict[str, Any]]] = {}
        for host, part in board.parts:
            kinds.setdefault(host.fingerprint if host else board.machine.key, []).append(part)
        for key, parts in kinds.items():
            if not any(Run(p).trained for p in parts):
                continue
            policy = retime.RUN_QUICK if self.args.quick else retime.RUN
            resettled = retime.resettle(parts, self._again(board, key), board.seconds,
                                        time.perf_counter() - self.first_began, policy)
            doc = merge(parts, board.machine.unavailable)
            doc["machine_info"]["gdbench"]["resettled"] = resettled
            if not self.local:
                doc["machine_info"]["gdbench"]["executor"] = self.executor.where
            board.saved.append(self._save(doc))
        board.closed = True

    def _again(self, board: _Board, key: str) -> Callable[[str, list[str], str],
                                                          dict[str, Any] | None]:
        """How the machine times a benchmark again (for :func:`retime.resettle`)."""
        def run_one(label: str, selection: list[str], what: str) -> dict[str, Any] | None:
            print(f"-- {label}{self._on(board.machine)} ({what})", flush=True)
            done = self.executor.run(board.machine,
                                     launcher.Job.of(self.args, label, selection))
            part = self._record(board, done, again=what)
            if part is not None and done.host and done.host.fingerprint != key:
                print(f"   {label}: timed again on another kind of machine "
                      f"({done.host.label}); its first timings are kept", flush=True)
                return None
            return part
        return run_one

    def _save(self, doc: dict[str, Any], suffix: str = "") -> Path:
        path = unused_path(self.args.out, run_name(self.profile + suffix, doc["machine_info"],
                                                   self.started))
        write_atomic(path, json.dumps(doc, indent=4))  # a reader never sees half a run
        return path

    def _report(self) -> tuple[int, list[Path]]:
        """Print each machine's table, what it skipped and where it was saved; then the
        failures, and the machines where nothing ran."""
        saved = []
        for board in self.boards.values():
            for path in board.saved:
                print()
                if self._several:
                    print(f"== {board.machine.label}")
                print(tables.render_run(path, fmt=self.args.format))
                for name, why in board.machine.unavailable.items():
                    print(f"skipped {name}: {why}")
                print(f"\nsaved {path}")
                saved.append(path)
        for line in self.failures:
            print(line, file=sys.stderr)
        empty = [b for b in self.boards.values() if not b.saved]
        for board in empty:
            print(f"gdbench run: no backend ran{self._on(board.machine)} (every one skipped "
                  "or failed); nothing saved", file=sys.stderr)
        return (self.code or 1 if empty else self.code), saved


def _keep_cut_short(board: _Board, save: Callable[..., Path]) -> None:
    """Save what a machine's finished jobs measured when the run is stopped before its end
    (Ctrl-C, SIGTERM: a CI job's timeout), as a run of its own whose profile ends in
    ``-cut-short`` and whose ``machine_info.gdbench.cut_short`` names the jobs kept and
    those lost; nothing when no training benchmark finished. A benchmark timed again and
    interrupted keeps its first timing."""
    parts = [part for _, part in board.parts]
    if not any(Run(p).trained for p in parts):
        return
    lost = [label for label in board.labels if label not in board.kept]
    doc = merge(parts, board.machine.unavailable)
    doc["machine_info"]["gdbench"]["cut_short"] = {"kept": list(board.kept),
                                                   "not_finished": lost}
    path = save(doc, "-cut-short")
    print(f"gdbench run: stopped before the end; kept the finished processes "
          f"({', '.join(board.kept)}), lost {', '.join(lost) or 'none'}",
          file=sys.stderr, flush=True)
    print(f"saved {path}", flush=True)
