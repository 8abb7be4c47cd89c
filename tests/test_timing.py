"""The timing core, driven by a fake clock and a fake pytest-benchmark fixture.

Nothing here times anything real: each fake function advances the fake clock by a known
number of seconds, so every figure the core computes has an exact expected value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from _clock import FakeClock
from threadpoolctl import threadpool_info

import gdbench.benches.bench_training as bench
from gdbench.harness import timing
from gdbench.harness.timing import RoundPlan


def test_timed_and_fastest_read_the_clock() -> None:
    clock = FakeClock(start=100.0)
    durations = iter([0.5, 0.3, 0.2, 0.4])  # the first call is untimed
    fn = lambda: setattr(clock, "now", clock.now + next(durations))  # noqa: E731
    assert timing.fastest(fn, clock) == pytest.approx(0.2)


def test_short_runs_are_repeated_up_to_the_round_floor() -> None:
    clock = FakeClock(start=100.0)
    plan = timing.plan_rounds(clock.work(0.001), clock.work(0.002), max_time_s=1.1005,
                              min_rounds=3, round_floor_s=0.005, clock=clock)
    # 5 runs of 1 ms, 3 reference calls of 2 ms and 10 untimed warm-up runs (WARM_UP_S):
    # 21 ms a round, 52 whole rounds in 1.1005 s.
    assert plan == RoundPlan(rounds=52, iterations=5, ref_iterations=3, warm_ups=10)


@pytest.mark.parametrize(("run_s", "reference", "warm_ups"), [
    (0.001, True, 10), (0.003, True, 4), (0.0099, True, 2), (0.01, True, 1),
    (0.049, True, 1), (0.0501, True, 0), (0.2, True, 0), (0.001, False, 0)])
def test_a_short_run_after_a_reference_is_warmed_up_for_warm_up_s(
        run_s: float, reference: bool, warm_ups: int) -> None:
    clock = FakeClock(start=100.0)
    plan = timing.plan_rounds(clock.work(run_s), clock.work(0.002) if reference else None,
                              max_time_s=2.0, min_rounds=1, clock=clock)
    assert plan.warm_ups == warm_ups
    # The warm-up calls count in the time budget: rounds of run + reference (+ warm-ups).
    round_s = run_s * plan.iterations + (0.002 * plan.ref_iterations if reference else 0)
    assert plan.rounds == pytest.approx(2.0 / (round_s + run_s * warm_ups), abs=1)


def test_a_long_run_is_one_per_round_and_min_rounds_holds() -> None:
    clock = FakeClock(start=100.0)
    plan = timing.plan_rounds(clock.work(0.5), None, max_time_s=1.0, min_rounds=5,
                              round_floor_s=0.005, clock=clock)
    assert plan == RoundPlan(rounds=5, iterations=1, ref_iterations=1)


def test_rounds_are_capped() -> None:
    clock = FakeClock(start=100.0)
    plan = timing.plan_rounds(clock.work(0.01), None, max_time_s=1e6, min_rounds=1,
                              clock=clock)
    assert plan.rounds == timing.MAX_ROUNDS


def test_time_rounds_gives_seconds_per_run_after_a_warm_up() -> None:
    clock = FakeClock(start=100.0)
    calls = []
    durations = iter([9.0] * 4 + [0.001] * 12)  # the warm-up round is slow, and dropped

    def run() -> None:
        calls.append(1)
        clock.now += next(durations)

    times = timing.time_rounds(run, RoundPlan(rounds=3, iterations=4, ref_iterations=1), clock)
    assert times == pytest.approx([0.001] * 3)
    assert len(calls) == 16


def test_busy_after_is_cpu_seconds_over_wall_seconds() -> None:
    wall, cpu = FakeClock(start=100.0), FakeClock(start=100.0)

    def sleep(seconds: float) -> None:
        wall.now += seconds
        cpu.now += 1.5 * seconds  # one and a half cores kept busy meanwhile

    assert timing.busy_after(0.05, wall=wall, cpu=cpu, sleep=sleep) == pytest.approx(1.5)


def test_roofline_loop_is_the_two_gemms_of_each_step() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 4)).astype(np.float32)
    W = rng.standard_normal((3, 4)).astype(np.float32)
    run, flops = timing.roofline_loop(X, W, [4, 4, 2])
    assert flops == 4 * (4 + 4 + 2) * 4 * 3  # 4·B·d·k per step, each step's real B
    run()  # runs without error on the mixed batch sizes


def test_the_reference_loop_gathers_each_steps_rows_then_runs_the_gemm_pair(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 4)).astype(np.float32)
    W = rng.standard_normal((3, 4)).astype(np.float32)
    batches = [np.array([7, 1, 3, 0]), np.array([2, 9, 5, 4]), np.array([8, 6])]
    gathered: list[list[int]] = []
    products: list[tuple[np.ndarray, np.ndarray]] = []
    real_take, real_matmul = np.take, np.matmul

    def take(a: np.ndarray, idx: np.ndarray, **kw: object) -> np.ndarray:
        gathered.append(list(idx))
        return real_take(a, idx, **kw)

    def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        real_matmul(a, b, out=out)
        products.append((a.copy(), out.copy()))
        return out

    monkeypatch.setattr(np, "take", take)
    monkeypatch.setattr(np, "matmul", matmul)
    run = timing.reference_loop(X, W, batches)
    run()
    assert gathered == [list(b) for b in batches]  # each step's own rows, in plan order
    assert len(products) == 2 * len(batches)
    for step, idx in enumerate(batches):
        (xb, p), (_, dw) = products[2 * step], products[2 * step + 1]
        np.testing.assert_array_equal(xb, X[idx])
        np.testing.assert_allclose(p, X[idx] @ W.T, rtol=1e-6)
        np.testing.assert_allclose(dw, (X[idx] @ W.T).T @ X[idx], rtol=1e-5)


def _numpy_blas_threads() -> int:
    return next(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
                and "torch" not in i["filepath"])


def test_the_drift_reference_runs_on_one_blas_thread() -> None:
    seen = []
    before = _numpy_blas_threads()
    timing.single_threaded(lambda: seen.append(_numpy_blas_threads()))()
    assert seen == [1]
    assert _numpy_blas_threads() == before  # restored afterwards


# --- the suite's _time and _record_timing, with a fake pytest-benchmark fixture ----------------

class FakeBenchmark:
    """pytest-benchmark's fixture as _time uses it: pedantic() runs setup + target per
    round (warm-up rounds first) and keeps each round's time on the fake clock."""

    def __init__(self, clock: FakeClock, disabled: bool = False) -> None:
        self.clock = clock
        self.disabled = disabled
        self.stats: Any = None
        self.extra_info: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []

    def pedantic(self, target: Callable[[], None], setup: Callable[[], None] | None = None,
                 rounds: int = 1, iterations: int = 1, warmup_rounds: int = 0) -> None:
        self.calls.append({"rounds": rounds, "iterations": iterations,
                           "warmup_rounds": warmup_rounds, "setup": setup is not None})
        data = []
        for i in range(warmup_rounds + rounds):
            if setup:
                setup()
            start = self.clock()
            for _ in range(iterations):
                target()
            if i >= warmup_rounds:
                data.append((self.clock() - start) / iterations)
        stats = SimpleNamespace(data=data, rounds=rounds, median=float(np.median(data)),
                                iqr=0.0)
        self.stats = SimpleNamespace(stats=stats, iterations=iterations)


