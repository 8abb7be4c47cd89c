"""gdbench audit: its verdicts on constructed numbers, and on constructed faulty backends.

The constructed backends do their "work" by sleeping a fixed time per step, so that the
faults they carry are tens of times larger than any scheduling noise: one returns before
its work is done, one leaves a thread spinning after it returns. No figure of a real
backend is asserted here; the audit is a command, not a timed test.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from gdbench import audit
from gdbench.data.workloads import WORKLOADS, Problem
from gdbench.implementations.base import TrainResult, make_result

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
    return problem, audit.doubled_problem(problem)


def _audit(backend: Sleeper, crops: tuple[Problem, Problem]) -> audit.Row:
    alone = audit.measure(backend, *crops, seconds=0.15, check_seconds=0.3)
    # The suite figure is taken equal to the standalone one: only these checks can fail.
    return audit.Row("crops", backend.name, alone.step_us, alone.ref_s, alone)


def test_an_honest_backend_passes(crops: tuple[Problem, Problem]) -> None:
    row = _audit(Sleeper(), crops)
    assert row.failures() == [] and row.warnings() == [], row
    assert 1.5 < row.alone.doubled_ratio < 2.5
    assert row.alone.step_us >= STEP_S * 1e6  # it really slept its steps


def test_a_backend_that_returns_before_its_work_is_done_fails(
    crops: tuple[Problem, Problem]
) -> None:
    row = _audit(ReturnsEarly(), crops)
    assert "sync:" in " ".join(row.failures())  # one more wait found the work still running
    assert row.sync_change > 1  # the wait took longer than run itself: work was pending
    assert row.verdict() == "FAIL"
    # Twice the steps cost run nothing more (its thread does them); how little more
    # depends on thread start-up under load, so the ×2 limit itself is tested on
    # constructed figures below.
    assert row.alone.doubled_ratio < 2


def test_a_backend_that_leaves_a_thread_spinning_is_flagged(
    crops: tuple[Problem, Problem]
) -> None:
    row = _audit(LeavesSpinning(), crops)
    assert row.alone.busy_cores > audit.BUSY_LIMIT
    assert any(w.startswith("spins:") for w in row.warnings())
    # Its spinning thread holds the GIL, so it can also disturb its own checks: the
    # verdict is at least the warning, and may be a failure too.
    assert row.verdict() in ("ok, spins", "FAIL")


# --- the verdicts on constructed figures ----------------------------------------------------

ALONE = audit.Standalone(step_us=100.0, ref_s=1.0, sync_change=0.0, doubled_ratio=2.0,
                         busy_cores=0.0, harness_share=1e-4, rounds=50)


@pytest.mark.parametrize(("suite_us", "fails"), [(100.0, False), (109.0, False), (91.0, False),
                                                 (111.0, True), (89.0, True), (300.0, True)])
def test_interference_fails_beyond_ten_percent(suite_us: float, fails: bool) -> None:
    row = audit.Row("large", "torch-cpu", suite_us, 1.0, ALONE)
    assert row.interference == pytest.approx(suite_us / 100.0)
    assert bool(row.failures()) is fails
    if fails:
        assert row.failures()[0].startswith("interference:")


def test_machine_drift_between_suite_and_standalone_is_taken_out() -> None:
    # The machine ran 1.2x slower while timing alone: the reference shows it, and the
    # same loop at the same speed is what the verdict compares.
    slower = replace(ALONE, step_us=120.0, ref_s=1.2)
    row = audit.Row("large", "torch-cpu", 100.0, 1.0, slower)
    assert row.raw_ratio == pytest.approx(100 / 120)
    assert row.drift == pytest.approx(1.2)
    assert row.interference == pytest.approx(1.0)
    assert row.failures() == []
    # Without a suite reference there is nothing to correct by.
    assert audit.Row("large", "torch-cpu", 100.0, None, slower).interference == pytest.approx(
        100 / 120)


@pytest.mark.parametrize(("sync_change", "ratio", "expected"), [
    (0.05, 2.0, []), (0.11, 2.0, ["sync:"]), (0.0, 1.4, ["x2 plan:"]),
    (0.0, 2.6, ["x2 plan:"]), (0.0, 1.5, []), (0.0, 2.5, []), (0.5, 1.0, ["sync:", "x2 plan:"]),
])
def test_sync_and_doubling_limits(sync_change: float, ratio: float, expected: list[str]) -> None:
    row = audit.Row("crops", "x", 100.0, 1.0,
                    replace(ALONE, sync_change=sync_change, doubled_ratio=ratio))
    assert [f.split(":")[0] + ":" for f in row.failures()] == expected


def test_busy_cores_warn_but_do_not_fail() -> None:
    row = audit.Row("crops", "numpy", 100.0, 1.0, replace(ALONE, busy_cores=0.9))
    assert row.failures() == [] and row.verdict() == "ok, spins"
    assert audit.Row("crops", "numpy", 100.0, 1.0, replace(ALONE, busy_cores=0.2)).warnings() == []


def test_interleaved_checks_take_turns_round_by_round() -> None:
    order: list[str] = []
    now = [0.0]

    def clock() -> float:
        return now[0]

    def fn(name: str, seconds: float) -> Any:
        def call() -> None:
            order.append(name)
            now[0] += seconds
        return call

    a, b = audit.interleaved([fn("a", 0.01), fn("b", 0.02)], seconds=0.2, clock=clock)
    assert a == pytest.approx([0.01] * len(a)) and b == pytest.approx([0.02] * len(b))
    assert len(a) == len(b) >= 5
    timed_calls = order[-2 * len(a):]
    assert timed_calls == ["a", "b"] * len(a)  # A B, A B, ...


def test_the_doubled_problem_has_twice_the_steps_and_the_same_first_epochs() -> None:
    problem = WORKLOADS["small"].build()
    doubled = audit.doubled_problem(problem)
    assert len(doubled.plan) == 2 * len(problem.plan)
    assert [list(i) for i in list(doubled.plan)[:len(problem.plan)]] == [
        list(i) for i in problem.plan]
