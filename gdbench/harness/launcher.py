"""The launcher: the one way gdbench starts a benchmark job.

A job (:class:`Job`) is one backend's benchmarks (or the rooflines) run by the suite
(benches/) in a fresh pytest process, so that no other library's thread pool shares the
machine with it; its thread settings are in the process's environment before any library
is imported. A job is a plain, picklable description: :func:`run_job` runs it here and
hands back what it saved (:class:`Outcome`); an executor decides where a job runs
(:class:`LocalExecutor`: here, one job at a time). The launcher also echoes a job's
progress, reads its pytest-benchmark JSON back, and stops it when gdbench is interrupted
(Ctrl-C or SIGTERM). ``gdbench run``, ``audit`` and ``ab`` all start their jobs here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gdbench.harness import gpu, machine
from gdbench.implementations.data_parallel import WORLD_ENV


def _suite_folder() -> Path:
    """The folder of the suite, found without importing it (it is a layer above this one):
    benches/ in a checkout, gdbench/benches in an install."""
    spec = importlib.util.find_spec("gdbench.benches")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))).resolve()


# The suite ships inside the package as gdbench.benches (benches/ in a checkout, mapped by
# pyproject's package-dir), so an installed gdbench runs the same suite as a clone.
BENCHES = _suite_folder()

# The suite's own collection rules, given on the command line because an installed suite
# has no pyproject.toml beside it (and a user's own pytest configuration must not apply).
SUITE_INI = ["-o", "python_files=bench_*.py", "-o", "python_functions=bench_*",
             "-o", "addopts=", "-o", "testpaths="]

@dataclass(frozen=True)
class Job:
    """One benchmark job, as plain data: which benchmarks (``selection``, pytest options
    from :func:`processes` or :func:`retime_selection`), the run's options that every job
    shares, and where its code lives (``tree``: a checkout whose own gdbench and suite it
    runs, for ``gdbench ab``; None for this install). Picklable, so that an executor can
    send it to another process or machine."""

    label: str
    selection: tuple[str, ...] = ()
    dtype: str = "float32"
    quick: bool = False
    threads: int | None = None
    backends: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()
    tree: str | None = None
    extra_env: tuple[tuple[str, str], ...] = field(default=())
    # The user's workloads among ``workloads``: (name, its definition as JSON).
    definitions: tuple[tuple[str, str], ...] = ()
    # Variables of the environment it runs in that it must not inherit: an engine's own
    # settings for its workers (dask's nanny caps their BLAS and OpenMP pools at 1 thread).
    unset_env: tuple[str, ...] = ()

    @classmethod
    def of(cls, args: argparse.Namespace, label: str, selection: Sequence[str] = (),
           tree: str | None = None) -> Job:
        """The job ``label`` of a run with the options ``args`` (gdbench run's)."""
        world = getattr(args, "world", None)  # the data-parallel backends' workers
        return cls(label, tuple(selection), dtype=args.dtype, quick=bool(args.quick),
                   threads=args.threads, backends=tuple(args.backends or ()),
                   workloads=tuple(args.workloads or ()),
                   pytest_args=tuple(args.pytest_args or ()), tree=tree,
                   extra_env=((WORLD_ENV, str(world)),) if world else (),
                   definitions=tuple(getattr(args, "definitions", None) or ()))

    def command(self, json_path: Path) -> list[str]:
        """Its pytest command line, saving its run to ``json_path``; a job from another
        checkout (``tree``) runs that checkout's own suite."""
        cmd = pytest_command(self, json_path, list(self.selection))
        if self.tree is None:
            return cmd
        ours, theirs = str(BENCHES), str(Path(self.tree) / "benches")
        return [theirs if part == ours else
                f"--rootdir={theirs}" if part == f"--rootdir={ours}" else part for part in cmd]

    def env(self) -> dict[str, str]:
        """Its environment: thread settings before import, and a checkout's own code first
        on the path when it runs from one."""
        extra = dict(self.extra_env)
        if self.tree is not None:
            extra["PYTHONPATH"] = self.tree
        return process_env(self.threads, without=self.unset_env, **extra)


@dataclass(frozen=True)
class Outcome:
    """What a job gave back: pytest's exit code, the run it saved (None when it saved no
    readable run), and its wall-clock seconds."""

    job: Job
    code: int
    part: dict[str, Any] | None
    seconds: float

    @property
    def failed(self) -> bool:
        return bool(self.code) or self.part is None


def run_job(job: Job, prefix: str = "", keep: Path | None = None) -> Outcome:
    """Run ``job`` here in a fresh process (:func:`run_process`) and read back its run.
    The run is written to ``keep`` when given, else to a temporary file that is gone when
    this returns, interrupted or not."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gdbench-job-") as tmp:
        path = keep or Path(tmp) / "part.json"
        code = run_process(job.command(path), job.env(), cwd=job.tree, prefix=prefix)
        part = read_part(path) if path.exists() else None
    return Outcome(job, code, part, time.perf_counter() - began)


class Executor(Protocol):
    """Where jobs run. ``run`` returns when the job has finished (or raises when gdbench
    is interrupted, having stopped it)."""

    def run(self, job: Job, prefix: str = "") -> Outcome: ...


class LocalExecutor:
    """Jobs run on this machine, one at a time, each in a fresh process."""

    def run(self, job: Job, prefix: str = "") -> Outcome:
        return run_job(job, prefix)


def pytest_command(args: argparse.Namespace | Job, json_path: Path,
                   selection: Sequence[str] = ()) -> list[str]:
    """The pytest command line of one benchmark process; ``selection`` narrows it (for
    example to one backend) after the user's own options."""
    # The garbage collector is off while rounds are timed (timing.collector_off says why).
    cmd = [sys.executable, "-m", "pytest", str(BENCHES), "-q", "-p", "no:cacheprovider",
           f"--rootdir={BENCHES}", *SUITE_INI,
           "--progress", "--benchmark-save-data", "--benchmark-disable-gc",
           "--benchmark-group-by=group",
           "--benchmark-sort=name", f"--benchmark-json={json_path}", f"--dtype={args.dtype}"]
    if args.quick:
        cmd.append("--quick")
    if args.backends and "--backends" not in selection:
        cmd += ["--backends", *args.backends]
    if args.workloads and "--workloads" not in selection:
        cmd += ["--workloads", *args.workloads]
    if args.threads:
        cmd.append(f"--threads={args.threads}")
    for name, definition in getattr(args, "definitions", None) or ():
        cmd += ["--workload-def", f"{name}={definition}"]
    cmd += list(selection)
    extra = list(args.pytest_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + extra

def processes(backends: Sequence[str], status: dict[str, str | None]) -> list[
        tuple[str, list[str]]]:
    """(label, pytest options) of each benchmark process, in the order they run.

    One process per backend that can run here, as asv runs each benchmark in its own
    process: no other library's thread pool shares the machine with the backend being
    timed. The numpy process also times the rooflines (they are numpy GEMMs); without
    numpy they get a process of their own.
    """
    runnable = [name for name in backends if not status[name]]
    procs = [(name, ["--isolated", "--backends", name,
                     "--roofline", "with" if name == "numpy" else "without"])
             for name in runnable]
    if "numpy" not in runnable:
        procs.append(("roofline", ["--isolated", "--backends", "numpy", "--roofline", "only"]))
    return procs

# The label of the job that times the GPU's yardsticks (an executor gives it a GPU).
GPU_YARDSTICKS = f"roofline-{gpu.DEVICE}"


def yardstick_processes(devices: Iterable[str]) -> list[tuple[str, list[str]]]:
    """(label, pytest options) of the processes that time the GPU's yardsticks: one when a
    backend of the run trains on a CUDA device, so that its rows have a limit of their own
    device (:func:`gdbench.judge.limits.limit_roofs`); none for a CPU-only run."""
    if gpu.DEVICE not in set(devices):
        return []
    return [(GPU_YARDSTICKS,
             ["--isolated", "--backends", "numpy", "--roofline", "gpu"])]

def retime_selection(backend: str, workloads: Sequence[str]) -> list[str]:
    """The pytest options that time ``backend``'s training benchmarks on ``workloads``
    again, in a process of their own (no rooflines)."""
    return ["--isolated", "--backends", backend, "--roofline", "without",
            "--workloads", *workloads]

def process_env(threads: int | None, without: Collection[str] = (),
                **extra: str) -> dict[str, str]:
    """The environment of a benchmark process: this one's but the variables ``without``,
    unbuffered, with ``extra`` and the thread settings of ``--threads`` (before any library
    is imported)."""
    env = {name: value for name, value in os.environ.items() if name not in without}
    env.update(PYTHONUNBUFFERED="1", **extra)
    if threads:
        env.update(machine.thread_env(threads))
    return env

def read_part(path: Path) -> dict[str, Any] | None:
    """The pytest-benchmark run a job saved at ``path``, or None when it is missing or not
    a run (a process that crashed before pytest-benchmark wrote its file)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list) else None

def run_process(cmd: list[str], env: dict[str, str], *, cwd: str | os.PathLike[str] | None = None,
                prefix: str = "") -> int:
    """Run one benchmark process (in ``cwd``), echoing its progress lines as they come,
    each after ``prefix``; its whole output is shown only when it fails (pytest-benchmark's
    own tables are long). Interrupted, the process is stopped before this returns: asked
    to end, then killed after 10 s."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("["):
                print(f"{prefix}{line}", end="", flush=True)
        code = proc.wait()
    except BaseException:  # interrupted: the benchmark process goes too
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if code:
        print("".join(lines[-200:]), end="", file=sys.stderr)
    return code


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Inside the block, SIGTERM (a cancelled CI job, ``kill``, ``timeout``) raises
    SystemExit(143) as Ctrl-C raises KeyboardInterrupt, so that the cleanup runs: the
    benchmark process is stopped, no partial file is left behind, and the caller can keep
    what the jobs that finished measured."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
