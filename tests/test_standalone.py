"""The standalone timing (gdbench.harness.standalone) on constructed faulty backends, and
the audit's verdicts on what it measured.

The constructed backends do their "work" by sleeping a fixed time per step, so that the
faults they carry are tens of times larger than any scheduling noise: one returns before
its work is done, one leaves a thread spinning after it returns. No figure of a real
backend is asserted here.
"""

from __future__ import annotations

import gc
import math
import statistics
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from _clock import FakeClock

from gdbench.data.errors import InputError
from gdbench.data.workloads import WORKLOADS, Problem
from gdbench.harness import standalone, timing
from gdbench.implementations.base import TrainResult, make_result
from gdbench.judge import audit as verdicts

STEP_S = 40e-6  # each constructed step "works" this long: 10 ms for crops' 250 steps


class Sleeper:
    """An honest backend: run sleeps its steps' worth, then returns."""

    name = "sleeper"
    device = "cpu"
    sync = "none"

    def prepare(self, problem: Problem) -> dict[str, Any]:
        return {"problem": problem}

    def work(self, state: dict[str, Any]) -> None:
        time.sleep(len(state["problem"].plan) * STEP_S)

    def run(self, state: dict[str, Any]) -> None:
        self.work(state)

    def wait(self, state: dict[str, Any]) -> None:
        pass

    def result(self, state: dict[str, Any]) -> TrainResult:
        p = state["problem"]
        return make_result(self.name, p.W0, p.b0, p)


class ReturnsEarly(Sleeper):
    """Hands its work to a thread and returns at once, like an unsynchronised GPU call."""

    name = "returns-early"

    def run(self, state: dict[str, Any]) -> None:
        worker = threading.Thread(target=self.work, args=(state,))
        worker.start()
        state["worker"] = worker

    def wait(self, state: dict[str, Any]) -> None:
        state["worker"].join()


class LeavesSpinning(Sleeper):
    """Does its work, then leaves a thread spinning for 0.2 s after it returns."""

    name = "leaves-spinning"

    def run(self, state: dict[str, Any]) -> None:
        self.work(state)
        spinner = state.get("spinner")
        if spinner is None or not spinner.is_alive():
            state["spinner"] = threading.Thread(target=_spin, args=(0.2,), daemon=True)
            state["spinner"].start()


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture(scope="module")
def crops() -> tuple[Problem, Problem]:
    problem = WORKLOADS["crops"].build()
    return problem, standalone.doubled_problem(problem)


def _audit(backend: Sleeper, crops: tuple[Problem, Problem]) -> verdicts.Row:
    alone = standalone.measure(backend, *crops, seconds=0.15, check_seconds=0.3)
    # The suite figure is taken equal to the standalone one: only these checks can fail.
    return verdicts.Row("crops", backend.name, alone.step_us, alone.ref_s, alone)


def test_an_honest_backend_passes(crops: tuple[Problem, Problem]) -> None:
    row = _audit(Sleeper(), crops)
    assert verdicts.failures(row) == [] and verdicts.warnings(row) == [], row
    assert 1.5 < row.alone.doubled_ratio < 2.5
    assert row.alone.step_us >= STEP_S * 1e6  # it really slept its steps


def test_a_backend_that_returns_before_its_work_is_done_fails(
    crops: tuple[Problem, Problem]
) -> None:
    row = _audit(ReturnsEarly(), crops)
    assert "sync:" in " ".join(verdicts.failures(row))  # one more wait found the work still running
    assert row.sync_change > 1  # the wait took longer than run itself: work was pending
    assert verdicts.verdict(row) == "FAIL"
    # run returned before its steps' worth of work (10 ms of sleep): it only started a
    # thread. (How twice the steps scale is left to the constructed figures below: the
    # ratio of two thread start-ups is anything on a loaded machine; 6x was seen.)
    assert row.alone.step_us < STEP_S * 1e6


@pytest.mark.e2e
def test_a_backend_that_leaves_a_thread_spinning_is_flagged(
    crops: tuple[Problem, Problem]
) -> None:
    row = _audit(LeavesSpinning(), crops)
    assert row.alone.busy_cores > verdicts.BUSY_LIMIT
    assert any(w.startswith("spins:") for w in verdicts.warnings(row))
    # Its spinning thread holds the GIL, so it can also disturb its own checks: the
    # verdict is at least the warning, and may be a failure too.
    assert verdicts.verdict(row) in ("ok, spins", "FAIL")


