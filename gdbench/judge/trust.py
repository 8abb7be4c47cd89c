"""How far each figure of a table can be trusted: its interval, and the reasons to doubt it.

µs/step is a benchmark's median round over its steps; its interval is the
:data:`~gdbench.judge.stats.CONFIDENCE` percentile bootstrap of that median, as the gate's
(:mod:`gdbench.judge.stats`), drawn from a seed fixed per benchmark so that a table prints
the same every time it is printed. A speed-up is numpy's median round over the backend's
(same run, workload and dtype), each sample resampled on its own.

A cell is doubted, and the tables mark it, for any of these reasons:

- ``unsettled``: most of its rounds had a paired reference more than gdbench run's
  tolerance over the workload's quiet level (:data:`gdbench.judge.retime.RUN`, the same
  judgement that times a benchmark again): the machine was slower while it was timed;
- ``neighbour``: other programs (or the hypervisor, stealing) took from this process's
  CPUs during :data:`NEIGHBOUR_SHARE` or more of its rounds
  (:func:`gdbench.judge.stats.neighbour_rounds`);
- ``wide``: its interval reaches more than :data:`WIDE` either side of the median.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from gdbench.judge import retime
from gdbench.judge.stats import CONFIDENCE, RESAMPLES, UNSETTLED_SHARE, neighbour_rounds

WIDE = 0.10  # an interval reaching further than this either side of the median is marked
# A cell is marked when a neighbour was seen beside this share of its rounds or more:
# enough to move its median, if not to spoil it (gdbench run times again a benchmark most
# of whose rounds were unsettled).
NEIGHBOUR_SHARE = 0.10

UNSETTLED = "unsettled"
NEIGHBOUR = "neighbour"
WIDE_INTERVAL = "wide"
DOUBTS = (UNSETTLED, NEIGHBOUR, WIDE_INTERVAL)


@dataclass(frozen=True)
class Interval:
    """A figure and its interval (NaN bounds: fewer than two rounds to resample)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    @property
    def spread(self) -> float:
        """How far the interval reaches from the value, the farther side, relative to the
        value (0.02: ±2%); NaN without an interval."""
        if math.isnan(self.low) or not self.value:
            return math.nan
        return max(self.high / self.value - 1, 1 - self.low / self.value)


def seed_for(name: str) -> int:
    """A benchmark's own bootstrap seed: fixed, so tables print the same every time, and
    different per benchmark, so that no two samples are resampled alike."""
    return zlib.crc32(name.encode("utf-8"))


def bootstrap_medians(x: ArrayLike, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """The medians of ``resamples`` resamples (with replacement) of ``x``.

    Vectorised over the resamples: the values are sorted once, so a resample's middle
    order statistics are those of its indices, found with one partition of an integer
    array.
    """
    values = np.sort(np.asarray(x, dtype=float))
    n = values.size
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=np.int32)
    k = n // 2
    if n % 2:
        return values[np.partition(idx, k, axis=1)[:, k]]
    middle = np.partition(idx, [k - 1, k], axis=1)
    return (values[middle[:, k - 1]] + values[middle[:, k]]) / 2


def percentile_interval(value: float, boot: np.ndarray | None,
                        confidence: float = CONFIDENCE) -> Interval:
    """``value`` with the percentile interval of its bootstrap distribution ``boot``."""
    if boot is None:
        return Interval(value)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return Interval(value, float(low), float(high))


def median_interval(x: ArrayLike, seed: int) -> Interval:
    """The median of ``x`` and the bootstrap interval of that median."""
    values = np.asarray(x, dtype=float)
    boot = bootstrap_medians(values, seed) if values.size >= 2 else None
    return percentile_interval(float(np.median(values)), boot)


def _rounds(value: Any) -> np.ndarray | None:
    """A row's rounds as an array, None when fewer than two were saved."""
    if not isinstance(value, list) or len(value) < 2:
        return None
    return np.asarray(value, dtype=float)


