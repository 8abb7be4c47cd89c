"""The job matrix on a dask.distributed cluster: every job on every kind of machine.

A bench worker is a dask worker started with one ``bench`` resource (``dask worker
--nthreads 1 --resources bench=1 tcp://SCHEDULER:8786``), one per host, and ``GPU=1``
besides on a host with a GPU. Each job holds ``bench`` while it runs, so at most one timed
job runs on a host at a time; a job whose backend trains on the GPU also holds ``GPU``,
so it goes only to a worker that declared one. The bench workers are grouped by the
fingerprint of their host (:func:`gdbench.harness.cluster.this_host`), each group is asked
once which backends can run there (:func:`gdbench.harness.cluster.probe`), and each job is
sent to each group, held to its hosts.

Faults: a job whose worker dies is run again by dask on another worker of its machine
(dask gives up after ``distributed.scheduler.allowed-failures`` deaths: the job is lost,
and said so); a machine none of whose bench workers is seen for ``lost_after_s`` loses its
jobs that are waiting. Closing the stream of finished jobs cancels the others and stops
their benchmark processes on the workers.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import replace
from typing import Any

from gdbench.data.errors import InputError
from gdbench.harness import cluster, launcher

BENCH, GPU = "bench", "GPU"  # the dask worker resources gdbench asks for
# A job that raised (not a benchmark that failed: that is its outcome) is tried this many
# more times; a worker's death is dask's own retry, counted by allowed-failures.
RETRIES = 1
POLL_S = 1.0  # how often the waiting driver looks for machines that are gone
LOST_AFTER_S = 60.0  # a machine with no bench worker for this long loses its waiting jobs
NO_GPU_SLOT = ("its dask workers have no GPU resource (start the worker of a GPU host with "
               "--resources bench=1,GPU=1)")
WORKER_HINT = "dask worker --nthreads 1 --resources bench=1"
NANNY_HASH_SEED = "6640"  # what a dask nanny sets PYTHONHASHSEED to when it is unset


def connect(address: str | None) -> DaskExecutor:
    """An executor on the dask scheduler at ``address`` (else dask's own
    ``scheduler-address`` setting); InputError, one line, when dask.distributed is not
    installed, no address is known, or the scheduler cannot be reached (within dask's
    ``distributed.comm.timeouts.connect``)."""
    try:
        import dask
        import distributed
    except ImportError:
        raise InputError("--executor dask needs dask.distributed; install it with "
                         "pip install 'gdbench[cluster]'") from None
    address = address or dask.config.get("scheduler-address", None)
    if not address:
        raise InputError("--executor dask needs --scheduler tcp://HOST:PORT (or dask's "
                         "scheduler-address setting)")
    try:
        client = distributed.Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"cannot reach the dask scheduler at {address}: {why}") from None
    return DaskExecutor(client)


class DaskExecutor:
    """The matrix on the dask cluster of ``client``; ``run`` is how a worker runs a job
    (:func:`gdbench.harness.launcher.run_job`: in a fresh process there)."""

    def __init__(self, client: Any,
                 run: Callable[[launcher.Job], launcher.Outcome] = launcher.run_job,
                 lost_after_s: float = LOST_AFTER_S) -> None:
        self.client = client
        self.where = f"dask scheduler {client.scheduler.address}"
        self._run = run
        self._lost_after_s = lost_after_s
        self._run_id = uuid.uuid4().hex[:12]
        self._machines: dict[str, cluster.Machine] = {}
        self._handed = 0  # jobs handed over so far: each gets its own mark

    def machines(self, backends: Sequence[str],
                 status: Mapping[str, str | None]) -> list[cluster.Machine]:
        """The kinds of machine of the bench workers, each asked (on one of its workers,
        holding its bench slot) which of ``backends`` can run there. ``status``, what can
        run here, is not theirs and is not used."""
        workers = self._bench_workers()
        hosts: dict[str, cluster.Host] = self.client.run(cluster.this_host,
                                                         workers=list(workers))
        kinds: dict[str, list[str]] = {}
        for address, host in sorted(hosts.items()):
            kinds.setdefault(host.fingerprint, []).append(address)
        try:
            probes = self.client.gather({key: self.client.submit(
                cluster.probe, list(backends), workers=addresses[:1], resources={BENCH: 1},
                pure=False) for key, addresses in kinds.items()})
        except RuntimeError as exc:  # a host whose gdbench cannot start: one line
            raise InputError(str(exc)) from None
        for key, addresses in kinds.items():
            gpu = any(workers[a]["resources"].get(GPU) for a in addresses)
            where = tuple(sorted({str(workers[a]["host"]) for a in addresses}))
            self._machines[key] = cluster.on_probe(probes[key], where, gpu, NO_GPU_SLOT)
        return list(self._machines.values())

    def _bench_workers(self) -> dict[str, dict[str, Any]]:
        workers = self.client.scheduler_info()["workers"]
        bench = {address: info for address, info in workers.items()
                 if (info.get("resources") or {}).get(BENCH)}
        if not bench:
            address = self.client.scheduler.address
            raise InputError(f"the dask scheduler at {address} has no bench worker "
                             f"({len(workers)} worker(s) without a bench resource): start "
                             f"one on each machine with {WORKER_HINT} {address}")
        return bench

    def _resources(self, task: cluster.Task) -> dict[str, int]:
        """What the job holds while it runs: the host's bench slot, and its GPU when the
        backend it times trains on one there."""
        on_gpu = task.job.label in self._machines[task.machine].gpu_backends or \
            task.job.label == launcher.GPU_YARDSTICKS
        return {BENCH: 1, GPU: 1} if on_gpu else {BENCH: 1}

    def start(self, tasks: Sequence[cluster.Task],
              announce: Callable[[cluster.Task], None]) -> Generator[cluster.Done, None, None]:
        futures: dict[Any, cluster.Task] = {}
        try:
            for task in tasks:
                self._handed += 1
                mark = f"{self._run_id}/{self._handed}"
                future = self.client.submit(
                    run_on_worker, self._run, task.job, mark,
                    key=f"gdbench-{task.job.label}-{mark.replace('/', '-')}",
                    workers=list(self._machines[task.machine].where), allow_other_workers=False,
                    resources=self._resources(task), retries=RETRIES, pure=False)
                futures[future] = task
                announce(task)
            yield from self._as_finished(futures)
        finally:  # interrupted (or closed early): nothing of this run goes on running
            self._cancel([f for f in futures if not f.done()])

    def _as_finished(self, futures: dict[Any, cluster.Task]) -> Iterator[cluster.Done]:
        import distributed

        pending = set(futures)
        gone_since: dict[str, float] = {}
        while pending:
            try:
                with self.client.as_current():
                    distributed.wait(list(pending), timeout=POLL_S,
                                     return_when="FIRST_COMPLETED")
            except distributed.TimeoutError:
                for future in self._lost(pending, futures, gone_since):
                    pending.discard(future)
                    yield cluster.Done(futures[future], None, lost=(
                        f"no bench worker of its machine was seen for "
                        f"{self._lost_after_s:g} s"))
                continue
            for future in [f for f in pending if f.done()]:
                pending.discard(future)
                yield _done(futures[future], future)

    def _lost(self, pending: set[Any], futures: dict[Any, cluster.Task],
              gone_since: dict[str, float]) -> list[Any]:
        """The waiting jobs whose machine has had no bench worker for ``lost_after_s``."""
        workers = self.client.scheduler_info()["workers"].values()
        alive = {str(w["host"]) for w in workers if (w.get("resources") or {}).get(BENCH)}
        now = time.monotonic()
        lost = []
        for future in pending:
            machine = self._machines[futures[future].machine]
            if alive & set(machine.where):
                gone_since.pop(machine.key, None)
            elif now - gone_since.setdefault(machine.key, now) >= self._lost_after_s:
                lost.append(future)
        if lost:
            self.client.cancel(lost)
        return lost

    def _cancel(self, futures: list[Any]) -> None:
        """Cancel the jobs that have not finished, and stop the benchmark processes of
        this run that are still running on any worker."""
        if not futures:
            return
        try:
            self.client.cancel(futures)
            self.client.run(cluster.stop_jobs, f"{self._run_id}/")
        except Exception as exc:  # the scheduler is gone: what it ran is beyond reach
            print(f"gdbench: could not stop the jobs on the dask workers: {exc}",
                  file=sys.stderr, flush=True)

    def run(self, machine: cluster.Machine, job: launcher.Job) -> cluster.Done:
        with closing(self.start([cluster.Task(machine.key, job, 0)], lambda task: None)) as done:
            return next(done)

    def close(self) -> None:
        self.client.close()


def run_on_worker(run: Callable[[launcher.Job], launcher.Outcome], job: launcher.Job,
                  mark: str) -> tuple[launcher.Outcome, cluster.Host]:
    """:func:`gdbench.harness.cluster.run_remote` on a dask worker, the job's process
    freed of what the worker's nanny put in the worker's environment (:func:`nanny_environ`):
    its thread settings are the job's own, as when it runs locally."""
    return cluster.run_remote(run, replace(job, unset_env=(*job.unset_env, *nanny_environ())),
                              mark)


def nanny_environ() -> list[str]:
    """The variables that a dask nanny set in this worker's environment for the worker's
    sake (``distributed.nanny.pre-spawn-environ`` and ``environ``: BLAS and OpenMP pools
    capped at 1 thread, malloc trimming, a fixed hash seed), found by their value; none in
    a worker started without a nanny. A variable the user set to the same value is taken
    for the nanny's: thread caps come from ``gdbench run --threads``, as locally."""
    import dask

    settings = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}),
                **dask.config.get("distributed.nanny.environ", {})}
    names = [name for name, value in settings.items()
             if value is not None and os.environ.get(name) == str(value)]
    if os.environ.get("PYTHONHASHSEED") == NANNY_HASH_SEED:
        names.append("PYTHONHASHSEED")
    return names


def _done(task: cluster.Task, future: Any) -> cluster.Done:
    """The finished job of ``future``: its outcome and host, or why it was lost."""
    if future.status != "finished":
        error = future.exception()
        why = (str(error).strip().splitlines() or [""])[0]
        return cluster.Done(task, None, lost=f"{type(error).__name__}: {why}".rstrip(": "))
    outcome, host = future.result()
    return cluster.Done(task, outcome, host)
