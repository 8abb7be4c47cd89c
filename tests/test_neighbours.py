"""Seeing the neighbours: what other programs took from the suite's CPUs while each round
was timed, how it is recorded, judged, re-timed and marked.

The meter's machine counters and CPU clock are faked in the unit tests (each fake says
what it stands for); one test runs a real neighbour, a busy loop pinned to another CPU,
beside a real tiny workload, and checks only the CPU time the kernel accounted to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from _benchjson import make_run

import gdbench.benches.bench_training as bench
from gdbench.data.workloads import WORKLOADS
from gdbench.harness import timing
from gdbench.harness.timing import RoundPlan
from gdbench.implementations.base import prepare
from gdbench.judge import retime, stats, trust
from gdbench.records.results import load_run
from gdbench.records.run import Benchmark, merge_rounds
from gdbench.report.tables import render_run

# --- the meter --------------------------------------------------------------------------------


class FakeCounters:
    """Stands in for the kernel's counters: the busy and stolen seconds of this process's
    CPUs since boot, and this process's own CPU seconds; a test moves them by hand."""

    def __init__(self) -> None:
        self.busy, self.steal, self.own = 1000.0, 5.0, 2.0

    def machine(self) -> tuple[float, float]:
        return self.busy, self.steal

    def cpu(self) -> float:
        return self.own


def test_the_meter_reads_what_others_used_less_this_process_and_the_steal() -> None:
    c = FakeCounters()
    meter = timing.NeighbourMeter(c.machine, c.cpu)
    assert not meter.running
    meter.start()
    assert meter.running
    c.busy += 0.030  # the CPUs were busy 30 ms: 20 of them this process's own
    c.own += 0.020
    c.steal += 0.004
    others, stolen = meter.stop()
    assert others == pytest.approx(0.010) and stolen == pytest.approx(0.004)
    assert not meter.running
    with pytest.raises(RuntimeError):
        meter.stop()


def test_the_meter_counts_only_the_cpus_this_process_may_run_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """psutil's per-CPU times are faked: CPU 1 is busy, CPU 0 idle."""
    import psutil

    def cpu(busy: float, steal: float) -> SimpleNamespace:
        return SimpleNamespace(user=busy, nice=0.0, system=0.0, idle=1.0, iowait=0.0, irq=0.0,
                               softirq=0.0, steal=steal, guest=busy, guest_nice=0.0)

    monkeypatch.setattr(psutil, "cpu_times", lambda percpu: [cpu(1.0, 0.1), cpu(7.0, 0.2)])
    assert timing._busy_and_steal([0]) == (1.0, 0.1)  # guest time is in user already
    assert timing._busy_and_steal(None) == pytest.approx((8.0, 0.3))


# --- the suite records it per round -------------------------------------------------------


