"""The regression gate: pure statistics, and `gdbench check` on constructed runs.

The runs' rounds are known times on a machine whose speed drifts in episodes (up to 1.8x
slower), each paired with a reference round at the same moment, with seeded lognormal
jitter (3%), so each case is deterministic and its expected verdict is unambiguous.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _benchjson import (
    BACKENDS,
    bad_run_files,
    machine_info,
    make_run,
    on_gpu,
    run_cli,
    write_run,
)

from gdbench.data.errors import InputError
from gdbench.judge import regress
from gdbench.judge.regress import parse_threshold, verdict
from gdbench.judge.stats import Estimate, ratio_of_medians
from gdbench.records.results import load_run

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


def test_gpu_benchmarks_are_judged_by_raw_times_never_by_the_numpy_reference(
        tmp_path: Path, capsys) -> None:
    # Constructed runs of a GPU machine (jax and jax-scan on the GPU, with the GPU's
    # yardsticks) on a calm host. In the new run the CPU is 25% slower (the NumPy
    # reference and the CPU backends with it), and jax's GPU loop too; jax-scan's is not.
    # Over the NumPy reference, jax would read unchanged (its slowdown hidden) and
    # jax-scan 20% faster: both wrong.
    gpu, yard = ("jax", "jax-scan"), {w: (100.0, 1000.0) for w in WORKLOADS}
    base = on_gpu(make_run(workloads=WORKLOADS, seed=1, slow_share=0.0), gpu, yard)
    new = on_gpu(make_run(workloads=WORKLOADS, seed=2, slow_share=0.0, roofline_factor=1.25,
                          factors={"numpy": 1.25, "torch-cpu": 1.25, "jax": 1.25}), gpu, yard)
    gate = _gate_docs(tmp_path, base, new).set_index(["workload", "backend"])
    for workload in WORKLOADS:
        for backend in gpu:
            row = gate.loc[(workload, backend)]
            assert row["method"] == regress.RAW and row["note"] == regress.GPU_RAW_NOTE
            assert math.isnan(row["base_norm"]) and math.isnan(row["new_norm"])
            assert row["ratio"] == pytest.approx(row["raw_ratio"])  # the raw times decide
        assert gate.loc[(workload, "jax"), "verdict"] == regress.REGRESSION
        assert gate.loc[(workload, "jax"), "ratio"] == pytest.approx(1.25, rel=0.05)
        assert gate.loc[(workload, "jax-scan"), "verdict"] == regress.OK
        for backend in ("numpy", "torch-cpu"):  # the CPU's rows: paired, the drift cancelled
            assert gate.loc[(workload, backend), "method"] == regress.PAIRED
            assert gate.loc[(workload, backend), "verdict"] == regress.OK
        yardstick = gate.loc[(workload, "roofline-cuda")]
        assert yardstick["verdict"] == regress.REFERENCE
        assert yardstick["note"] == "GPU speed: raw new/baseline time"
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "new.json").write_text(json.dumps(new))
    code, out, _ = run_cli(capsys, "check", "--baseline", str(tmp_path / "base.json"),
                           str(tmp_path / "new.json"))
    assert code == 1 and "FAIL: 2 regressions" in out
    assert "4 GPU benchmarks compared by raw time" in out


def test_a_benchmark_on_the_gpu_in_either_run_is_judged_by_raw_times(tmp_path: Path,
                                                                     capsys) -> None:
    """jax ran on the CPU in the baseline and on the GPU in the new run: the NumPy
    reference says nothing of either's speed across devices, so the raw times decide; the
    report's note counts one GPU benchmark, in the singular."""
    base = make_run(workloads=["medium"], seed=1, slow_share=0.0)
    new = on_gpu(make_run(workloads=["medium"], seed=2, slow_share=0.0), ["jax"])
    gate = _gate_docs(tmp_path, base, new).set_index("backend")
    assert gate.loc["jax", "method"] == regress.RAW
    assert gate.loc["jax", "note"] == regress.GPU_RAW_NOTE == (
        "GPU benchmark: raw times (the NumPy reference measures the CPU, not the GPU)")
    assert gate.loc["numpy", "method"] == regress.PAIRED
    code, out, _ = run_cli(capsys, "check", "--baseline", str(tmp_path / "b.json"),
                           str(tmp_path / "n.json"))
    assert "1 GPU benchmark compared by raw time (new/baseline median): the reference loop " \
        "runs NumPy on the CPU, so it cancels none of the GPU's drift; raw time includes " \
        "the GPU's speed." in out


@pytest.mark.parametrize("saved", [(False, False), (True, False), (False, True)])
def test_gpu_benchmarks_without_rounds_in_both_runs_compare_medians_only(
        tmp_path: Path, saved: tuple[bool, bool]) -> None:
    base = on_gpu(make_run(workloads=["medium"], seed=1, slow_share=0.0, save_data=saved[0]),
                  ["jax"])
    new = on_gpu(make_run(workloads=["medium"], seed=2, slow_share=0.0, save_data=saved[1],
                          factors={"jax": 1.25}), ["jax"])
    jax = _gate_docs(tmp_path, base, new).set_index("backend").loc["jax"]
    medians = [next(b["stats"]["median"] for b in doc["benchmarks"]
                    if b["extra_info"]["backend"] == "jax") for doc in (base, new)]
    assert jax["method"] == regress.RAW and jax["ratio"] == medians[1] / medians[0]
    assert math.isnan(jax["low"]) and math.isnan(jax["high"])
    assert jax["note"] == (f"{regress.GPU_RAW_NOTE}; no per-round data: medians only, "
                           "no significance test")


