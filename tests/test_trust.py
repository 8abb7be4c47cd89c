"""gdbench.judge.trust: each cell's interval and the reasons to doubt it, on rounds we
construct (nothing is timed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _benchjson import make_run

from gdbench.judge import trust
from gdbench.judge.stats import ratio_of_medians
from gdbench.records.results import load_run


@pytest.mark.parametrize("n", [2, 5, 6, 51, 400])
def test_the_fast_bootstrap_gives_the_medians_of_the_same_resamples(n: int) -> None:
    x = np.random.default_rng(n).lognormal(size=n)
    idx = np.random.default_rng(7).integers(0, n, size=(300, n), dtype=np.int32)
    expected = np.median(np.sort(x)[idx], axis=1)  # the same draws, the plain way
    np.testing.assert_allclose(trust.bootstrap_medians(x, seed=7, resamples=300), expected)


def test_the_interval_of_a_median_is_the_gates_and_is_the_same_every_time() -> None:
    x = np.random.default_rng(3).lognormal(0.0, 0.2, size=101)
    est = trust.median_interval(x, seed=11)
    assert est == trust.median_interval(x, seed=11)  # a fixed seed: the same table twice
    assert est.value == pytest.approx(float(np.median(x)))
    assert est.low < est.value < est.high
    gate = ratio_of_medians(x, [1.0, 1.0])  # the gate's bootstrap of one median
    assert est.low == pytest.approx(gate.low, rel=0.02)
    assert est.high == pytest.approx(gate.high, rel=0.02)
    assert est.spread == pytest.approx(max(est.high / est.value - 1, 1 - est.low / est.value))


def test_a_constant_sample_has_no_spread_and_one_round_no_interval() -> None:
    assert trust.median_interval([2.0] * 9, seed=0).spread == 0.0
    one = trust.median_interval([2.0], seed=0)
    assert one.value == 2.0 and math.isnan(one.low) and math.isnan(one.spread)


def test_each_benchmark_has_its_own_fixed_seed() -> None:
    assert trust.seed_for("bench_training[crops-numpy]") == trust.seed_for(
        "bench_training[crops-numpy]")
    assert trust.seed_for("bench_training[crops-numpy]") != trust.seed_for(
        "bench_training[crops-jax]")


def _calm_run(tmp_path: Path, change: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """A calm run (no drift episodes, 1% jitter, 40 rounds) of crops, with the extra_info
    or stats.data of some training benchmarks replaced: {backend: {key: value}}."""
    doc = make_run(workloads=("crops",), backends=("numpy", "jax", "torch-cpu"), rounds=40,
                   sigma=0.01, slow_share=0.0, seed=4)
    for bench in doc["benchmarks"]:
        for key, value in (change or {}).get(bench["extra_info"]["backend"], {}).items():
            if key == "data":
                bench["stats"]["data"] = value
                bench["stats"]["median"] = float(np.median(value))
            else:
                bench["extra_info"][key] = value
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    return load_run(path)


def test_cells_of_a_calm_run_have_narrow_intervals_and_no_doubts(tmp_path: Path) -> None:
    frame = _calm_run(tmp_path)
    cells = trust.cell_intervals(frame).join(frame[["backend", "step_us", "steps", "data"]])
    for _, c in cells.iterrows():
        assert c["step_us_low"] < c["step_us"] < c["step_us_high"]
        assert c["spread"] < 0.02 and c["doubts"] == ()
        boot = trust.bootstrap_medians(c["data"], trust.seed_for(
            f"bench_training[crops-{c['backend']}]" if c["backend"] != "roofline"
            else "bench_roofline[crops]")) / c["steps"] * 1e6
        assert c["step_us_low"] == pytest.approx(np.quantile(boot, 0.025))
    by = cells.set_index("backend")
    assert math.isnan(by.loc["numpy", "speedup_low"])  # numpy over itself: 1, exactly
    jax = by.loc["jax"]
    speedup = by.loc["numpy", "step_us"] / jax["step_us"]
    assert jax["speedup_low"] < speedup < jax["speedup_high"]
    assert math.isnan(by.loc["roofline", "unsettled_share"])  # no references to judge by


def test_a_bimodal_benchmark_is_wide_and_a_spoiled_one_unsettled(tmp_path: Path) -> None:
    steps = 250
    # jax: half its rounds at 10 µs/step, half at 20: the median sits between the modes.
    bimodal = [10e-6 * steps * (1 + (i % 2)) for i in range(40)]
    # torch-cpu: 30 of its 40 references read 1.5x the workload's quiet level.
    frame = _calm_run(tmp_path)
    level = np.median(frame[frame["backend"] == "numpy"]["ref_data"].iloc[0])
    spoiled = [level * (1.5 if i < 30 else 1.0) for i in range(40)]
    frame = _calm_run(tmp_path, {"jax": {"data": bimodal}, "torch-cpu": {"ref_data": spoiled}})
    cells = trust.cell_intervals(frame).join(frame["backend"]).set_index("backend")
    assert cells.loc["jax", "spread"] > trust.WIDE
    assert cells.loc["jax", "doubts"] == (trust.WIDE_INTERVAL,)
    assert cells.loc["torch-cpu", "unsettled_share"] == pytest.approx(0.75)
    assert cells.loc["torch-cpu", "doubts"] == (trust.UNSETTLED,)
    assert cells.loc["numpy", "doubts"] == ()
    assert trust.doubted(list(cells["doubts"])) == [trust.UNSETTLED, trust.WIDE_INTERVAL]


def test_a_run_without_saved_rounds_has_figures_but_no_intervals(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(make_run(workloads=("crops",), save_data=False)))
    cells = trust.cell_intervals(load_run(path))
    assert cells["step_us_low"].isna().all() and cells["speedup_low"].isna().all()
    assert all(d == () for d in cells["doubts"])
