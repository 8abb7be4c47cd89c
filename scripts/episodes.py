"""Does this machine keep one speed? A backend's loop, timed block by block in one process.

    python scripts/episodes.py [BACKEND] [WORKLOAD] [--seconds S] [--block S]

Times BACKEND's ``run`` on WORKLOAD (default: jax-scan on large) in blocks of --block
seconds (median µs/step of each block) for --seconds in all, and before each block the
wake probe (µs per round trip between two threads pinned to two CPUs, see
``gdbench.harness.timing.wake_probe``) and the single-threaded drift reference once on each CPU
in turn (the thread pinned there for it). One line per block. Nothing else changes
between the blocks, so a loop that moves while both references stay put moved because
of what the host did to the loop's threads, not to either CPU (what it showed on one VM:
docs/fidelity.md, "The wake probe"). A tool for reading the audit, not a source of
figures: run it with nothing else running.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", nargs="?", default="jax-scan")
    parser.add_argument("workload", nargs="?", default="large")
    parser.add_argument("--seconds", type=float, default=20.0, help="in all (default 20)")
    parser.add_argument("--block", type=float, default=0.3, help="one block (default 0.3)")
    args = parser.parse_args()

    from gdbench.data.workloads import get_workload
    from gdbench.harness import timing
    from gdbench.implementations.base import prepare

    problem = get_workload(args.workload).build("float32")
    prepared = prepare(args.backend, problem)
    reference = timing.single_threaded(timing.reference_loop(
        problem.dataset.X, problem.W0, problem.plan.batches()))
    cpus = sorted(os.sched_getaffinity(0))
    probe = timing.wake_probe(cpus)
    steps = len(problem.plan)

    def on(cpu: int) -> float:
        """The reference's milliseconds, this thread pinned to ``cpu`` for it."""
        os.sched_setaffinity(0, {cpu})
        try:
            return statistics.median(timing.timed(reference) for _ in range(3)) * 1e3
        finally:
            os.sched_setaffinity(0, cpus)

    print(f"{args.backend} on {args.workload}: µs/step per {args.block} s block; the wake "
          f"probe (µs) and the reference (ms) on CPU {', '.join(map(str, cpus))} before it")
    for _ in range(3):
        prepared.run()
    end = time.monotonic() + args.seconds
    with timing.collector_off():
        while time.monotonic() < end:
            wake = probe() * 1e6 if probe is not None else float("nan")
            refs = [on(cpu) for cpu in cpus]
            prepared.run()  # the cache back from the reference
            times = []
            began = time.perf_counter()
            while time.perf_counter() - began < args.block:
                times.append(timing.timed(prepared.run))
            print(f"{statistics.median(times) / steps * 1e6:9.1f}   {wake:6.1f}   "
                  + "  ".join(f"{r:7.2f}" for r in refs), flush=True)


if __name__ == "__main__":
    main()