def test_reference_rounds_in_one_run_only_compare_every_round(tmp_path: Path) -> None:
    """A baseline saved without the reference's rounds (an older run) cannot be judged
    for settled rounds: every round of both is compared, and nothing is noted."""
    base, new = _calm(tmp_path, 1), _calm(tmp_path, 2)
    _unsettle(new, "numpy", "medium", slice(0, 10), 1.25, 1.6)
    for bench in base["benchmarks"]:
        bench["extra_info"].pop("ref_data", None)
    gate = _gate_docs(tmp_path, base, new).set_index("backend")
    assert gate.loc["numpy", "method"] == regress.PAIRED and gate.loc["numpy", "note"] == ""


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
    # The constructed drift's slow episodes are left out as unsettled, nothing else noted.
    assert train["note"].map(lambda n: n == "" or n.startswith("unsettled rounds left out")).all()
    assert train["note"].str.startswith("unsettled").any()


def _unsettle(doc: dict, backend: str, workload: str, rounds: slice, ref_factor: float,
              loop_factor: float) -> None:
    """Slow some rounds of one benchmark as a host neighbour does: the reference by
    ``ref_factor``, the loop by ``loop_factor`` (not alike, so the ratio moves)."""
    for bench in doc["benchmarks"]:
        info = bench["extra_info"]
        if info["backend"] == backend and info["workload"] == workload:
            data, ref = np.array(bench["stats"]["data"]), np.array(info["ref_data"])
            data[rounds] *= loop_factor
            ref[rounds] *= ref_factor
            bench["stats"]["data"] = data.tolist()
            bench["stats"]["median"] = float(np.median(data))
            info.update(ref_data=ref.tolist(), norm_data=(data / ref).tolist())
            return
    raise AssertionError(f"no {workload} {backend} benchmark")


def _calm(path: Path, seed: int, **kwargs) -> dict:
    return make_run(workloads=["medium"], seed=seed, slow_share=0.0, rounds=40, **kwargs)


def _gate_docs(tmp_path: Path, base: dict, new: dict) -> pd.DataFrame:
    (tmp_path / "b.json").write_text(json.dumps(base))
    (tmp_path / "n.json").write_text(json.dumps(new))
    return _gate(tmp_path / "b.json", tmp_path / "n.json")


def test_rounds_on_an_unsettled_machine_are_left_out_of_both_runs(tmp_path: Path) -> None:
    # Most of the new run's numpy rounds ran while a neighbour slowed the reference by 25%
    # and numpy's loop by 60%: compared whole, numpy regresses by ~+28%.
    base, new = _calm(tmp_path, 1), _calm(tmp_path, 2)
    _unsettle(new, "numpy", "medium", slice(0, 30), 1.25, 1.6)
    gate = _gate_docs(tmp_path, base, new).set_index("backend")
    row = gate.loc["numpy"]
    assert row["verdict"] == regress.OK, row
    assert row["ratio"] == pytest.approx(1.0, abs=0.05)
    # The 30 slowed rounds go, and at most a calm round or two of 3% jitter beside them.
    dropped = [int(x) for x in re.findall(r"(\d+) of 40", row["note"])]
    assert row["note"].startswith("unsettled rounds left out") and len(dropped) == 2
    assert dropped[0] <= 2 and 30 <= dropped[1] <= 32
    # The same episode over a real +25% slowdown of the loop: still a regression.
    slow = _calm(tmp_path, 2, factors={"numpy": 1.25})
    _unsettle(slow, "numpy", "medium", slice(0, 30), 1.25, 1.6)
    row = _gate_docs(tmp_path, base, slow).set_index("backend").loc["numpy"]
    assert row["verdict"] == regress.REGRESSION
    assert row["ratio"] == pytest.approx(1.25, rel=0.05)


def _wakes(doc: dict, slow: slice | None = None) -> None:
    """Give every training benchmark wake probe readings: 50 µs, 70 µs in ``slow``."""
    for bench in doc["benchmarks"]:
        info = bench["extra_info"]
        if "ref_data" in info:
            wake = np.full(len(info["ref_data"]), 50e-6)
            if slow is not None and info["backend"] == "numpy":
                wake[slow] = 70e-6
            info["wake_data"] = wake.tolist()


def test_rounds_with_slow_wake_ups_are_left_out_when_both_runs_read_the_probe(
        tmp_path: Path) -> None:
    # The references stay flat while the loop runs 60% slower in 30 of 40 rounds, as a
    # multi-threaded loop does when the host wakes threads slowly.
    base, new = _calm(tmp_path, 1), _calm(tmp_path, 2)
    _unsettle(new, "numpy", "medium", slice(0, 30), 1.0, 1.6)
    blind = _gate_docs(tmp_path, base, new).set_index("backend").loc["numpy"]
    assert blind["verdict"] == regress.REGRESSION  # the references cannot see it
    _wakes(base)
    _wakes(new, slice(0, 30))
    row = _gate_docs(tmp_path, base, new).set_index("backend").loc["numpy"]
    assert row["verdict"] == regress.OK, row
    assert row["ratio"] == pytest.approx(1.0, abs=0.05)
    assert "new 30 of 40" in row["note"]


def test_a_run_slower_throughout_is_compared_whole(tmp_path: Path) -> None:
    # The whole new run on a 30% slower machine (every reference slower): too few settled
    # rounds, so every round is compared and the paired ratio cancels the slowdown.
    base = _calm(tmp_path, 1)
    new = _calm(tmp_path, 2, factors={b: 1.3 for b in BACKENDS}, roofline_factor=1.3)
    gate = _gate_docs(tmp_path, base, new)
    train = gate[gate["kind"] == "training"]
    assert (train["verdict"] == regress.OK).all(), train
    assert (train["note"] == "machine unsettled throughout: all rounds compared").all()
    assert train["ratio"].between(0.95, 1.05).all()


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


# --- verdict boundaries ----------------------------------------------------------------------

