"""The ceiling arithmetic and the fixed-cost/throughput fit, on constructed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gdbench.judge import limits


def test_step_flops_and_bytes() -> None:
    # large: B=1024, d=256, k=16, float32
    assert limits.step_flops(1024, 256, 16) == 1024 * (4 * 256 * 16 + 6 * 16)
    assert limits.step_bytes(1024, 256, 16, 4) == (1024 * 272 + 2 * (16 * 256 + 16)) * 4


def test_the_bound_is_the_slower_of_the_two_ceilings() -> None:
    flops, nbytes = 1e9, 2e8
    # 100 GFLOP/s and 10 GB/s: compute takes 10 ms, memory 20 ms -> memory binds.
    assert limits.bound_s(flops, nbytes, 100e9, 10e9) == pytest.approx(0.020)
    assert limits.bound_kind(flops, nbytes, 100e9, 10e9) == "memory"
    # 50 GB/s: memory takes 4 ms, compute still 10 ms -> compute binds.
    assert limits.bound_s(flops, nbytes, 100e9, 50e9) == pytest.approx(0.010)
    assert limits.bound_kind(flops, nbytes, 100e9, 50e9) == "compute"
    assert limits.bound_kind(1e9, 1e8, 100e9, 10e9) == "compute"  # a tie is compute-bound


def test_copy_bandwidth_is_bytes_moved_over_seconds() -> None:
    rate = limits.copy_bandwidth(1 << 20, threads=1, repeats=2)
    assert 1e8 < rate < 1e13  # a real machine moves MB/s to TB/s, never 0 or inf
    ticks = iter(range(100))  # every reading of this clock is one second later
    rate = limits.copy_bandwidth(4000, threads=2, repeats=3, clock=lambda: float(next(ticks)))
    assert rate == 2 * 4000 / 1.0  # read and written once, in one "second"


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_parallel_copy_copies_every_element(threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    source = np.arange(1001, dtype=np.float32)
    dest = np.zeros_like(source)
    with ThreadPoolExecutor(threads) as pool:
        limits.parallel_copy(source, dest, pool, threads)()
    np.testing.assert_array_equal(dest, source)


def test_the_fit_recovers_alpha_and_beta_from_exact_points() -> None:
    alpha, beta = 20e-6, 50e9
    flops = [3e3, 3e5, 3e7, 3e9]
    steps = [alpha + f / beta for f in flops]
    a, b = limits.fit_alpha_beta(flops, steps)
    assert a == pytest.approx(alpha, rel=1e-9)
    assert b == pytest.approx(beta, rel=1e-9)


def test_the_fit_weighs_small_steps_as_much_as_large_ones() -> None:
    # 10% noise on the smallest step must move alpha by about 10%, not by nothing
    # (an unweighted fit would be decided by the millisecond steps alone).
    alpha, beta = 20e-6, 50e9
    flops = [3e3, 3e5, 3e7, 3e9]
    steps = [alpha + f / beta for f in flops]
    steps[0] *= 1.1
    a, _ = limits.fit_alpha_beta(flops, steps)
    assert 1.02 * alpha < a < 1.12 * alpha


def test_no_growth_with_flops_means_no_throughput_limit_seen() -> None:
    assert limits.fit_alpha_beta([1e3, 1e6], [1e-5, 1e-5])[1] == math.inf


def test_the_fit_needs_two_sizes() -> None:
    with pytest.raises(ValueError, match="two or more"):
        limits.fit_alpha_beta([1e6, 1e6], [1e-3, 2e-3])


def test_the_interval_from_the_rounds_covers_the_truth() -> None:
    rng = np.random.default_rng(1)
    alpha, beta = 30e-6, 20e9
    flops = [1e3, 1e5, 1e7, 1e9]
    rounds = [(alpha + f / beta) * rng.lognormal(0, 0.05, 40) for f in flops]
    fit = limits.fit_with_interval(flops, rounds, resamples=400)
    assert fit.alpha_low <= alpha <= fit.alpha_high
    assert fit.beta_low <= beta <= fit.beta_high
    assert fit.alpha_low < fit.alpha_s < fit.alpha_high
    # 5% noise on 40 rounds: the interval is tight around the fit, on both sides.
    assert 0.8 * fit.beta < fit.beta_low < fit.beta < fit.beta_high < 1.25 * fit.beta
    # One round per workload: the fit, without an interval.
    single = limits.fit_with_interval(flops, [[r[0]] for r in rounds])
    assert math.isnan(single.alpha_low) and math.isnan(single.beta_high)
