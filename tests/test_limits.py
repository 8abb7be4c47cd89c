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

    source = np.arange(1, 1002, dtype=np.float32)  # no zero: dest starts all zeros
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
    with pytest.raises(ValueError) as refused:
        limits.fit_alpha_beta([1e6, 1e6], [1e-3, 2e-3])
    assert str(refused.value) == "the fit needs steps of two or more different sizes"


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
    assert all(math.isnan(x) for x in (single.alpha_low, single.alpha_high,
                                       single.beta_low, single.beta_high))
    # Two rounds each are enough to resample.
    pairs = limits.fit_with_interval(flops, [r[:2] for r in rounds], resamples=50)
    assert pairs.alpha_low <= pairs.alpha_s <= pairs.alpha_high
    assert pairs.beta_low <= pairs.beta <= pairs.beta_high and math.isfinite(pairs.beta_low)


# --- the roofs of a run ----------------------------------------------------------------------

MiB = 2**20


def _record(workload: str, gflops: float, gbs: float | None, copy_mib: float | None,
            threads: int | None = 1) -> dict:
    """A roofline row as load_run gives it (GFLOP/s, GB/s, bytes)."""
    return {"workload": workload, "gflops": gflops, "bandwidth_gbs": gbs,
            "copy_bytes": None if copy_mib is None else copy_mib * MiB,
            "copy_threads": threads}


# The example run's shape: numpy's per-call cost hides the GEMM rate at crops' and small's
# shapes, the 1 MiB copies read slower than medium's 8.5 MiB one, and large's 68 MiB copy
# leaves the cache.
RUN = [_record("crops", 0.036, 32.9, 1), _record("small", 1.96, 39.0, 1),
       _record("medium", 59.8, 60.2, 8.5), _record("large", 74.5, 23.9, 68)]


def test_the_roofs_are_the_run_s_best_gemm_and_copy_rates() -> None:
    roofs = limits.run_roofs(RUN)
    assert roofs is not None
    # One flat roof, the fastest roofline loop's (not each workload's own).
    assert roofs.compute_flops_per_s == pytest.approx(74.5e9)
    assert roofs.compute_by.workload == "large"
    # A workload's memory roof is the fastest copy of a buffer at least as large as its
    # data: medium's for crops, small and medium; large's own for large.
    assert [(m.bytes_per_s, m.measured_by.workload, m.workloads) for m in roofs.memory] == [
        (pytest.approx(60.2e9), "medium", ("crops", "small", "medium")),
        (pytest.approx(23.9e9), "large", ("large",))]
    assert roofs.bandwidth("crops") == pytest.approx(60.2e9)
    assert roofs.bandwidth("large") == pytest.approx(23.9e9)
    assert math.isnan(roofs.bandwidth("xl"))  # not measured: no roof, no limit
    assert roofs.memory[0].measured_by.copy_bytes == 8.5 * MiB
    assert roofs.describe() == [
        "compute 74.5 GFLOP/s: the fastest roofline loop, two cached NumPy GEMMs of "
        "large's step shapes",
        "memory 60.2 GB/s: a streaming copy of 8.5 MiB on 1 thread (medium's roofline), "
        "for crops, small, medium",
        "memory 23.9 GB/s: a streaming copy of 68 MiB on 1 thread (large's roofline), "
        "for large"]


def test_a_fast_small_copy_bounds_only_workloads_no_larger() -> None:
    # crops' 1 MiB copy is the fastest: it bounds crops and small (1 MiB too), never medium,
    # whose 8.5 MiB of data cannot be assumed to fit where 1 MiB did.
    roofs = limits.run_roofs([_record("crops", 1.0, 80.0, 1), _record("small", 2.0, 39.0, 1),
                              _record("medium", 50.0, 60.0, 8.5)])
    assert roofs is not None
    assert [(m.bytes_per_s, m.workloads) for m in roofs.memory] == [
        (pytest.approx(80e9), ("crops", "small")), (pytest.approx(60e9), ("medium",))]