class CostlyWait(Sleeper):
    """Returns finished, but its wait costs a fifth of run even with nothing pending (a
    call into the library, a device query)."""

    name = "costly-wait"

    def wait(self, state: dict[str, Any]) -> None:
        time.sleep(len(state["problem"].plan) * STEP_S / 5)


def test_a_wait_that_costs_time_of_its_own_is_not_pending_work(
    crops: tuple[Problem, Problem]
) -> None:
    row = _audit(CostlyWait(), crops)
    assert abs(row.sync_change) < verdicts.SYNC_LIMIT, row  # one wait's own 20% is taken out
    assert not any(f.startswith("sync:") for f in verdicts.failures(row))


def test_pending_share_takes_the_waits_own_cost_out() -> None:
    # run 100; one more wait adds 60 (50 pending + 10 of its own); a wait alone costs 10.
    assert standalone.pending_share([100.0] * 3, [160.0] * 3, [10.0] * 3) == pytest.approx(0.5)
    # Nothing pending: the wait costs 10, whatever run's length.
    assert standalone.pending_share([100.0, 200.0, 100.0], [110.0, 210.0, 110.0],
                               [10.0, 10.0, 10.0]) == pytest.approx(0.0)
    # Per turn, then the median; the wait's cost is the median of its timings: one turn's
    # outlier, or one slow wait, moves nothing.
    assert standalone.pending_share([100.0, 100.0, 100.0], [130.0, 130.0, 900.0],
                               [10.0, 10.0, 500.0]) == pytest.approx(0.2)
    # The cost is taken out of each turn before its share of run is taken: per turn
    # 0.29, 0.0 and 0.099; (0.1 median share) - (1 / 100 median run) would read 0.09.
    assert standalone.pending_share([100.0, 10.0, 1000.0], [130.0, 11.0, 1100.0],
                               [1.0]) == pytest.approx(0.099)


def test_the_waits_own_cost_is_timed_after_a_run_and_a_wait() -> None:
    now = [0.0]
    calls: list[str] = []

    class Timed:
        def run(self) -> None:
            calls.append("run")
            now[0] += 1.0

        def wait(self) -> None:
            calls.append("wait")
            now[0] += 0.25

    costs = standalone.wait_costs(Timed(), 2, clock=lambda: now[0])  # type: ignore[arg-type]
    assert costs == pytest.approx([0.25, 0.25])
    assert calls == ["run", "wait", "wait"] * 2


class RecordsTheCollector(Sleeper):
    name = "records-the-collector"

    def run(self, state: dict[str, Any]) -> None:
        state.setdefault("gc", []).append(gc.isenabled())
        self.work(state)


def test_the_standalone_rounds_are_timed_with_the_collector_off_as_the_suites(
    crops: tuple[Problem, Problem]
) -> None:
    backend = RecordsTheCollector()
    seen: list[bool] = []
    original = backend.prepare

    def prepare(problem: Problem) -> dict[str, Any]:
        state = original(problem)
        state["gc"] = seen
        return state

    backend.prepare = prepare  # type: ignore[method-assign]
    assert gc.isenabled()
    standalone.measure(backend, *crops, seconds=0.05, check_seconds=0.05)
    assert seen and not any(seen)  # every timed call ran with the collector off
    assert gc.isenabled()  # and it is on again afterwards


class LaunchBound(Sleeper):
    """A GPU loop that does not synchronize, on a fake CUDA stream: the host "launches" each
    step (sleeps its steps' worth) while the GPU keeps up, so when run returns only the
    last step is left on the stream, and a wait finds almost nothing pending."""

    name = "launch-bound"
    device = "cuda"

    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream

    def run(self, state: dict[str, Any]) -> None:
        self.work(state)
        self.stream.pending = True  # the last step's kernels, still queued

    def wait(self, state: dict[str, Any]) -> None:
        time.sleep(STEP_S)  # one step of GPU work
        self.stream.pending = False