def _settings(plan: RoundPlan) -> Any:
    return SimpleNamespace(plan=lambda run, reference, probe=None: plan, memory=False)


def test_time_pairs_each_round_with_the_reference_just_before_it() -> None:
    clock = FakeClock(start=100.0)
    ref_durations = iter([5.0, 0.010, 0.020, 0.030])  # the warm-up round's is 5 s
    run_durations = iter([7.0] * 2 + [0.001] * 2 + [0.002] * 2 + [0.003] * 2)

    def reference() -> None:
        clock.now += next(ref_durations)

    def run() -> None:
        clock.now += next(run_durations)

    b = FakeBenchmark(clock)
    paired = bench._time(b, _settings(RoundPlan(3, 2, 1)), run, reference, clock)
    assert paired.ref == pytest.approx([0.010, 0.020, 0.030])  # warm-up dropped, in order
    assert paired.wake == []  # no probe given
    # The round repeated run twice; the saved times are per run, and iterations says so.
    assert b.stats.stats.data == pytest.approx([0.001, 0.002, 0.003])
    assert b.stats.iterations == 2
    assert b.calls == [{"rounds": 3, "iterations": 1, "warmup_rounds": 1, "setup": True}]


def test_a_warmed_up_round_runs_once_untimed_between_its_reference_and_its_timing() -> None:
    clock = FakeClock(start=100.0)
    calls: list[str] = []
    # the warm-up round, then 2 rounds: two untimed warm-up calls and two timed runs each
    run_durations = iter([0.5] * 4 + [0.001, 0.001, 0.002, 0.003] * 2)

    def reference() -> None:
        calls.append("ref")
        clock.now += 0.010

    def run() -> None:
        calls.append("run")
        clock.now += next(run_durations)

    b = FakeBenchmark(clock)
    paired = bench._time(b, _settings(RoundPlan(2, 2, 1, warm_ups=2)), run, reference,
                         clock)
    assert calls == ["ref", "run", "run", "run", "run"] * 3  # ref, 2 warm-ups, timed pair
    assert paired.ref == pytest.approx([0.010, 0.010])
    # The timed rounds are the two runs after each warm-up call: (2 + 3) ms / 2 each.
    assert b.stats.stats.data == pytest.approx([0.0025, 0.0025])