@pytest.mark.parametrize(("estimate", "expected"), [
    (Estimate(1.25, 1.1, 1.4), regress.OK),  # exactly at the threshold: not beyond it
    (Estimate(1.26, 1.0, 1.4), regress.NOT_SIGNIFICANT),  # the CI touches 1
    (Estimate(1.26, 1.0000001, 1.4), regress.REGRESSION),
    (Estimate(1 / 1.25, 0.7, 0.9), regress.OK),
    (Estimate(0.79, 0.6, 1.0), regress.NOT_SIGNIFICANT),
    (Estimate(0.79, 0.6, 0.9999999), regress.IMPROVEMENT),
    (Estimate(1.25), regress.OK),  # medians only: the threshold alone decides
    (Estimate(1.26), regress.REGRESSION),
    (Estimate(1 / 1.25), regress.OK),
    (Estimate(0.79), regress.IMPROVEMENT),
])
def test_verdict_boundaries(estimate: Estimate, expected: str) -> None:
    assert verdict(estimate, 0.25) == expected


# --- the unpaired fallback, by value -----------------------------------------------------------

def _medians(path: Path) -> dict[tuple[str, str], float]:
    frame = load_run(path)
    return {(r.workload, r.backend): r.median_s for r in frame.itertuples()}


def _rounds(path: Path) -> dict[tuple[str, str], list[float]]:
    frame = load_run(path)
    return {(r.workload, r.backend): r.data for r in frame.itertuples()}


def test_the_unpaired_fallback_divides_each_run_by_its_own_roofline(tmp_path: Path) -> None:
    # The whole machine (roofline included) is 25% slower in the new run: the normalised
    # change is ~0. Dividing each run by the other run's roofline would make it +56%.
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, slow_share=0.0,
                     paired=False)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, slow_share=0.0,
                    paired=False, roofline_factor=1.25, factors=dict.fromkeys(BACKENDS, 1.25))
    gate = _gate(base, new).set_index(["workload", "backend"])
    bm, nm = _medians(base), _medians(new)
    br, nr = _rounds(base), _rounds(new)
    for workload in WORKLOADS:
        for backend in BACKENDS:
            row = gate.loc[(workload, backend)]
            roof = (workload, "roofline")
            key = (workload, backend)
            assert row["method"] == regress.UNPAIRED
            assert row["base_norm"] == pytest.approx(bm[key] / bm[roof], rel=1e-12)
            assert row["new_norm"] == pytest.approx(nm[key] / nm[roof], rel=1e-12)
            assert row["ratio"] == pytest.approx(row["new_norm"] / row["base_norm"], rel=1e-12)
            expected = ratio_of_medians(nr[key], br[key], nr[roof], br[roof])
            assert (row["ratio"], row["low"], row["high"]) == pytest.approx(
                (expected.ratio, expected.low, expected.high), rel=1e-12)
            assert row["raw_ratio"] == pytest.approx(nm[key] / bm[key], rel=1e-12)
            assert abs(row["ratio"] - 1) < 0.1 and row["verdict"] == regress.OK


def test_without_rounds_the_unpaired_medians_still_divide_by_their_own_roofline(
        tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, slow_share=0.0,
                     paired=False, save_data=False)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, slow_share=0.0,
                    paired=False, save_data=False, roofline_factor=1.25,
                    factors=dict.fromkeys(BACKENDS, 1.25))
    gate = _gate(base, new).set_index(["workload", "backend"])
    bm, nm = _medians(base), _medians(new)
    row = gate.loc[("small", "jax")]
    assert row["ratio"] == pytest.approx(
        (nm[("small", "jax")] / nm[("small", "roofline")])
        / (bm[("small", "jax")] / bm[("small", "roofline")]), rel=1e-12)
    assert math.isnan(row["low"]) and row["verdict"] == regress.OK
    assert "medians only" in row["note"]


def test_without_any_roofline_the_raw_times_are_compared(tmp_path: Path) -> None:
    frames = []
    for name, seed, factor in (("base", 1, 1.0), ("new", 2, 1.25)):
        path = write_run(tmp_path / f"{name}.json", workloads=WORKLOADS, seed=seed,
                         slow_share=0.0, paired=False, factors={"numpy": factor})
        frame = load_run(path)
        frames.append(frame[frame["kind"] != "roofline"].reset_index(drop=True))
    gate = regress.compare_runs(*frames, 0.15).set_index(["workload", "backend"])
    row = gate.loc[("crops", "numpy")]
    base_rounds = frames[0].set_index(["workload", "backend"]).loc[("crops", "numpy"), "data"]
    new_rounds = frames[1].set_index(["workload", "backend"]).loc[("crops", "numpy"), "data"]
    expected = ratio_of_medians(new_rounds, base_rounds)
    assert row["method"] == regress.RAW and row["note"] == "no roofline: raw times"
    assert (row["ratio"], row["low"], row["high"]) == pytest.approx(
        (expected.ratio, expected.low, expected.high), rel=1e-12)
    assert row["verdict"] == regress.REGRESSION
    assert math.isnan(row["base_norm"]) and math.isnan(row["new_norm"])


