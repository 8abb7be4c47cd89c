"""One backend's ``run`` timed alone, in a fresh process: what ``gdbench audit`` sets the
suite's figures against.

:func:`measure` times the plain rounds (the standalone figure) in blocks with the drift
reference and the wake probe read between them, then the checks the audit judges: one more
wait after ``run`` (:func:`pending_share`), twice the plan, cores busy after return, the
suite's pairing against rounds back to back (:func:`harness_effect`) and the timer's floor.
:func:`standalone` runs it in a fresh process with the run's thread settings in its
environment before import (``python -m gdbench.harness.standalone BACKEND WORKLOAD``).
:func:`timer_info` and :func:`aa_rounds` measure the machine once per audit. The verdicts
on these figures are :mod:`gdbench.judge.audit`'s; docs/fidelity.md says what set each
constant here.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from gdbench.data.errors import InputError
from gdbench.data.workloads import Problem, define, get_workload, make_problem
from gdbench.harness import gpu, launcher, machine, timing
from gdbench.implementations.base import Backend, Prepared, prepare

STANDALONE_S = 1.5  # seconds of standalone rounds per benchmark
CHECK_S = 0.5  # seconds of rounds for each of the sync and doubling checks
SEGMENTS = 6  # the standalone rounds come in this many blocks, the reference between them
# Blocks of each kind in the in-process harness A/B, taking turns: enough pairs that the
# median of their ratios is steady when single pairs of a per-step loop swing widely.
HARNESS_PAIRS = 16
HARNESS_BLOCK = 2  # rounds in each of those blocks, at least
# Turns of the interleaved sync and doubling checks, at least: fewer let one noisy turn
# move the median of a backend whose wait does nothing.
CHECK_MIN_ROUNDS = 11


@dataclass(frozen=True)
class Standalone:
    """One backend's ``run`` measured alone in a process (times in µs per step)."""

    step_us: float  # median over the plain rounds: the standalone figure
    ref_s: float  # the drift reference's median seconds, timed between blocks of them
    # The work one more wait found pending, as a share of run: median over turns of
    # (what one wait added - a wait's own cost) / run (see pending_share).
    sync_change: float
    doubled_ratio: float  # median over rounds of (plan with twice the epochs) / plan
    busy_cores: float  # cores busy in the 50 ms after run returned
    harness_share: float  # an empty round's time over a timed round's
    rounds: int
    # Rounds timed as the suite times them (after a reference round, and the warm-up call
    # when the plan has one) over rounds timed back to back, in one process, blocks of
    # each taking turns: what the suite's pairing itself costs the loop (1.0: nothing).
    harness_ratio: float = 1.0
    # Each plain round's µs/step, and the machine's state then: the slower of the
    # reference blocks just before and just after its block (seconds per call).
    round_us: tuple[float, ...] = ()
    round_ref_s: tuple[float, ...] = ()
    # The wake probe's reading then (the slower of those just before and just after its
    # block, seconds per round trip); empty on one CPU, where there is no probe.
    round_wake_s: tuple[float, ...] = ()
    # Whether torch's CUDA stream still had work queued right after run returned (None:
    # not a CUDA backend, or no torch in the process: see gpu.work_queued).
    queued_after_run: bool | None = None

    def pooled(self, other: Standalone) -> Standalone:
        """This timing with ``other``'s plain rounds added (a retry of the same backend)."""
        us = (*self.round_us, *other.round_us)
        return replace(self, step_us=statistics.median(us), rounds=len(us), round_us=us,
                       round_ref_s=(*self.round_ref_s, *other.round_ref_s),
                       round_wake_s=(*self.round_wake_s, *other.round_wake_s),
                       ref_s=statistics.median((self.ref_s, other.ref_s)),
                       harness_ratio=statistics.median((self.harness_ratio,
                                                        other.harness_ratio)))


def _plan(run: Callable[[], None], seconds: float, clock: timing.Clock,
          min_rounds: int = 5) -> timing.RoundPlan:
    return timing.plan_rounds(run, None, max_time_s=seconds, min_rounds=min_rounds, clock=clock)