class FakeBenchmark:
    """pytest-benchmark's fixture as _time uses it: pedantic() runs setup and then the
    target per round, warm-up rounds first, timing each on ``clock``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock, self.disabled, self.stats = clock, False, None
        self.extra_info: dict[str, Any] = {}

    def pedantic(self, target: Callable[[], None], setup: Callable[[], None] | None = None,
                 rounds: int = 1, iterations: int = 1, warmup_rounds: int = 0) -> None:
        data = []
        for i in range(warmup_rounds + rounds):
            if setup:
                setup()
            start = self.clock()
            for _ in range(iterations):
                target()
            if i >= warmup_rounds:
                data.append((self.clock() - start) / iterations)
        self.stats = SimpleNamespace(stats=SimpleNamespace(
            data=data, rounds=rounds, median=float(np.median(data)), iqr=0.0),
            iterations=iterations)


def _settings(plan: RoundPlan) -> Any:
    return SimpleNamespace(plan=lambda run, reference, probe=None: plan, memory=False)


def test_the_suite_meters_each_timed_round_alone_and_drops_the_warm_up() -> None:
    """The clock and the counters are fakes: the reference takes 10 ms, each round 1 ms, and
    a neighbour takes 0.5 ms of CPU during each round (more during the warm-up round)."""
    events: list[str] = []
    c = FakeCounters()
    clock = SimpleNamespace(now=0.0)
    taken = iter([9.0, 0.0005, 0.0006, 0.0007])

    class Meter(timing.NeighbourMeter):
        def start(self) -> None:
            events.append("start")
            super().start()

        def stop(self) -> tuple[float, float]:
            events.append("stop")
            return super().stop()

    def reference() -> None:
        events.append("ref")
        clock.now += 0.010

    def run() -> None:
        events.append("run")
        clock.now += 0.001
        c.busy += next(taken)

    b = FakeBenchmark(lambda: clock.now)
    paired = bench._time(b, _settings(RoundPlan(3, 1, 1)), run, reference,
                         lambda: clock.now, meter=Meter(c.machine, c.cpu))
    # The meter starts last before each round and stops first after it.
    assert events == ["ref", "start", "run", "stop"] * 4
    assert paired.busy == pytest.approx([0.0005, 0.0006, 0.0007])  # warm-up dropped
    assert paired.steal == [0.0, 0.0, 0.0]


def test_the_suite_saves_the_readings_and_their_load() -> None:
    b = FakeBenchmark(time.perf_counter)
    b.stats = SimpleNamespace(stats=SimpleNamespace(data=[0.01, 0.01], rounds=2, median=0.01,
                                                    iqr=0.0), iterations=2)
    b.extra_info["steps"] = 10
    request = SimpleNamespace(node=SimpleNamespace(user_properties=[]))
    # Two rounds of 20 ms (2 runs of 10 ms each): others took 20 and 10 ms of CPU.
    bench._record_timing(b, request, flops=1e6, paired=bench.Paired(
        [0.001, 0.001], [], [0.020, 0.010], [0.002, 0.0]))
    info = b.extra_info
    assert info["busy_data"] == [0.020, 0.010] and info["steal_data"] == [0.002, 0.0]
    assert info["neighbour_cores"] == pytest.approx(0.030 / 0.040)
    assert info["steal_cores"] == pytest.approx(0.002 / 0.040)
    assert "a neighbour on its CPUs in 100% of its rounds (0.75 cores" in \
        request.node.user_properties[0][1]


# --- judging it -------------------------------------------------------------------------------

def test_a_round_s_load_is_judged_over_the_rounds_around_it() -> None:
    """Kernel ticks are 10 ms: beside a neighbour that takes one whole core, 5 ms rounds
    read 10 ms or nothing, alternately. Over the window's rounds that is one core."""
    rounds = np.full(60, 0.005)
    ticks = np.tile([0.010, 0.0], 30)
    load = stats.neighbour_load(ticks, rounds)
    assert load[10:50] == pytest.approx(1.0, abs=0.1)
    assert stats.neighbour_rounds(ticks, rounds).all()
    quiet = np.zeros(60)
    quiet[::20] = 0.010  # a daemon's tick now and then: 0.05 cores
    assert not stats.neighbour_rounds(quiet, rounds).any()
    # Long rounds are judged each on its own.
    long = np.full(5, 0.5)
    assert stats.neighbour_rounds([0.0, 0.0, 0.4, 0.0, 0.0], long).tolist() == [
        False, False, True, False, False]


def _part(backend: str, busy: float, rounds: int = 20) -> dict[str, Any]:
    """One backend's process on medium, on a settled machine (every reference at its quiet
    level), with others taking ``busy`` cores of its CPUs in every round."""
    doc = make_run(workloads=("medium",), backends=(backend,), rounds=rounds, sigma=0.01,
                   slow_share=0.0, seed=3)
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["extra_info"]["kind"] == "training"]
    for b in doc["benchmarks"]:
        b["extra_info"]["ref_data"] = [0.01] * rounds
        b["extra_info"]["busy_data"] = [busy * t for t in b["stats"]["data"]]
        b["extra_info"]["steal_data"] = [0.0] * rounds
    return doc


def test_a_benchmark_timed_beside_a_neighbour_is_spoiled_and_the_quiet_timing_kept() -> None:
    parts = [_part("numpy", 0.0), _part("torch-cpu", 1.0)]
    assert retime.spoiled(parts) == {"torch-cpu": {"medium": 1.0}}
    quiet = _part("torch-cpu", 0.0)
    decided = retime.keep_settled(parts, quiet)
    assert decided[0]["unsettled_first"] == 1.0 and decided[0]["unsettled_again"] == 0.0
    assert decided[0]["kept"] == "again"
    assert parts[1]["benchmarks"][0] is quiet["benchmarks"][0]
    # Without the neighbour readings (a run from before them), only the references count.
    unread = _part("torch-cpu", 1.0)
    for b in unread["benchmarks"]:
        del b["extra_info"]["busy_data"]
    assert retime.spoiled([_part("numpy", 0.0), unread]) == {}