def _two_dtypes(path: Path, seed: int, roofline64: float, factor64: float = 1.0) -> Path:
    """A run with float32 and float64 benchmarks, unpaired; float64's roofline loop (and
    every float64 backend) ``roofline64`` times slower than float32's."""
    runs = [make_run(workloads=WORKLOADS, seed=seed, slow_share=0.0, paired=False),
            make_run(workloads=WORKLOADS, seed=seed + 100, slow_share=0.0, paired=False,
                     dtype="float64", roofline_factor=roofline64,
                     factors=dict.fromkeys(BACKENDS, roofline64 * factor64))]
    doc = {**runs[0], "benchmarks": runs[0]["benchmarks"] + runs[1]["benchmarks"]}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_the_fallback_uses_the_roofline_of_the_same_dtype(tmp_path: Path) -> None:
    base = _two_dtypes(tmp_path / "base.json", 1, roofline64=3.0)
    new = _two_dtypes(tmp_path / "new.json", 2, roofline64=3.0, factor64=1.25)
    gate = _gate(base, new)
    frame = load_run(new)
    for dtype, slower in (("float32", False), ("float64", True)):
        rows = gate[gate["name"].str.endswith("-float64]") == (dtype == "float64")]
        train = rows[rows["kind"] == "training"].set_index(["workload", "backend"])
        same = frame[frame["dtype"] == dtype].set_index(["workload", "backend"])["median_s"]
        for workload in WORKLOADS:
            row = train.loc[(workload, "numpy")]
            assert row["new_norm"] == pytest.approx(
                same[(workload, "numpy")] / same[(workload, "roofline")], rel=1e-12)
            assert (row["verdict"] == regress.REGRESSION) is slower


def test_a_roofline_of_another_dtype_is_never_used(tmp_path: Path) -> None:
    # float64 benchmarks whose run has only a float32 roofline: the raw times decide.
    def run(path: Path, seed: int) -> pd.DataFrame:
        frame = load_run(_two_dtypes(path, seed, roofline64=3.0))
        return frame[~((frame["kind"] == "roofline") & (frame["dtype"] == "float64"))]

    gate = regress.compare_runs(run(tmp_path / "b.json", 1), run(tmp_path / "n.json", 2), 0.15)
    by_dtype = gate[gate["kind"] == "training"].groupby(
        gate["name"].str.endswith("-float64]"))["method"].agg(set)
    assert by_dtype[False] == {regress.UNPAIRED} and by_dtype[True] == {regress.RAW}
    # A roofline that recorded no dtype stands for every dtype.
    base, new = (run(tmp_path / f"{n}.json", s).assign(dtype=lambda f: f["dtype"].where(
        f["kind"] != "roofline", None)) for n, s in (("b2", 1), ("n2", 2)))
    gate = regress.compare_runs(base, new, 0.15)
    assert set(gate.loc[gate["kind"] == "training", "method"]) == {regress.UNPAIRED}


# --- a backend that disagrees with numpy ----------------------------------------------------

def test_a_disagreeing_backend_fails_even_when_faster(tmp_path: Path, baseline: Path,
                                                      capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    factors={"jax": 0.5}, disagree=("jax",))
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert code == 1
    assert "FAIL: 0 regressions, 2 disagreeing with numpy, 0 improved, 6 unchanged" in out
    assert out.count("❌ disagrees with numpy") == 2
    assert "weights off by up to 0.03" in out
    gate = _gate(baseline, new).set_index(["workload", "backend"])
    for workload in WORKLOADS:
        row = gate.loc[(workload, "jax")]
        assert row["verdict"] == regress.DISAGREES
        assert row["ratio"] < 0.6  # twice as fast, and still a failure
        assert row["note"].startswith("disagrees with numpy (weights off by up to 0.03): a "
                                      "wrong result fails whatever its speed")
        assert gate.loc[(workload, "numpy"), "verdict"] == regress.OK


def test_a_new_benchmark_that_disagrees_fails(tmp_path: Path, baseline: Path) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    backends=(*BACKENDS, "torch-manual"), disagree=("torch-manual",))
    gate = _gate(baseline, new)
    verdicts = {(r.workload, r.backend): r.verdict for r in gate.itertuples()}
    assert verdicts[("crops", "torch-manual")] == regress.DISAGREES
    line, code = regress.summary(gate, 0.15)
    assert code == 1 and line.startswith("FAIL: 0 regressions, 2 disagreeing with numpy")


def test_a_disagreement_in_the_baseline_alone_does_not_fail(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, disagree=("jax",))
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2)
    assert regress.summary(_gate(base, new), 0.15)[1] == 0


def test_a_disagreement_missing_its_distance_still_says_why(tmp_path: Path,
                                                            baseline: Path) -> None:
    frame = load_run(write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                               disagree=("jax",)))
    frame["max_abs_diff_vs_numpy"] = math.nan
    gate = regress.compare_runs(load_run(baseline), frame, 0.15)
    notes = set(gate.loc[gate["backend"] == "jax", "note"])
    assert {n.split("; ")[0] for n in notes} == {
        "disagrees with numpy: a wrong result fails whatever its speed"}


# --- --confirm --------------------------------------------------------------------------------

def _gate_of(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"name": n, "verdict": v, "ratio": r, "note": ""} for n, v, r in rows])


def test_confirm_keeps_only_the_regressions_the_second_run_shows() -> None:
    first = _gate_of([("a", regress.REGRESSION, 1.3), ("b", regress.REGRESSION, 1.3),
                      ("c", regress.REGRESSION, 1.3), ("d", regress.IMPROVEMENT, 0.7),
                      ("e", regress.OK, 1.0), ("f", regress.NOT_SIGNIFICANT, 1.3)])
    second = _gate_of([("a", regress.REGRESSION, 1.28), ("b", regress.NOT_SIGNIFICANT, 1.3),
                       ("d", regress.REGRESSION, 1.3), ("e", regress.REGRESSION, 1.3),
                       ("f", regress.REGRESSION, 1.3)])
    out = regress.confirm(first, second)
    assert list(out["verdict"]) == [regress.REGRESSION, regress.UNCONFIRMED,
                                    regress.UNCONFIRMED, regress.IMPROVEMENT, regress.OK,
                                    regress.NOT_SIGNIFICANT]
    assert list(out["note"]) == ["", "confirmation run: +30.0% (not significant)",
                                 "confirmation run:  (missing in new run)", "", "", ""]
    assert list(first["verdict"])[:3] == [regress.REGRESSION] * 3  # the input is untouched