def test_reference_rounds_are_repeated_and_divided_too() -> None:
    clock = FakeClock(start=100.0)
    b = FakeBenchmark(clock)
    paired = bench._time(b, _settings(RoundPlan(2, 1, 4)), clock.work(0.01),
                         clock.work(0.003), clock)
    assert paired.ref == pytest.approx([0.003, 0.003])


def test_the_wake_probe_reads_before_each_reference_round_and_is_kept_aligned() -> None:
    clock = FakeClock(start=100.0)
    calls: list[str] = []
    readings = iter([9.0, 1e-5, 2e-5, 3e-5])  # the warm-up round's first

    def probe() -> float:
        calls.append("probe")
        clock.now += 0.002
        return next(readings)

    def reference() -> None:
        calls.append("ref")
        clock.now += 0.010

    def run() -> None:
        calls.append("run")
        clock.now += 0.001

    b = FakeBenchmark(clock)
    paired = bench._time(b, _settings(RoundPlan(3, 1, 1)), run, reference, clock, probe)
    assert calls == ["probe", "ref", "run"] * 4
    assert paired.wake == pytest.approx([1e-5, 2e-5, 3e-5])
    assert paired.ref == pytest.approx([0.010] * 3)
    # Neither the probe nor the reference is in the timed rounds.
    assert b.stats.stats.data == pytest.approx([0.001] * 3)


def test_without_a_reference_pytest_benchmark_repeats_the_rounds_itself() -> None:
    clock = FakeClock(start=100.0)
    b = FakeBenchmark(clock)
    assert bench._time(b, _settings(RoundPlan(4, 3, 1)), clock.work(0.002), None,
                       clock) == bench.Paired()
    assert b.calls == [{"rounds": 4, "iterations": 3, "warmup_rounds": 1, "setup": False}]


def test_disabled_benchmarks_run_once() -> None:
    clock = FakeClock(start=100.0)
    b = FakeBenchmark(clock, disabled=True)
    assert bench._time(b, _settings(RoundPlan(9, 9, 9)), clock.work(1.0), clock.work(1.0),
                       clock) == bench.Paired()
    assert b.calls == [{"rounds": 1, "iterations": 1, "warmup_rounds": 0, "setup": False}]


def test_record_timing_gives_step_time_gflops_and_the_paired_ratios() -> None:
    b = FakeBenchmark(FakeClock(start=100.0))
    data = [0.002, 0.004, 0.003]
    b.stats = SimpleNamespace(stats=SimpleNamespace(data=data, rounds=3, median=0.003,
                                                    iqr=0.001), iterations=1)
    b.extra_info["steps"] = 250
    request = SimpleNamespace(node=SimpleNamespace(user_properties=[]))
    bench._record_timing(b, request, flops=3e6,
                         paired=bench.Paired([0.001, 0.001, 0.002], [5e-5, 6e-5, 7e-5]))
    info = b.extra_info
    assert info["step_us"] == pytest.approx(0.003 / 250 * 1e6)  # 12 µs per step
    assert info["gflops"] == pytest.approx(3e6 / 0.003 / 1e9)
    assert info["norm_data"] == pytest.approx([2.0, 4.0, 1.5])  # round / its reference
    assert info["norm_median"] == pytest.approx(2.0)
    assert info["ref_s"] == pytest.approx(0.001)
    assert info["wake_data"] == pytest.approx([5e-5, 6e-5, 7e-5])
    assert "12.000 us/step" in request.node.user_properties[0][1]


