"""The re-timing policy (gdbench.judge.retime) on constructed runs: which benchmarks are
timed again, within which budget, and what is kept. Each round's reference time is 1.0
(a settled machine) or 2.0 (spoiled: far over the 25% tolerance); the clock is faked."""

from __future__ import annotations

import math
from typing import Any

import pytest
from _clock import FakeClock

from gdbench.judge import retime


def _bench(backend: str, workload: str, spoiled: bool) -> dict[str, Any]:
    ref = [2.0 if spoiled else 1.0] * 20
    return {"name": f"bench_training[{workload}-{backend}]",
            "stats": {"data": [1e-3] * 20, "iterations": 1},
            "extra_info": {"kind": "training", "backend": backend, "workload": workload,
                           "ref_data": ref}}


def _parts(spoiled: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """One process per backend (numpy, jax, torch-cpu), each on w1 and w2."""
    return [{"benchmarks": [_bench(b, w, (b, w) in spoiled) for w in ("w1", "w2")]}
            for b in ("numpy", "jax", "torch-cpu")]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(retime.time, "perf_counter", fake)
    return fake


def _runner(clock: FakeClock, seconds: float = 0.0,
            calls: list[tuple[str, tuple[str, ...]]] | None = None) -> Any:
    """A stand-in for a backend's fresh process: it takes ``seconds`` and hands back the
    asked benchmarks settled."""
    def run_one(backend: str, selection: list[str], why: str) -> dict[str, Any]:
        workloads = tuple(selection[selection.index("--workloads") + 1:])
        if calls is not None:
            calls.append((backend, workloads))
        clock.advance(seconds)
        return {"benchmarks": [_bench(backend, w, False) for w in workloads]}
    return run_one


def test_a_policy_without_a_budget_share_may_always_time_again(clock: FakeClock) -> None:
    policy = retime.Policy(tolerance=0.25, passes=1)
    assert policy.budget_share == math.inf
    calls: list[tuple[str, tuple[str, ...]]] = []
    parts = _parts({("jax", "w1")})
    retime.resettle(parts, _runner(clock, 1e6, calls), {"jax": 1e6}, 1.0, policy)
    assert calls == [("jax", ("w1",))]


def test_the_budget_is_per_workload_of_the_first_process_times_the_workloads_again(
        clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    # jax's process took 10 s for its 2 workloads: 5 s a workload. The budget is 25% of
    # a 24 s first pass: 6 s. One workload again (5 s) fits; two (10 s) do not.
    calls: list[tuple[str, tuple[str, ...]]] = []
    retime.resettle(_parts({("jax", "w1")}), _runner(clock, 0.0, calls), {"jax": 10.0},
                    24.0)
    assert calls == [("jax", ("w1",))]
    calls.clear()
    retime.resettle(_parts({("jax", "w1"), ("jax", "w2")}), _runner(clock, 0.0, calls),
                    {"jax": 10.0}, 24.0)
    assert calls == []
    assert "-- jax: 100% of its rounds on w1 had a reference over 25% above the quiet " \
        "level; no time left to time it again (6 s left of the 25% of the first pass " \
        "allowed)" in capsys.readouterr().out
    # Exactly the budget fits.
    retime.resettle(_parts({("jax", "w1")}), _runner(clock, 0.0, calls), {"jax": 12.0}, 24.0)
    assert calls == [("jax", ("w1",))]


def test_a_backend_over_the_budget_does_not_stop_the_others(clock: FakeClock) -> None:
    calls: list[tuple[str, tuple[str, ...]]] = []
    parts = _parts({("numpy", "w2"), ("jax", "w1")})
    one_pass = retime.Policy(tolerance=0.25, passes=1, budget_share=0.25)
    decided = retime.resettle(parts, _runner(clock, 0.0, calls),
                              {"numpy": 40.0, "jax": 2.0}, 24.0, one_pass)
    assert calls == [("jax", ("w1",))]
    assert [d["benchmark"] for d in decided] == ["bench_training[w1-jax]"]


def test_each_re_run_spends_the_budget_and_every_decision_is_kept(clock: FakeClock) -> None:
    # Budget 6 s; each re-run takes 4 s of the clock: after jax's, 2 s are left, too
    # little for torch-cpu's (4 s a workload).
    calls: list[tuple[str, tuple[str, ...]]] = []
    parts = _parts({("jax", "w1"), ("torch-cpu", "w2")})
    decided = retime.resettle(parts, _runner(clock, 4.0, calls),
                              {"jax": 8.0, "torch-cpu": 8.0}, 24.0)
    assert calls == [("jax", ("w1",))]
    assert len(decided) == 1
    # With the budget to spare, both are timed again and both decisions are returned.
    calls.clear()
    parts = _parts({("jax", "w1"), ("torch-cpu", "w2")})
    decided = retime.resettle(parts, _runner(clock, 1.0, calls),
                              {"jax": 8.0, "torch-cpu": 8.0}, 24.0)
    assert calls == [("jax", ("w1",)), ("torch-cpu", ("w2",))]
    assert [(d["benchmark"], d["kept"]) for d in decided] == [
        ("bench_training[w1-jax]", "again"), ("bench_training[w2-torch-cpu]", "again")]
    assert all(b["extra_info"]["ref_data"] == [1.0] * 20 for p in parts
               for b in p["benchmarks"])  # the settled timings took their places


def test_the_decision_records_the_shares_to_three_places() -> None:
    parts = _parts(set())
    jax = parts[1]["benchmarks"][0]
    jax["stats"]["data"], jax["extra_info"]["ref_data"] = [1e-3] * 3, [2.0, 2.0, 1.0]
    again = {"benchmarks": [_bench("jax", "w1", False)]}
    again["benchmarks"][0]["extra_info"]["ref_data"] = [2.0, 1.0, 1.0]
    again["benchmarks"][0]["stats"]["data"] = [1e-3] * 3
    (decided,) = retime.keep_settled(parts, again)
    assert decided == {"benchmark": "bench_training[w1-jax]", "by": "run",
                       "unsettled_first": 0.667, "unsettled_again": 0.333, "kept": "again"}


def test_the_named_policies_are_what_the_commands_promise() -> None:
    # gdbench ab's help: a process spoiled that way "is run again at once, at most twice
    # over"; gdbench run also tries twice, within a quarter of its first pass (a tenth
    # with --quick); the audit three times. docs/fidelity.md says what set the others.
    assert (retime.AB.passes, retime.AB.budget_share) == (2, math.inf)
    assert (retime.RUN.passes, retime.RUN.budget_share) == (2, 0.25)
    assert (retime.RUN_QUICK.tolerance, retime.RUN_QUICK.passes) == (retime.RUN.tolerance, 2)
    assert retime.AB.tolerance == retime.AUDIT.tolerance == retime.SETTLED_TOLERANCE
    with pytest.raises(AttributeError):  # frozen: a command cannot loosen another's policy
        retime.RUN.passes = 5  # type: ignore[misc]


def test_a_re_run_benchmark_the_run_does_not_have_is_passed_over_not_the_rest() -> None:
    parts = _parts({("jax", "w1")})
    again = {"benchmarks": [_bench("mxnet", "w1", False), _bench("jax", "w1", False)]}
    decided = retime.keep_settled(parts, again)
    assert [(d["benchmark"], d["kept"]) for d in decided] == [("bench_training[w1-jax]",
                                                               "again")]