class Synchronized(LaunchBound):
    """LaunchBound with the synchronize at the end of run."""

    def run(self, state: dict[str, Any]) -> None:
        super().run(state)
        self.wait(state)


class FakeStream:
    """torch.cuda.current_stream() on a machine with no GPU: query() is False while work
    is queued."""

    pending = False

    def query(self) -> bool:
        return not self.pending


@pytest.mark.e2e
def test_a_cuda_run_that_returns_with_work_queued_fails_though_no_timing_shows_it(
    monkeypatch: pytest.MonkeyPatch, crops: tuple[Problem, Problem]
) -> None:
    # Fakes torch with a CUDA device whose stream is the backend's FakeStream. The timed
    # checks cannot see one step's pending work in 250 (0.4%, under the 10% limit); the
    # stream does.
    stream = FakeStream()
    fake = SimpleNamespace(cuda=SimpleNamespace(is_initialized=lambda: True,
                                                current_stream=lambda: stream))
    monkeypatch.setitem(sys.modules, "torch", fake)
    row = _audit(LaunchBound(stream), crops)
    assert row.alone.queued_after_run is True
    assert verdicts.failures(row) == [
        "sync: the CUDA stream still had work queued when run returned, so run returns "
        "before its work is done"]
    assert row.sync_change < verdicts.SYNC_LIMIT  # the timing alone would have passed it
    # The same loop with the stream drained before run returns passes.
    row = _audit(Synchronized(stream), crops)
    assert row.alone.queued_after_run is False and verdicts.failures(row) == []


def test_a_cpu_row_is_never_asked_about_a_cuda_stream(crops: tuple[Problem, Problem]) -> None:
    assert _audit(Sleeper(), crops).alone.queued_after_run is None


@pytest.mark.parametrize("name", ["torch-cuda", "torch-cuda-graph", "torch-compile-cuda"])
def test_a_cuda_backends_run_returns_with_its_stream_idle(
    name: str, backend_status: dict[str, str | None]
) -> None:
    # On a GPU only: right after run returns, torch's stream has nothing left queued, on
    # a workload whose steps give the GPU work of its own.
    if backend_status[name]:
        pytest.skip(f"backend {name}: {backend_status[name]}")
    from gdbench.harness import gpu
    from gdbench.implementations.base import prepare

    prepared = prepare(name, WORKLOADS["large"].build())
    for _ in range(3):
        prepared.run()
        assert gpu.work_queued("cuda") is False


# --- measure() on a fake clock: every figure it returns, by value ------------------------------

TICK = 1e-9  # what reading the fake clock costs, so that an empty loop is not free
WORK = 250e-6  # one run of the constructed backend on crops: 250 steps of 1 µs


class Clocked(Sleeper):
    """An honest backend that works on the fake clock: 1 µs a step, a wait that finds
    nothing pending."""

    name = "clocked"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def work(self, state: dict[str, Any]) -> None:
        self.clock.advance(len(state["problem"].plan) * WORK / 250)