def test_re_timing_says_a_neighbour_was_seen(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    parts = [_part("numpy", 0.0), _part("torch-cpu", 1.0)]
    asked: list[str] = []

    def run_one(backend: str, selection: list[str], what: str) -> dict[str, Any]:
        asked.append(what)
        return _part(backend, 0.0)

    retime.resettle(parts, run_one, {"numpy": 1.0, "torch-cpu": 1.0}, 100.0)
    assert asked == ["again: 100% of its rounds on medium had a reference over 25% above "
                     "the quiet level, or a busy neighbour beside 100% of them"]


def test_gdbench_ab_times_again_a_process_timed_beside_a_neighbour(tmp_path: Path) -> None:
    from gdbench.commands import ab

    base = ab.Side("base", "main", "c0ffee", tmp_path)
    blocks = [ab.Block(i, base, "torch-cpu", (), tmp_path / f"{i}.json") for i in range(2)]
    redo = ab.unsettled([(blocks[0], _part("torch-cpu", 0.0)),
                         (blocks[1], _part("torch-cpu", 1.0))])
    assert [block for block, _ in redo] == [blocks[1]]
    assert redo[0][1].endswith("or a busy neighbour beside 100% of them")


def test_blocks_keep_their_readings_aligned_when_merged() -> None:
    a, b = (_part("numpy", x)["benchmarks"][0] for x in (0.5, 0.0))
    merged = merge_rounds([a, b])["extra_info"]
    assert merged["busy_data"] == a["extra_info"]["busy_data"] + b["extra_info"]["busy_data"]
    rounds = a["stats"]["data"] + b["stats"]["data"]
    assert merged["neighbour_cores"] == pytest.approx(0.5 * sum(a["stats"]["data"]) / sum(rounds))
    del b["extra_info"]["steal_data"]  # one block without them: none kept
    merged = merge_rounds([a, b])["extra_info"]
    assert "busy_data" not in merged and "neighbour_cores" not in merged


def test_the_table_marks_a_cell_timed_beside_a_neighbour(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy", "jax"), rounds=1000, sigma=0.01,
                   slow_share=0.0, seed=4)
    for b in doc["benchmarks"]:
        share = 0.2 if b["extra_info"]["backend"] == "jax" else 0.0
        data = b["stats"]["data"]
        # jax: others took a whole core for its first 20% of rounds, then nothing (judged
        # over half a second of rounds, the neighbour's end is blurred by some rounds).
        b["extra_info"]["busy_data"] = [t if i < share * len(data) else 0.0
                                        for i, t in enumerate(data)]
        b["extra_info"]["steal_data"] = [0.0] * len(data)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    frame = load_run(path)
    cells = trust.cell_intervals(frame).join(frame["backend"]).set_index("backend")
    assert trust.NEIGHBOUR_SHARE <= cells.loc["jax", "neighbour_share"] < 0.5
    assert cells.loc["jax", "doubts"] == (trust.NEIGHBOUR,)
    assert cells.loc["numpy", "neighbour_share"] == 0.0 and cells.loc["numpy", "doubts"] == ()
    text = render_run(path)
    assert text.count("‡") == 2  # the cell, and its footnote
    assert "‡ other programs took a share of its CPUs" in text


# --- a real neighbour ------------------------------------------------------------------------

@pytest.fixture
def busy_neighbour() -> Iterator[int]:
    """A busy loop in a process of its own, pinned to the second CPU this process may run
    on; yields that CPU and stops the loop afterwards."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: the neighbour takes one of them")
    code = f"import os\nos.sched_setaffinity(0, {{{cpus[1]}}})\nwhile True:\n    pass\n"
    # Started through a process that exits at once, so that it is not this process's
    # child: a process's children are its own load (a backend's ranks), not a neighbour.
    starter = ("import subprocess, sys\n"
               f"p = subprocess.Popen([sys.executable, '-c', {code!r}], stdin=subprocess.DEVNULL, "
               "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nprint(p.pid)\n")
    pid = int(subprocess.run([sys.executable, "-c", starter], capture_output=True,
                             text=True, check=True).stdout)
    time.sleep(0.2)  # let it start spinning
    try:
        yield cpus[1]
    finally:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.e2e  # a real busy process beside seconds of real timing
def test_a_busy_loop_on_another_cpu_is_seen_beside_a_real_workload(
        busy_neighbour: int) -> None:
    """crops with numpy, timed through the suite's own _time, with a real meter, beside a
    real busy loop: the kernel accounts the loop's CPU time to the rounds, so most of
    them are judged to have a neighbour and the run's policy would time it again. (What
    is asserted is CPU accounting, never a time.)"""
    problem = WORKLOADS["crops"].build("float32")
    prepared = prepare("numpy", problem)
    reference = timing.reference_loop(problem.dataset.X, problem.W0, problem.plan.batches())
    b = FakeBenchmark(time.perf_counter)
    plan = timing.plan_rounds(prepared.run, reference, max_time_s=1.0, min_rounds=20)
    paired = bench._time(b, _settings(plan), prepared.run, reference,
                         meter=timing.NeighbourMeter())
    b.extra_info["steps"] = len(problem.plan)
    request = SimpleNamespace(node=SimpleNamespace(user_properties=[]))
    bench._record_timing(b, request, problem.flops, paired)
    info = b.extra_info
    assert len(info["busy_data"]) == len(b.stats.stats.data)
    assert info["neighbour_cores"] > 0.5  # the loop had a CPU to itself: about one core
    raw = {"stats": {"data": b.stats.stats.data, "iterations": b.stats.iterations},
           "extra_info": {**info, "kind": "training", "backend": "numpy",
                          "workload": "crops"}}
    seen = retime.neighbours(Benchmark(raw))
    assert seen is not None and seen.mean() > 0.5
    assert retime.RUN.spoiled(info["ref_data"], min(info["ref_data"]), seen)[0]


SLOW = pytest.mark.skipif(not os.environ.get("GDBENCH_SLOW_TESTS"),
                          reason="slow (a minute of real timing): set GDBENCH_SLOW_TESTS=1")


@SLOW
def test_gdbench_run_never_prints_a_clean_figure_beside_a_busy_neighbour(
        busy_neighbour: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """torch-cpu at large in the default profile (every CPU, the libraries' own threads),
    with a busy loop pinned to one CPU throughout: the run must time it again or mark it."""
    pytest.importorskip("torch")
    from gdbench.commands.cli import main

    code = main(["run", "--backends", "torch-cpu", "--workloads", "large",
                 "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0
    (saved,) = tmp_path.glob("*.json")
    doc = json.loads(saved.read_text())
    retimed = [d for d in doc["machine_info"]["gdbench"]["resettled"]
               if d["benchmark"] == "bench_training[large-torch-cpu]"]
    frame = load_run(saved)
    cells = trust.cell_intervals(frame).join(frame["backend"]).set_index("backend")
    doubts = cells.loc["torch-cpu", "doubts"]
    assert retimed or doubts, printed
    if not retimed:
        assert any(m in printed for m in "†‡§")


def test_the_kernels_ticks_alone_never_read_as_a_neighbour() -> None:
    """A quiet machine as the kernel counts it: this process keeps its two CPUs busy 80%
    of each 22 ms round (torch at large), and the machine's counter samples them, a whole
    10 ms tick to whatever runs at each tick's instant; this process's own time is exact.
    That sampling alone must not read as a neighbour on any round (seeded; no timing)."""
    rng = np.random.default_rng(7)
    rounds, round_s, tick, busy_share = 300, 0.022, 0.010, 0.8
    busy = []
    for _ in range(rounds):
        ticks = sum(int(rng.binomial(1, busy_share)) for _ in range(2)
                    for _ in range(int(round_s / tick) + int(rng.random() < 0.2)))
        busy.append(ticks * tick - 2 * busy_share * round_s)
    load = stats.neighbour_load(busy, [round_s] * rounds)
    assert np.abs(load).max() < stats.NEIGHBOUR_CORES
    # Over a tenth of a second the same sampling does reach it: hence the window.
    assert np.abs(stats.neighbour_load(busy, [round_s] * rounds, window_s=0.1)).max() > \
        stats.NEIGHBOUR_CORES


@pytest.mark.e2e  # real CPU time of a spinning child: a loaded machine starves it
def test_the_processes_a_backend_starts_are_its_own_not_neighbours() -> None:
    """A data-parallel backend's ranks are child processes: a child that spins while the
    meter runs is counted as this process's own time, not as a neighbour's. The machine's
    counter is faked as the CPU time of this process tree alone (so that other programs
    on a shared machine cannot enter the reading): with the children counted, nothing is
    left for a neighbour; counting this process alone, the child's time would be."""
    code = "import time\nend = time.time() + 1.0\nwhile time.time() < end:\n    pass\n"
    child = subprocess.Popen([sys.executable, "-c", code])  # started before, as ranks are
    try:
        time.sleep(0.3)  # past its start-up
        tree = timing.NeighbourMeter(lambda: (timing.own_cpu_seconds(), 0.0))
        alone = timing.NeighbourMeter(lambda: (timing.own_cpu_seconds(), 0.0),
                                      time.process_time)
        tree.start()
        alone.start()
        time.sleep(0.4)  # the child spins meanwhile
        others_alone, _ = alone.stop()
        others_tree, _ = tree.stop()
    finally:
        child.wait()
    assert abs(others_tree) < 0.02
    assert others_alone > 0.2  # the child's ~0.4 s of CPU
    assert timing.own_cpu_seconds() >= time.process_time()


def test_the_machine_is_read_inside_this_process_s_own_reading() -> None:
    """Fakes both counters to log their calls: what reading them costs falls inside this
    process's interval, so it can never be read as a neighbour's time."""
    calls: list[str] = []

    def machine() -> tuple[float, float]:
        calls.append("machine")
        return 0.0, 0.0

    def own() -> float:
        calls.append("own")
        return 0.0

    meter = timing.NeighbourMeter(machine, own)
    meter.start()
    meter.stop()
    assert calls == ["own", "machine", "machine", "own"]