def interleaved(fns: Sequence[Callable[[], None]], seconds: float,
                clock: timing.Clock = time.perf_counter) -> list[list[float]]:
    """Seconds per call of each function, round by round, the functions taking turns
    (A B C, A B C, ...) so that a drift of the machine's speed hits them alike.

    Each timed round follows one untimed call of its own function, so that it starts from
    the state that function leaves, not its predecessor's: timed right after the doubled
    plan's call (its own copies of the data), a run reads slower than run-and-wait timed
    right after it, a bias that would hide that much pending work (docs/fidelity.md)."""
    plans = [_plan(fn, seconds / len(fns), clock, CHECK_MIN_ROUNDS) for fn in fns]
    rounds = min(p.rounds for p in plans)
    bodies = [timing.repeat(fn, p.iterations) for fn, p in zip(fns, plans, strict=True)]
    times: list[list[float]] = [[] for _ in fns]
    for body in bodies:
        body()  # warm-up
    for _ in range(rounds):
        for fn, body, plan, out in zip(fns, bodies, plans, times, strict=True):
            fn()
            out.append(timing.timed(body, clock) / plan.iterations)
    return times


@dataclass(frozen=True)
class Segmented:
    """Plain rounds (seconds per call) and the machine's state around each of them."""

    times: list[float]
    refs: list[float]  # the drift reference's seconds per call
    wakes: list[float]  # the wake probe's seconds per round trip ([] without a probe)


def segmented(run: Callable[[], None], reference: Callable[[], None], plan: timing.RoundPlan,
              ref_iterations: int, segments: int = SEGMENTS,
              clock: timing.Clock = time.perf_counter,
              probe: Callable[[], float] | None = None) -> Segmented:
    """``plan.rounds`` plain rounds of ``run`` (seconds per call) in ``segments`` blocks,
    with the machine's state read before, between and after them as the suite reads it
    before each of its rounds: the wake probe (when given), then one reference round of
    ``ref_iterations`` calls, right after the loop's own work. Each plain round's state is
    the slower of the readings just before and just after its block.

    Nothing is interleaved inside a block, so its rounds are the loop alone; each block
    starts with an untimed warm-up round, as the suite's rounds do. The readings tell which
    blocks ran while the host slowed the machine. They are taken as the suite takes its
    own, so that the two compare: a reference round read after warm-up rounds of its own
    finds its data in the cache and reads faster than the suite's, which follows the
    backend's loop, so that every suite round would look unsettled beside the standalone
    ones.
    """
    body = timing.repeat(run, plan.iterations)
    per_block = max(1, math.ceil(plan.rounds / segments))
    timed_reference = timing.repeat(reference, ref_iterations)

    def state() -> tuple[float, float]:
        wake = probe() if probe is not None else math.nan
        return timing.timed(timed_reference, clock) / ref_iterations, wake

    before = state()
    out = Segmented([], [], [])
    while len(out.times) < plan.rounds:
        body()  # warm-up after the reference block
        n = min(per_block, plan.rounds - len(out.times))
        out.times.extend(timing.per_run_times([timing.timed(body, clock) for _ in range(n)],
                                              plan.iterations))
        after = state()
        out.refs.extend([max(before[0], after[0])] * n)
        if probe is not None:
            out.wakes.extend([max(before[1], after[1])] * n)
        before = after
    return out


