"""Prove, on this machine, that each figure of a run is what its backend's loop costs.

For every training benchmark (backend x workload) of a run, the same backend's ``run``
is timed again, alone, in a fresh process with the run's thread settings, and checked:

interference  the suite's µs/step against the standalone µs/step; flagged when they
              differ by more than 10% (another library's threads, or the harness itself,
              slowed or sped the suite's figure).
sync          the timed call must wait for the device: re-timed with one more explicit
              wait after it (``backend.wait``), it must not move by more than 10%, once
              the wait's own cost (waits timed alone, which find nothing) is taken out.
              On a CUDA device, torch's stream must also be idle the moment ``run``
              returns: a loop whose GPU keeps up with its launches leaves only its last
              kernels pending, too little for any timing to show, but not for the stream.
x2 plan       doubling the epochs must roughly double the time (1.25x to 2.5x: a fixed
              per-call cost makes short runs scale below 2x, down to 1.5x when it is as
              long as the loop); a call that returns before its work is done barely moves.
busy after    cores the process keeps busy in the 50 ms after ``run`` returns. Thread
              pools that spin-wait (OpenBLAS, OpenMP) read near one core per thread. It
              is a warning, not a failure: the suite times each backend in its own
              process, so a spinning pool slows nothing it measures, but it would slow
              whatever a user's program runs next to it.
pairing       the harness's own cost, immune to the machine's speed episodes: rounds timed
              as the suite times them (after a reference round) over rounds timed back
              to back, blocks of each taking turns in one process; flagged beyond 10%.
              When suite/alone fails and pairing does not, the machine's speed may
              have changed between the two timings: both sides are then timed again
              twice, taking turns (suite, alone, suite, alone), and each side's rounds
              pooled, the first timings' included; the pooled figure is the verdict's,
              and the run keeps the pooled suite timing (extra_info.blocks).
floor         the share of a timed round that is timer and loop rather than ``run``.

And once per audit: the timer's resolution, and the machine's noise: an A/A comparison
of two blocks of the single-threaded drift reference, with a warning when the spread is
too large for the regression gate's threshold.

The verdicts are written into the run file (``machine_info.gdbench.audit``), atomically,
so a saved run says whether it was audited and what was found. Exit 0 when every row
passes, 1 when any row fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gdbench.commands import run as run_command
from gdbench.commands.ab import merge_rounds
from gdbench.data.errors import InputError
from gdbench.data.workloads import Problem, get_workload, make_problem
from gdbench.harness import gpu, launcher, machine, timing
from gdbench.implementations.base import Backend, Prepared, prepare
from gdbench.judge import retime as retime_policy
from gdbench.judge.regress import DEFAULT_THRESHOLD, parse_threshold
from gdbench.judge.stats import (
    SETTLED_TOLERANCE,
    UNSETTLED_SHARE,
    WAKE_TOLERANCE,
    Settled,
    quiet_level,
    ratio_of_medians,
    settled_pair,
    settled_rounds,
)
from gdbench.records import formats
from gdbench.records.results import benchmark_row, load_run, read_run, write_atomic

INTERFERENCE_LIMIT = 0.10  # |suite / alone - 1| above this fails the row
SYNC_LIMIT = 0.10  # an extra wait that finds more than this share of run pending fails
# Doubled plan / plan outside this fails the row. A call that returns before its work is
# done reads about x1.0; a synchronous call with a fixed per-call cost as long as its loop
# reads x1.5 (jax-scan on crops: x1.48-1.53), so the lower bound lies between the two.
DOUBLING_RANGE = (1.25, 2.5)
BUSY_LIMIT = 0.25  # cores busy after return above this is a warning
STANDALONE_S = 1.5  # seconds of standalone rounds per benchmark
CHECK_S = 0.5  # seconds of rounds for each of the sync and doubling checks
SEGMENTS = 6  # the standalone rounds come in this many blocks, the reference between them
# Timings again, standalone or the suite's, when the machine was unsettled for most of
# one: the libraries' slow modes (see timing.wake_probe) lasted up to ~30 s here.
ALONE_RETRIES = 3
SUITE_RETRIES = 3
# A row whose suite/alone fails while its pairing is clean is confirmed: both sides are
# timed again this many times, taking turns, and each side's rounds are pooled.
CONFIRM_PAIRS = 2
HARNESS_LIMIT = 0.10  # the suite's pairing slowing the loop by more than this fails the row
# Blocks of each kind in the in-process harness A/B, taking turns. Single pairs of jax's
# per-step loop read 0.6x to 1.6x here in a noisy minute; with 8, the median read +10.3%
# and +10.8% in audits where 30 turns of the same A/B in one process read +1.3% to +1.5%.
HARNESS_PAIRS = 16
HARNESS_BLOCK = 2  # rounds in each of those blocks, at least
# Turns of the interleaved sync and doubling checks, at least: with 5, a CPU backend whose
# wait does nothing read +12% for one more wait on a noisy minute (torch-cpu, large).
CHECK_MIN_ROUNDS = 11


# --- one backend, alone ----------------------------------------------------------------------

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
    plan's call (its own copies of the data), jax-scan's run at ``medium`` read slower than
    run-and-wait timed right after it, so that one more wait read -8% to -14% on one CPU
    and -3% to -4% on two (four turns of each, in one process), a bias that would hide
    that much pending work; with the untimed call, -2% to -8% and -0% to +1%."""
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
    finds its data in the cache, and at ``medium`` (an 8 MB dataset) read up to 18% faster
    than the suite's, which follows the backend's loop, so that every suite round looked
    unsettled beside the standalone ones.
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
    itself moves the ratio. A reference that left a thread pool spinning read x3.4 here
    for torch at ``large``.
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
    find nothing, and their median is taken out. jax-scan on crops, whose run returns
    finished, read one more wait at +7% to +13% of a 25 µs call before it was; a run that
    returns at once reads its whole work. Estimated once, from timings of the wait alone,
    the cost adds no noise of run's to each turn, as a per-turn difference of a second
    wait did (jax on small, which blocks on its result, read +13.8% that way).
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