def test_record_timing_saves_no_wake_data_without_a_probe() -> None:
    b = FakeBenchmark(FakeClock(start=100.0))
    b.stats = SimpleNamespace(stats=SimpleNamespace(data=[0.002], rounds=1, median=0.002,
                                                    iqr=0.0), iterations=1)
    b.extra_info["steps"] = 10
    request = SimpleNamespace(node=SimpleNamespace(user_properties=[]))
    bench._record_timing(b, request, flops=1e6, paired=bench.Paired([0.001], []))
    assert "wake_data" not in b.extra_info and b.extra_info["ref_data"] == [0.001]


def test_the_roofline_loop_of_a_problem_counts_only_its_gemms() -> None:
    from gdbench.data.workloads import WORKLOADS

    problem = WORKLOADS["crops"].build()
    _, flops = bench.roofline_loop(problem)
    assert flops == 250 * 4 * 3 * 3 * 2  # 250 steps of 4·B·d·k with B=3, d=3, k=2
    assert problem.flops == 250 * (4 * 3 * 3 * 2 + 6 * 3 * 2)


class _Problems:
    """The suite's per-session Problems, with the agreement verdict chosen by the test."""

    def __init__(self, agrees: bool) -> None:
        from gdbench.data.workloads import WORKLOADS

        self.problem = WORKLOADS["crops"].build()
        self.agrees = agrees

    def get(self, workload: str) -> tuple[Any, None]:
        return self.problem, None

    def agreement(self, workload: str, result: Any) -> tuple[float, bool]:
        return (0.0 if self.agrees else 0.5), self.agrees


@pytest.mark.parametrize("agrees", [True, False])
def test_the_suite_fails_a_backend_that_disagrees(agrees: bool) -> None:
    b = FakeBenchmark(FakeClock(start=100.0), disabled=True)
    request = SimpleNamespace(node=SimpleNamespace(user_properties=[]))
    args = (b, request, "crops", "numpy", _Problems(agrees), _settings(RoundPlan(1, 1, 1)),
            {"numpy": None}, timing.numpy_blas())
    if agrees:
        bench.bench_training(*args)
    else:
        with pytest.raises(AssertionError, match="numpy on crops disagrees with numpy"):
            bench.bench_training(*args)
    assert b.extra_info["agrees"] is agrees
    assert b.extra_info["max_abs_diff_vs_numpy"] == (0.0 if agrees else 0.5)
    assert b.extra_info["steps"] == 250 and b.extra_info["backend"] == "numpy"


def test_a_long_reference_is_one_call_per_round() -> None:
    clock = FakeClock(start=100.0)
    plan = timing.plan_rounds(clock.work(0.001), clock.work(0.02), max_time_s=1.0,
                              min_rounds=1, round_floor_s=0.005, clock=clock)
    assert plan.ref_iterations == 1 and plan.iterations == 5


def test_busy_after_reads_zero_for_a_quiet_process_and_a_frozen_clock() -> None:
    wall, cpu = FakeClock(start=100.0), FakeClock(start=100.0)
    assert timing.busy_after(0.05, wall=wall, cpu=cpu,
                             sleep=lambda s: setattr(wall, "now", wall.now + s)) == 0.0
    assert timing.busy_after(0.05, wall=wall, cpu=cpu, sleep=lambda s: None) == 0.0


def test_the_documented_round_settings_are_the_codes() -> None:
    from pathlib import Path

    assert (timing.ROUND_FLOOR_S, timing.QUICK_MAX_TIME_S, timing.DEFAULT_MAX_TIME_S,
            timing.MAX_ROUNDS) == (0.005, 1.5, 2.0, 1000)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "A round lasts at least 5 ms" in readme
    assert "with 1.5 s of rounds per benchmark" in readme and "large with 2 s" in readme
    clock = FakeClock(start=100.0)  # the default floor is the documented one
    assert timing.plan_rounds(clock.work(0.001), None, max_time_s=1.0, min_rounds=1,
                              clock=clock).iterations == 5


# --- the wake probe ------------------------------------------------------------------------

def test_the_wake_probe_needs_two_cpus() -> None:
    assert timing.wake_probe([0]) is None
    assert timing.wake_probe([]) is None


def test_the_wake_probe_is_the_median_round_trip_and_restores_the_affinity() -> None:
    import os

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("the wake probe needs two CPUs; this machine lets the tests use one")
    readings = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # round trips of 1, 3 and 2 s
    probe = timing.wake_probe(cpus[:2], pings=3, clock=lambda: next(readings))
    assert probe is not None
    assert probe() == 2.0
    assert sorted(os.sched_getaffinity(0)) == cpus  # the caller's CPUs back


