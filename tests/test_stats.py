"""gdbench.judge.stats: the ratio of medians and its percentile bootstrap interval, by value.

Two kinds of check. Deterministic properties hold exactly (the ratio is the ratio of the
medians; every round can be drawn; chunking does not change the draws; seeded runs
repeat). The interval itself is compared with an independent oracle,
``scipy.stats.bootstrap`` (percentile method, statistic = the same ratio of medians,
each sample resampled independently), within a tolerance set by the Monte-Carlo error of
a percentile bound: with B resamples its standard error is about
sqrt(a(1-a)/B) / f(q_a), which for a = 2.5% is ~1.36/sqrt(B) of the interval's half-width
for a bell-shaped bootstrap distribution: 3.0% at B = 2,000 (the gate's), 1.0% at 20,000,
0.6% for the 50,000-resample oracle. The tolerances below are about four standard errors,
yet well under the 16% of the half-width that separates a 95% interval from a 90% one,
and far under what a bootstrap of means would give on the skewed samples used here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from numpy.typing import ArrayLike

from gdbench.judge import stats
from gdbench.judge.stats import CONFIDENCE, RESAMPLES, Estimate, ratio_of_medians

scipy_stats = pytest.importorskip("scipy.stats")

ORACLE_RESAMPLES = 50_000


def oracle(*samples: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """scipy's percentile bootstrap interval of the same ratio of medians."""
    exps = (1.0, -1.0, -1.0, 1.0)[: len(samples)]

    def statistic(*xs: np.ndarray, axis: int = -1) -> np.ndarray:
        out = np.ones(np.shape(np.median(xs[0], axis=axis)))
        for x, e in zip(xs, exps, strict=True):
            out = out * np.median(x, axis=axis) ** e
        return out

    res = scipy_stats.bootstrap(
        tuple(np.asarray(s, dtype=float) for s in samples), statistic, method="percentile",
        paired=False, vectorized=True, n_resamples=ORACLE_RESAMPLES,
        confidence_level=confidence, rng=np.random.default_rng(12345))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def skewed(scale: float, size: int, seed: int, slow_share: float = 0.25) -> np.ndarray:
    """Lognormal round times (sigma 0.15) where ``slow_share`` of the rounds ran 2.5x
    slower: a median and a mean of such rounds, and their bootstraps, differ a lot."""
    rng = np.random.default_rng(seed)
    x = scale * rng.lognormal(0.0, 0.15, size)
    x[: int(slow_share * size)] *= 2.5
    return rng.permutation(x)


def assert_bounds_match(est: Estimate, low: float, high: float, tol: float) -> None:
    """Each bound within ``tol`` of the oracle interval's half-width on its side."""
    assert est.low < est.ratio < est.high
    assert abs(est.low - low) <= tol * (est.ratio - low), (est, low, high)
    assert abs(est.high - high) <= tol * (high - est.ratio), (est, low, high)


# --- the point estimate --------------------------------------------------------------------

def test_the_ratio_is_the_ratio_of_the_medians_exactly() -> None:
    new, base = [3.0, 1.0, 2.0], [4.0, 8.0, 5.0, 1.0]  # medians 2 and 4.5
    assert ratio_of_medians(new, base).ratio == pytest.approx(2 / 4.5, rel=1e-15)


def test_references_divide_each_side_by_its_own_reference() -> None:
    # (median(new) / median(new_ref)) / (median(base) / median(base_ref)) = (6/3) / (2/5)
    new, base, new_ref, base_ref = [6.0, 5.0, 7.0], [2.0, 1.0, 3.0], [3.0, 3.0], [5.0, 4.0, 6.0]
    est = ratio_of_medians(new, base, new_ref, base_ref)
    assert est.ratio == pytest.approx(5.0, rel=1e-15)
    assert est.low < 5.0 < est.high


def test_one_round_gives_the_ratio_without_an_interval() -> None:
    est = ratio_of_medians([3.0], [1.0, 2.0])
    assert est.ratio == pytest.approx(3 / 1.5)
    assert math.isnan(est.low) and math.isnan(est.high) and not est.resampled
    assert ratio_of_medians([2.0, 2.0], [1.0, 1.0]).resampled


# --- deterministic properties of the interval ----------------------------------------------