def cell_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row of a :func:`gdbench.records.results.load_run` frame (same index): the
    interval of ``step_us`` (``step_us_low``, ``step_us_high``) and its ``spread``
    (see :attr:`Interval.spread`); for training rows with numpy in the same run, workload
    and dtype, that of the speed-up (``speedup_low``, ``speedup_high``,
    ``speedup_spread``); the share of rounds unsettled (``unsettled_share``) and beside a
    busy neighbour (``neighbour_share``); and ``doubts``, the reasons to doubt the figure
    (a tuple of :data:`DOUBTS`)."""
    boots: dict[Any, np.ndarray] = {}
    out = pd.DataFrame(index=frame.index, columns=[
        "step_us_low", "step_us_high", "spread", "speedup_low", "speedup_high",
        "speedup_spread", "unsettled_share", "neighbour_share"], dtype=float)
    for i, r in frame.iterrows():
        data = _rounds(r["data"])
        if data is None or not r["steps"] or pd.isna(r["steps"]):
            continue
        boots[i] = bootstrap_medians(data, seed_for(str(r["name"])))
        est = percentile_interval(float(r["step_us"]), boots[i] / float(r["steps"]) * 1e6)
        out.loc[i, ["step_us_low", "step_us_high", "spread"]] = [est.low, est.high,
                                                                 est.spread]
    _speedups(frame, boots, out)
    out["unsettled_share"] = _unsettled_shares(frame)
    out["neighbour_share"] = _neighbour_shares(frame)
    out["doubts"] = [_doubts(r) for _, r in out.iterrows()]
    return out


def _speedups(frame: pd.DataFrame, boots: dict[Any, np.ndarray], out: pd.DataFrame) -> None:
    """Fill the speed-up's interval of each training row: numpy's bootstrap medians over
    the row's (independent resamples, so the ratio's spread is both samples')."""
    dtype = frame["dtype"].fillna("")
    numpy_rows = frame[frame["backend"] == "numpy"]
    numpy_of = {(r["run"], r["workload"], dtype[i]): i for i, r in numpy_rows.iterrows()}
    for i, r in frame[frame["kind"] == "training"].iterrows():
        j = numpy_of.get((r["run"], r["workload"], dtype[i]))
        if j is None or j == i or i not in boots or j not in boots:
            continue  # numpy's own speed-up is 1 by definition: no interval
        est = percentile_interval(float(frame.loc[j, "step_us"] / r["step_us"]),
                                  boots[j] / boots[i])
        out.loc[i, ["speedup_low", "speedup_high", "speedup_spread"]] = [
            est.low, est.high, est.spread]


def _unsettled_shares(frame: pd.DataFrame) -> pd.Series:
    """Each training row's share of rounds whose reference read over gdbench run's
    tolerance above its workload's quiet level in that run (NaN: no references)."""
    shares = pd.Series(math.nan, index=frame.index)
    paired = frame[(frame["kind"] == "training")
                   & frame["ref_data"].map(lambda x: isinstance(x, list) and len(x) > 0)]
    for _, run in paired.groupby("run", sort=False):
        levels = retime.workload_levels(zip(run["workload"], run["ref_data"], strict=True))
        for i, r in run.iterrows():
            shares[i] = retime.RUN.spoiled(r["ref_data"], levels[r["workload"]])[1]
    return shares


def _neighbour_shares(frame: pd.DataFrame) -> pd.Series:
    """Each row's share of rounds timed beside a busy neighbour (NaN: not recorded)."""
    shares = pd.Series(math.nan, index=frame.index)
    if "busy_data" not in frame.columns:
        return shares
    for i, r in frame.iterrows():
        busy, steal, data = r["busy_data"], r["steal_data"], r["data"]
        if not (isinstance(busy, list) and isinstance(data, list)):
            continue
        taken = np.add(busy, steal) if isinstance(steal, list) else np.asarray(busy)
        iterations = int(r["iterations"]) if pd.notna(r["iterations"]) else 1
        shares[i] = float(np.mean(neighbour_rounds(
            taken, np.asarray(data, dtype=float) * iterations)))
    return shares


def _doubts(cell: pd.Series) -> tuple[str, ...]:
    reasons = []
    if cell["unsettled_share"] > UNSETTLED_SHARE:
        reasons.append(UNSETTLED)
    if cell["neighbour_share"] >= NEIGHBOUR_SHARE:
        reasons.append(NEIGHBOUR)
    if cell["spread"] > WIDE:
        reasons.append(WIDE_INTERVAL)
    return tuple(reasons)


def doubted(doubts: Sequence[tuple[str, ...]]) -> list[str]:
    """The reasons that occur among these cells' doubts, in :data:`DOUBTS` order."""
    seen = {d for cell in doubts for d in cell}
    return [d for d in DOUBTS if d in seen]