# --- the verdicts ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    workload: str
    backend: str
    suite_step_us: float
    suite_ref_s: float | None  # the suite's paired reference (median s), if it has one
    alone: Standalone
    # The suite's rounds in µs/step and their paired reference times, when it saved them.
    suite_round_us: tuple[float, ...] = ()
    suite_round_ref_s: tuple[float, ...] = ()
    suite_round_wake_s: tuple[float, ...] = ()  # the suite's wake probe readings, if saved
    timings: int = 1  # timings of each side pooled (more than one once confirmed)

    @property
    def _wakes(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(suite, alone) wake probe readings when both have them aligned, else None."""
        suite, alone = self.suite_round_wake_s, self.alone.round_wake_s
        if suite and alone and len(suite) == len(self.suite_round_us) and \
                len(alone) == len(self.alone.round_us):
            return suite, alone
        return None

    @cached_property
    def settled(self) -> Settled | None:
        """The suite's and the standalone rounds taken on a settled machine (suite as
        ``new``, alone as ``base``), or None when either lacks per-round references. The
        wake probe's readings judge too, where both timings have them."""
        if not (self.suite_round_us and self.alone.round_us) or \
                len(self.suite_round_us) != len(self.suite_round_ref_s) or \
                len(self.alone.round_us) != len(self.alone.round_ref_s):
            return None
        wakes = self._wakes
        return settled_pair(self.suite_round_us, self.suite_round_ref_s, self.alone.round_us,
                            self.alone.round_ref_s, *(wakes or (None, None)))

    def unsettled_shares(self, *others: Row) -> tuple[float, float]:
        """(suite, alone) shares of rounds taken while the machine was slower than its
        quiet level, judged by the references (and wake probes, where all have them) of
        this row and ``others`` (other timings of the same cell) together; (0, 0) when
        there is nothing to judge by."""
        rows = (self, *others)
        if self.settled is None or any(r.settled is None for r in others):
            return 0.0, 0.0
        level = quiet_level(*(r.suite_round_ref_s for r in rows),
                            *(r.alone.round_ref_s for r in rows))
        wakes = [r._wakes for r in rows]
        wake_level = quiet_level(*(w for pair in wakes if pair for w in pair)) \
            if all(wakes) else None

        def share(refs: Sequence[float], wake: Sequence[float] | None) -> float:
            return float(np.mean(~settled_rounds(refs, level, wake, wake_level)))

        own = wakes[0]
        return (share(self.suite_round_ref_s, own[0] if own else None),
                share(self.alone.round_ref_s, own[1] if own else None))

    def alone_unsettled(self) -> bool:
        """Whether most standalone rounds ran while the machine was slower than its quiet
        level, as the suite's and the standalone references (and wake probes) together
        tell (retry it)."""
        return self.unsettled_shares()[1] > UNSETTLED_SHARE

    def suite_unsettled(self) -> bool:
        """Whether most of the suite's rounds ran while the machine was slower than its
        quiet level (time the suite's benchmark again)."""
        return self.unsettled_shares()[0] > UNSETTLED_SHARE

    def with_suite(self, bench: dict[str, Any]) -> Row:
        """This row with the suite's side taken from ``bench``, a run's benchmark entry."""
        r = benchmark_row(bench)
        rounds_us, refs, wakes = _suite_rounds(r)
        ref_s = r.get("ref_s")
        return replace(self, suite_step_us=float(r["step_us"]),
                       suite_ref_s=None if ref_s is None else float(ref_s),
                       suite_round_us=rounds_us, suite_round_ref_s=refs,
                       suite_round_wake_s=wakes)

    @property
    def _compared(self) -> Settled | None:
        """The settled rounds when the verdict compares them; None when it compares the
        drift-corrected medians (no per-round references, or too few settled rounds)."""
        kept = self.settled
        return kept if kept is not None and not kept.fallback else None

    @property
    def compared_settled(self) -> bool:
        """Whether the verdict compares settled rounds (else the drift-corrected medians)."""
        return self._compared is not None

    @property
    def suite_us(self) -> float:
        """The suite's µs/step that the verdict uses: over its settled rounds when compared
        that way, else its median."""
        kept = self._compared
        return statistics.median(kept.new) if kept else self.suite_step_us

    @property
    def alone_us(self) -> float:
        kept = self._compared
        return statistics.median(kept.base) if kept else self.alone.step_us

    @property
    def raw_ratio(self) -> float:
        """suite / alone µs per step, as measured (the machine's speed may differ)."""
        return self.suite_step_us / self.alone.step_us

    @property
    def drift(self) -> float:
        """How much slower the machine was when timing alone than during the suite, read
        from the same single-threaded reference timed at both (1.0 without one)."""
        if not self.suite_ref_s or not math.isfinite(self.suite_ref_s):
            return 1.0
        return self.alone.ref_s / self.suite_ref_s

    @property
    def interference(self) -> float:
        """suite / alone µs per step at the same machine speed: 1.0 when the suite
        measures the loop alone. Over the rounds of both taken on a settled machine; when
        there are too few (or no per-round references), the medians corrected by the
        reference's drift, which a host neighbour's uneven slowdown can defeat.

        Once both sides were timed again taking turns (:func:`_confirm`), that fallback
        compares the pooled medians uncorrected: the turns are the drift control then,
        and the single-threaded reference does not track a loop on both cores (jax-scan
        at ``small``: pooled medians 2.41 against 2.48 µs/step while the reference read
        ×1.67 slower in the standalone timings, a correction to +62%)."""
        if self.compared_settled:
            return self.suite_us / self.alone_us
        if self.timings > 1:
            return self.raw_ratio
        return self.raw_ratio * self.drift

    def compared(self) -> str:
        """How the interference figure was obtained, for the table."""
        kept = self.settled
        if kept is None or kept.fallback:
            why = "no per-round refs" if kept is None else "unsettled"
            if self.timings > 1:
                return f"medians of {self.timings} timings each, taking turns ({why})"
            return f"medians, drift ×{self.drift:.3f} ({why})"
        counts = (f"settled {len(kept.new)}/{len(kept.new) + kept.new_dropped} · "
                  f"{len(kept.base)}/{len(kept.base) + kept.base_dropped}")
        return f"{counts} ({self.timings} timings each)" if self.timings > 1 else counts

    @property
    def sync_change(self) -> float:
        """The share of run's time one more wait found pending (0.0: nothing was)."""
        return self.alone.sync_change

    @property
    def drifted(self) -> bool:
        """Whether suite/alone is off by more than the limit while the pairing is clean:
        the harness costs the loop little in one process, so the machine's speed changed
        between the two timings (see :func:`_confirm`)."""
        return abs(self.interference - 1) > INTERFERENCE_LIMIT and \
            abs(self.alone.harness_ratio - 1) <= HARNESS_LIMIT

    def failures(self) -> list[str]:
        """Why the row fails; empty when it passes."""
        out = []
        pairing = self.alone.harness_ratio
        pairing_ok = abs(pairing - 1) <= HARNESS_LIMIT
        if abs(self.interference - 1) > INTERFERENCE_LIMIT:
            why = ""
            if self.drifted and self.timings > 1:
                why = (f"; it stays over {self.timings} timings of each side taking turns, "
                       f"while the suite's pairing moves the loop "
                       f"{formats.signed_percent(pairing)} in one process")
            elif self.drifted:
                why = (f"; the suite's pairing moves the loop {formats.signed_percent(pairing)}"
                       " in one process, so the machine's speed changed between the two "
                       "timings (re-run the suite)")
            out.append(f"interference: suite {formats.signed_percent(self.interference)} "
                       f"vs alone{why}")
        if not pairing_ok:
            out.append(f"pairing: a round after the suite's reference round takes "
                       f"{formats.signed_percent(pairing)} vs back to back, in one process")
        if self.sync_change > SYNC_LIMIT:
            out.append(f"sync: an extra wait finds {self.sync_change:.0%} of run still "
                       "pending (its own cost taken out), so run returns before its work "
                       "is done")
        if self.alone.queued_after_run:
            out.append("sync: the CUDA stream still had work queued when run returned, so "
                       "run returns before its work is done")
        low, high = DOUBLING_RANGE
        if not low <= self.alone.doubled_ratio <= high:
            out.append(f"x2 plan: twice the steps took x{self.alone.doubled_ratio:.2f} the "
                       "time")
        return out

    def warnings(self) -> list[str]:
        if self.alone.busy_cores > BUSY_LIMIT:
            return [f"spins: {self.alone.busy_cores:.2f} cores busy after run returns"]
        return []

    def verdict(self) -> str:
        if self.failures():
            return "FAIL"
        return "ok, spins" if self.warnings() else "ok"

    def record(self) -> dict[str, Any]:
        alone = {k: v for k, v in asdict(self.alone).items()
                 if k not in ("round_us", "round_ref_s", "round_wake_s")}
        return {"workload": self.workload, "backend": self.backend,
                "suite_step_us": self.suite_step_us, **alone,
                "suite_settled_us": self.suite_us, "alone_settled_us": self.alone_us,
                # The wake probe's median readings (µs per round trip; None without one).
                **{f"{side}_wake_us": statistics.median(w) * 1e6 if w else None
                   for side, w in (("suite", self.suite_round_wake_s),
                                   ("alone", self.alone.round_wake_s))},
                "compared": self.compared(), "timings": self.timings,
                "interference": self.interference, "sync_change": self.sync_change,
                "verdict": self.verdict(), "failures": self.failures(),
                "warnings": self.warnings()}