def test_confirm_keeps_a_disagreement_from_either_run() -> None:
    first = _gate_of([("a", regress.DISAGREES, 0.5), ("b", regress.REGRESSION, 1.3),
                      ("c", regress.OK, 1.0)])
    first.loc[1, "note"] = "earlier"
    second = _gate_of([("a", regress.OK, 1.0), ("b", regress.DISAGREES, 1.3),
                       ("c", regress.DISAGREES, 1.0)])
    out = regress.confirm(first, second)
    assert list(out["verdict"]) == [regress.DISAGREES] * 3
    assert list(out["note"]) == ["", "earlier; the confirmation run disagrees with numpy",
                                 "the confirmation run disagrees with numpy"]


def test_an_unreproduced_regression_passes_end_to_end(tmp_path: Path, baseline: Path,
                                                      capsys) -> None:
    first = write_run(tmp_path / "first.json", workloads=WORKLOADS, seed=2,
                      factors={"numpy": 1.3})
    second = write_run(tmp_path / "second.json", workloads=WORKLOADS, seed=3,
                       factors={"torch-cpu": 1.3})  # slow elsewhere: not the same benchmark
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(first),
                           "--confirm", str(second))
    assert code == 0, out
    assert out.count("~ not reproduced") == 2 and "confirmation run: " in out
    assert "❌ regression" not in out


# --- the report ---------------------------------------------------------------------------

def test_the_report_names_each_runs_commit_and_whether_it_was_dirty(tmp_path: Path,
                                                                    capsys) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1,
                     commit={"id": "1c8c13c411dfcdc2505a303b25cbaa4f06c8f023", "dirty": True})
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    commit={"id": "a46110d0a1b2c3d4e5f60718293a4b5c6d7e8f90", "dirty": False})
    code, out, _ = run_cli(capsys, "check", "--baseline", str(base), str(new))
    assert code == 0
    lines = out.splitlines()
    base_line = next(x for x in lines if x.startswith("baseline: "))
    new_line = next(x for x in lines if x.startswith("new run: "))
    assert "commit `1c8c13c411df` (dirty: uncommitted changes)" in base_line
    assert "commit `a46110d0a1b2` (clean)" in new_line
    # Runs saved without commit_info, or without its dirty flag, say so.
    bare = make_run(workloads=WORKLOADS, seed=1)
    del bare["commit_info"]
    (tmp_path / "bare.json").write_text(json.dumps(bare), encoding="utf-8")
    text, _ = regress.build_report(load_run(tmp_path / "bare.json"), load_run(new), 0.15)
    assert "2026-01-02 03:04 UTC), commit unknown" in text
    no_flag = write_run(tmp_path / "noflag.json", workloads=WORKLOADS, seed=1,
                        commit={"id": "abcdef0123456789"})
    text, _ = regress.build_report(load_run(no_flag), load_run(new), 0.15, fmt="table")
    assert "commit `abcdef012345`\n" in text


def test_summary_counts_every_verdict() -> None:
    gate = pd.DataFrame({"verdict": [
        regress.REGRESSION, regress.IMPROVEMENT, regress.IMPROVEMENT, regress.OK, regress.OK,
        regress.OK, regress.UNCONFIRMED, regress.NOT_SIGNIFICANT, regress.NOT_SIGNIFICANT,
        regress.MISSING_NEW, regress.MISSING_BASE, regress.REFERENCE]})
    line, code = regress.summary(gate, 0.15)
    assert (line, code) == ("FAIL: 1 regression, 2 improved, 3 unchanged, 1 not reproduced "
                            "by the confirmation run, 2 beyond the threshold but not "
                            "significant, 2 missing from one run (threshold +15%)", 1)
    calm = pd.DataFrame({"verdict": [regress.OK, regress.REFERENCE]})
    assert regress.summary(calm, 0.2) == (
        "PASS: 0 regressions, 0 improved, 1 unchanged (threshold +20%)", 0)
    wrong = pd.DataFrame({"verdict": [regress.DISAGREES, regress.OK]})
    assert regress.summary(wrong, 0.15) == (
        "FAIL: 0 regressions, 1 disagreeing with numpy, 0 improved, 1 unchanged "
        "(threshold +15%)", 1)


def test_report_table_cells(tmp_path: Path, baseline: Path) -> None:
    gate = pd.DataFrame([
        {"workload": "crops", "backend": "numpy", "kind": "training", "base_norm": 4.0,
         "new_norm": 5.0, "ratio": 1.25, "low": 1.125, "high": 1.375, "raw_ratio": 1.5,
         "verdict": regress.REGRESSION, "note": "n"},
        {"workload": "crops", "backend": "roofline", "kind": "roofline", "base_norm": math.nan,
         "new_norm": math.nan, "ratio": math.nan, "low": math.nan, "high": math.nan,
         "raw_ratio": 1.2, "verdict": regress.REFERENCE, "note": ""},
    ])
    table = regress.report_table(gate)
    assert table.to_dict("records") == [
        {"workload": "crops", "backend": "numpy", "baseline ×ref": "4", "new ×ref": "5",
         "change": "+25.0%", "95% CI": "[+12.5%, +37.5%]", "raw time change": "+50.0%",
         "verdict": "❌ regression", "note": "n"},
        {"workload": "crops", "backend": "roofline", "baseline ×ref": "", "new ×ref": "",
         "change": "+20.0%", "95% CI": "", "raw time change": "+20.0%",
         "verdict": "reference", "note": ""},
    ]


def test_rows_are_ordered_by_workload_then_backend(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", workloads=("small", "crops"), seed=1,
                     backends=("jax-scan", "numpy", "torch-cpu"))
    new = write_run(tmp_path / "new.json", workloads=("small", "crops"), seed=2,
                    backends=("jax", "numpy", "torch-cpu"))
    gate = _gate(base, new)
    assert list(zip(gate["workload"], gate["backend"], strict=True)) == [
        (w, b) for w in ("crops", "small")
        for b in ("numpy", "torch-cpu", "jax", "jax-scan", "roofline")]


