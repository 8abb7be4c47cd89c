"""Where the job matrix runs: the kinds of machine an executor reaches, and each job on each.

``gdbench run`` times the same jobs (:class:`gdbench.harness.launcher.Job`) wherever they
run. An executor (a :class:`MatrixExecutor`) first says which kinds of machine it reaches
(:class:`Machine`: hosts that share a fingerprint) and what can run on each, asked there
in a fresh process (:func:`probe`); it then runs every job on every kind and hands back
each job as it finishes (:class:`Done`), with the host that ran it (:class:`Host`), so
that the driver writes one run per machine. :class:`LocalMatrix` is this machine alone,
one job at a time; :mod:`gdbench.harness.dask_executor` and
:mod:`gdbench.harness.slurm_executor` reach further.

At most one timed job runs on a host at a time: here the jobs take turns; a dask bench
worker holds its host's one ``bench`` resource; a SLURM job has its node to itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from gdbench import implementations
from gdbench.harness import launcher, machine

# In the environment of a job started by a cluster executor: "<run id>/<job number>", so
# that the job's benchmark process can be found and stopped (:func:`stop_jobs`).
JOB_MARK = "GDBENCH_JOB"
CPU = "cpu"  # a backend's device when it needs no GPU
HERE = "here"  # where LocalMatrix runs the jobs
STOP_GRACE_S = 10.0  # how long a stopped job's process has to end before it is killed


@dataclass(frozen=True)
class Host:
    """The host that ran a job: its name, the fingerprint of the machine it is (what
    decides its speed, never its name) and a human label."""

    node: str
    fingerprint: str
    label: str


def gpu_models(root: str | os.PathLike[str] = "/proc/driver/nvidia/gpus") -> list[str]:
    """The NVIDIA driver's model name of each GPU of this host, read from ``root`` without
    starting CUDA (empty without the driver)."""
    models = []
    for info in sorted(Path(root).glob("*/information")):
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model":
                    models.append(value.strip())
    return models


def this_host() -> Host:
    """This host, cheaply: no backend's library is imported (a dask worker lives on)."""
    info = machine.describe(load_libraries=False)
    gpus = gpu_models()
    if gpus and not info.get("gpu"):
        info["gpu"] = gpus[0]
    key = machine.fingerprint({"gdbench": info, **machine.platform_info()})
    return Host(platform.node(), key, machine.label({"gdbench": info}))


@dataclass(frozen=True)
class Probe:
    """What a host said of itself: the host, and for each backend asked about, None or
    why it cannot run there, and the device it trains on there (None when it cannot)."""

    host: Host
    status: dict[str, str | None]
    devices: dict[str, str | None]


# Run in a fresh process by probe(): the registry imports each backend's library to ask it.
_PROBE = ("import json, sys; from gdbench.harness import cluster; "
          "print(json.dumps(cluster.backends_here(sys.argv[1:])))")