def table(rows: Sequence[Row]) -> pd.DataFrame:
    """The audit's rows as formatted cells."""
    return pd.DataFrame({
        "workload": [r.workload for r in rows],
        "backend": [r.backend for r in rows],
        "suite µs/step": [formats.us(r.suite_us) for r in rows],
        "alone µs/step": [formats.us(r.alone_us) for r in rows],
        "suite/alone": [f"{r.interference:.3f}" for r in rows],
        "compared": [r.compared() for r in rows],
        "+wait": [formats.signed_percent(1 + r.sync_change) for r in rows],
        "x2 plan": [f"×{r.alone.doubled_ratio:.2f}" for r in rows],
        "busy after": [f"{r.alone.busy_cores:.2f}" for r in rows],
        "pairing": [formats.signed_percent(r.alone.harness_ratio) for r in rows],
        "floor": [f"{r.alone.harness_share:.2%}" for r in rows],
        "verdict": [r.verdict() for r in rows],
    })


# --- machine-wide checks ---------------------------------------------------------------------

def timer_info(clock: timing.Clock = time.perf_counter, samples: int = 10_000) -> dict[str, float]:
    """The clock's stated resolution and the smallest step seen between two readings (s)."""
    readings = [clock() for _ in range(samples)]
    steps = [b - a for a, b in zip(readings, readings[1:], strict=False) if b > a]
    return {"resolution_s": time.get_clock_info("perf_counter").resolution,
            "smallest_step_s": min(steps) if steps else math.nan}


