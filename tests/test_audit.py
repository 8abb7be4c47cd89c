"""gdbench audit: its verdicts on constructed numbers, its re-timing of either side, and
the command's exit codes. The standalone timing of constructed faulty backends is
tests/test_standalone.py's. No figure of a real backend is asserted here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _benchjson import make_run, write_run

from gdbench.commands import audit, cli
from gdbench.commands import run as run_command
from gdbench.data.workloads import WORKLOADS
from gdbench.harness import standalone, timing
from gdbench.judge import audit as verdicts
from gdbench.judge import retime
from gdbench.records import formats
from gdbench.records.results import read_run
from gdbench.records.run import Run


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass



# --- the verdicts on constructed figures ----------------------------------------------------

ALONE = standalone.Standalone(step_us=100.0, ref_s=1.0, sync_change=0.0, doubled_ratio=2.0,
                         busy_cores=0.0, harness_share=1e-4, rounds=50)


@pytest.mark.parametrize(("suite_us", "fails"), [(100.0, False), (109.0, False), (91.0, False),
                                                 (111.0, True), (89.0, True), (300.0, True)])
def test_interference_fails_beyond_ten_percent(suite_us: float, fails: bool) -> None:
    row = verdicts.Row("large", "torch-cpu", suite_us, 1.0, ALONE)
    assert row.interference == pytest.approx(suite_us / 100.0)
    assert bool(verdicts.failures(row)) is fails
    if fails:
        assert verdicts.failures(row)[0].startswith("interference:")


def test_machine_drift_between_suite_and_standalone_is_taken_out() -> None:
    # The machine ran 1.2x slower while timing alone: the reference shows it, and the
    # same loop at the same speed is what the verdict compares.
    slower = replace(ALONE, step_us=120.0, ref_s=1.2)
    row = verdicts.Row("large", "torch-cpu", 100.0, 1.0, slower)
    assert row.raw_ratio == pytest.approx(100 / 120)
    assert row.drift == pytest.approx(1.2)
    assert row.interference == pytest.approx(1.0)
    assert verdicts.failures(row) == []
    # Without a suite reference there is nothing to correct by.
    assert verdicts.Row("large", "torch-cpu", 100.0, None, slower).interference == pytest.approx(
        100 / 120)


@pytest.mark.parametrize(("sync_change", "ratio", "expected"), [
    (0.05, 2.0, []), (0.11, 2.0, ["sync:"]), (0.0, 1.24, ["x2 plan:"]),
    (0.0, 2.6, ["x2 plan:"]), (0.0, 1.25, []), (0.0, 2.5, []), (0.5, 1.0, ["sync:", "x2 plan:"]),
])
def test_sync_and_doubling_limits(sync_change: float, ratio: float, expected: list[str]) -> None:
    row = verdicts.Row("crops", "x", 100.0, 1.0,
                    replace(ALONE, sync_change=sync_change, doubled_ratio=ratio))
    assert [f.split(":")[0] + ":" for f in verdicts.failures(row)] == expected


def test_busy_cores_warn_but_do_not_fail() -> None:
    row = verdicts.Row("crops", "numpy", 100.0, 1.0, replace(ALONE, busy_cores=0.9))
    assert verdicts.failures(row) == [] and verdicts.verdict(row) == "ok, spins"
    assert verdicts.warnings(verdicts.Row("crops", "numpy", 100.0, 1.0,
                                          replace(ALONE, busy_cores=0.2))) == []


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

    a, b = standalone.interleaved([fn("a", 0.01), fn("b", 0.02)], seconds=0.2, clock=clock)
    assert a == pytest.approx([0.01] * len(a)) and b == pytest.approx([0.02] * len(b))
    assert len(a) == len(b) >= standalone.CHECK_MIN_ROUNDS
    # A B, A B, ...; each timed call (once a round: 10 ms is over the round floor) after
    # an untimed one of its own, which the times above leave out.
    timed_calls = order[-4 * len(a):]
    assert timed_calls == ["a", "a", "b", "b"] * len(a)


def test_standalone_rounds_come_in_blocks_between_reference_blocks() -> None:
    # A fake clock: each run call takes 1 ms; the reference takes 0.1 ms, except in the
    # third reference block, where a neighbour slows it to 0.2 ms.
    order: list[str] = []
    now = [0.0]
    ref_blocks = [0]

    def run() -> None:
        order.append("run")
        now[0] += 1e-3

    def reference() -> None:
        order.append("ref")
        now[0] += 2e-4 if ref_blocks[0] == 3 else 1e-4

    def counted_reference() -> None:
        if not order or order[-1] != "ref":
            ref_blocks[0] += 1
        reference()

    plan = timing.RoundPlan(rounds=7, iterations=2, ref_iterations=1)
    out = standalone.segmented(run, counted_reference, plan, 3, segments=3, clock=lambda: now[0])
    assert out.times == pytest.approx([1e-3] * 7)  # per call: each round ran 2 calls
    # ceil(7 / 3) = 3 rounds a block: 3, 3, 1; a warm-up round before each, and one
    # reference round of 3 calls (as the suite's, no warm-up of its own: it follows the
    # loop's work) before, between and after. Its seconds are per call.
    ref = ["ref"] * 3
    assert order == [*ref, *["run"] * 8, *ref, *["run"] * 8, *ref, *["run"] * 4, *ref]
    # Block 2 lies between reference blocks 2 and 3, block 3 between 3 and 4: each round
    # gets the slower of its two neighbours.
    assert out.refs == pytest.approx([1e-4] * 3 + [2e-4] * 3 + [2e-4])
    assert out.wakes == []  # no probe given


def test_the_wake_probe_reads_before_each_reference_block_and_judges_its_neighbours() -> None:
    order: list[str] = []
    readings = iter([50e-6, 50e-6, 70e-6, 50e-6])  # the third probe reads slow

    def probe() -> float:
        order.append("probe")
        return next(readings)

    def run() -> None:
        order.append("run")

    def reference() -> None:
        if order[-1] != "ref":
            order.append("ref")

    plan = timing.RoundPlan(rounds=6, iterations=1, ref_iterations=1)
    out = standalone.segmented(run, reference, plan, 2, segments=3, clock=lambda: 0.0,
                          probe=probe)
    assert order == ["probe", "ref", *["run"] * 3] * 3 + ["probe", "ref"]
    # Blocks 2 and 3 each touch the slow reading, before or after them.
    assert out.wakes == pytest.approx([50e-6] * 2 + [70e-6] * 4)


SETTLED_ALONE = replace(standalone.Standalone(step_us=130.0, ref_s=1.0, sync_change=0.0,
                                         doubled_ratio=2.0, busy_cores=0.0,
                                         harness_share=1e-4, rounds=20),
                        round_us=(100.0,) * 10 + (160.0,) * 10,
                        round_ref_s=(1.0,) * 10 + (1.25,) * 10)


def test_the_verdict_compares_the_rounds_taken_on_a_settled_machine() -> None:
    # Half of the standalone rounds and a third of the suite's ran while a neighbour
    # slowed the reference by 25% and the loop by 60%: the medians differ by 20%, the
    # settled rounds not at all.
    suite_us = (100.0,) * 20 + (160.0,) * 10
    suite_refs = (1.0,) * 20 + (1.25,) * 10
    row = verdicts.Row("medium", "numpy", 100.0 * 1.0, 1.0, SETTLED_ALONE, suite_us, suite_refs)
    assert row.compared_settled and row.interference == pytest.approx(1.0)
    assert (row.suite_us, row.alone_us) == (100.0, 100.0)
    assert row.compared() == "settled 20/30 · 10/20"
    assert verdicts.failures(row) == []
    # A suite 20% slower in its settled rounds fails, whatever the unsettled ones say.
    slow = verdicts.Row("medium", "numpy", 130.0, 1.0, SETTLED_ALONE,
                     (120.0,) * 20 + (160.0,) * 10, suite_refs)
    assert slow.interference == pytest.approx(1.2)
    assert verdicts.failures(slow)[0].startswith("interference: suite +20.0% vs alone;")
    # No per-round references in the run: the drift-corrected medians, as before.
    plain = verdicts.Row("medium", "numpy", 130.0, 1.0, SETTLED_ALONE)
    assert not plain.compared_settled and plain.interference == pytest.approx(1.0)
    assert plain.compared() == "medians, drift ×1.000 (no per-round refs)"


def test_slow_wake_ups_leave_rounds_out_of_the_verdict() -> None:
    # Flat references, but the suite's last 10 rounds and the standalone's last 10 ran
    # while the probe read 40% slower, and the loop with it.
    alone = replace(SETTLED_ALONE, round_ref_s=(1.0,) * 20,
                    round_wake_s=(50e-6,) * 10 + (70e-6,) * 10)
    suite = ((100.0,) * 20 + (160.0,) * 10, (1.0,) * 30, (50e-6,) * 20 + (70e-6,) * 10)
    row = verdicts.Row("large", "jax-scan", 120.0, 1.0, alone, *suite)
    assert row.compared() == "settled 20/30 · 10/20"
    assert row.interference == pytest.approx(1.0) and verdicts.failures(row) == []
    record = audit.record(row)
    assert record["suite_wake_us"] == pytest.approx(50.0)  # median of 20 at 50, 10 at 70
    assert record["alone_wake_us"] == pytest.approx(60.0)
    # Without the suite's readings, the probe cannot judge: the references alone do.
    blind = verdicts.Row("large", "jax-scan", 120.0, 1.0, alone, *suite[:2])
    assert blind.compared() == "settled 30/30 · 20/20"
    # Most standalone rounds slow by the probe: timed again.
    mostly = replace(alone, round_wake_s=(50e-6,) * 4 + (70e-6,) * 16)
    assert verdicts.Row("large", "jax-scan", 120.0, 1.0, mostly, *suite).alone_unsettled()
    assert not row.alone_unsettled()
    assert alone.pooled(alone).round_wake_s == alone.round_wake_s * 2


def _suite_bench(name: str, us: Sequence[float], wakes: Sequence[float]) -> dict[str, Any]:
    """A run's benchmark entry with these rounds (µs/step, 100 steps), a flat reference."""
    data = [u * 100 / 1e6 for u in us]
    refs = [1.0] * len(us)
    return {"name": name, "stats": {"median": statistics.median(data), "data": data},
            "extra_info": {"kind": "training", "backend": "jax-scan", "workload": "large",
                           "steps": 100, "ref_data": refs, "ref_s": 1.0,
                           "wake_data": list(wakes),
                           "norm_data": [d / r for d, r in zip(data, refs, strict=True)]}}