def test_one_round_is_compared_without_a_significance_test(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, rounds=1)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, rounds=1,
                    factors={"jax": 1.5})
    gate = _gate(base, new)
    train = gate[gate["kind"] == "training"]
    assert (train["note"] == "one round: no significance test").all()
    assert train["low"].isna().all() and (train["method"] == regress.PAIRED).all()
    bad = {(r.workload, r.backend) for r in train.itertuples() if r.verdict == regress.REGRESSION}
    assert bad == {("crops", "jax"), ("small", "jax")}
    row = train.set_index(["workload", "backend"]).loc[("crops", "jax")]
    frames = [load_run(p).set_index(["workload", "backend"]) for p in (base, new)]
    assert row["base_norm"] == pytest.approx(frames[0].loc[("crops", "jax"), "norm_data"][0])
    assert row["new_norm"] == pytest.approx(frames[1].loc[("crops", "jax"), "norm_data"][0])


def test_a_threshold_given_as_text_in_a_namespace_is_parsed(tmp_path: Path, baseline: Path,
                                                            capsys) -> None:
    import argparse

    from gdbench.commands import check

    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    factors={"numpy": 1.25})
    report = tmp_path / "r.md"
    args = argparse.Namespace(run=str(new), baseline=str(baseline), threshold="30%",
                              report=str(report), strict_machine=False, format="md")
    assert check.main(args) == 0  # +25% is within a 30% threshold
    out = capsys.readouterr().out
    assert "(threshold +30%)" in out and report.read_text(encoding="utf-8") == out


@pytest.mark.parametrize(("text", "message"), [
    ("abc", "threshold must look like 15% or 0.15, got 'abc'"),
    ("-5%", "threshold must be positive, like 15% or 0.15, got '-5%'"),
    ("nan", "threshold must be positive, like 15% or 0.15, got 'nan'"),
    (" 15 ", "threshold ' 15 ' is ambiguous: write 15% for a percentage, or a fraction below 1 "
             "such as 0.15"),
])
def test_threshold_errors_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_threshold(text)
    assert str(info.value) == message


def test_the_reports_notes_word_for_word(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", workloads=("crops",), backends=("numpy",),
                     seed=1, paired=False, slow_share=0.0)
    new = write_run(tmp_path / "new.json", workloads=("crops",), backends=("numpy",), seed=2,
                    slow_share=0.0)
    again = write_run(tmp_path / "again.json", workloads=("crops",), backends=("numpy",),
                      seed=3, slow_share=0.0)
    frames = [load_run(p) for p in (base, new, again)]
    fp = frames[0]["fingerprint"].iloc[0]
    text, code = regress.build_report(frames[0], frames[1], 0.2, "table",
                                      confirmation=frames[2])
    assert code == 0
    title, rule, *lines = text.splitlines()
    assert title == "gdbench check: PASS: 0 regressions, 0 improved, 1 unchanged (threshold +20%)"
    assert rule == "=" * len(title)
    assert lines[:5] == [
        f"baseline: `{base}` on Test CPU 9000, 2 cores (fingerprint {fp}, 2026-01-02 03:04 "
        "UTC), commit `000000000000` (clean)",
        f"new run: `{new}` on Test CPU 9000, 2 cores (fingerprint {fp}, 2026-01-02 03:04 UTC), "
        "commit `000000000000` (clean)",
        "Metric: each round's time ÷ its reference round (the workload's reference loop, timed "
        "just before it, so the machine's drift cancels); ×ref is the median of those ratios, "
        "change = new/baseline of it, over the rounds taken while the machine was settled "
        "(reference within 10% of its quiet level, in both runs alike; the note counts the "
        "rounds left out). Fails when the change exceeds +20% and the whole 95% "
        "bootstrap CI (2,000 resamples of the rounds) is above +0%, and whatever the speed "
        "when the backend's weights disagree with numpy. Raw time change includes the "
        "machine's speed; roofline rows show it.",
        f"Confirmation run: `{again}`; a regression counts only when it shows there too.",
        "1 benchmark lacked per-round references (a run from before paired timing?) and fell "
        "back on the unpaired roofline: median ÷ the roofline benchmark's median, which the "
        "machine's drift can move by tens of percent.",
    ]
    md, _ = regress.build_report(frames[0], frames[1], 0.2)
    title, notes, _table = md.split("\n\n")
    assert title == ("### gdbench check: ✅ PASS: 0 regressions, 0 improved, 1 unchanged "
                     "(threshold +20%)")
    assert all(line.endswith("  ") for line in notes.splitlines())  # markdown line breaks
    assert "Confirmation run" not in md


def test_the_unpaired_note_counts_in_the_plural(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, paired=False)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2)
    text, _ = regress.build_report(load_run(base), load_run(new), 0.15, "table")
    assert "\n8 benchmarks lacked per-round references" in text


def test_a_failing_report_is_marked_in_its_title(tmp_path: Path, baseline: Path) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, factors={"jax": 1.3})
    md, code = regress.build_report(load_run(baseline), load_run(new), 0.15)
    assert code == 1 and md.startswith("### gdbench check: ❌ FAIL: 2 regressions, ")
    table, _ = regress.build_report(load_run(baseline), load_run(new), 0.15, "table")
    assert table.startswith("gdbench check: FAIL: 2 regressions, ")


def test_the_same_machine_passes_strict_machine_quietly(tmp_path: Path, baseline: Path,
                                                        capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2)
    code, out, err = run_cli(capsys, "check", "--baseline", str(baseline), str(new),
                             "--strict-machine")
    assert code == 0 and err == "" and out.startswith("### gdbench check: ✅ PASS")