def noise(reference: Callable[[], None], threshold: float, *, rounds: int = 40,
          clock: timing.Clock = time.perf_counter) -> dict[str, Any]:
    """A/A: two blocks of the drift reference; their ratio of medians, its 95% interval
    and the rounds' spread, with a warning when the gate's threshold is within reach of
    the noise alone."""
    plan = timing.plan_rounds(reference, None, max_time_s=1.0, min_rounds=rounds, clock=clock)
    plan = timing.RoundPlan(rounds, plan.iterations, 1)
    a = timing.time_rounds(reference, plan, clock)
    b = timing.time_rounds(reference, plan, clock)
    est = ratio_of_medians(b, a)
    q1, med, q3 = np.percentile(a + b, [25, 50, 75])
    spread = float((q3 - q1) / med)
    too_noisy = max(abs(est.high - 1), abs(1 - est.low)) > threshold / 2 or spread > threshold
    return {"aa_ratio": est.ratio, "aa_low": est.low, "aa_high": est.high,
            "iqr_over_median": spread, "threshold": threshold,
            "warning": (f"this machine is noisy for a {threshold:.0%} gate: A/A "
                        f"{formats.signed_percent(est.ratio)} [{formats.signed_percent(est.low)},"
                        f" {formats.signed_percent(est.high)}], spread {spread:.1%}")
            if too_noisy else None}