def test_a_suite_timing_mostly_unsettled_is_timed_again_and_the_better_one_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite timed jax-scan at large while the host woke threads slowly (70 µs, the
    # loop at 420 µs/step); alone it was fast (50 µs, 240). Timed again: fast too.
    alone = replace(SETTLED_ALONE, round_us=(240.0,) * 20, round_ref_s=(1.0,) * 20,
                    round_wake_s=(50e-6,) * 20)
    name = "bench_training[large-jax-scan]"
    slow = _suite_bench(name, [420.0] * 20, [70e-6] * 20)
    fast = _suite_bench(name, [245.0] * 20, [50e-6] * 20)
    fast["extra_info"]["memory_method"] = "none"  # a re-timing measures no memory
    doc = {"benchmarks": [{**slow, "extra_info": {**slow["extra_info"],
                                                  "memory_method": "tracemalloc"}}],
           "machine_info": {"gdbench": {}}}
    asked: list[tuple[Any, ...]] = []

    def retime(*a: Any) -> dict[str, Any]:
        asked.append(a)
        return fast

    monkeypatch.setattr(audit, "retime", retime)
    row = verdicts.Row("large", "jax-scan", 420.0, 1.0, alone).with_suite(slow)
    assert row.suite_unsettled() and not row.alone_unsettled()
    assert row.unsettled_shares() == (1.0, 0.0)
    kept = audit._resettle_suite(row, Run(doc), name, "float32", None, 2.0)
    # once: settled then; gdbench's own workload, so no definition to pass
    assert asked == [("jax-scan", "large", "float32", None, 2.0, None)]
    assert kept.suite_us == pytest.approx(245.0) and verdicts.failures(kept) == []
    # The run now holds the timing the audit compared, with the first one's memory.
    assert doc["benchmarks"][0]["stats"]["data"] == fast["stats"]["data"]
    assert doc["benchmarks"][0]["extra_info"]["memory_method"] == "tracemalloc"
    assert doc["machine_info"]["gdbench"]["resettled"] == [
        {"benchmark": name, "by": "audit", "unsettled_first": 1.0, "unsettled_again": 0.0,
         "kept": "again"}]


def test_a_suite_timing_again_no_better_settled_is_not_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    alone = replace(SETTLED_ALONE, round_us=(240.0,) * 20, round_ref_s=(1.0,) * 20,
                    round_wake_s=(50e-6,) * 20)
    name = "bench_training[large-jax-scan]"
    slow = _suite_bench(name, [420.0] * 20, [70e-6] * 20)
    doc = {"benchmarks": [slow], "machine_info": {"gdbench": {}}}
    monkeypatch.setattr(audit, "retime", lambda *a: _suite_bench(name, [430.0] * 20,
                                                                  [72e-6] * 20))
    row = verdicts.Row("large", "jax-scan", 420.0, 1.0, alone).with_suite(slow)
    kept = audit._resettle_suite(row, Run(doc), name, "float32", None, None)
    assert kept == row and doc["benchmarks"][0] is slow
    assert [d["kept"] for d in doc["machine_info"]["gdbench"]["resettled"]] == \
        ["first"] * retime.AUDIT.passes
    # A re-timing that fails leaves the row alone and records nothing more.
    monkeypatch.setattr(audit, "retime", lambda *a: None)
    doc["machine_info"]["gdbench"]["resettled"] = []
    assert audit._resettle_suite(row, Run(doc), name, "float32", None, None) == row
    assert doc["machine_info"]["gdbench"]["resettled"] == []


def test_a_standalone_timing_mostly_unsettled_is_retried_and_pooled() -> None:
    unsettled = replace(SETTLED_ALONE, round_us=(100.0,) * 4 + (160.0,) * 16,
                        round_ref_s=(1.0,) * 4 + (1.25,) * 16)
    suite = ((100.0,) * 20, (1.0,) * 20)
    row = verdicts.Row("medium", "numpy", 100.0, 1.0, unsettled, *suite)
    assert row.alone_unsettled()
    assert not verdicts.Row("medium", "numpy", 100.0, 1.0, SETTLED_ALONE, *suite).alone_unsettled()
    calm = replace(SETTLED_ALONE, round_us=(100.0,) * 20, round_ref_s=(1.0,) * 20, ref_s=0.9)
    pooled = unsettled.pooled(calm)
    assert pooled.round_us == unsettled.round_us + calm.round_us
    assert pooled.round_ref_s == unsettled.round_ref_s + calm.round_ref_s
    assert pooled.rounds == 40 and pooled.step_us == pytest.approx(100.0)
    assert pooled.ref_s == pytest.approx(0.95)
    again = replace(row, alone=pooled)
    assert not again.alone_unsettled() and again.interference == pytest.approx(1.0)


def test_a_standalone_timing_without_its_rounds_is_a_value_that_pools_as_empty() -> None:
    bare = standalone.Standalone(step_us=130.0, ref_s=1.0, sync_change=0.0, doubled_ratio=2.0,
                                 busy_cores=0.0, harness_share=1e-4, rounds=0)
    assert (bare.round_us, bare.round_ref_s, bare.round_wake_s) == ((), (), ())
    assert bare.harness_ratio == 1.0 and bare.queued_after_run is None
    pooled = bare.pooled(SETTLED_ALONE)
    assert pooled.round_us == SETTLED_ALONE.round_us and pooled.rounds == 20
    assert pooled.round_ref_s == SETTLED_ALONE.round_ref_s
    with pytest.raises(dataclasses.FrozenInstanceError):
        bare.step_us = 1.0  # type: ignore[misc]


def test_the_doubled_problem_has_twice_the_steps_and_the_same_first_epochs() -> None:
    problem = WORKLOADS["small"].build()
    doubled = standalone.doubled_problem(problem)
    assert len(doubled.plan) == 2 * len(problem.plan)
    assert [list(i) for i in list(doubled.plan)[:len(problem.plan)]] == [
        list(i) for i in problem.plan]


# --- the pairing check: what the suite's reference round costs the loop ----------------------

def _fake_pairing(slowdown: float) -> tuple[float, list[str]]:
    """harness_effect on a fake clock: run takes 1 ms, ``slowdown`` times that when it comes
    right after a reference call (a reference that leaves the machine busy)."""
    order: list[str] = []
    now = [0.0]

    def run() -> None:
        now[0] += 1e-3 * (slowdown if order and order[-1] == "ref" else 1.0)
        order.append("run")

    def reference() -> None:
        now[0] += 5e-4
        order.append("ref")

    plan = timing.RoundPlan(rounds=24, iterations=1, ref_iterations=2)
    ratio = standalone.harness_effect(run, reference, plan, pairs=4, clock=lambda: now[0])
    return ratio, order


def test_pairing_reads_what_the_reference_round_costs_the_loop() -> None:
    assert _fake_pairing(1.0)[0] == pytest.approx(1.0)
    ratio, order = _fake_pairing(1.5)
    assert ratio == pytest.approx(1.5)
    # 24 rounds in 4 pairs: 3 rounds a block. An alone block is a warm-up and 3 rounds back
    # to back; a suite block is 3 x (2 reference calls, 1 timed round). Alone goes first in
    # even pairs, the suite first in odd ones.
    alone = ["run"] * 4
    suite = ["ref", "ref", "run"] * 3
    assert order == [*alone, *suite, *suite, *alone] * 2


def _pairing_calls(plan: timing.RoundPlan, probed: bool) -> list[str]:
    """The calls harness_effect makes over one pair of blocks, run taking 1 ms."""
    calls: list[str] = []
    now = [0.0]

    def run() -> None:
        now[0] += 1e-3
        calls.append("run")

    def probe() -> float:
        calls.append("probe")
        return 5e-5

    standalone.harness_effect(run, lambda: calls.append("ref"), plan, pairs=1,
                         clock=lambda: now[0], probe=probe if probed else None)
    return calls


def test_pairing_probes_the_wake_ups_before_each_suite_round_as_the_suite_does() -> None:
    plan = timing.RoundPlan(rounds=2, iterations=1, ref_iterations=1)
    assert _pairing_calls(plan, probed=True) == ["run"] * 3 + ["probe", "ref", "run"] * 2


def test_pairing_warms_up_after_the_reference_when_the_plan_does() -> None:
    plan = timing.RoundPlan(rounds=2, iterations=1, ref_iterations=1, warm_ups=2)
    # At least HARNESS_BLOCK (2) rounds a block: a warm-up and 2 rounds alone; then twice
    # a reference call, the two warm-up calls, and the timed round.
    assert _pairing_calls(plan, probed=False) == (["run"] * 3
                                                  + ["ref", "run", "run", "run"] * 2)


def test_a_reference_that_leaves_a_thread_spinning_is_caught_by_the_pairing() -> None:
    # The shape of the harness's old fault: the reference round returned with a pool still
    # spinning, and the loop timed next ran on what was left of the machine. Here the
    # spinner holds the GIL that the loop (pure Python, about 14 ms) needs for 50 ms: the
    # loop takes about 2x, an effect that no scheduling noise reaches.
    spinners: list[threading.Thread] = []

    def reference() -> None:
        spinner = threading.Thread(target=_spin, args=(0.05,), daemon=True)
        spinner.start()
        spinners.append(spinner)

    def run() -> None:  # a fixed amount of work that needs the GIL
        total = 0
        for i in range(400_000):
            total += i

    plan = timing.RoundPlan(rounds=8, iterations=1, ref_iterations=1)
    ratio = standalone.harness_effect(run, reference, plan, pairs=2)
    for spinner in spinners:
        spinner.join()
    assert ratio > 1 + verdicts.HARNESS_LIMIT


def test_a_pairing_beyond_ten_percent_fails_the_row() -> None:
    row = verdicts.Row("large", "torch-cpu", 100.0, 1.0, replace(ALONE, harness_ratio=1.15))
    assert [f.split(":")[0] for f in verdicts.failures(row)] == ["pairing"]
    assert verdicts.failures(row)[0].startswith(
        "pairing: a round after the suite's reference round takes +15.0%")
    assert verdicts.verdict(verdicts.Row("large", "x", 100.0, 1.0,
                                         replace(ALONE, harness_ratio=0.85))) == "FAIL"
    assert verdicts.failures(verdicts.Row("large", "x", 100.0, 1.0,
                                          replace(ALONE, harness_ratio=1.09))) == []


def test_interference_with_a_clean_pairing_says_the_machine_changed_speed() -> None:
    clean = verdicts.Row("large", "jax-scan", 190.0, 1.0, replace(ALONE, harness_ratio=1.02))
    (only,) = verdicts.failures(clean)
    assert only.startswith("interference: suite +90.0% vs alone; the suite's pairing moves "
                           "the loop +2.0% in one process, so the machine's speed changed")
    both = verdicts.Row("large", "jax-scan", 190.0, 1.0, replace(ALONE, harness_ratio=1.5))
    assert verdicts.failures(both)[0] == "interference: suite +90.0% vs alone"
    assert verdicts.failures(both)[1].startswith("pairing:")


def test_a_pooled_standalone_keeps_the_median_pairing() -> None:
    a = replace(ALONE, harness_ratio=1.0, round_us=(1.0,), round_ref_s=(1.0,))
    b = replace(ALONE, harness_ratio=1.2, round_us=(1.0,), round_ref_s=(1.0,))
    assert a.pooled(b).harness_ratio == pytest.approx(1.1)


def _drifted_row(name: str, suite_us: float) -> tuple[verdicts.Row, dict[str, Any]]:
    """A row whose suite read ``suite_us`` µs/step against 100 alone, its pairing clean,
    and the run document that holds its suite timing (with memory figures)."""
    alone = replace(SETTLED_ALONE, step_us=100.0, round_us=(100.0,) * 20,
                    round_ref_s=(1.0,) * 20, round_wake_s=(50e-6,) * 20, harness_ratio=1.02)
    first = _suite_bench(name, [suite_us] * 20, [50e-6] * 20)
    first["extra_info"]["memory_method"] = "tracemalloc"
    doc = {"benchmarks": [first], "machine_info": {"gdbench": {}}}
    return verdicts.Row("large", "jax-scan", suite_us, 1.0, alone).with_suite(first), doc


def test_a_row_off_with_a_clean_pairing_is_timed_again_on_both_sides_and_pooled(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    name = "bench_training[large-jax-scan]"
    row, doc = _drifted_row(name, 125.37)
    assert row.drifted and verdicts.failures(row)[0].endswith("(re-run the suite)")
    calls: list[str] = []

    def retime(*a: Any) -> dict[str, Any]:
        calls.append("suite")
        return _suite_bench(name, [101.0] * 20, [50e-6] * 20)

    def alone_now() -> standalone.Standalone:
        calls.append("alone")
        return replace(row.alone, round_us=(99.0,) * 20, harness_ratio=1.04)

    monkeypatch.setattr(audit, "retime", retime)
    pooled = audit._confirm(row, Run(doc), name, "float32", None, 2.0, alone_now)
    assert calls == ["suite", "alone"] * audit.CONFIRM_PAIRS  # taking turns
    assert capsys.readouterr().out == ("      suite/alone off with a clean pairing: both timed "
                                       "again, taking turns\n")
    # Every timing counts: 20 rounds at 125 and 40 at 101 against 20 at 100 and 40 at 99.
    assert pooled.suite_round_us == (125.37,) * 20 + (101.0,) * 40
    assert pooled.alone.round_us == (100.0,) * 20 + (99.0,) * 40
    assert pooled.interference == pytest.approx(101.0 / 99.0)
    assert verdicts.failures(pooled) == [] and not pooled.drifted
    assert pooled.timings == 3 and pooled.compared() == "settled 60/60 · 60/60 (3 timings each)"
    assert audit.record(pooled)["timings"] == 3
    # The run holds the pooled timing the verdict used, the first timing's memory kept.
    saved = doc["benchmarks"][0]
    assert saved["extra_info"]["blocks"] == 3 and saved["extra_info"]["block_rounds"] == [20] * 3
    assert saved["extra_info"]["memory_method"] == "tracemalloc"
    assert saved["extra_info"]["step_us"] == pytest.approx(101.0)
    assert doc["machine_info"]["gdbench"]["resettled"] == [
        {"benchmark": name, "by": "audit", "kept": "pooled", "timings": 3,
         "interference_first": 1.254, "interference_pooled": round(101.0 / 99.0, 3)}]


def test_a_difference_that_stays_over_the_pooled_timings_still_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    name = "bench_training[large-jax-scan]"
    row, doc = _drifted_row(name, 125.0)
    monkeypatch.setattr(audit, "retime", lambda *a: _suite_bench(name, [124.0] * 20,
                                                                  [50e-6] * 20))
    pooled = audit._confirm(row, Run(doc), name, "float32", None, None, lambda: row.alone)
    assert pooled.interference == pytest.approx(1.24)
    (only,) = verdicts.failures(pooled)
    assert only == ("interference: suite +24.0% vs alone; it stays over 3 timings of each "
                    "side taking turns, while the suite's pairing moves the loop +2.0% in one "
                    "process")


def test_only_a_row_off_with_a_clean_pairing_is_confirmed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    name = "bench_training[large-jax-scan]"
    asked: list[Any] = []
    monkeypatch.setattr(audit, "retime", lambda *a: asked.append(a))  # returns None
    for suite_us, pairing in ((109.0, 1.02), (125.0, 1.15)):  # within 10%; pairing off
        row, doc = _drifted_row(name, suite_us)
        row = replace(row, alone=replace(row.alone, harness_ratio=pairing))
        assert not row.drifted
        assert audit._confirm(row, Run(doc), name, "float32", None, None, lambda: ALONE) == row
    assert asked == []
    # Drifted, but the suite could not be timed again: the row and the run stay as they were.
    row, doc = _drifted_row(name, 125.0)
    first = doc["benchmarks"][0]
    assert audit._confirm(row, Run(doc), name, "float32", None, None, lambda: row.alone) == row
    assert len(asked) == 1 and doc["benchmarks"][0] is first
    assert "resettled" not in doc["machine_info"]["gdbench"]


def test_pooled_timings_too_unsettled_to_filter_compare_their_medians_uncorrected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The standalone's reference read 1.6x slower than the suite's throughout, so no
    # round of it is settled; the loop itself agreed (101 against 100 µs/step).
    name = "bench_training[small-jax-scan]"
    row, doc = _drifted_row(name, 101.0)
    slow_ref = replace(row.alone, round_ref_s=(1.6,) * 20, ref_s=1.6)
    row = replace(row, alone=slow_ref)
    assert row.compared() == "medians, drift ×1.600 (unsettled)"
    assert row.interference == pytest.approx(1.01 * 1.6) and row.drifted
    monkeypatch.setattr(audit, "retime", lambda *a: _suite_bench(name, [101.0] * 20,
                                                                  [50e-6] * 20))
    pooled = audit._confirm(row, Run(doc), name, "float32", None, None, lambda: slow_ref)
    assert pooled.compared() == "medians of 3 timings each, taking turns (unsettled)"
    assert pooled.interference == pytest.approx(1.01) and verdicts.failures(pooled) == []


@pytest.mark.parametrize(("run_code", "alone_us", "code"), [
    (0, 6.0, 0), (0, 12.0, 1),  # no run: the audit's verdict
    (3, 6.0, 3), (3, 12.0, 3),  # a failed benchmark process of the run it ran: the run's code
])
def test_an_audit_that_runs_the_suite_exits_with_the_runs_code_when_the_run_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_code: int, alone_us: float,
        code: int) -> None:
    # The suite's run (crops, numpy at 6 µs/step on a calm machine) is constructed; the
    # standalone timing and the re-timings are stand-ins: alone at 6 µs/step the row
    # passes, at 12 it fails (suite/alone 0.5).
    run = write_run(tmp_path / "run.json", workloads=("crops",), backends=("numpy",),
                    slow_share=0.0)
    monkeypatch.setattr(run_command, "run_suite", lambda args: (run_code, run))
    suite_ref = float(read_run(run)["benchmarks"][1]["extra_info"]["ref_s"])
    monkeypatch.setattr(audit, "standalone", lambda *args: standalone.Standalone(
        step_us=alone_us, ref_s=suite_ref, sync_change=0.0, doubled_ratio=2.0,
        busy_cores=0.0, harness_share=0.0, rounds=20))
    monkeypatch.setattr(audit, "_resettle_suite", lambda row, *args: row)
    monkeypatch.setattr(audit, "_confirm", lambda row, *args: row)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["audit", "--seconds", "0.1"]) == code
    assert read_run(run)["machine_info"]["gdbench"]["audit"]["passed"] is (alone_us == 6.0)