def test_copies_of_unknown_size_bound_their_own_workload() -> None:
    roofs = limits.run_roofs([_record("crops", 1.0, 30.0, None, None),
                              _record("small", 2.0, 40.0, None, None)])
    assert roofs is not None
    assert roofs.bandwidth("crops") == pytest.approx(30e9)
    assert roofs.bandwidth("small") == pytest.approx(40e9)
    assert roofs.describe()[1] == "memory 40 GB/s: a streaming copy (small's roofline), for small"


def test_a_run_without_a_timed_roofline_has_no_roofs() -> None:
    assert limits.run_roofs([]) is None
    assert limits.run_roofs([_record("crops", math.nan, 30.0, 1)]) is None


def test_the_bound_and_the_roof_above_a_step_are_one_computation() -> None:
    roofs = limits.run_roofs(RUN)
    assert roofs is not None
    # large: B=1024, d=256, k=16, float32; its memory roof is 23.9 GB/s.
    flops, nbytes = limits.step_flops(1024, 256, 16), limits.step_bytes(1024, 256, 16, 4)
    bound = max(flops / 74.5e9, nbytes / 23.9e9)
    assert roofs.bound_s("large", flops, nbytes) == pytest.approx(bound)
    # The roof at the step's intensity is its FLOPs done in the least time: a step faster
    # than the bound is a point above the roof, and only then.
    assert roofs.attainable("large", flops / nbytes) == pytest.approx(flops / bound)
    # crops: B=3, d=3, k=2; far left of the ridge, so the memory roof binds.
    flops, nbytes = limits.step_flops(3, 3, 2), limits.step_bytes(3, 3, 2, 4)
    assert roofs.attainable("crops", flops / nbytes) == pytest.approx(60.2e9 * flops / nbytes)
    assert roofs.bound_s("crops", flops, nbytes) == pytest.approx(nbytes / 60.2e9)
    assert math.isnan(roofs.bound_s("xl", flops, nbytes))


def test_a_yardstick_reads_missing_or_bad_values_as_not_measured() -> None:
    y = limits.Yardstick.from_record({"workload": "small", "gflops": 2.0,
                                      "bandwidth_gbs": float("nan"), "copy_bytes": "x",
                                      "copy_threads": None})
    assert y.workload == "small" and y.gemm_flops_per_s == 2e9
    assert math.isnan(y.copy_bytes_per_s) and math.isnan(y.copy_bytes) and y.copy_threads == 0
    # Zero and infinite rates were not measured either.
    y = limits.Yardstick.from_record({"workload": "small", "gflops": 0, "bandwidth_gbs": "inf",
                                      "copy_bytes": -1.0, "copy_threads": 2})
    assert math.isnan(y.gemm_flops_per_s) and math.isnan(y.copy_bytes_per_s)
    assert math.isnan(y.copy_bytes) and y.copy_threads == 2


def test_a_yardstick_without_a_copy_has_none_and_is_the_cpus() -> None:
    y = limits.Yardstick("small", 2e9, 40e9)
    assert math.isnan(y.copy_bytes) and y.copy_threads == 0 and y.device == "cpu"


def test_a_copy_on_several_threads_says_how_many() -> None:
    roofs = limits.run_roofs([_record("medium", 50.0, 60.0, 8.5, threads=2)])
    assert roofs is not None
    assert roofs.describe()[1] == ("memory 60 GB/s: a streaming copy of 8.5 MiB on 2 threads "
                                   "(medium's roofline), for medium")


def test_the_yardsticks_and_roofs_of_a_run_cannot_be_changed_once_read() -> None:
    import dataclasses
    roofs = limits.run_roofs(RUN)
    assert roofs is not None
    fit = limits.fit_with_interval([1e3, 1e6], [[1e-5], [2e-5]])
    for made in (roofs, roofs.memory[0], roofs.memory[0].measured_by, fit):
        field = dataclasses.fields(made)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, field, None)