def test_the_wake_probe_pins_the_caller_and_its_partner_to_two_cpus(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import threading

    pins: list[tuple[str, int, frozenset[int]]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: pins.append(
        (threading.current_thread().name, pid, frozenset(cpus))))
    probe = timing.wake_probe(pings=5)
    assert probe is not None and probe() > 0
    main = threading.current_thread().name
    # The caller on the first CPU, its partner on the second, the caller's set restored;
    # pid 0: each call pins the calling thread only.
    assert sorted(pins) == sorted([(main, 0, frozenset({0})),
                                   ("gdbench-wake-probe", 0, frozenset({1})),
                                   (main, 0, frozenset({0, 1, 2}))])
    assert pins[-1] == (main, 0, frozenset({0, 1, 2}))


def test_the_wake_probes_partner_waits_for_every_ping() -> None:
    import os

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("the wake probe needs two CPUs; this machine lets the tests use one")
    probe = timing.wake_probe(cpus[:2], pings=50)
    assert probe is not None
    done: list[float] = []
    worker = threading.Thread(target=lambda: done.append(probe()), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert done and done[0] > 0  # 50 round trips answered, none hung


def test_plan_rounds_counts_the_wake_probe_in_each_round() -> None:
    clock = FakeClock(start=100.0)
    # A 20 ms run is warmed up after its 10 ms reference: 50 ms a round; with a 50 ms probe,
    # 100 ms.
    without = timing.plan_rounds(clock.work(0.02), clock.work(0.01), max_time_s=1.0,
                                 min_rounds=1, clock=clock)
    with_probe = timing.plan_rounds(clock.work(0.02), clock.work(0.01), max_time_s=1.0,
                                    min_rounds=1, clock=clock, probe=clock.work(0.05))
    assert (without.rounds, with_probe.rounds) == (20, 10)


@pytest.mark.parametrize(("args", "quick", "option", "expected"), [
    ([], False, 1.0, timing.DEFAULT_MAX_TIME_S),
    ([], True, 1.0, timing.QUICK_MAX_TIME_S),
    (["--benchmark-max-time=0.7"], True, 0.7, 0.7),  # the user's flag wins
])
def test_the_suite_records_the_seconds_of_rounds_it_gives_each_benchmark(
        args: list[str], quick: bool, option: float, expected: float) -> None:
    import gdbench.benches.conftest as suite

    options = {"quick": quick, "benchmark_max_time": option}
    config = SimpleNamespace(invocation_params=SimpleNamespace(args=args),
                             getoption=options.__getitem__)
    assert suite._max_time(config) == expected  # type: ignore[arg-type]


def test_before_round_reads_the_probe_times_the_reference_then_warms_up() -> None:
    clock = FakeClock(start=100.0)
    calls: list[str] = []

    def run() -> None:
        calls.append("run")
        clock.now += 1.0  # untimed: must not reach the reference's seconds

    def reference_round() -> None:  # 3 reference calls of 2 ms
        calls.append("ref")
        clock.now += 0.006

    def probe() -> float:
        calls.append("probe")
        return 5e-5

    plan = RoundPlan(rounds=1, iterations=1, ref_iterations=3, warm_ups=2)
    wake, ref = timing.before_round(run, reference_round, plan, probe, clock)
    assert calls == ["probe", "ref", "run", "run"]
    assert wake == 5e-5 and ref == pytest.approx(0.002)
    calls.clear()
    assert timing.before_round(run, reference_round, plan, None, clock)[0] is None
    assert calls == ["ref", "run", "run"]


def test_a_run_of_exactly_warm_up_below_s_is_not_warmed_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "WARM_UP_BELOW_S", 0.0625)  # exact in binary, as the clock
    clock = FakeClock(start=0.0)
    plan = timing.plan_rounds(clock.work(0.0625), clock.work(0.0625), max_time_s=2.0,
                              min_rounds=1, clock=clock)
    assert plan.warm_ups == 0
    clock = FakeClock(start=0.0)
    plan = timing.plan_rounds(clock.work(0.03125), clock.work(0.0625), max_time_s=2.0,
                              min_rounds=1, clock=clock)
    assert plan.warm_ups == 1


def test_a_call_too_fast_for_the_clock_counts_as_a_nanosecond() -> None:
    assert timing.fastest(lambda: None, clock=lambda: 5.0) == 1e-9


def test_a_round_plan_cannot_be_changed_once_made() -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        RoundPlan(rounds=5, iterations=1, ref_iterations=1).rounds = 6  # type: ignore[misc]


def test_the_drift_references_blas_is_numpys_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch and jax bring BLAS and OpenMP libraries of their own; the reference limits
    numpy's, and leaves theirs to the backend being timed."""
    import threadpoolctl

    paths = ["/venv/lib/numpy.libs/libscipy_openblas64_.so",
             "/venv/lib/torch/lib/libgomp-a34b3233.so.1",
             "/venv/lib/jaxlib/libopenblas.so",
             "/venv/lib/scipy.libs/libopenblas.so"]

    class Selected:
        def __init__(self) -> None:
            self.lib_controllers = [type("Lib", (), {"filepath": p})() for p in paths]

    class Controller:
        def select(self, user_api: str) -> Selected:
            assert user_api == "blas"
            return Selected()

    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", Controller)
    assert [c.filepath for c in timing.numpy_blas().lib_controllers] == [paths[0], paths[3]]


def test_turns_by_default_time_one_run_a_round_after_one_untimed_call() -> None:
    clock = FakeClock(start=0.0)
    calls: list[int] = []

    def run() -> None:
        calls.append(1)
        clock.advance(0.25)

    assert timing.turns([run], rounds=2, clock=clock) == [[0.25, 0.25]]
    assert len(calls) == 3


def test_busy_and_steal_count_each_busy_field_of_the_cpus_chosen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    fields = "user nice system idle iowait irq softirq steal guest"
    cpus = [SimpleNamespace(**dict(zip(fields.split(), values, strict=True))) for values in (
        (1.0, 2.0, 4.0, 100.0, 50.0, 0.25, 0.5, 8.0, 9.0),
        (16.0, 32.0, 64.0, 100.0, 50.0, 128.0, 256.0, 512.0, 9.0))]
    asked: list[bool] = []
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: asked.append(percpu) or cpus)
    # busy: user + nice + system + irq + softirq (idle, iowait and guest are not).
    assert timing._busy_and_steal(None) == (7.75 + 496.0, 520.0)
    assert timing._busy_and_steal([1, 2]) == (496.0, 512.0)  # CPU 2 is not on this machine
    assert asked == [True, True]
    # A system without irq, softirq or steal fields (macOS) counts them as nothing.
    bare = [SimpleNamespace(user=1.0, nice=2.0, system=4.0, idle=8.0)]
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: bare)
    assert timing._busy_and_steal(None) == (7.0, 0.0)