# --- the machine's noise (A/A of the drift reference) ---------------------------------------

def test_a_quiet_machine_raises_no_noise_warning_and_records_its_figures() -> None:
    a = list(np.linspace(0.99, 1.01, 101))
    n = verdicts.noise(a, list(reversed(a)), 0.15)
    assert n["warning"] is None and n["threshold"] == 0.15
    assert n["aa_ratio"] == pytest.approx(1.0) and n["aa_low"] <= 1.0 <= n["aa_high"]
    q1, med, q3 = np.percentile(a + a, [25, 50, 75])
    assert n["iqr_over_median"] == pytest.approx((q3 - q1) / med)


@pytest.mark.parametrize("shift", [1.2, 0.8])
def test_an_aa_ratio_whose_interval_reaches_half_the_threshold_warns(shift: float) -> None:
    a = list(np.linspace(0.99, 1.01, 101))
    n = verdicts.noise(a, [x * shift for x in a], 0.15)
    assert n["aa_ratio"] == pytest.approx(shift, rel=0.01)
    assert n["warning"].startswith("this machine is noisy for a 15% gate: A/A ")
    # Half the threshold is the line: a 5% shift passes a 15% gate (7.5% from 1).
    assert verdicts.noise(a, [x * 1.05 for x in a], 0.15)["warning"] is None
    assert verdicts.noise(a, [x * 1.05 for x in a], 0.08)["warning"] is not None