def test_the_other_machine_warning_word_for_word(tmp_path: Path, baseline: Path,
                                                 capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    info=machine_info(cpu="Another CPU", cores=8))
    fps = [load_run(p)["fingerprint"].iloc[0] for p in (baseline, new)]
    code, out, err = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert code == 0  # a warning, not a failure: only --strict-machine refuses it
    warning = (f"the baseline comes from another machine: Test CPU 9000, 2 cores (fingerprint "
               f"{fps[0]}) vs Another CPU, 8 cores (fingerprint {fps[1]}); the reference "
               "normalisation cancels most, not all, of that")
    assert err == f"gdbench check: warning: {warning}\n"
    assert out.startswith(f"> **⚠ {warning}**\n")


def _collector_off(path: Path, benchmarks: slice = slice(None)) -> Path:
    doc = json.loads(path.read_text())
    for bench in doc["benchmarks"][benchmarks]:
        bench["options"]["disable_gc"] = True
    path.write_text(json.dumps(doc))
    return path


def test_a_baseline_timed_with_the_collector_off_is_named(tmp_path: Path, baseline: Path,
                                                          capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2)
    assert regress.collector(load_run(new)) == "on"
    _, _, err = run_cli(capsys, "check", "--baseline", str(baseline), str(new))
    assert err == ""  # both on: nothing to say
    old = _collector_off(write_run(tmp_path / "old.json", workloads=WORKLOADS, seed=1))
    assert regress.collector(load_run(old)) == "off"
    code, out, err = run_cli(capsys, "check", "--baseline", str(old), str(new))
    assert code == 0
    assert err == ("gdbench check: warning: the baseline was timed with the garbage collector "
                   "off and this run with it on: loops that make Python garbage every step "
                   "(torch-tutorial) move by that alone; gdbench run times with it off\n")
    assert "garbage collector off" in out  # in the report too
    mixed = _collector_off(write_run(tmp_path / "mixed.json", workloads=WORKLOADS, seed=1),
                           slice(0, 1))
    assert regress.collector(load_run(mixed)) == "mixed"
    assert regress.other_collector(load_run(mixed), load_run(new)) is not None
    assert regress.other_collector(load_run(old), load_run(old)) is None


def test_both_warnings_are_said_each_on_its_line_and_joined_in_the_report(
        tmp_path: Path, baseline: Path, capsys) -> None:
    old = _collector_off(write_run(tmp_path / "old.json", workloads=WORKLOADS, seed=1))
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    info=machine_info(cpu="Another CPU", cores=8))
    report = tmp_path / "report.md"
    code, out, err = run_cli(capsys, "check", "--baseline", str(old), str(new), "--format",
                             "table", "--report", str(report))
    assert code == 0
    machines = regress.other_machine(load_run(old), load_run(new))
    collector = regress.other_collector(load_run(old), load_run(new))
    assert machines and collector
    both = [f"{machines}; the reference normalisation cancels most, not all, of that",
            collector]
    assert err.splitlines() == [f"gdbench check: warning: {line}" for line in both]
    # The markdown report (--report is markdown whatever --format says) leads with both.
    assert report.read_text().startswith(f"> **⚠ {'; '.join(both)}**\n")
    assert not out.startswith(">")  # what was printed is the table asked for


def test_check_needs_a_baseline(tmp_path: Path, capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2)
    code, out, err = run_cli(capsys, "check", str(new))
    assert code == 2 and out == "" and "--baseline" in err


def test_missing_rows_have_no_numbers_and_no_note(tmp_path: Path, baseline: Path) -> None:
    new = write_run(tmp_path / "new.json", workloads=("crops",), seed=2)
    gate = _gate(baseline, new)
    missing = gate[gate["verdict"] == regress.MISSING_NEW]
    assert len(missing) == 5 and (missing["note"] == "").all()
    assert missing[["ratio", "low", "high", "raw_ratio", "base_norm"]].isna().all().all()
    assert (missing["method"] == "").all() and set(missing["workload"]) == {"small"}
    roof = gate[(gate["backend"] == "roofline") & (gate["workload"] == "crops")].iloc[0]
    assert roof["verdict"] == regress.REFERENCE and roof["method"] == ""
    assert roof["note"] == "machine speed: raw new/baseline time"


def test_the_documented_vocabulary() -> None:
    """The gate's frame is read by people and scripts: its words are the module's docs'."""
    assert (regress.REGRESSION, regress.IMPROVEMENT, regress.NOT_SIGNIFICANT, regress.OK,
            regress.DISAGREES, regress.UNCONFIRMED, regress.REFERENCE, regress.MISSING_NEW,
            regress.MISSING_BASE) == (
        "regression", "improvement", "not significant", "ok", "disagrees with numpy",
        "not reproduced", "reference", "missing in new run", "not in baseline")
    assert (regress.PAIRED, regress.UNPAIRED, regress.RAW) == (
        "paired", "unpaired roofline", "raw")


def test_two_unpaired_rounds_are_enough_for_an_interval(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, rounds=2,
                     paired=False)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, rounds=2,
                    paired=False)
    train = _gate(base, new).query("kind == 'training'")
    assert (train["method"] == regress.UNPAIRED).all() and train["low"].notna().all()
    assert not train["note"].str.contains("medians only").any()


def test_every_verdict_has_its_mark_in_the_report() -> None:
    marks = {regress.REGRESSION: "❌ regression", regress.DISAGREES: "❌ disagrees with numpy",
             regress.IMPROVEMENT: "✅ improvement", regress.NOT_SIGNIFICANT: "~ not significant",
             regress.OK: "ok", regress.REFERENCE: "reference",
             regress.UNCONFIRMED: "~ not reproduced",
             regress.MISSING_NEW: "⚠ missing in new run", regress.MISSING_BASE: "new benchmark"}
    gate = pd.DataFrame([{"workload": "crops", "backend": "numpy", "kind": "training",
                          "base_norm": math.nan, "new_norm": math.nan, "ratio": math.nan,
                          "low": math.nan, "high": math.nan, "raw_ratio": math.nan,
                          "verdict": v, "note": ""} for v in marks])
    assert list(regress.report_table(gate)["verdict"]) == list(marks.values())