# --- the command -----------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("--run", metavar="RUN.json", type=Path,
                        help="audit this saved run instead of running the suite first")
    run_command.add_arguments(parser)
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD, metavar="PCT",
                        help="the gate threshold the machine's noise is judged against "
                             f"(default: {DEFAULT_THRESHOLD.replace('%', '%%')})")
    parser.add_argument("--seconds", type=float, default=STANDALONE_S, metavar="S",
                        help=f"seconds of standalone rounds per benchmark (default: "
                             f"{STANDALONE_S})")


def _child_command(backend: str, workload: str, dtype: str, threads: int | None,
                   seconds: float) -> list[str]:
    cmd = [sys.executable, "-m", "gdbench.commands.audit", "--child", backend, workload,
           "--dtype", dtype, "--seconds", str(seconds)]
    return cmd + ([f"--threads={threads}"] if threads else [])


def standalone(backend: str, workload: str, dtype: str, threads: int | None,
               seconds: float) -> Standalone:
    """measure() in a fresh process with the run's thread settings in its environment."""
    env = launcher.process_env(threads)
    proc = subprocess.run(_child_command(backend, workload, dtype, threads, seconds), env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"standalone timing of {backend} on {workload} failed: {tail}")
    return Standalone(**json.loads(proc.stdout.strip().splitlines()[-1]))