def test_a_spread_wider_than_the_threshold_warns_though_the_medians_agree() -> None:
    a = list(np.linspace(0.8, 1.2, 401))  # IQR/median 0.2; the median is steady
    n = verdicts.noise(a, list(reversed(a)), 0.15)
    assert max(n["aa_high"] - 1, 1 - n["aa_low"]) < 0.075  # the ratio alone would pass
    assert n["iqr_over_median"] == pytest.approx(0.2, rel=0.01)
    assert n["warning"] is not None and n["warning"].endswith("spread 20.0%")
    assert verdicts.noise(a, list(reversed(a)), 0.25)["warning"] is None


def test_two_timings_pooled_are_named_in_the_wording() -> None:
    settled = verdicts.Row("crops", "numpy", 130.0, 1.0, SETTLED_ALONE,
                           (130.0,) * 20, (1.0,) * 20, timings=2)
    assert settled.compared().endswith("(2 timings each)")
    medians = verdicts.Row("crops", "numpy", 130.0, None, ALONE, timings=2)
    assert medians.compared() == "medians of 2 timings each, taking turns (no per-round refs)"
    assert medians.interference == pytest.approx(1.3)  # uncorrected: the turns are the control


def test_without_per_round_references_on_every_timing_nothing_is_judged_unsettled() -> None:
    bare = verdicts.Row("crops", "numpy", 130.0, None, ALONE)
    assert bare.unsettled_shares() == (0.0, 0.0) and not bare.suite_unsettled()
    settled = verdicts.Row("crops", "numpy", 130.0, 1.0, SETTLED_ALONE,
                           (130.0,) * 20, (1.0,) * 20)
    assert settled.unsettled_shares() == (0.0, 0.5)  # half the alone rounds ran slow
    assert settled.unsettled_shares(bare) == (0.0, 0.0)  # another timing without refs


