"""The statistics behind gdbench check and compare: a ratio of medians and its interval.

Pure functions of arrays of round times; they know nothing of runs or files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

RESAMPLES = 2000
CONFIDENCE = 0.95
# Bootstrap resamples are drawn in chunks of about this many values, to bound memory
# (rounds x resamples can reach millions on fast benchmarks).
_CHUNK_VALUES = 2_000_000


@dataclass(frozen=True)
class Estimate:
    """A ratio of medians with its bootstrap interval (NaN bounds: no rounds to resample)."""

    ratio: float
    low: float = math.nan
    high: float = math.nan

    @property
    def resampled(self) -> bool:
        return not math.isnan(self.low)


def _bootstrap_medians(x: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """The medians of ``resamples`` resamples (with replacement) of ``x``."""
    out = np.empty(resamples)
    chunk = max(1, _CHUNK_VALUES // x.size)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = np.median(x[idx], axis=1)
    return out


def ratio_of_medians(
    new: ArrayLike,
    base: ArrayLike,
    new_ref: ArrayLike | None = None,
    base_ref: ArrayLike | None = None,
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """(median(new) / median(new_ref)) / (median(base) / median(base_ref)) with a CI.

    Without references it is plainly median(new) / median(base). The interval is the
    percentile bootstrap: every sample is resampled independently ``resamples`` times
    from ``np.random.default_rng(seed)``. Each sample needs two or more rounds, else
    the bounds are NaN. Units cancel, so any time unit will do.
    """
    samples = [np.asarray(x, dtype=float) for x in (new, base, new_ref, base_ref)
               if x is not None]
    if any(s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0) for s in samples):
        raise ValueError("every sample needs one or more positive finite times")
    if len(samples) not in (2, 4):
        raise ValueError("give both references or neither")
    exps = (1.0, -1.0, -1.0, 1.0)[: len(samples)]
    ratio = float(np.prod([np.median(s) ** e for s, e in zip(samples, exps, strict=True)]))
    if min(s.size for s in samples) < 2:
        return Estimate(ratio)
    rng = np.random.default_rng(seed)
    # Work in logs so the product of four ratios is a sum.
    log_ratio = sum(e * np.log(_bootstrap_medians(s, rng, resamples))
                    for s, e in zip(samples, exps, strict=True))
    alpha = (1 - confidence) / 2
    low, high = np.exp(np.quantile(log_ratio, [alpha, 1 - alpha]))
    return Estimate(ratio, float(low), float(high))


# --- settled rounds --------------------------------------------------------------------------
#
# A shared VM has moments (seconds to minutes) when a neighbour on the host slows this
# machine, and not uniformly: a gather-heavy loop can slow far more than the single-threaded
# reference, which the paired ratio does not cancel. So the gate and the audit compare
# rounds taken while the machine was settled: rounds whose reference time lies within
# SETTLED_TOLERANCE of the reference's quiet level, the low end of every reference time of
# that benchmark in both samples. Both samples are filtered alike, so a change in the
# benchmark (which never moves its reference) is kept whole; and when one sample has fewer
# than MIN_SETTLED settled rounds (the machine was slower for all of it, e.g. a uniform
# slowdown), every round is compared, as before.

SETTLED_TOLERANCE = 0.10
QUIET_PERCENTILE = 10
MIN_SETTLED = 5
# The wake probe's readings (timing.wake_probe) are judged the same way, with a wider
# tolerance: a reading moves with the backend's own threads (spinning or asleep) as much as
# with the host (docs/fidelity.md).
WAKE_TOLERANCE = 0.30
# A sample with more than this share of its rounds unsettled is timed again, where the
# caller can (gdbench ab's processes, the audit's standalone timings).
UNSETTLED_SHARE = 0.5


def quiet_level(*refs: ArrayLike) -> float:
    """The reference's time on a settled machine: a low percentile of all reference times
    given (pooled), robust to a few fast outliers."""
    pooled = np.concatenate([np.asarray(r, dtype=float).ravel() for r in refs])
    if pooled.size == 0:
        raise ValueError("no reference times")
    return float(np.percentile(pooled, QUIET_PERCENTILE))


def settled_mask(refs: ArrayLike, level: float,
                 tolerance: float = SETTLED_TOLERANCE) -> np.ndarray:
    """Which rounds were taken on a settled machine: reference within tolerance of level."""
    return np.asarray(refs, dtype=float) <= level * (1 + tolerance)


def settled_rounds(refs: ArrayLike, level: float, wakes: ArrayLike | None = None,
                   wake_level: float | None = None) -> np.ndarray:
    """Which rounds were taken on a settled machine: reference within SETTLED_TOLERANCE of
    ``level`` and, when ``wakes`` and ``wake_level`` are given, wake probe reading within
    WAKE_TOLERANCE of ``wake_level``."""
    keep = settled_mask(refs, level)
    if wakes is not None and wake_level is not None:
        keep &= settled_mask(wakes, wake_level, WAKE_TOLERANCE)
    return keep


def mostly_unsettled(refs: ArrayLike, level: float,
                     tolerance: float = SETTLED_TOLERANCE,
                     neighbours: ArrayLike | None = None) -> tuple[bool, float]:
    """Whether more than UNSETTLED_SHARE of the rounds with these reference times were
    unsettled against ``level`` (more than ``tolerance`` over it, or, where ``neighbours``
    is given, aligned with them, taken beside a busy neighbour), and that share."""
    unsettled = ~settled_mask(refs, level, tolerance)
    if neighbours is not None:
        unsettled |= np.asarray(neighbours, dtype=bool)
    share = float(np.mean(unsettled))
    return share > UNSETTLED_SHARE, share


# --- neighbours ------------------------------------------------------------------------------
#
# The suite records, per round, the CPU seconds that other programs used on the CPUs it
# ran on while the round was timed, and the seconds the hypervisor stole from them
# (timing.NeighbourMeter). The kernel counts them in 10 ms ticks per CPU, so a single
# round of a few milliseconds reads zero or a whole tick, and each reading errs by up to a
# tick per CPU (a tick counts the whole 10 ms to whatever ran at its instant): a round's
# load is judged over the rounds around it, spanning NEIGHBOUR_WINDOW_S. Over 0.1 s that
# sampling alone reads a fifth of a core on two CPUs, about as much as a neighbour; over
# half a second, under a tenth, while a neighbour shorter than that is diluted. An idle
# machine's own
# daemons take a few hundredths of a core; NEIGHBOUR_CORES is a quarter of one, which
# taken from a backend that uses every CPU of a small machine already moves it by more
# than the 10% that gdbench promises.

NEIGHBOUR_CORES = 0.25
NEIGHBOUR_WINDOW_S = 0.5


def neighbour_load(busy_s: ArrayLike, round_s: ArrayLike,
                   window_s: float = NEIGHBOUR_WINDOW_S) -> np.ndarray:
    """Each round's neighbour load in cores: the CPU seconds others used (``busy_s``, per
    round, steal included where the caller adds it) over the rounds' seconds
    (``round_s``), summed over the rounds around it that span about ``window_s``."""
    busy, wall = np.asarray(busy_s, dtype=float), np.asarray(round_s, dtype=float)
    if busy.shape != wall.shape:
        raise ValueError("each round needs one neighbour reading")
    n = busy.size
    if n == 0:
        return np.zeros(0)
    typical = float(np.median(wall))
    # Rounds either side: none for rounds as long as the window.
    half = min(n, int(window_s / typical / 2)) if typical > 0 else n
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    cum_busy = np.concatenate([[0.0], np.cumsum(busy)])
    cum_wall = np.concatenate([[0.0], np.cumsum(wall)])
    return (cum_busy[hi] - cum_busy[lo]) / np.maximum(cum_wall[hi] - cum_wall[lo], 1e-12)


def neighbour_rounds(busy_s: ArrayLike, round_s: ArrayLike,
                     cores: float = NEIGHBOUR_CORES) -> np.ndarray:
    """Which rounds were timed beside a busy neighbour: a :func:`neighbour_load` over
    ``cores``."""
    return neighbour_load(busy_s, round_s) > cores


@dataclass(frozen=True)
class Settled:
    """Two samples' settled rounds, or all their rounds when either has too few."""

    new: list[float]
    base: list[float]
    new_dropped: int  # rounds left out of each sample (0 when all were kept)
    base_dropped: int
    fallback: bool  # True when too few rounds were settled, so all were kept

    def note(self) -> str:
        """What the reader must know ('' when every round was settled)."""
        if self.fallback:
            return "machine unsettled throughout: all rounds compared"
        if not (self.new_dropped or self.base_dropped):
            return ""
        return (f"unsettled rounds left out: baseline {self.base_dropped} of "
                f"{len(self.base) + self.base_dropped}, new {self.new_dropped} of "
                f"{len(self.new) + self.new_dropped}")