def _child(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="gdbench.commands.audit --child")
    p.add_argument("backend")
    p.add_argument("workload")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seconds", type=float, default=STANDALONE_S)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        machine.pin_threads(args.threads)
    problem = get_workload(args.workload).build(args.dtype)
    result = measure(args.backend, problem, doubled_problem(problem), seconds=args.seconds)
    print(json.dumps(asdict(result)))
    return 0


def main(args: argparse.Namespace) -> int:
    threshold = parse_threshold(args.threshold)
    path: Path | None = args.run
    run_code = 0  # a failed benchmark process of the run fails the audit too
    if path is None:

        run_code, path = run_command.run_suite(args)
        if path is None:
            return run_code or 1
        print()
    frame = load_run(path)
    doc = read_run(path)
    info = doc.get("machine_info", {}).get("gdbench", {})
    threads = info.get("threads_pinned")
    training = frame[frame["kind"] == "training"]
    if training.empty:
        raise InputError(f"{path}: no training benchmark to audit")
    rows = []
    for i, (_, r) in enumerate(training.iterrows(), start=1):
        print(f"[{i:>3}/{len(training)}] alone: {r['backend']} on {r['workload']}", flush=True)
        def alone_now(r: pd.Series = r) -> Standalone:
            return standalone(str(r["backend"]), str(r["workload"]),
                              str(r["dtype"] or "float32"), threads, args.seconds)

        ref_s = None if pd.isna(r["ref_s"]) else float(r["ref_s"])
        rounds_us, refs, wakes = _suite_rounds(r)
        row = Row(str(r["workload"]), str(r["backend"]), float(r["step_us"]), ref_s,
                  alone_now(), rounds_us, refs, wakes)
        for _ in range(ALONE_RETRIES):
            if not row.alone_unsettled():
                break
            print("      the machine was unsettled while timing alone: again", flush=True)
            row = replace(row, alone=row.alone.pooled(alone_now()))
        row = _resettle_suite(row, doc, str(r["name"]), str(r["dtype"] or "float32"),
                              threads, info.get("max_time_s"))
        row = _confirm(row, doc, str(r["name"]), str(r["dtype"] or "float32"), threads,
                       info.get("max_time_s"), alone_now)
        rows.append(row)
    first = get_workload(str(training["workload"].iloc[0])).build(
        str(training["dtype"].iloc[0] or "float32"))
    reference = timing.single_threaded(timing.reference_loop(
        first.dataset.X, first.W0, first.plan.batches()))
    machine_checks = {"timer": timer_info(), "noise": noise(reference, threshold)}
    failed = [r for r in rows if r.failures()]
    audit = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "passed": not failed,
             "limits": {"interference": INTERFERENCE_LIMIT, "pairing": HARNESS_LIMIT,
                        "sync": SYNC_LIMIT, "doubling": list(DOUBLING_RANGE),
                        "busy_cores": BUSY_LIMIT},
             "rows": [r.record() for r in rows], **machine_checks}
    doc.setdefault("machine_info", {}).setdefault("gdbench", {})["audit"] = audit
    write_atomic(path, json.dumps(doc, indent=4))
    print(render(rows, machine_checks, path, args.format))
    return run_code or (1 if failed else 0)


def _bench_index(doc: dict[str, Any], name: str) -> int | None:
    """Where the benchmark ``name`` sits in the run's list, or None."""
    return next((i for i, b in enumerate(doc.get("benchmarks", []))
                 if b.get("name") == name), None)


def _record_resettled(doc: dict[str, Any], decision: dict[str, Any]) -> None:
    """Add one of the audit's decisions to ``machine_info.gdbench.resettled``."""
    doc.setdefault("machine_info", {}).setdefault("gdbench", {}).setdefault(
        "resettled", []).append({"benchmark": decision.pop("benchmark"), "by": "audit",
                                 **decision})