def test_a_roofline_missing_from_one_run_falls_back_on_raw_times(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, paired=False)
    new = load_run(write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                             paired=False))
    for frames in ((load_run(base), new[new["kind"] != "roofline"]),
                   (load_run(base).query("kind != 'roofline'"), new)):
        gate = regress.compare_runs(*frames, 0.15)
        train = gate[gate["kind"] == "training"]
        assert (train["method"] == regress.RAW).all()
        assert (train["note"] == "no roofline: raw times").all()


def test_notes_join_in_order(tmp_path: Path, baseline: Path) -> None:
    base = write_run(tmp_path / "base.json", workloads=WORKLOADS, seed=1, paired=False,
                     save_data=False)
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2, disagree=("jax",))
    gate = _gate(base, new).set_index(["workload", "backend"])
    assert gate.loc[("crops", "jax"), "note"] == (
        "disagrees with numpy (weights off by up to 0.03): a wrong result fails whatever its "
        "speed; unpaired roofline (no per-round reference in the baseline); no per-round "
        "data: medians only, no significance test")
    assert gate.loc[("crops", "numpy"), "note"] == (
        "unpaired roofline (no per-round reference in the baseline); no per-round data: "
        "medians only, no significance test")


def test_runs_of_one_benchmark_without_a_date(tmp_path: Path) -> None:
    paths = []
    for name, seed, info in (("base", 1, None), ("new", 2, machine_info(cpu="Other CPU"))):
        doc = make_run(workloads=("crops",), backends=("numpy",), seed=seed, info=info)
        doc["benchmarks"] = doc["benchmarks"][1:]  # the numpy benchmark alone
        del doc["datetime"]
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc), encoding="utf-8")
    base, new = (load_run(p) for p in paths)
    machines = regress.other_machine(base, new)
    assert machines is not None and "Test CPU 9000" in machines and "Other CPU" in machines
    assert regress.other_machine(base, base) is None
    text, code = regress.build_report(base, new, 0.15, "table")
    fp = base["fingerprint"].iloc[0]
    assert f"baseline: `{paths[0]}` on Test CPU 9000, 2 cores (fingerprint {fp}), commit " in text
    line, _ = regress.summary(regress.compare_runs(base, new, 0.15), 0.15)
    assert line == "PASS: 0 regressions, 0 improved, 1 unchanged (threshold +15%)"


def test_summary_without_unchanged_benchmarks_says_zero() -> None:
    gate = pd.DataFrame({"verdict": [regress.REGRESSION, regress.REGRESSION]})
    assert regress.summary(gate, 0.15) == (
        "FAIL: 2 regressions, 0 improved, 0 unchanged (threshold +15%)", 1)


def test_one_benchmark_runs_with_nothing_in_common_word_for_word(tmp_path: Path) -> None:
    frames, paths = [], []
    for name, backend in (("base", "numpy"), ("new", "jax")):
        doc = make_run(workloads=("crops",), backends=(backend,))
        doc["benchmarks"] = doc["benchmarks"][1:]
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc), encoding="utf-8")
        frames.append(load_run(paths[-1]))
    with pytest.raises(InputError) as info:
        regress.build_report(*frames, 0.15)
    assert str(info.value) == (f"{paths[1]} and the baseline {paths[0]} have no training "
                               "benchmark in common; is it the right baseline?")
    text, _ = regress.build_report(frames[0], frames[0], 0.15, "table",
                                   confirmation=frames[0])
    assert f"Confirmation run: `{paths[0]}`; a regression counts only" in text


def test_the_gates_columns(tmp_path: Path, baseline: Path) -> None:
    new = write_run(tmp_path / "new.json", workloads=("crops",), seed=2)  # small: missing
    gate = _gate(baseline, new)
    assert list(gate.columns) == ["name", "workload", "backend", "kind", "base_norm",
                                  "new_norm", "ratio", "low", "high", "raw_ratio", "method",
                                  "verdict", "note"]


def test_check_help_word_for_word(capsys) -> None:
    code, out, _ = run_cli(capsys, "check", "--help")
    assert code == 0
    text = " ".join(out.split())
    for fragment in [
        "RUN.json the new run (pytest-benchmark JSON)",
        "--baseline BASE.json the committed baseline run to compare with",
        "--threshold PCT the slowdown that fails the gate: '15%' or '0.15' (default: 15%)",
        "--report PATH also write the markdown report to PATH (atomically)",
        "--confirm RUN2.json a second new run: a regression fails the gate only if it shows "
        "in both runs (what CI does after a first failure)",
        "--strict-machine refuse a baseline recorded on another machine (exit 2) instead of "
        "warning",
        "--format {md,table} what to print (default: md); --report is always markdown",
    ]:
        assert fragment in text, fragment


def test_strict_machine_error_word_for_word(tmp_path: Path, baseline: Path, capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=WORKLOADS, seed=2,
                    info=machine_info(cpu="Another CPU", cores=8))
    machines = regress.other_machine(load_run(baseline), load_run(new))
    code, _, err = run_cli(capsys, "check", "--baseline", str(baseline), str(new),
                           "--strict-machine", "--format", "md")
    assert code == 2
    assert err == f"gdbench check: error: {machines}; --strict-machine forbids comparing them\n"
    code, out, _ = run_cli(capsys, "check", "--baseline", str(baseline), str(baseline),
                           "--format", "md")
    assert code == 0 and out.startswith("### gdbench check: ✅ PASS")