def test_own_cpu_seconds_add_this_process_its_reaped_children_and_its_live_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import time

    import psutil

    class Child:
        def __init__(self, user: float, system: float, ended: bool = False) -> None:
            self.user, self.system, self.ended = user, system, ended

        def cpu_times(self) -> SimpleNamespace:
            if self.ended:
                raise psutil.NoSuchProcess(1)
            return SimpleNamespace(user=self.user, system=self.system)

    def times() -> SimpleNamespace:  # children reaped: 3 s in user mode, 5 s in the kernel
        return SimpleNamespace(children_user=3.0, children_system=5.0)

    monkeypatch.setattr(os, "times", times)
    before = time.process_time()
    spent = timing.own_cpu_seconds([Child(1e6, 1e6, ended=True), Child(100.0, 20.0)])
    after = time.process_time()
    assert before + 128.0 <= spent <= after + 128.0


def test_busy_after_sleeps_fifty_milliseconds_by_default() -> None:
    wall, cpu = FakeClock(start=10.0), FakeClock(start=10.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        wall.now += seconds

    assert timing.busy_after(wall=wall, cpu=cpu, sleep=sleep) == 0.0
    assert slept == [0.05]


def test_the_wake_probe_plays_its_pings_on_a_daemon_partner(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the wake probe needs two CPUs to run on")
    readings: list[int] = []
    partners: list[threading.Thread] = []

    class Partner(threading.Thread):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            partners.append(self)

    monkeypatch.setattr(timing.threading, "Thread", Partner)
    probe = timing.wake_probe(clock=lambda: float(readings.append(1) or len(readings)))
    assert probe is not None
    assert probe() == 1.0  # each round trip read the clock twice, one tick apart
    assert len(readings) == 2 * timing.WAKE_PINGS == 64
    assert [(t.name, t.daemon) for t in partners] == [("gdbench-wake-probe", True)]
    assert timing.wake_probe(cpus=[3]) is None  # one CPU: nothing to wake