def _resettle_suite(row: Row, doc: dict[str, Any], name: str, dtype: str,
                    threads: int | None, max_time_s: float | None) -> Row:
    """``row``, or, when most of the suite's rounds ran on an unsettled machine, the row of
    a timing of the same benchmark again, in a fresh process as ``gdbench run`` times it,
    that had fewer unsettled rounds. A timing kept replaces the benchmark in ``doc`` (its
    memory figures, measured apart from timing, carried over) and is recorded in
    ``machine_info.gdbench.resettled``: the run then holds the figure the audit checks."""
    for _ in range(SUITE_RETRIES):
        if not row.suite_unsettled():
            break
        print("      the machine was unsettled while the suite timed it: the suite again",
              flush=True)
        again = retime(row.backend, row.workload, dtype, threads, max_time_s)
        if again is None:
            break
        candidate = row.with_suite(again)
        before = row.unsettled_shares(candidate)[0]
        after = candidate.unsettled_shares(row)[0]
        kept = after < before
        index = _bench_index(doc, name)
        if kept and index is not None:
            benches = doc["benchmarks"]
            old = benches[index].get("extra_info") or {}
            again["extra_info"].update({k: v for k, v in old.items()
                                        if k.startswith("memory_")})
            benches[index] = again
            row = candidate
        _record_resettled(doc, {"benchmark": name, "unsettled_first": round(before, 3),
                                "unsettled_again": round(after, 3),
                                "kept": "again" if kept else "first"})
    return row


def _confirm(row: Row, doc: dict[str, Any], name: str, dtype: str, threads: int | None,
             max_time_s: float | None, alone_now: Callable[[], Standalone]) -> Row:
    """``row``, or, when it has drifted (:attr:`Row.drifted`), the row of both sides timed
    again CONFIRM_PAIRS times, taking turns (suite, alone, suite, alone), each side's
    rounds pooled with its first timing's.

    The libraries' fast and slow modes last seconds to half a minute here, so one timing
    of each side, a minute apart, can land in different modes whatever the harness does;
    pooled over timings spread across the same minutes, both sides see the modes alike,
    and a real difference stays. Every timing counts, the first one included: nothing is
    picked. The pooled benchmark replaces the suite's in ``doc`` (its rounds in order,
    ``extra_info.blocks`` saying how many timings, the first one's memory figures kept),
    and ``machine_info.gdbench.resettled`` records suite/alone before and after."""
    index = _bench_index(doc, name)
    if not row.drifted or index is None:
        return row
    benches = doc["benchmarks"]
    print("      suite/alone off with a clean pairing: both timed again, taking turns",
          flush=True)
    copies, alone = [benches[index]], row.alone
    for _ in range(CONFIRM_PAIRS):
        again = retime(row.backend, row.workload, dtype, threads, max_time_s)
        if again is None:
            break
        copies.append(again)
        alone = alone.pooled(alone_now())
    if len(copies) == 1:
        return row

    benches[index] = merge_rounds(copies)
    pooled = replace(row, alone=alone, timings=len(copies)).with_suite(benches[index])
    _record_resettled(doc, {"benchmark": name, "kept": "pooled", "timings": len(copies),
                            "interference_first": round(row.interference, 3),
                            "interference_pooled": round(pooled.interference, 3)})
    return pooled


def retime(backend: str, workload: str, dtype: str, threads: int | None,
           max_time_s: float | None) -> dict[str, Any] | None:
    """The suite's training benchmark of ``backend`` on ``workload``, timed again in a fresh
    process as ``gdbench run`` times it (no memory instrumentation), or None if it fails."""

    args = argparse.Namespace(dtype=dtype, quick=False, backends=None, workloads=None,
                              threads=threads, pytest_args=[])
    selection = [*launcher.retime_selection(backend, [workload]), "--memory", "off"]
    if max_time_s:
        selection.append(f"--benchmark-max-time={max_time_s}")
    env = launcher.process_env(threads)
    with tempfile.TemporaryDirectory(prefix="gdbench-audit-") as tmp:
        part = Path(tmp) / "again.json"
        if launcher.run_process(launcher.pytest_command(args, part, selection), env):
            return None
        doc = launcher.read_part(part) if part.exists() else None
    found = list(retime_policy.paired_training([doc])) if doc else []
    return found[0] if found else None