def settled_pair(new: ArrayLike, new_refs: ArrayLike, base: ArrayLike,
                 base_refs: ArrayLike, new_wakes: ArrayLike | None = None,
                 base_wakes: ArrayLike | None = None) -> Settled:
    """The rounds of ``new`` and ``base`` taken on a settled machine, judged by their
    aligned reference times against the pooled quiet level; and, when both samples give
    wake probe readings, by those too (against their own pooled quiet level, within
    WAKE_TOLERANCE)."""
    n, nr, b, br = (np.asarray(x, dtype=float) for x in (new, new_refs, base, base_refs))
    if n.shape != nr.shape or b.shape != br.shape:
        raise ValueError("each sample needs one reference time per round")
    if n.size < MIN_SETTLED or b.size < MIN_SETTLED:  # too few rounds to judge: keep all
        return Settled(n.tolist(), b.tolist(), 0, 0, False)
    level = quiet_level(nr, br)
    nw = bw = wake_level = None
    if new_wakes is not None and base_wakes is not None:
        nw, bw = np.asarray(new_wakes, dtype=float), np.asarray(base_wakes, dtype=float)
        if nw.shape != n.shape or bw.shape != b.shape:
            raise ValueError("each sample needs one wake probe reading per round")
        wake_level = quiet_level(nw, bw)
    keep_n = settled_rounds(nr, level, nw, wake_level)
    keep_b = settled_rounds(br, level, bw, wake_level)
    if keep_n.sum() < MIN_SETTLED or keep_b.sum() < MIN_SETTLED:
        return Settled(n.tolist(), b.tolist(), 0, 0, True)
    return Settled(n[keep_n].tolist(), b[keep_b].tolist(), int((~keep_n).sum()),
                   int((~keep_b).sum()), False)
