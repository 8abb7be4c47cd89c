"""Stand-in jobs for the cluster tests, run by real dask workers in other processes (this
module is importable there: a worker is started with this process's sys.path).

A stand-in is a ``run`` for an executor (:func:`gdbench.harness.launcher.run_job`'s
place): it hands back a constructed part at once, so that the tests check where jobs go
and what comes back, not how long anything takes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from _benchjson import STEP_US, machine_info, make_run

from gdbench.harness import launcher


def constructed(job: launcher.Job, cpu: str = "Test CPU 9000") -> launcher.Outcome:
    """The job's part of a constructed run on crops, from a machine with ``cpu``: its
    backend's training benchmark, or the roofline's (the "roofline" job)."""
    backends = () if job.label == "roofline" else (job.label,)
    known = all(name in STEP_US["crops"] for name in backends)
    part = make_run(workloads=("crops",), backends=backends if known else ("torch-cpu",),
                    slow_share=0.0, info=machine_info(cpu=cpu))
    if not known:  # a backend the constructed machine has no speed for: torch-cpu's, renamed
        part = json.loads(json.dumps(part).replace("torch-cpu", job.label))
    if job.label not in ("numpy", "roofline"):  # only numpy's process times the rooflines
        part["benchmarks"] = [b for b in part["benchmarks"]
                              if b["extra_info"].get("kind") == "training"]
    return launcher.Outcome(job, 0, part, 0.01)


def hangs_on_first_try(folder: str, labels: tuple[str, ...],
                       job: launcher.Job) -> launcher.Outcome:
    """The first try of each job in ``labels`` writes ``<label>.started`` in ``folder``
    (its worker's process id) and hangs; every other try writes ``<label>.<n>.finished``
    and hands back :func:`constructed` at once."""
    started = Path(folder) / f"{job.label}.started"
    if job.label in labels and not started.exists():
        started.write_text(str(os.getpid()))
        time.sleep(120)
    (Path(folder) / f"{job.label}.{time.monotonic_ns()}.finished").write_text(str(os.getpid()))
    return constructed(job)