def test_two_rounds_each_give_the_exact_percentile_interval() -> None:
    # new = [4, 1]: a resample's median is 1, 2.5 or 4 with probabilities 1/4, 1/2, 1/4;
    # base never moves. So the 2.5% and 97.5% percentiles are exactly 1 and 4.
    assert ratio_of_medians([4.0, 1.0], [1.0, 1.0]) == Estimate(2.5, 1.0, 4.0)


def test_a_lone_outlier_cannot_move_a_bootstrap_of_medians() -> None:
    # 20 rounds of 1 s and one of 50 s: a resample's median is 1 unless 11 or more of its
    # 21 draws are the outlier (probability < 1e-10). A bootstrap of means would spread.
    new = [1.0] * 20 + [50.0]
    assert ratio_of_medians(new, [1.0] * 21) == Estimate(1.0, 1.0, 1.0)


def test_the_interval_is_seeded() -> None:
    new, base = skewed(2.0, 30, 1), skewed(1.0, 30, 2)
    assert ratio_of_medians(new, base) == ratio_of_medians(new, base, seed=0)
    assert ratio_of_medians(new, base, seed=1) != ratio_of_medians(new, base, seed=0)
    # The gate's defaults are what its report says: 2,000 resamples, 95%.
    assert ratio_of_medians(new, base) == ratio_of_medians(new, base, resamples=2000,
                                                           confidence=0.95)
    assert (RESAMPLES, CONFIDENCE) == (2000, 0.95)


def test_drawing_in_chunks_draws_the_same_resamples(monkeypatch: pytest.MonkeyPatch) -> None:
    new, base = skewed(2.0, 20, 3), skewed(1.0, 20, 4)
    whole = ratio_of_medians(new, base, resamples=7)
    monkeypatch.setattr(stats, "_CHUNK_VALUES", 50)  # 2 resamples of 20 rounds per chunk
    assert ratio_of_medians(new, base, resamples=7) == whole
    monkeypatch.setattr(stats, "_CHUNK_VALUES", 1)  # fewer values than one resample
    assert ratio_of_medians(new, base, resamples=7) == whole


def test_units_cancel() -> None:
    new, base, ref = skewed(2.0, 25, 5), skewed(1.0, 25, 6), skewed(0.5, 25, 7)
    seconds = ratio_of_medians(new, base, ref, ref)
    micro = ratio_of_medians(new * 1e6, base * 1e6, ref * 1e6, ref * 1e6)
    assert micro.ratio == pytest.approx(seconds.ratio, rel=1e-12)
    assert micro.low == pytest.approx(seconds.low, rel=1e-12)
    assert micro.high == pytest.approx(seconds.high, rel=1e-12)


def test_a_wider_confidence_gives_a_wider_interval() -> None:
    new, base = skewed(2.0, 30, 8), skewed(1.0, 30, 9)
    wide = ratio_of_medians(new, base, confidence=0.99)
    gate = ratio_of_medians(new, base)
    narrow = ratio_of_medians(new, base, confidence=0.90)
    assert wide.low < gate.low < narrow.low < gate.ratio < narrow.high < gate.high < wide.high


# --- the interval against scipy's bootstrap ------------------------------------------------

