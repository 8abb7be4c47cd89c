"""The job matrix on a SLURM cluster, through submitit: each job a SLURM job of its own.

Every job asks for a whole node (``--exclusive``), so no other job runs beside a timed
one, with the partition, time limit, generic resources (``gpu:1``) and account given to
``gdbench run``. submitit pickles the job into a folder that the nodes share and runs it
there with this Python (the same install of gdbench); the job runs the benchmark process
as it would here (:func:`gdbench.harness.launcher.run_job`) and sends back its run and its
host. One probe job first asks a node which backends can run there. The nodes of one
partition are taken to be one kind of machine; the runs are still grouped by the host
that ran each job, so a partition of mixed nodes gives one run per kind.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gdbench.data.errors import InputError
from gdbench.harness import cluster, launcher

POLL_S = 2.0  # how often the driver asks SLURM (squeue, sacct) which jobs have finished
DEFAULT_TIME_MIN = 60


@dataclass(frozen=True)
class SlurmOptions:
    """What every job asks SLURM for: ``time_min`` minutes; a partition, generic resources
    (``gpu:1``) and an account when given."""

    partition: str | None = None
    time_min: int = DEFAULT_TIME_MIN
    gres: str | None = None
    account: str | None = None

    def parameters(self) -> dict[str, Any]:
        """submitit.SlurmExecutor's parameters (sbatch's names): one task on one node,
        that node to itself."""
        given = {"partition": self.partition, "gres": self.gres, "account": self.account}
        return {"job_name": "gdbench", "time": self.time_min, "nodes": 1,
                "ntasks_per_node": 1, "exclusive": True,
                **{key: value for key, value in given.items() if value}}


def parse_time(text: str) -> int:
    """A SLURM time limit in whole minutes (seconds round up), from any of sbatch's forms:
    "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S"; ValueError for anything else."""
    days, dash, clock = text.strip().rpartition("-")
    fields = clock.split(":")
    if not all(f.isdigit() for f in [*fields, *([days] if dash else [])]) or len(fields) > 3:
        raise ValueError(f"not a SLURM time limit: {text!r} (minutes, H:MM:SS or D-HH:MM:SS)")
    numbers = [int(f) for f in fields]
    if dash:  # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = (numbers + [0, 0])[:3]
        total = ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        scale = {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}[len(numbers)]
        total = sum(n * s for n, s in zip(numbers, scale, strict=True))
    if total <= 0:
        raise ValueError(f"a SLURM time limit must be positive, got {text!r}")
    return math.ceil(total / 60)


def sbatch_script(options: SlurmOptions, folder: str | Path,
                  command: str = "python -u -m submitit.core._submit FOLDER") -> str:
    """The sbatch file submitit writes for each job with ``options`` (its command is
    submitit's own), as :class:`SlurmExecutor` makes it."""
    from submitit.slurm.slurm import _make_sbatch_string

    return str(_make_sbatch_string(command=command, folder=folder, **options.parameters()))


def slurm_engine(options: SlurmOptions, folder: Path) -> Any:
    """submitit's SLURM executor with ``options``; InputError, one line, without submitit
    or away from a SLURM cluster (no srun)."""
    try:
        import submitit
    except ImportError:
        raise InputError("--executor slurm needs submitit; install it with "
                         "pip install 'gdbench[cluster]'") from None
    try:
        engine = submitit.SlurmExecutor(folder=folder)
    except RuntimeError as exc:  # no srun on PATH
        raise InputError(f"--executor slurm: {exc}") from None
    engine.update_parameters(**options.parameters())
    return engine


class SlurmExecutor:
    """The matrix as SLURM jobs, through the submitit executor ``engine`` (a
    submitit.SlurmExecutor; submitit.LocalExecutor runs the same jobs as processes here);
    ``run`` is how a job runs on its node (:func:`gdbench.harness.launcher.run_job`)."""

    def __init__(self, engine: Any, where: str = "SLURM",
                 run: Callable[[launcher.Job], launcher.Outcome] = launcher.run_job,
                 poll_s: float = POLL_S) -> None:
        self.engine = engine
        self.where = where
        self._run = run
        self._poll_s = poll_s
        self._run_id = uuid.uuid4().hex[:12]
        self._handed = 0
        self._machine: cluster.Machine | None = None

    def machines(self, backends: Sequence[str],
                 status: Mapping[str, str | None]) -> list[cluster.Machine]:
        """The partition's kind of machine, as its first node says (a probe job);
        ``status``, what can run here, is not theirs and is not used."""
        job = self._submit(cluster.probe, list(backends))
        try:
            found = job.result()
        except BaseException as exc:
            job.cancel(check=False)
            if isinstance(exc, Exception):
                raise InputError(f"the probe job on {self.where} failed: "
                                 f"{_first_line(exc)}") from None
            raise
        self._machine = cluster.on_probe(found)
        return [self._machine]

    def _submit(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return self.engine.submit(function, *args)
        except Exception as exc:  # sbatch refused it: a bad partition, account or gres
            raise InputError(f"submitting to {self.where} failed: {_first_line(exc)}") from None

    def start(self, tasks: Sequence[cluster.Task],
              announce: Callable[[cluster.Task], None]) -> Generator[cluster.Done, None, None]:
        pending: list[tuple[Any, cluster.Task]] = []
        try:
            for task in tasks:
                self._handed += 1
                mark = f"{self._run_id}/{self._handed}"
                pending.append((self._submit(cluster.run_remote, self._run, task.job, mark),
                                task))
                announce(task)
            while pending:
                finished = [(job, task) for job, task in pending if job.done()]
                if not finished:
                    time.sleep(self._poll_s)
                for job, task in finished:
                    pending.remove((job, task))
                    yield _done(task, job)
        finally:  # interrupted (or closed early): scancel what has not finished
            for job, _ in pending:
                job.cancel(check=False)

    def run(self, machine: cluster.Machine, job: launcher.Job) -> cluster.Done:
        stream = self.start([cluster.Task(machine.key, job, 0)], lambda task: None)
        try:
            return next(stream)
        finally:
            stream.close()

    def close(self) -> None:
        pass


def _done(task: cluster.Task, job: Any) -> cluster.Done:
    """The finished SLURM job: its outcome and host, or why it was lost (it failed, timed
    out, was cancelled or its node died)."""
    try:
        outcome, host = job.result()
    except Exception as exc:
        return cluster.Done(task, None, lost=f"SLURM job {job.job_id}: {_first_line(exc)}")
    return cluster.Done(task, outcome, host)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