def harness_effect(run: Callable[[], None], reference: Callable[[], None],
                   plan: timing.RoundPlan, pairs: int = HARNESS_PAIRS,
                   clock: timing.Clock = time.perf_counter,
                   probe: Callable[[], float] | None = None) -> float:
    """What the suite's pairing costs ``run``: the median, over ``pairs`` pairs of adjacent
    blocks, of (rounds timed as the suite times them) / (rounds timed back to back).

    A suite round comes after what the suite puts before each of its rounds
    (:func:`gdbench.harness.timing.before_round`: the wake probe when given, a reference round,
    the warm-up calls); an alone round right after the previous one. The blocks take
    turns (alone first in even pairs, suite first in odd ones) and each lasts a fraction
    of a second, so a host episode of seconds slows both halves of a pair alike; only the pairing
    itself moves the ratio: a reference that leaves a thread pool spinning shows here.
    """
    body = timing.repeat(run, plan.iterations)
    timed_reference = timing.repeat(reference, plan.ref_iterations)
    per_block = max(HARNESS_BLOCK, plan.rounds // (2 * pairs))

    def alone() -> float:
        body()  # warm-up, as after a suite block
        return statistics.median(timing.timed(body, clock) for _ in range(per_block))

    def paired() -> float:
        times = []
        for _ in range(per_block):
            timing.before_round(run, timed_reference, plan, probe, clock)
            times.append(timing.timed(body, clock))
        return statistics.median(times)

    ratios = []
    for i in range(pairs):
        if i % 2:  # the suite's block first
            suite, base = paired(), alone()
        else:
            base, suite = alone(), paired()
        ratios.append(suite / base)
    return statistics.median(ratios)


def pending_share(run: Sequence[float], waited: Sequence[float],
                  wait_costs: Sequence[float]) -> float:
    """The work that one more wait after ``run`` found still running, as a share of run:
    the median over turns of (waited - run - wait's own cost) / run.

    A wait has a cost of its own even when nothing is pending (a call into the library, a
    device query): ``wait_costs`` are waits timed on their own right after a wait, which
    find nothing, and their median is taken out: otherwise a short call that returns
    finished reads a wait's cost as pending work, while a run that returns at once reads
    its whole work. Estimated once, from timings of the wait alone, the cost adds no noise
    of run's to each turn, as a per-turn difference of a second wait would.
    """
    r, w = (np.asarray(x, dtype=float) for x in (run, waited))
    return float(np.median((w - r - statistics.median(wait_costs)) / r))


def wait_costs(prepared: Prepared, turns: int,
               clock: timing.Clock = time.perf_counter) -> list[float]:
    """Seconds of ``turns`` waits that find nothing pending, each timed on its own right
    after ``run`` and one wait: what a wait costs by itself."""
    costs = []
    for _ in range(turns):
        prepared.run()
        prepared.wait()
        costs.append(timing.timed(prepared.wait, clock))
    return costs


def _median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.median(np.asarray(a) / np.asarray(b)))


def measure(backend: str | Backend, problem: Problem, doubled: Problem, *,
            seconds: float = STANDALONE_S, check_seconds: float = CHECK_S,
            clock: timing.Clock = time.perf_counter) -> Standalone:
    """Time ``backend`` on ``problem`` as the suite does, but with nothing else around.

    The plain rounds are the standalone figure: nothing is interleaved with them inside
    their blocks (see :func:`segmented`). The single-threaded drift reference, timed
    between the blocks, gives each round's machine state, so that the figure is set
    against the suite's rounds taken in the same state. The checks come afterwards, their
    variants taking turns round by round. The garbage collector is off throughout, as in
    the suite's rounds.
    """
    prepared = prepare(backend, problem)
    twice = prepare(prepared.backend, doubled)
    with timing.collector_off():  # as the suite times its rounds
        return _measure(prepared, twice, problem, seconds, check_seconds, clock)