# --- the verdicts' exact words and edges (judge/audit's mutants) ---------------------------

def test_each_failure_and_warning_is_worded_for_the_reader() -> None:
    row = verdicts.Row("crops", "x", 100.0, 1.0,
                       replace(ALONE, sync_change=0.25, doubled_ratio=1.0, busy_cores=0.5,
                               queued_after_run=True))
    assert verdicts.failures(row) == [
        "sync: an extra wait finds 25% of run still pending (its own cost taken out), so "
        "run returns before its work is done",
        "sync: the CUDA stream still had work queued when run returned, so run returns "
        "before its work is done",
        "x2 plan: twice the steps took x1.00 the time"]
    assert verdicts.warnings(row) == ["spins: 0.50 cores busy after run returns"]
    assert verdicts.verdict(row) == "FAIL"
    assert verdicts.verdict(verdicts.Row("crops", "x", 100.0, 1.0, ALONE)) == "ok"


def test_a_figure_exactly_at_its_limit_passes() -> None:
    at = replace(ALONE, sync_change=verdicts.SYNC_LIMIT, busy_cores=verdicts.BUSY_LIMIT)
    row = verdicts.Row("crops", "x", 100.0, 1.0, at)
    assert verdicts.failures(row) == [] and verdicts.warnings(row) == []