def _suite_rounds(r: pd.Series) -> tuple[tuple[float, ...], tuple[float, ...],
                                          tuple[float, ...]]:
    """A run's benchmark row as (its rounds in µs/step, their reference seconds, their wake
    probe seconds), empty tuples where the run saved nothing aligned with the rounds."""
    data, refs, steps = r["data"], r["ref_data"], r["steps"]
    if not (isinstance(data, list) and isinstance(refs, list) and len(data) == len(refs)
            and data and steps and not pd.isna(steps)):
        return (), (), ()
    wakes = r.get("wake_data")
    wake_s = tuple(float(x) for x in wakes) if isinstance(wakes, list) and \
        len(wakes) == len(data) else ()
    return (tuple(float(x) / float(steps) * 1e6 for x in data),
            tuple(float(x) for x in refs), wake_s)


def render(rows: Sequence[Row], checks: dict[str, Any], path: Path, fmt: str = "table") -> str:
    notes = [f"run: {path} (the verdicts are saved in it, under machine_info.gdbench.audit)",
             "suite/alone is µs/step in the suite over µs/step alone in a fresh process, "
             "over the rounds of both taken while the machine was settled (their "
             f"single-threaded reference within {SETTLED_TOLERANCE:.0%} of its quiet level, "
             f"and their wake probe, where both read one, within {WAKE_TOLERANCE:.0%} of its "
             "own; compared counts them, suite · alone); when too few were, the medians "
             "corrected by the reference's drift. A side mostly unsettled is timed again; "
             "a row off while its pairing is clean is timed again on both sides, taking "
             "turns, and each side's rounds pooled.",
             "pairing is a round timed as the suite times it (after a reference round) over "
             "one timed back to back, blocks of each taking turns in one process: what the "
             "harness itself costs the loop, whatever the machine does; floor is the share "
             "of a round that is timer and loop rather than run.",
             f"FAIL when suite/alone or pairing is off by more than {INTERFERENCE_LIMIT:.0%}, "
             f"when one more wait finds more than {SYNC_LIMIT:.0%} of run pending, or when "
             f"twice the plan takes less than ×{DOUBLING_RANGE[0]} or more than "
             f"×{DOUBLING_RANGE[1]} the time; "
             f"'spins' warns of more than {BUSY_LIMIT} cores busy after run returns."]
    timer = checks["timer"]
    notes.append(f"timer: perf_counter resolution {timer['resolution_s']:.0e} s, smallest "
                 f"step seen {timer['smallest_step_s']:.1e} s")
    n = checks["noise"]
    notes.append(f"machine noise (A/A of the drift reference): "
                 f"{formats.signed_percent(n['aa_ratio'])} [{formats.signed_percent(n['aa_low'])},"
                 f" {formats.signed_percent(n['aa_high'])}], rounds' IQR/median "
                 f"{n['iqr_over_median']:.1%}")
    details = [f"{r.backend} on {r.workload}: {'; '.join(r.failures() + r.warnings())}"
               for r in rows if r.failures() or r.warnings()]
    failed = sum(1 for r in rows if r.failures())
    title = (f"gdbench audit: {'FAIL' if failed else 'PASS'}, {failed} of {len(rows)} "
             "benchmarks failed")
    warnings = [n["warning"]] if n["warning"] else []
    sections = [formats.Section(title, table(rows), notes)]
    text = formats.render(sections, "md" if fmt == "md" else "table", warnings)
    return text + "".join(f"{line}\n" for line in details)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child(sys.argv[2:]))
    sys.exit("usage: python -m gdbench.commands.audit --child BACKEND WORKLOAD [...]; "
             "use gdbench audit")