def test_copies_at_the_same_rate_make_one_roof() -> None:
    roofs = limits.run_roofs([_record("crops", 1.0, 20.0, 1), _record("medium", 50.0, 20.0, 8.5)])
    assert roofs is not None
    assert [(m.measured_by.workload, m.workloads) for m in roofs.memory] == [
        ("medium", ("crops", "medium"))]


# --- a GPU row's roofs are its own device's ----------------------------------------------------

def _gpu(record: dict, device: str = "cuda") -> dict:
    """A GPU yardstick row: a roofline row measured on ``device`` (no copy threads)."""
    return {**record, "device": device, "copy_threads": 0}


# A run with the CPU's roofline rows and, beside medium and large, a GPU's yardsticks:
# torch.mm far above NumPy's GEMM rate, a device copy far above the CPU's bandwidth.
GPU_RUN = [*RUN, _gpu(_record("medium", 9_000.0, 1_500.0, 8.5)),
           _gpu(_record("large", 30_000.0, 2_000.0, 68))]


def test_a_gpu_step_is_bounded_by_the_gpus_yardsticks_never_the_cpus() -> None:
    cpu = limits.run_roofs(GPU_RUN)  # the CPU's, as before: the GPU rows do not count
    assert cpu is not None and cpu.compute_flops_per_s == pytest.approx(74.5e9)
    assert cpu.bandwidth("large") == pytest.approx(23.9e9)
    gpu = limits.run_roofs(GPU_RUN, "cuda")
    assert gpu is not None
    assert gpu.compute_flops_per_s == pytest.approx(30_000e9)
    assert gpu.compute_by == limits.Yardstick("large", 30_000e9, 2_000e9, 68 * MiB, 0, "cuda")
    # large's 68 MiB device copy is the fastest of a buffer at least medium's size.
    assert gpu.bandwidth("medium") == gpu.bandwidth("large") == pytest.approx(2_000e9)
    # crops has no yardstick row on the GPU, so it has no memory roof there (the CPU's
    # 60.2 GB/s is not the GPU's).
    assert math.isnan(gpu.bandwidth("crops"))
    assert gpu.describe() == [
        "compute 3e+04 GFLOP/s: the fastest GPU yardstick, two torch.mm on cuda of large's "
        "step shapes",
        "memory 2e+03 GB/s: a device-to-device copy of 68 MiB on cuda (large's GPU "
        "yardstick), for medium, large"]
    flops, nbytes = limits.step_flops(1024, 256, 16), limits.step_bytes(1024, 256, 16, 4)
    assert gpu.bound_s("large", flops, nbytes) == pytest.approx(
        max(flops / 30_000e9, nbytes / 2_000e9))


def test_without_a_gpu_yardstick_a_gpu_row_gets_no_limit_and_the_reason() -> None:
    roofs, why = limits.limit_roofs(RUN, "cuda")  # a run with the CPU's roofline alone
    assert roofs is None
    assert why == ("no cuda yardstick in this run (gdbench run measures one, torch.mm of "
                   "each step's shapes and a device-to-device copy as large as the dataset, "
                   "when torch sees the device); the CPU's roofs do not bound a cuda step")
    roofs, why = limits.limit_roofs(GPU_RUN, "cuda")
    assert roofs == limits.run_roofs(GPU_RUN, "cuda") and why == ""
    roofs, why = limits.limit_roofs(GPU_RUN, "cpu")
    assert roofs == limits.run_roofs(RUN) and why == ""
    assert limits.limit_roofs([], "cpu") == (None, "no roofline loop in this run")


def test_a_row_without_a_device_is_the_cpus() -> None:
    assert limits.device_of(None) == limits.device_of("") == limits.device_of(math.nan) == "cpu"
    assert limits.device_of("cuda") == "cuda"
    assert limits.Yardstick.from_record(_gpu(_record("small", 1.0, 1.0, 1))).device == "cuda"
    assert limits.Yardstick.from_record(_record("small", 1.0, 1.0, 1)).device == "cpu"