def test_a_difference_that_stays_over_two_timings_says_so() -> None:
    row = verdicts.Row("crops", "x", 150.0, 1.0, ALONE, timings=2)
    assert verdicts.failures(row) == [
        "interference: suite +50.0% vs alone; it stays over 2 timings of each side taking "
        "turns, while the suite's pairing moves the loop +0.0% in one process"]
    once = verdicts.Row("crops", "x", 150.0, 1.0, ALONE)
    assert verdicts.failures(once) == [
        "interference: suite +50.0% vs alone; the suite's pairing moves the loop +0.0% in "
        "one process, so the machine's speed changed between the two timings (re-run the "
        "suite)"]


def test_two_pooled_timings_compare_medians_uncorrected_by_the_reference() -> None:
    slower = replace(ALONE, step_us=120.0, ref_s=1.2)  # the reference says: 1.2x slower
    assert verdicts.Row("large", "x", 100.0, 1.0, slower).interference == pytest.approx(1.0)
    pooled = verdicts.Row("large", "x", 100.0, 1.0, slower, timings=2)
    assert pooled.interference == pytest.approx(100 / 120)
    assert pooled.compared() == "medians of 2 timings each, taking turns (no per-round refs)"


def test_a_row_without_the_suites_rounds_has_none_and_no_wake_readings() -> None:
    row = verdicts.Row("crops", "numpy", 130.0, 1.0, SETTLED_ALONE)
    assert (row.suite_round_us, row.suite_round_ref_s, row.suite_round_wake_s) == ((), (), ())
    assert row.settled is None
    with pytest.raises(dataclasses.FrozenInstanceError):  # a value: replace() makes another
        row.timings = 2  # type: ignore[misc]
    # Wake readings count only where both sides saved them aligned with their rounds.
    woken = replace(SETTLED_ALONE, round_wake_s=(1e-5,) * 20)
    suite = ((130.0,) * 20, (1.0,) * 20)
    assert verdicts.Row("crops", "numpy", 130.0, 1.0, SETTLED_ALONE, *suite,
                        (1e-5,) * 20)._wakes is None
    assert verdicts.Row("crops", "numpy", 130.0, 1.0, woken, *suite)._wakes is None
    assert verdicts.Row("crops", "numpy", 130.0, 1.0, woken, *suite, (1e-5,) * 19)._wakes is None
    both = verdicts.Row("crops", "numpy", 130.0, 1.0, woken, *suite, (2e-5,) * 20)
    assert both._wakes == ((2e-5,) * 20, (1e-5,) * 20)


def test_a_suite_timing_with_exactly_half_its_rounds_unsettled_is_kept() -> None:
    calm = replace(SETTLED_ALONE, round_ref_s=(1.0,) * 20)
    half = verdicts.Row("crops", "numpy", 130.0, 1.0, calm, (130.0,) * 20,
                        (1.0,) * 10 + (1.25,) * 10)
    assert half.unsettled_shares() == (0.5, 0.0) and not half.suite_unsettled()
    most = replace(half, suite_round_ref_s=(1.0,) * 9 + (1.25,) * 11)
    assert most.suite_unsettled()


@pytest.mark.parametrize("series", [
    {"data": [1.0, 2.0], "ref_data": None, "steps": 10},
    {"data": None, "ref_data": [1.0, 2.0], "steps": 10},
    {"data": [1.0, 2.0], "ref_data": [1.0], "steps": 10},
    {"data": [], "ref_data": [], "steps": 10},
    {"data": [1.0], "ref_data": [1.0], "steps": float("nan")},
    {"data": [1.0], "ref_data": [1.0], "steps": 0},
])
def test_a_suite_benchmark_without_aligned_rounds_gives_no_rounds(series: dict) -> None:
    assert verdicts.suite_rounds(pd.Series(series)) == ((), (), ())


def test_the_suites_rounds_are_per_step_microseconds_with_their_readings() -> None:
    r = pd.Series({"data": [0.001, 0.002], "ref_data": [1, 2], "steps": 10,
                   "wake_data": [3, 4]})
    assert verdicts.suite_rounds(r) == ((100.0, 200.0), (1.0, 2.0), (3.0, 4.0))
    r["wake_data"] = [3]  # not aligned: left out
    assert verdicts.suite_rounds(r)[2] == ()


def test_the_spread_is_the_iqr_over_the_median_in_any_unit() -> None:
    a = list(np.linspace(99.0, 101.0, 101))  # µs, not ratios near 1
    n = verdicts.noise(a, list(reversed(a)), 0.15)
    q1, med, q3 = np.percentile(a + a, [25, 50, 75])
    assert n["iqr_over_median"] == pytest.approx((q3 - q1) / med) and n["warning"] is None


def test_noise_exactly_at_the_threshold_does_not_warn() -> None:
    a = list(np.linspace(0.99, 1.01, 101))
    spread = verdicts.noise(a, a, 1.0)["iqr_over_median"]
    assert verdicts.noise(a, a, spread)["warning"] is None  # spread == threshold
    b = [x * 1.2 for x in a]
    first = verdicts.noise(a, b, 1.0)
    reach = max(abs(first["aa_high"] - 1), abs(1 - first["aa_low"]))
    at = verdicts.noise(a, b, 2 * reach)  # the interval reaches exactly half of it
    assert at["iqr_over_median"] < 2 * reach and at["warning"] is None
    warned = verdicts.noise(a, b, 0.15)
    assert warned["warning"] == (
        f"this machine is noisy for a 15% gate: A/A "
        f"{formats.signed_percent(warned['aa_ratio'])} "
        f"[{formats.signed_percent(warned['aa_low'])}, "
        f"{formats.signed_percent(warned['aa_high'])}], "
        f"spread {warned['iqr_over_median']:.1%}")


# --- the command's report and what it saves, word for word ------------------------------------

