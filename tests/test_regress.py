"""The regression gate: pure statistics, and `gdbench check` on constructed runs.

The runs' rounds are known times on a machine whose speed drifts in episodes (up to 1.8x
slower), each paired with a reference round at the same moment, with seeded lognormal
jitter (3%), so each case is deterministic and its expected verdict is unambiguous.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _benchjson import BACKENDS, bad_run_files, machine_info, run_cli, write_run

from gdbench import regress
from gdbench.data.errors import InputError
from gdbench.regress import parse_threshold, verdict
from gdbench.results import load_run
from gdbench.stats import Estimate, ratio_of_medians

# --- the statistics --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("15%", 0.15), ("0.15", 0.15), (" 5 % ", 0.05),
                                             ("150%", 1.5), ("0.5", 0.5)])
def test_threshold_is_a_percentage_or_a_fraction(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["15", "1", "abc", "15%%", "-5%", "0", "nan", "inf%", ""])
def test_malformed_or_ambiguous_thresholds_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_threshold(text)


def test_ratio_of_medians_with_and_without_references() -> None:
    rng = np.random.default_rng(1)
    base = 2.0 * rng.lognormal(0, 0.04, 30)
    new = 2.5 * rng.lognormal(0, 0.04, 30)
    plain = ratio_of_medians(new, base)
    assert plain.ratio == pytest.approx(np.median(new) / np.median(base))
    assert plain.low < plain.ratio < plain.high
    assert plain.low > 1.15  # 25% slower, clearly
    # The machine got 25% slower too: the references cancel it.
    new_ref = 1.25 * rng.lognormal(0, 0.04, 30)
    base_ref = 1.0 * rng.lognormal(0, 0.04, 30)
    norm = ratio_of_medians(new, base, new_ref, base_ref)
    assert norm.ratio == pytest.approx(plain.ratio / (np.median(new_ref) / np.median(base_ref)))
    assert norm.low < 1 < norm.high


def test_the_bootstrap_is_seeded_and_deterministic() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(0, 0.05, 25), rng.lognormal(0, 0.05, 25)
    assert ratio_of_medians(a, b) == ratio_of_medians(a, b)
    assert ratio_of_medians(a, b, seed=1) != ratio_of_medians(a, b)


def test_one_round_gives_no_interval() -> None:
    est = ratio_of_medians([2.0], [1.0])
    assert est.ratio == 2.0 and not est.resampled and math.isnan(est.high)


def test_bad_samples_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        ratio_of_medians([1.0], [1.0], [1.0])
    with pytest.raises(ValueError):
        ratio_of_medians([], [1.0])
    with pytest.raises(ValueError):
        ratio_of_medians([1.0, -1.0], [1.0, 1.0])


@pytest.mark.parametrize(("estimate", "expected"), [
    (Estimate(1.30, 1.20, 1.40), regress.REGRESSION),
    (Estimate(1.30, 0.95, 1.70), regress.NOT_SIGNIFICANT),
    (Estimate(1.10, 1.05, 1.15), regress.OK),  # significant, but within the threshold
    (Estimate(0.70, 0.65, 0.75), regress.IMPROVEMENT),
    (Estimate(0.99, 0.95, 1.03), regress.OK),
    (Estimate(1.30), regress.REGRESSION),  # medians only
    (Estimate(1.10), regress.OK),
])
def test_verdicts(estimate: Estimate, expected: str) -> None:
    assert verdict(estimate, 0.15) == expected


# --- gdbench check ---------------------------------------------------------------------

WORKLOADS = ("crops", "small")


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    return write_run(tmp_path / "baseline.json", workloads=WORKLOADS, seed=1)


def _verdicts(base: Path, new: Path) -> dict[tuple[str, str], str]:
    gate = regress.compare_runs(load_run(base), load_run(new), 0.15)
    return {(r.workload, r.backend): r.verdict for r in gate.itertuples()}


def _gate(base: Path, new: Path) -> pd.DataFrame:
    return regress.compare_runs(load_run(base), load_run(new), 0.15)


@pytest.mark.parametrize("seed", [1, 2])  # the very same rounds, or another draw
def test_identical_distributions_pass(tmp_path: Path, baseline: Path, capsys,
                                      seed: int) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=seed)
    code, out, err = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert code == 0, out
    assert "PASS" in out and "regression |" not in out
    assert err == ""
    assert set(_verdicts(baseline, new).values()) <= {regress.OK, regress.REFERENCE}
    gate = _gate(baseline, new)
    assert (gate.loc[gate["kind"] == "training", "method"] == regress.PAIRED).all()


def test_a_25_percent_slowdown_of_one_backend_fails(tmp_path: Path, baseline: Path,
                                                    capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    factors={"torch-cpu": 1.25})
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert code == 1
    assert "FAIL: 2 regressions" in out
    bad = {k for k, v in _verdicts(baseline, new).items() if v == regress.REGRESSION}
    assert bad == {("crops", "torch-cpu"), ("small", "torch-cpu")}


def test_a_25_percent_slowdown_of_numpy_alone_fails(tmp_path: Path, baseline: Path,
                                                    capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    factors={"numpy": 1.25})
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert code == 1
    bad = {k for k, v in _verdicts(baseline, new).items() if v == regress.REGRESSION}
    assert bad == {("crops", "numpy"), ("small", "numpy")}


@pytest.mark.parametrize("slow_share", [0.0, 0.3])  # a calm machine, or one that drifts
def test_a_machine_25_percent_slower_everywhere_passes(tmp_path: Path, capsys,
                                                       slow_share: float) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1,
                     slow_share=slow_share)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, roofline_factor=1.25,
                    factors=dict.fromkeys(BACKENDS, 1.25), slow_share=slow_share)
    code, out, _ = run_cli(capsys, "check", "--baseline", str(base), str(new))
    assert code == 0, out
    gate = _gate(base, new)
    train = gate[gate["kind"] == "training"]
    if not slow_share:
        roof = gate[gate["backend"] == "roofline"]
        assert (roof["raw_ratio"] > 1.15).all()  # the raw times did move
        assert (train["raw_ratio"] > 1.15).all()
    assert (train["ratio"].sub(1).abs() < 0.1).all()


def test_different_drift_in_the_two_runs_passes(tmp_path: Path, capsys) -> None:
    """The baseline ran on a calm machine, the new run through long 1.6x slow episodes:
    each round's reference drifted with it, so the paired gate passes. The unpaired
    roofline normalisation (the roofline benchmark timed seconds apart) would fail."""
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, slow_share=0.0)
    episodes = [1.0] * 30 + [1.6] * 30  # 30 rounds fast, 30 slow: the roofline ran fast
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, drift=episodes)
    code, out, _ = run_cli(capsys, "check", "--baseline", str(base), str(new))
    assert code == 0, out
    gate = _gate(base, new)
    train = gate[gate["kind"] == "training"]
    assert (train["verdict"] == regress.OK).all()
    assert (train["raw_ratio"] > 1.15).any()  # the raw times did move
    # Without the per-round references, the same rounds raise false alarms.
    unpaired = regress.compare_runs(load_run(base).assign(norm_data=None),
                                    load_run(new).assign(norm_data=None), 0.15)
    train = unpaired[unpaired["kind"] == "training"]
    assert (train["method"] == regress.UNPAIRED).all()
    assert (train["verdict"] == regress.REGRESSION).any()


@pytest.mark.parametrize("drift_seed", [3, 4, 5])
def test_random_slow_episodes_in_one_run_pass(tmp_path: Path, drift_seed: int) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, slow_share=0.1)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, drift_seed=drift_seed,
                    slow_share=0.6, episode_rounds=30)
    assert set(_verdicts(base, new).values()) <= {regress.OK, regress.REFERENCE}


def test_a_regression_that_the_confirmation_run_reproduces_fails(
    tmp_path: Path, baseline: Path, capsys
) -> None:
    first = write_run(tmp_path / "first.json", workloads=WORKLOADS, seed=2,
                      factors={"torch-cpu": 1.25})
    second = write_run(tmp_path / "second.json", workloads=WORKLOADS, seed=3,
                       factors={"torch-cpu": 1.25})
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(first),
                           "--confirm", str(second))
    assert code == 1
    assert "FAIL: 2 regressions" in out and "Confirmation run" in out


def test_a_regression_the_confirmation_run_does_not_reproduce_passes(
    tmp_path: Path, baseline: Path, capsys
) -> None:
    # one run slowed torch-cpu (a noise burst, say); the confirmation run is clean
    first = write_run(tmp_path / "first.json", workloads=WORKLOADS, seed=2,
                      factors={"torch-cpu": 1.25})
    second = write_run(tmp_path / "second.json", workloads=WORKLOADS, seed=3)
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(first),
                           "--confirm", str(second))
    assert code == 0, out
    assert "PASS: 0 regressions" in out
    assert "2 not reproduced by the confirmation run" in out
    assert out.count("~ not reproduced") == 2


def test_a_speed_up_is_reported_as_an_improvement(tmp_path: Path, baseline: Path,
                                                  capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    factors={"jax": 0.75})
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert code == 0
    assert "2 improved" in out and "✅ improvement" in out


def test_missing_benchmarks_are_reported_not_failed(tmp_path: Path, baseline: Path,
                                                    capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    backends=("numpy", "torch-cpu", "jax", "torch-manual"))
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert code == 0, out
    verdicts = _verdicts(baseline, new)
    assert verdicts[("crops", "jax-scan")] == regress.MISSING_NEW
    assert verdicts[("crops", "torch-manual")] == regress.MISSING_BASE
    assert "missing in new run" in out and "4 missing from one run" in out


def test_without_saved_rounds_the_paired_rounds_still_decide(tmp_path: Path) -> None:
    # The suite writes norm_data itself, with or without --benchmark-save-data.
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, save_data=False)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, save_data=False,
                    factors={"jax": 1.25})
    gate = _gate(base, new)
    train = gate[gate["kind"] == "training"]
    assert (train["method"] == regress.PAIRED).all() and train["low"].notna().all()
    assert {r.workload for r in train.itertuples() if r.verdict == regress.REGRESSION} == \
        set(WORKLOADS)
    assert (train["note"] == "").all()


@pytest.mark.parametrize("old_side", ["baseline", "new run", "both"])
def test_without_paired_rounds_it_falls_back_on_the_unpaired_roofline(
        tmp_path: Path, capsys, old_side: str) -> None:
    # Runs from before paired timing, on a calm machine: the roofline normalisation works.
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, slow_share=0.0,
                     paired=old_side == "new run")
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, slow_share=0.0,
                    paired=old_side == "baseline", factors={"numpy": 1.25})
    code, out, _ = run_cli(capsys, "check", "--baseline", str(base), str(new))
    assert code == 1
    assert "unpaired roofline" in out and "lacked per-round references" in out
    gate = _gate(base, new)
    train = gate[gate["kind"] == "training"]
    assert (train["method"] == regress.UNPAIRED).all() and train["low"].notna().all()
    lacking = "baseline or new run" if old_side == "both" else old_side
    assert (train["note"] == f"unpaired roofline (no per-round reference in the "
                             f"{lacking})").all()
    bad = {k for k, v in _verdicts(base, new).items() if v == regress.REGRESSION}
    assert bad == {("crops", "numpy"), ("small", "numpy")}
    by_key = train.set_index(["workload", "backend"])
    medians = load_run(new).set_index(["workload", "backend"])["median_s"]
    assert by_key.loc[("crops", "numpy"), "new_norm"] == pytest.approx(
        medians[("crops", "numpy")] / medians[("crops", "roofline")])


def test_without_rounds_the_medians_decide_and_it_says_so(tmp_path: Path, capsys) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, save_data=False,
                     paired=False, slow_share=0.0)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, save_data=False,
                    paired=False, slow_share=0.0, factors={"jax": 1.25})
    code, out, _ = run_cli(capsys, "check", "--baseline", str(base), str(new))
    assert code == 1
    assert "medians only, no significance test" in out
    gate = _gate(base, new)
    train = gate[gate["kind"] == "training"]
    assert train["low"].isna().all()
    assert {r.backend for r in train.itertuples() if r.verdict == regress.REGRESSION} == \
        {"jax"}


def test_report_writes_the_markdown(tmp_path: Path, baseline: Path, capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    factors={"torch-cpu": 1.25})
    report = tmp_path / "out" / "report.md"
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(new),
                           "--report", str(report), "--format", "table")
    assert code == 1
    text = report.read_text(encoding="utf-8")
    assert text.startswith("### gdbench check: ❌ FAIL")
    assert "| workload | backend |" in text and "| crops | torch-cpu |" in text
    assert "|" not in out.splitlines()[0]  # stdout was the text table
    assert [p.name for p in report.parent.iterdir()] == ["report.md"]


def test_other_machine_warns_or_with_strict_machine_fails(tmp_path: Path, baseline: Path,
                                                          capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    info=machine_info(cpu="Another CPU", cores=8))
    code, out, err = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert code == 0
    assert len(err.strip().splitlines()) == 1
    assert "another machine" in err and "Another CPU" in err
    assert "another machine" in out  # in the report too
    code, out, err = run_cli(capsys, "check", "--baseline", str(baseline), str(new),
                             "--strict-machine")
    assert code == 2 and out == ""
    assert err.startswith("gdbench check: error: ") and len(err.strip().splitlines()) == 1
    assert "--strict-machine" in err


@pytest.mark.parametrize("what", ["missing", "empty", "truncated", "not JSON", "not a run",
                                  "no benchmarks"])
@pytest.mark.parametrize("side", ["run", "baseline"])
def test_bad_files_exit_2_with_one_line(tmp_path: Path, baseline: Path, capsys, what: str,
                                        side: str) -> None:
    bad = bad_run_files(tmp_path)[what]
    args = [str(baseline), str(bad)] if side == "run" else [str(bad), str(baseline)]
    code, out, err = run_cli(capsys, "check", "--baseline", *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdbench check: error: ")
    assert str(bad) in lines[0]


@pytest.mark.parametrize("threshold", ["15", "fifteen", "-5%", "0%"])
def test_malformed_threshold_exits_2_with_one_line(baseline: Path, capsys,
                                                   threshold: str) -> None:
    code, out, err = run_cli(capsys, "check", "--baseline", str(baseline), str(baseline),
                             "--threshold", threshold)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--threshold" in lines[0] and "Traceback" not in err


def test_a_baseline_with_nothing_in_common_is_an_error(tmp_path: Path, baseline: Path,
                                                       capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=("medium",), seed=2)
    code, _, err = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert code == 2 and "no training benchmark in common" in err


@pytest.mark.parametrize("command", ["check", "compare", "plot"])
def test_help_describes_the_command(capsys, command: str) -> None:
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and "usage: gdbench" in out
    option = {"check": "--strict-machine", "compare": "--format", "plot": "--workload"}[command]
    assert option in out
