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