AA = ([1.0, 1.01, 0.99, 1.02] * 10, [1.0, 1.0, 1.01, 0.98] * 10)  # an A/A of a calm machine


@pytest.fixture
def two_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A constructed run of numpy and jax on crops. Stand-ins time them alone: numpy at
    6 µs/step, leaving half a core busy (it passes, and spins), and jax at 30 µs/step (it
    fails), one more wait taking 5% off; the machine's timer and A/A rounds are fixed."""
    run = write_run(tmp_path / "run.json", workloads=("crops",), backends=("numpy", "jax"),
                    slow_share=0.0)
    suite_ref = float(read_run(run)["benchmarks"][1]["extra_info"]["ref_s"])
    monkeypatch.setattr(audit, "standalone", lambda backend, *args: standalone.Standalone(
        step_us={"numpy": 6.0, "jax": 30.0}[backend], ref_s=suite_ref,
        sync_change={"numpy": 0.0, "jax": -0.05}[backend],
        doubled_ratio=2.0, busy_cores={"numpy": 0.5, "jax": 0.0}[backend],
        harness_share=0.002, rounds=20))
    monkeypatch.setattr(audit, "_resettle_suite", lambda row, *args: row)
    monkeypatch.setattr(audit, "_confirm", lambda row, *args: row)
    monkeypatch.setattr(audit, "timer_info",
                        lambda: {"resolution_s": 1e-9, "smallest_step_s": 4.2e-8})
    monkeypatch.setattr(audit, "aa_rounds", lambda reference: AA)
    return run


NOTES = [
    "suite/alone is µs/step in the suite over µs/step alone in a fresh process, over the "
    "rounds of both taken while the machine was settled (their single-threaded reference "
    "within 10% of its quiet level, and their wake probe, where both read one, within 30% "
    "of its own; compared counts them, suite · alone); when too few were, the medians "
    "corrected by the reference's drift. A side mostly unsettled is timed again; a row off "
    "while its pairing is clean is timed again on both sides, taking turns, and each side's "
    "rounds pooled.",
    "pairing is a round timed as the suite times it (after a reference round) over one "
    "timed back to back, blocks of each taking turns in one process: what the harness itself "
    "costs the loop, whatever the machine does; floor is the share of a round that is timer "
    "and loop rather than run.",
    "FAIL when suite/alone or pairing is off by more than 10%, when one more wait finds more "
    "than 10% of run pending, or when twice the plan takes less than ×1.25 or more than ×2.5 "
    "the time; 'spins' warns of more than 0.25 cores busy after run returns.",
    "timer: perf_counter resolution 1e-09 s, smallest step seen 4.2e-08 s",
    "machine noise (A/A of the drift reference): -0.5% [-1.0%, +0.0%], rounds' IQR/median 1.2%",
]
DETAILS = [
    "numpy on crops: spins: 0.50 cores busy after run returns",
    "jax on crops: interference: suite -59.2% vs alone; the suite's pairing moves the loop "
    "+0.0% in one process, so the machine's speed changed between the two timings (re-run "
    "the suite)",
]


def test_the_audits_report_word_for_word(two_rows: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "--run", str(two_rows), "--seconds", "0.1"]) == 1
    title = "gdbench audit: FAIL, 1 of 2 benchmarks failed"
    header = ("workload  backend  suite µs/step  alone µs/step  suite/alone  compared"
              + " " * 35 + "+wait  x2 plan  busy after  pairing  floor  verdict")
    assert capsys.readouterr().out.splitlines() == [
        "[  1/2] alone: numpy on crops",
        "[  2/2] alone: jax on crops",
        title, "=" * len(title),
        f"run: {two_rows} (the verdicts are saved in it, under machine_info.gdbench.audit)",
        *NOTES,
        header,
        "crops     numpy             6.18           6.00        1.030  medians, drift ×1.000 "
        "(no per-round refs)  +0.0%    ×2.00        0.50    +0.0%  0.20%  ok, spins",
        "crops     jax               11.9           30.0        0.408  medians, drift ×1.028 "
        "(no per-round refs)  -5.0%    ×2.00        0.00    +0.0%  0.20%  FAIL",
        *DETAILS, "",
    ]


def test_the_audits_markdown_report_and_a_noise_warning(
        two_rows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "--run", str(two_rows), "--seconds", "0.1", "--format", "md",
                     "--threshold", "1%"]) == 1
    lines = capsys.readouterr().out.splitlines()
    warning = "this machine is noisy for a 1% gate: A/A -0.5% [-1.0%, +0.0%], spread 1.2%"
    assert f"> **⚠ {warning}**" in lines
    assert "| crops | jax | 11.9 | 30.0 | 0.408 | medians, drift ×1.028 (no per-round refs) " \
           "| -5.0% | ×2.00 | 0.00 | +0.0% | 0.20% | FAIL |" in lines
    assert lines[-3:] == [*DETAILS, ""]
    saved = read_run(two_rows)["machine_info"]["gdbench"]["audit"]
    assert saved["noise"]["warning"] == warning and saved["noise"]["threshold"] == 0.01


def test_the_audit_saves_its_limits_rows_and_machine_checks_in_the_run(
        two_rows: Path) -> None:
    before = read_run(two_rows)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["audit", "--run", str(two_rows), "--seconds", "0.1"]) == 1
    doc = read_run(two_rows)
    saved = doc.pop("machine_info")["gdbench"].pop("audit")
    before["machine_info"]["gdbench"].pop("audit", None)
    assert doc == {k: v for k, v in before.items() if k != "machine_info"}  # nothing else
    assert saved.keys() == {"when", "passed", "limits", "rows", "timer", "noise"}
    assert time.strptime(saved["when"], "%Y-%m-%dT%H:%M:%S%z")
    assert saved["passed"] is False
    assert saved["limits"] == {"interference": 0.1, "pairing": 0.1, "sync": 0.1,
                               "doubling": [1.25, 2.5], "busy_cores": 0.25}
    assert saved["timer"] == {"resolution_s": 1e-9, "smallest_step_s": 4.2e-8}
    assert saved["noise"] == verdicts.noise(*AA, 0.15)
    numpy_row, jax_row = saved["rows"]
    assert numpy_row == {
        "workload": "crops", "backend": "numpy", "suite_step_us": numpy_row["suite_step_us"],
        "step_us": 6.0, "ref_s": numpy_row["ref_s"], "sync_change": 0.0,
        "doubled_ratio": 2.0, "busy_cores": 0.5, "harness_share": 0.002, "rounds": 20,
        "harness_ratio": 1.0, "queued_after_run": None,
        "suite_settled_us": numpy_row["suite_step_us"], "alone_settled_us": 6.0,
        "suite_wake_us": None, "alone_wake_us": None,
        "compared": "medians, drift ×1.000 (no per-round refs)", "timings": 1,
        "interference": pytest.approx(numpy_row["suite_step_us"] / 6.0),
        "verdict": "ok, spins", "failures": [],
        "warnings": ["spins: 0.50 cores busy after run returns"]}
    assert numpy_row["suite_step_us"] == pytest.approx(6.18, abs=0.005)
    assert jax_row["verdict"] == "FAIL" and jax_row["failures"] == [DETAILS[1][len(
        "jax on crops: "):]]