def test_measure_returns_each_figure_as_the_rounds_on_the_clock_give_it(
        monkeypatch: pytest.MonkeyPatch, crops: tuple[Problem, Problem]) -> None:
    clock = FakeClock(tick=TICK)
    ref_calls = [0]

    def reference() -> None:  # slower at each call: each block's reading is its own
        ref_calls[0] += 1
        clock.advance(1e-3 * ref_calls[0])

    plans: list[dict[str, Any]] = []
    real_plan = timing.plan_rounds

    def plan_rounds(run: Any, ref: Any, **kwargs: Any) -> timing.RoundPlan:
        plans.append(kwargs)
        return real_plan(run, ref, **kwargs)

    monkeypatch.setattr(timing, "reference_loop", lambda X, W, batches: reference)
    monkeypatch.setattr(timing, "single_threaded", lambda fn: fn)
    monkeypatch.setattr(timing, "wake_probe", lambda: lambda: 2e-5)
    monkeypatch.setattr(timing, "busy_after", lambda: 0.3)
    monkeypatch.setattr(timing, "plan_rounds", plan_rounds)
    monkeypatch.setattr(standalone.gpu, "work_queued", lambda device: device == "cpu")
    alone = standalone.measure(Clocked(clock), *crops, seconds=1e-3, check_seconds=3e-3,
                               clock=clock)
    iterations = math.ceil(timing.ROUND_FLOOR_S / (WORK + TICK))  # runs in a round
    per_run = (iterations * WORK + TICK) / iterations
    assert alone.rounds == 5  # the floor of rounds: 1 ms holds none
    assert alone.step_us == pytest.approx(per_run / 250 * 1e6, rel=1e-9)
    assert alone.round_us == pytest.approx((per_run / 250 * 1e6,) * 5, rel=1e-9)
    # One block per round here (5 rounds in up to 6 blocks), each with its own reading.
    assert len(alone.round_ref_s) == 5 and list(alone.round_ref_s) == sorted(
        set(alone.round_ref_s))
    assert alone.ref_s == statistics.median(alone.round_ref_s)
    assert alone.round_wake_s == (2e-5,) * 5
    assert alone.harness_share == pytest.approx(TICK / (iterations * WORK + TICK), rel=1e-6)
    assert alone.doubled_ratio == pytest.approx(2.0, rel=1e-4)
    assert abs(alone.sync_change) < 1e-4 and alone.harness_ratio == pytest.approx(1.0, rel=1e-4)
    assert alone.busy_cores == 0.3 and alone.queued_after_run is True
    # The plans: the checks share check_seconds, at CHECK_MIN_ROUNDS turns at least; the
    # pairing gets twice the check's seconds, at least two rounds a pair.
    checks = [p for p in plans if p.get("min_rounds") == standalone.CHECK_MIN_ROUNDS]
    assert [p["max_time_s"] for p in checks] == pytest.approx([1e-3] * 3)
    pairing = [p for p in plans if "probe" in p and p["min_rounds"] > 1]
    assert [(p["max_time_s"], p["min_rounds"]) for p in pairing] == [
        (pytest.approx(6e-3), 2 * standalone.HARNESS_PAIRS)]


def test_the_timer_info_is_its_smallest_forward_step() -> None:
    readings = iter([0.0, 0.0, 3e-6, 4e-6, 4e-6, 9e-6] + [9e-6] * 10)
    info = standalone.timer_info(lambda: next(readings), samples=6)
    assert info["smallest_step_s"] == pytest.approx(1e-6)
    assert info["resolution_s"] == time.get_clock_info("perf_counter").resolution
    assert math.isnan(standalone.timer_info(lambda: 1.0, samples=5)["smallest_step_s"])


def test_the_timer_info_reads_ten_thousand_times_and_compares_neighbouring_readings() -> None:
    readings = iter([0.0, 1e-6, 3e-6, 6e-6])  # steps of 1, 2 and 3 µs
    assert standalone.timer_info(lambda: next(readings), samples=4)["smallest_step_s"] == \
        pytest.approx(1e-6)
    clock = FakeClock(tick=2e-8)
    calls = []

    def counted() -> float:
        calls.append(1)
        return clock()

    assert standalone.timer_info(counted)["smallest_step_s"] == pytest.approx(2e-8)
    assert len(calls) == 10_000


def test_the_aa_blocks_are_forty_rounds_each_of_the_reference_alone() -> None:
    clock = FakeClock()
    calls = []

    def reference() -> None:
        calls.append(1)
        clock.advance(0.01)  # 10 ms a call: one call a round

    first, second = standalone.aa_rounds(reference, clock=clock)
    assert first == pytest.approx([0.01] * 40) and second == pytest.approx([0.01] * 40)
    assert standalone.aa_rounds(reference, rounds=3, clock=clock)[0] == pytest.approx(
        [0.01] * 3)


def test_the_childs_help_and_a_bad_definition_name_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        standalone.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert out.startswith("usage: python -m gdbench.harness.standalone [-h]")
    assert "time one backend alone; prints its Standalone as JSON on the last line" in out
    assert "--definition JSON  the workload's definition, for one of the user's" in out
    with pytest.raises(InputError, match="^--definition: "):
        standalone.main(["numpy", "mine", "--definition", '{"shape": "1,2"}'])


def test_the_child_runs_as_a_module() -> None:
    proc = subprocess.run([sys.executable, "-m", "gdbench.harness.standalone", "--help"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m gdbench.harness")
