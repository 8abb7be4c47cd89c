"""The audit's verdicts: is each figure of a run what its backend's loop costs?

A :class:`Row` sets one benchmark's suite timing against its standalone timing
(:class:`gdbench.harness.standalone.Standalone`): over the rounds of both taken on a
settled machine, or the medians corrected by the drift reference when too few were. It
:func:`failures` says why it fails (interference, pairing, sync, x2 plan) and
:func:`warnings` what it warns of (a pool spinning after return). :func:`noise` judges the machine's
A/A spread against the regression gate's threshold.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from gdbench.harness.standalone import Standalone
from gdbench.judge.stats import (
    UNSETTLED_SHARE,
    Settled,
    quiet_level,
    ratio_of_medians,
    settled_pair,
    settled_rounds,
)
from gdbench.records import formats
from gdbench.records.results import benchmark_row

INTERFERENCE_LIMIT = 0.10  # |suite / alone - 1| above this fails the row
SYNC_LIMIT = 0.10  # an extra wait that finds more than this share of run pending fails
# Doubled plan / plan outside this fails the row. A call that returns before its work is
# done reads about x1.0; a synchronous call with a fixed per-call cost as long as its loop
# reads about x1.5, so the lower bound lies between the two.
DOUBLING_RANGE = (1.25, 2.5)
BUSY_LIMIT = 0.25  # cores busy after return above this is a warning
HARNESS_LIMIT = 0.10  # the suite's pairing slowing the loop by more than this fails the row


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
        rounds_us, refs, wakes = suite_rounds(r)
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

        Once both sides were timed again taking turns (``gdbench audit``), that fallback
        compares the pooled medians uncorrected: the turns are the drift control then,
        and the single-threaded reference does not track a loop on both cores (it can
        read far slower while the loop does not, a correction of tens of percent)."""
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



def failures(row: Row) -> list[str]:
    """Why the row fails; empty when it passes."""
    out = []
    pairing = row.alone.harness_ratio
    pairing_ok = abs(pairing - 1) <= HARNESS_LIMIT
    if abs(row.interference - 1) > INTERFERENCE_LIMIT:
        why = ""
        if row.drifted and row.timings > 1:
            why = (f"; it stays over {row.timings} timings of each side taking turns, "
                   f"while the suite's pairing moves the loop "
                   f"{formats.signed_percent(pairing)} in one process")
        elif row.drifted:
            why = (f"; the suite's pairing moves the loop {formats.signed_percent(pairing)}"
                   " in one process, so the machine's speed changed between the two "
                   "timings (re-run the suite)")
        out.append(f"interference: suite {formats.signed_percent(row.interference)} "
                   f"vs alone{why}")
    if not pairing_ok:
        out.append(f"pairing: a round after the suite's reference round takes "
                   f"{formats.signed_percent(pairing)} vs back to back, in one process")
    if row.sync_change > SYNC_LIMIT:
        out.append(f"sync: an extra wait finds {row.sync_change:.0%} of run still "
                   "pending (its own cost taken out), so run returns before its work "
                   "is done")
    if row.alone.queued_after_run:
        out.append("sync: the CUDA stream still had work queued when run returned, so "
                   "run returns before its work is done")
    low, high = DOUBLING_RANGE
    if not low <= row.alone.doubled_ratio <= high:
        out.append(f"x2 plan: twice the steps took x{row.alone.doubled_ratio:.2f} the "
                   "time")
    return out

def warnings(row: Row) -> list[str]:
    """What the row warns of (a pool that spins after return); empty when nothing."""
    if row.alone.busy_cores > BUSY_LIMIT:
        return [f"spins: {row.alone.busy_cores:.2f} cores busy after run returns"]
    return []

def verdict(row: Row) -> str:
    """ok, "ok, spins" or FAIL."""
    if failures(row):
        return "FAIL"
    return "ok, spins" if warnings(row) else "ok"


def suite_rounds(r: pd.Series) -> tuple[tuple[float, ...], tuple[float, ...],
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


def noise(a: Sequence[float], b: Sequence[float], threshold: float) -> dict[str, Any]:
    """A/A (:func:`gdbench.harness.standalone.aa_rounds`): the two blocks' ratio of medians,
    its 95% interval and the rounds' spread, with a warning when the gate's threshold is
    within reach of the noise alone."""
    est = ratio_of_medians(b, a)
    q1, med, q3 = np.percentile([*a, *b], [25, 50, 75])
    spread = float((q3 - q1) / med)
    too_noisy = max(abs(est.high - 1), abs(1 - est.low)) > threshold / 2 or spread > threshold
    return {"aa_ratio": est.ratio, "aa_low": est.low, "aa_high": est.high,
            "iqr_over_median": spread, "threshold": threshold,
            "warning": (f"this machine is noisy for a {threshold:.0%} gate: A/A "
                        f"{formats.signed_percent(est.ratio)} [{formats.signed_percent(est.low)},"
                        f" {formats.signed_percent(est.high)}], spread {spread:.1%}")
            if too_noisy else None}