def _old_run(path: Path, **gdbench: Any) -> None:
    """Make ``path`` a run from before the dtype was saved, with these machine facts."""
    doc = read_run(path)
    for bench in doc["benchmarks"]:
        bench["extra_info"].pop("dtype", None)
    doc["machine_info"]["gdbench"].update(gdbench)
    path.write_text(json.dumps(doc))


def test_every_timing_of_the_audit_gets_the_runs_settings(
        two_rows: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A run that saved no dtype (float32, then) and pinned one thread, 0.75 s of rounds.
    _old_run(two_rows, threads_pinned=1, max_time_s=0.75)
    calls: list[tuple[Any, ...]] = []
    alone = audit.standalone

    def standalone_now(*args: Any) -> standalone.Standalone:
        calls.append(("alone", *args))
        return alone(*args)

    def resettle(row: Any, run: Any, *args: Any) -> Any:
        calls.append(("suite", row.backend, *args))
        return row

    def confirm(row: Any, run: Any, *args: Any) -> Any:
        calls.append(("confirm", row.backend, *args[:-1]))
        return row

    monkeypatch.setattr(audit, "standalone", standalone_now)
    monkeypatch.setattr(audit, "_resettle_suite", resettle)
    monkeypatch.setattr(audit, "_confirm", confirm)
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(["audit", "--run", str(two_rows), "--seconds", "0.25"])
    name = "bench_training[crops-{}]"
    assert calls == [  # each side once: the machine was settled
        ("alone", "numpy", "crops", "float32", 1, 0.25, None),
        ("suite", "numpy", name.format("numpy"), "float32", 1, 0.75),
        ("confirm", "numpy", name.format("numpy"), "float32", 1, 0.75),
        ("alone", "jax", "crops", "float32", 1, 0.25, None),
        ("suite", "jax", name.format("jax"), "float32", 1, 0.75),
        ("confirm", "jax", name.format("jax"), "float32", 1, 0.75)]


def test_an_audit_of_a_saved_run_where_every_row_passes_exits_0(
        two_rows: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    suite = {b["extra_info"]["backend"]: b["extra_info"]["step_us"]
             for b in read_run(two_rows)["benchmarks"] if b["extra_info"]["kind"] == "training"}
    alone = audit.standalone
    monkeypatch.setattr(audit, "standalone", lambda backend, *args: replace(
        alone(backend, *args), step_us=suite[backend], busy_cores=0.0))
    assert cli.main(["audit", "--run", str(two_rows), "--seconds", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "gdbench audit: PASS, 0 of 2 benchmarks failed" in out.splitlines()
    assert out.endswith(" ok\n\n")  # no details to add
    assert read_run(two_rows)["machine_info"]["gdbench"]["audit"]["passed"] is True


def test_the_recorded_world_is_the_data_parallel_benchmarks_own() -> None:
    assert audit.recorded_world(pd.DataFrame({"world": [None, 4.0, 4.0]})) == 4
    assert audit.recorded_world(pd.DataFrame({"world": [3.0]})) == 3
    assert audit.recorded_world(pd.DataFrame({"world": [None, None]})) is None


def test_a_users_workload_is_timed_again_from_the_definition_the_run_saved(
        tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    definition = {"shape": [64, 4, 2], "batch_size": 8, "epochs": 1, "seed": 3}
    for bench in doc["benchmarks"]:
        bench["extra_info"]["workload"] = "mine"
        bench["extra_info"]["workload_def"] = definition
    run = Run(doc)
    assert audit._definition(run, "mine") == json.dumps(definition, sort_keys=True)
    assert audit._definition(run, "crops") is None  # gdbench's own: known by name


def test_a_standalone_timing_on_an_unsettled_machine_is_timed_again_and_pooled(
        two_rows: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # numpy alone: first while the machine ran 1.5x slower (its reference too), then calm.
    doc = read_run(two_rows)
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["extra_info"]["backend"] != "jax"]
    two_rows.write_text(json.dumps(doc))
    ref = statistics.median(doc["benchmarks"][-1]["extra_info"]["ref_data"])
    step = doc["benchmarks"][-1]["extra_info"]["step_us"]
    timings = [replace(SETTLED_ALONE, step_us=step * f, ref_s=ref * f, rounds=20,
                       round_us=(step * f,) * 20, round_ref_s=(ref * f,) * 20, round_wake_s=())
               for f in (1.5, 1.0)]
    calls: list[tuple[Any, ...]] = []

    def alone_now(*args: Any) -> standalone.Standalone:
        calls.append(args)
        return timings[len(calls) - 1]

    monkeypatch.setattr(audit, "standalone", alone_now)
    assert cli.main(["audit", "--run", str(two_rows), "--seconds", "0.1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(calls) == 2  # settled once pooled: half the rounds unsettled is not most
    assert lines[:2] == ["[  1/1] alone: numpy on crops",
                         "      the machine was unsettled while timing alone: again"]
    row = read_run(two_rows)["machine_info"]["gdbench"]["audit"]["rows"][0]
    assert row["rounds"] == 40 and row["step_us"] == pytest.approx(step * 1.25)
    assert row["alone_settled_us"] == pytest.approx(step)  # the calm rounds are compared


def test_an_audit_of_a_users_workload_builds_its_reference_from_the_saved_definition(
        two_rows: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    definition = {"shape": [64, 4, 2], "batch_size": 8, "epochs": 1}
    doc = read_run(two_rows)
    for bench in doc["benchmarks"]:
        bench["extra_info"].update(workload="64x4x2-b8-e1", workload_def=definition)
    two_rows.write_text(json.dumps(doc))
    built: list[Any] = []
    reference_loop = timing.reference_loop
    monkeypatch.setattr(timing, "reference_loop", lambda X, W0, batches: (
        built.append((X.shape, W0.shape)), reference_loop(X, W0, batches))[1])
    assert cli.main(["audit", "--run", str(two_rows), "--seconds", "0.1"]) == 1
    assert built == [((64, 4), (2, 4))]  # the user's problem, not a workload of gdbench's
    assert "[  2/2] alone: jax on 64x4x2-b8-e1" in capsys.readouterr().out.splitlines()