def _measure(prepared: Prepared, twice: Prepared, problem: Problem, seconds: float,
             check_seconds: float, clock: timing.Clock) -> Standalone:
    reference = timing.single_threaded(timing.reference_loop(
        problem.dataset.X, problem.W0, problem.plan.batches()))
    probe = timing.wake_probe()
    steps = len(problem.plan)
    plan = _plan(prepared.run, seconds, clock)
    ref_iterations = timing.plan_rounds(prepared.run, reference, max_time_s=seconds,
                                        min_rounds=1, clock=clock).ref_iterations
    plain = segmented(prepared.run, reference, plan, ref_iterations, SEGMENTS, clock, probe)
    per_run = statistics.median(plain.times)
    prepared.run()
    queued = gpu.work_queued(prepared.backend.device)
    busy = timing.busy_after()

    def run_and_wait() -> None:
        prepared.run()
        prepared.wait()

    unsynced, synced, doubled_times = interleaved(
        [prepared.run, run_and_wait, twice.run], check_seconds, clock)
    suite_plan = timing.plan_rounds(prepared.run, reference, max_time_s=2 * check_seconds,
                                    min_rounds=2 * HARNESS_PAIRS, clock=clock, probe=probe)
    harness = harness_effect(prepared.run, reference, suite_plan, HARNESS_PAIRS, clock, probe)
    empty = statistics.median(
        timing.timed(timing.repeat(_nothing, plan.iterations), clock) for _ in range(21))
    return Standalone(
        step_us=per_run / steps * 1e6,
        ref_s=statistics.median(plain.refs),
        sync_change=pending_share(unsynced, synced,
                                  wait_costs(prepared, len(unsynced), clock)),
        doubled_ratio=_median_ratio(doubled_times, unsynced),
        busy_cores=busy,
        harness_share=empty / (per_run * plan.iterations),
        rounds=plan.rounds,
        harness_ratio=harness,
        round_us=tuple(t / steps * 1e6 for t in plain.times),
        round_ref_s=tuple(plain.refs),
        round_wake_s=tuple(plain.wakes),
        queued_after_run=queued,
    )


def _nothing() -> None:
    pass


def doubled_problem(problem: Problem) -> Problem:
    """The same problem with twice the epochs (the same shuffles, then more)."""
    plan = problem.plan
    return make_problem(problem.name, problem.dataset, batch_size=plan.batch_size,
                        epochs=2 * plan.epochs, lr=problem.lr, seed=plan.seed,
                        drop_last=plan.drop_last)


def timer_info(clock: timing.Clock = time.perf_counter, samples: int = 10_000) -> dict[str, float]:
    """The clock's stated resolution and the smallest step seen between two readings (s)."""
    readings = [clock() for _ in range(samples)]
    steps = [b - a for a, b in zip(readings, readings[1:], strict=False) if b > a]
    return {"resolution_s": time.get_clock_info("perf_counter").resolution,
            "smallest_step_s": min(steps) if steps else math.nan}


def aa_rounds(reference: Callable[[], None], rounds: int = 40,
              clock: timing.Clock = time.perf_counter) -> tuple[list[float], list[float]]:
    """Two blocks of ``rounds`` rounds of the drift reference, one after the other: an A/A
    comparison whose spread is the machine's noise alone."""
    plan = timing.plan_rounds(reference, None, max_time_s=1.0, min_rounds=rounds, clock=clock)
    plan = timing.RoundPlan(rounds, plan.iterations, 1)
    return timing.time_rounds(reference, plan, clock), timing.time_rounds(reference, plan, clock)


def _command(backend: str, workload: str, dtype: str, threads: int | None,
             seconds: float, definition: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "gdbench.harness.standalone", backend, workload,
           "--dtype", dtype, "--seconds", str(seconds)]
    cmd += ["--definition", definition] if definition else []
    return cmd + ([f"--threads={threads}"] if threads else [])


def standalone(backend: str, workload: str, dtype: str, threads: int | None,
               seconds: float, definition: str | None = None) -> Standalone:
    """:func:`measure` in a fresh process with the run's thread settings in its environment;
    ``definition`` (JSON) for a workload of the user's, as the run saved it."""
    proc = subprocess.run(_command(backend, workload, dtype, threads, seconds, definition),
                          env=launcher.process_env(threads), capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"standalone timing of {backend} on {workload} failed: {tail}")
    return Standalone(**json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m gdbench.harness.standalone",
                                description="time one backend alone; prints its Standalone "
                                            "as JSON on the last line")
    p.add_argument("backend")
    p.add_argument("workload")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seconds", type=float, default=STANDALONE_S)
    p.add_argument("--threads", type=int)
    p.add_argument("--definition", metavar="JSON",
                   help="the workload's definition, for one of the user's")
    args = p.parse_args(argv)
    if args.threads:
        machine.pin_threads(args.threads)
    workload = define(args.workload, json.loads(args.definition), "--definition") \
        if args.definition else get_workload(args.workload)
    problem = workload.build(args.dtype)
    result = measure(args.backend, problem, doubled_problem(problem), seconds=args.seconds)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