def backends_here(names: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """{backend: (None or why it cannot run here, the device it trains on here)}."""
    from gdbench import implementations

    out: dict[str, tuple[str | None, str | None]] = {}
    for name in names:
        why = implementations.why_unavailable(name)
        out[name] = (why, None if why else implementations.get(name).device)
    return out


def probe(backends: Sequence[str]) -> Probe:
    """Ask this host which of ``backends`` can run here and on what device, in a fresh
    process, so that no library (nor its hold on a GPU) stays in the caller: a dask
    worker lives on between jobs. RuntimeError naming the host when that process fails."""
    host = this_host()
    proc = subprocess.run([sys.executable, "-c", _PROBE, *backends], capture_output=True,
                          text=True, env=launcher.process_env(None), check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"asking {host.node} which backends can run there failed: {tail}")
    answers = json.loads(lines[-1])
    return Probe(host, {name: why for name, (why, _) in answers.items()},
                 {name: device for name, (_, device) in answers.items()})


@dataclass
class Machine:
    """One kind of machine the jobs run on: hosts that share a fingerprint (``key``), what
    can run there (``status``: None or why not, for each backend asked for), the backends
    that train on its GPU, and where the executor finds it (``where``: dask, its hosts)."""

    key: str
    label: str
    status: dict[str, str | None]
    gpu_backends: frozenset[str] = frozenset()
    where: tuple[str, ...] = ()

    @property
    def unavailable(self) -> dict[str, str]:
        return {name: why for name, why in self.status.items() if why}


def on_probe(found: Probe, where: tuple[str, ...] = (), gpu_slot: bool = True,
             no_gpu_slot: str = "") -> Machine:
    """The machine that ``found`` describes. A backend that trains on a GPU there can run
    only where the executor can hold a GPU for it (``gpu_slot``); else it is skipped,
    saying ``no_gpu_slot``."""
    status = dict(found.status)
    gpu = {name for name, device in found.devices.items()
           if not status[name] and device not in (None, CPU)}
    if not gpu_slot:
        status.update({name: no_gpu_slot for name in gpu})
        gpu = set()
    return Machine(found.host.fingerprint, found.host.label, status, frozenset(gpu), where)


@dataclass(frozen=True)
class Task:
    """One job of the matrix on one machine (by its key); ``number`` from 1, in the order
    the jobs were handed over."""

    machine: str
    job: launcher.Job
    number: int


@dataclass(frozen=True)
class Done:
    """A job that came back: its outcome and the host that ran it (None for this one), or
    ``lost``, why it never finished (its worker died too often, its machine is gone)."""

    task: Task
    outcome: launcher.Outcome | None
    host: Host | None = None
    lost: str = ""


class MatrixExecutor(Protocol):
    """An executor of the whole matrix. ``machines`` says where the jobs can run (it may
    raise InputError: no machine reached); ``start`` hands the tasks over, calling
    ``announce`` with each as it goes, and yields each as it finishes (closed early, it
    cancels the others and stops their benchmark processes); ``run`` runs one job on one
    machine (to time a benchmark again) and returns when it has finished."""

    where: str  # how the jobs are run, for the run's header

    def machines(self, backends: Sequence[str],
                 status: Mapping[str, str | None]) -> list[Machine]: ...

    def start(self, tasks: Sequence[Task],
              announce: Callable[[Task], None]) -> Generator[Done, None, None]: ...

    def run(self, machine: Machine, job: launcher.Job) -> Done: ...

    def close(self) -> None: ...


@dataclass
class LocalMatrix:
    """This machine alone, the jobs one at a time, each in a fresh process
    (:class:`gdbench.harness.launcher.LocalExecutor`)."""

    executor: launcher.Executor = field(default_factory=launcher.LocalExecutor)
    where: str = HERE

    def machines(self, backends: Sequence[str],
                 status: Mapping[str, str | None]) -> list[Machine]:
        info = machine.describe()
        gpu = frozenset(name for name in backends
                        if not status[name] and implementations.get(name).device != CPU)
        return [Machine(info["fingerprint"], machine.label({"gdbench": info}),
                        {name: status[name] for name in backends}, gpu)]

    def start(self, tasks: Sequence[Task],
              announce: Callable[[Task], None]) -> Generator[Done, None, None]:
        for task in tasks:
            announce(task)
            yield Done(task, self.executor.run(task.job))

    def run(self, machine: Machine, job: launcher.Job) -> Done:
        return Done(Task(machine.key, job, 0), self.executor.run(job))

    def close(self) -> None:
        pass


def run_remote(run: Callable[[launcher.Job], launcher.Outcome], job: launcher.Job,
               mark: str) -> tuple[launcher.Outcome, Host]:
    """Run ``job`` where this is called (a dask worker, a SLURM job) with ``run``, its
    processes marked ``mark`` (:data:`JOB_MARK`) so that they can be stopped; what an
    earlier try of the same job left running (its worker died under it) is stopped first."""
    stop_jobs(mark)
    outcome = run(replace(job, extra_env=(*job.extra_env, (JOB_MARK, mark))))
    return replace(outcome, job=job), this_host()


def stop_jobs(mark: str, proc: str | os.PathLike[str] = "/proc",
              grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop every process of this host whose :data:`JOB_MARK` is ``mark``, or starts with
    it when ``mark`` ends in "/" (every job of a run): asked to end (SIGTERM), killed when
    still there after ``grace_s``; returns their ids. Reads the processes' environments
    under ``proc`` (Linux; elsewhere there is nothing to read and nothing is stopped)."""
    mine = f"{JOB_MARK}={mark}".encode()
    pids = []
    for environ in Path(proc).glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if any(v == mine or (mark.endswith("/") and v.startswith(mine)) for v in variables):
            pids.append(int(environ.parent.name))
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(_running(pid, proc) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal([pid for pid in pids if _running(pid, proc)], signal.SIGKILL)
    return pids


def _signal(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def _running(pid: int, proc: str | os.PathLike[str]) -> bool:
    """Whether process ``pid`` still runs (a zombie has ended: only its exit code is left)."""
    try:
        stat = (Path(proc) / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