CASES = {
    # 25% slower, a quarter of each run's rounds in a 2.5x slow episode
    "two samples": lambda: (skewed(2.5, 30, 11), skewed(2.0, 40, 12)),
    # only the baseline had the slow episode: its mean moves, its median barely
    "episode in the baseline": lambda: (skewed(2.0, 30, 13, 0.0), skewed(2.0, 30, 14, 0.3)),
    # with references, as the unpaired fallback bootstraps them
    "four samples": lambda: (skewed(2.5, 30, 15), skewed(2.0, 30, 16), skewed(1.2, 30, 17),
                             skewed(1.0, 30, 18)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_gates_interval_matches_scipys_bootstrap(case: str) -> None:
    samples = CASES[case]()
    low, high = oracle(*samples)
    # B = 2,000: a bound's standard error is ~3% of the half-width; allow 12%.
    assert_bounds_match(ratio_of_medians(*samples), low, high, tol=0.12)


@pytest.mark.parametrize("case", list(CASES))
def test_more_resamples_match_scipys_bootstrap_closely(case: str) -> None:
    samples = CASES[case]()
    low, high = oracle(*samples)
    # B = 20,000 against 50,000: ~1.1% combined; allow 5%.
    assert_bounds_match(ratio_of_medians(*samples, resamples=20_000), low, high, tol=0.05)


def test_a_90_percent_interval_is_not_the_95_percent_one() -> None:
    """The oracle tells the two apart at this tolerance, so a 90% interval reported as
    95% fails the tests above."""
    samples = CASES["two samples"]()
    low95, high95 = oracle(*samples)
    est90 = ratio_of_medians(*samples, resamples=20_000, confidence=0.90)
    assert_bounds_match(est90, *oracle(*samples, confidence=0.90), tol=0.05)
    with pytest.raises(AssertionError):
        assert_bounds_match(est90, low95, high95, tol=0.05)


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [[], [1.0, 0.0], [1.0, -1.0], [1.0, math.inf], [math.nan, 1.0]])
def test_samples_need_positive_finite_times(bad: list[float]) -> None:
    for args in ((bad, [1.0, 2.0]), ([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], bad)):
        with pytest.raises(ValueError) as info:
            ratio_of_medians(*args)
        assert str(info.value) == "every sample needs one or more positive finite times"


def test_references_come_in_pairs() -> None:
    for refs in (([1.0, 2.0],), (None, [1.0, 2.0])):
        with pytest.raises(ValueError) as info:
            ratio_of_medians([1.0, 2.0], [1.0, 2.0], *refs)
        assert str(info.value) == "give both references or neither"


def test_an_estimate_is_a_value() -> None:
    est = Estimate(1.2, 1.1, 1.3)
    assert est == Estimate(1.2, 1.1, 1.3) and est.resampled
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.ratio = 2.0  # type: ignore[misc]
    assert not Estimate(1.2).resampled


# --- settled rounds ----------------------------------------------------------------------


def test_the_quiet_level_is_the_pooled_tenth_percentile() -> None:
    a, b = [1.0] * 5 + [2.0] * 5, [3.0] * 10
    assert stats.quiet_level(a, b) == pytest.approx(float(np.percentile(a + b, 10)))
    assert stats.quiet_level(a, b) == pytest.approx(1.0)
    assert stats.quiet_level(np.arange(51.0), np.arange(51.0, 101.0)) == 10.0
    with pytest.raises(ValueError, match="^no reference times$"):
        stats.quiet_level([], [])


def test_a_round_is_settled_up_to_the_tolerance_and_not_beyond() -> None:
    mask = stats.settled_mask([1.0, 1.1, 1.1001, 1.5], 1.0, 0.10)
    assert mask.tolist() == [True, True, False, False]


def test_settled_pair_keeps_the_settled_rounds_of_both_samples() -> None:
    refs = [1.0] * 8 + [1.3] * 4
    new = list(range(1, 13))
    base = [10.0 + i for i in range(12)]
    kept = stats.settled_pair(new, refs, base, [1.0] * 12)
    assert kept.new == [float(x) for x in range(1, 9)]
    assert kept.base == base
    assert (kept.new_dropped, kept.base_dropped, kept.fallback) == (4, 0, False)
    assert kept.note() == "unsettled rounds left out: baseline 0 of 12, new 4 of 12"
    assert stats.settled_pair(new, [1.0] * 12, base, [1.0] * 12).note() == ""


def test_too_few_settled_rounds_compare_every_round() -> None:
    # Only 4 of the new sample's rounds are settled (fewer than MIN_SETTLED): all kept.
    refs = [1.0] * 4 + [1.5] * 8
    kept = stats.settled_pair(list(range(12)), refs, list(range(12)), [1.0] * 12)
    assert stats.MIN_SETTLED == 5
    assert kept.fallback and kept.new == [float(x) for x in range(12)]
    assert kept.note() == "machine unsettled throughout: all rounds compared"
    refs = [1.0] * 5 + [1.5] * 7
    assert not stats.settled_pair(list(range(12)), refs, list(range(12)),
                                  [1.0] * 12).fallback
    with pytest.raises(ValueError, match="^each sample needs one reference time per round$"):
        stats.settled_pair([1.0, 2.0], [1.0], [1.0], [1.0])


def test_a_settled_pair_cannot_be_changed_once_judged() -> None:
    kept = stats.settled_pair([1.0] * 5, [1.0] * 5, [2.0] * 5, [1.0] * 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        kept.fallback = True  # type: ignore[misc]


def test_samples_too_short_to_judge_are_kept_whole_without_a_note() -> None:
    kept = stats.settled_pair([1.0, 2.0], [1.0, 5.0], [1.0] * 9, [1.0] * 9)
    assert kept.new == [1.0, 2.0] and not kept.fallback and kept.note() == ""


def test_the_settled_bounds_hold_at_exactly_min_settled_rounds() -> None:
    five, calm = [1.0] * 5, [1.0] * 12
    one_slow = [1.0] * 4 + [1.5]
    # Five rounds are enough to judge: one unsettled leaves four, too few, so all are kept.
    assert stats.settled_pair(five, one_slow, list(range(12)), calm).fallback
    assert stats.settled_pair(list(range(12)), calm, five, one_slow).fallback
    # Exactly five settled rounds in either sample are enough.
    five_of_twelve = [1.0] * 5 + [1.5] * 7
    kept = stats.settled_pair(list(range(12)), calm, list(range(12)), five_of_twelve)
    assert not kept.fallback and kept.base == [0.0, 1.0, 2.0, 3.0, 4.0]
    # A fallback leaves nothing out, and says so in its counts too.
    fell = stats.settled_pair(five, one_slow, list(range(12)), calm)
    assert (fell.new_dropped, fell.base_dropped) == (0, 0) and len(fell.new) == 5


def test_slow_wake_ups_leave_rounds_out_like_a_slow_reference() -> None:
    calm = [1.0] * 12
    new, base = list(range(1, 13)), [10.0 + i for i in range(12)]
    # The references are flat; the new sample's last 4 rounds woke threads 40% slower.
    wakes = [50e-6] * 8 + [70e-6] * 4
    kept = stats.settled_pair(new, calm, base, calm, wakes, [50e-6] * 12)
    assert kept.new == [float(x) for x in range(1, 9)] and kept.base == base
    assert (kept.new_dropped, kept.base_dropped, kept.fallback) == (4, 0, False)
    # Up to WAKE_TOLERANCE over the pooled quiet level is settled, beyond it is not.
    assert stats.WAKE_TOLERANCE == 0.30
    edge = [50e-6] * 8 + [65e-6] * 4
    assert stats.settled_pair(new, calm, base, calm, edge, [50e-6] * 12).new_dropped == 0
    over = [50e-6] * 8 + [65.1e-6] * 4
    assert stats.settled_pair(new, calm, base, calm, over, [50e-6] * 12).new_dropped == 4
    # A round is left out when either signal reads slow: both masks apply.
    refs = [1.3] + [1.0] * 11
    both = stats.settled_pair(new, refs, base, calm, wakes, [50e-6] * 12)
    assert both.new == [float(x) for x in range(2, 9)]
    # Wake readings of only one sample are not compared: the reference alone judges.
    assert stats.settled_pair(new, calm, base, calm, wakes, None).new_dropped == 0
    misaligned = "^each sample needs one wake probe reading per round$"
    with pytest.raises(ValueError, match=misaligned):
        stats.settled_pair(new, calm, base, calm, wakes[:5], [50e-6] * 12)
    with pytest.raises(ValueError, match=misaligned):  # the baseline's readings alone
        stats.settled_pair(new, calm, base, calm, [50e-6] * 12, wakes[:5])


def test_the_baseline_loses_rounds_to_either_signal_alike() -> None:
    new, calm = list(range(1, 13)), [1.0] * 12
    base = [10.0 + i for i in range(12)]
    refs = [1.3] + [1.0] * 11  # its first round's reference slow
    wakes = [50e-6] * 11 + [70e-6]  # its last round's wake-up slow
    kept = stats.settled_pair(new, calm, base, refs, [50e-6] * 12, wakes)
    assert kept.base == base[1:11] and kept.base_dropped == 2
    assert kept.new == [float(x) for x in new] and kept.new_dropped == 0


def test_mostly_unsettled_means_more_than_half_of_the_rounds() -> None:
    assert stats.UNSETTLED_SHARE == 0.5
    assert stats.mostly_unsettled([1.0, 1.0, 1.5, 1.5], 1.0) == (False, 0.5)
    assert stats.mostly_unsettled([1.0, 1.5, 1.5, 1.5], 1.0) == (True, 0.75)
    assert stats.mostly_unsettled([1.1, 1.1], 1.0) == (False, 0.0)  # within tolerance
    # A wider tolerance, as gdbench run's re-timing uses (25%).
    assert stats.mostly_unsettled([1.2, 1.2, 1.3], 1.0, 0.25) == (False, pytest.approx(1 / 3))
    assert stats.mostly_unsettled([1.2, 1.3, 1.3], 1.0, 0.25) == (True, pytest.approx(2 / 3))


def test_wake_readings_count_only_with_their_quiet_level() -> None:
    refs, slow_wakes = [1.0, 1.0, 1.5], [9.0, 9.0, 9.0]
    assert stats.settled_rounds(refs, 1.0).tolist() == [True, True, False]
    assert stats.settled_rounds(refs, 1.0, slow_wakes, None).tolist() == [True, True, False]
    assert stats.settled_rounds(refs, 1.0, None, 1.0).tolist() == [True, True, False]
    assert stats.settled_rounds(refs, 1.0, slow_wakes, 1.0).tolist() == [False] * 3


def test_rounds_beside_a_neighbour_count_as_unsettled_too() -> None:
    assert stats.mostly_unsettled([1.0, 1.0, 1.0, 1.5], 1.0,
                                  neighbours=[True, True, False, False]) == (True, 0.75)
    assert stats.mostly_unsettled([1.0, 1.0, 1.0, 1.5], 1.0,
                                  neighbours=[False, False, False, True]) == (False, 0.25)


# --- neighbours ------------------------------------------------------------------------------


def _windowed(busy: list[float], wall: list[float], half: int) -> list[float]:
    """Each round's busy seconds over wall seconds, summed over ``half`` rounds either side."""
    n = len(busy)
    return [sum(busy[max(0, i - half):i + half + 1]) / sum(wall[max(0, i - half):i + half + 1])
            for i in range(n)]


def test_a_rounds_neighbour_load_is_summed_over_the_rounds_of_its_window() -> None:
    wall = [0.1, 0.1, 0.1, 0.12, 0.1, 0.1, 0.1]
    busy = [0.1, 0.0, 0.0, 0.0, 0.03, 0.0, 0.05]
    # Rounds of 0.1 s (the median): the 0.5 s window is 2 rounds either side.
    assert stats.neighbour_load(busy, wall).tolist() == pytest.approx(_windowed(busy, wall, 2))
    assert stats.neighbour_load(busy, wall, window_s=0.25).tolist() == pytest.approx(
        _windowed(busy, wall, 1))
    # Rounds as long as the window are each judged on their own.
    assert stats.neighbour_load(busy, wall, window_s=0.1).tolist() == pytest.approx(
        [b / w for b, w in zip(busy, wall, strict=True)])
    # A window longer than the sample spans all of it.
    assert stats.neighbour_load(busy, wall, window_s=100).tolist() == pytest.approx(
        [sum(busy) / sum(wall)] * 7)


def test_the_neighbour_load_of_no_rounds_one_round_and_rounds_too_short_to_time() -> None:
    assert stats.neighbour_load([], []).shape == (0,)
    assert stats.neighbour_load([0.05], [0.1]).tolist() == pytest.approx([0.5])
    # Rounds that read 0 s: the whole sample is one window, over at least a picosecond.
    assert stats.neighbour_load([0.0, 2e-12], [0.0, 0.0]).tolist() == pytest.approx([2.0, 2.0])
    with pytest.raises(ValueError, match="^each round needs one neighbour reading$"):
        stats.neighbour_load([0.0], [0.1, 0.1])


def test_a_neighbour_is_busy_above_a_quarter_of_a_core_over_half_a_second() -> None:
    assert stats.neighbour_rounds([0.25, 0.26], [1.0, 1.0]).tolist() == [False, True]
    assert stats.neighbour_rounds([0.25, 0.26], [1.0, 1.0], cores=0.2).tolist() == [True, True]
    # 0.1 s rounds: one busy round is diluted over the five rounds of each window it is in.
    busy = [0.0] * 4 + [0.1] + [0.0] * 4
    assert not stats.neighbour_rounds(busy, [0.1] * 9).any()
    busy[4] = 0.15
    assert stats.neighbour_rounds(busy, [0.1] * 9).tolist() == [False] * 2 + [True] * 5 + [
        False] * 2
