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


def test_an_interval_needs_bounds_and_a_figure_to_have_a_spread() -> None:
    bare = trust.Interval(5.0)
    assert math.isnan(bare.low) and math.isnan(bare.high) and math.isnan(bare.spread)
    assert math.isnan(trust.Interval(0.0, -1.0, 1.0).spread)  # nothing to be relative to
    assert trust.Interval(10.0, 9.0, 12.0).spread == pytest.approx(0.2)  # the farther side
    assert trust.Interval(10.0, 7.0, 11.0).spread == pytest.approx(0.3)


def test_two_rounds_are_enough_for_an_interval() -> None:
    # The medians of resamples of {1, 3} are 1, 2 or 3; the 95% interval spans them.
    est = trust.median_interval([1.0, 3.0], seed=0)
    assert (est.value, est.low, est.high) == (2.0, 1.0, 3.0)


def test_a_row_with_two_rounds_has_an_interval_and_a_row_without_does_not_stop_the_rest(
        tmp_path: Path) -> None:
    frame = _calm_run(tmp_path)
    first, jax = frame.index[0], frame.index[frame["backend"] == "jax"][0]
    frame.at[first, "data"] = None  # the first row saved no rounds
    frame.at[jax, "data"] = [4e-3, 6e-3]
    cells = trust.cell_intervals(frame)
    assert cells.loc[first, ["step_us_low", "step_us_high", "spread"]].isna().all()
    rest = cells.drop(index=first)
    assert rest["step_us_low"].notna().all() and rest["step_us_high"].notna().all()
    steps = frame.loc[jax, "steps"]
    assert cells.loc[jax, "step_us_low"] == pytest.approx(4e-3 / steps * 1e6)
    assert cells.loc[jax, "step_us_high"] == pytest.approx(6e-3 / steps * 1e6)


def test_the_cells_columns_and_the_speed_ups_spread(tmp_path: Path) -> None:
    frame = _calm_run(tmp_path)
    cells = trust.cell_intervals(frame)
    assert list(cells.columns) == [
        "step_us_low", "step_us_high", "spread", "speedup_low", "speedup_high",
        "speedup_spread", "unsettled_share", "neighbour_share", "doubts"]
    by = cells.join(frame[["backend", "step_us"]]).set_index("backend")
    speedup = by.loc["numpy", "step_us"] / by.loc["jax", "step_us"]
    low, high = by.loc["jax", "speedup_low"], by.loc["jax", "speedup_high"]
    assert by.loc["jax", "speedup_spread"] == pytest.approx(
        max(high / speedup - 1, 1 - low / speedup))


def test_only_training_rows_with_references_get_an_unsettled_share(tmp_path: Path) -> None:
    frame = _calm_run(tmp_path)
    level = np.median(frame[frame["backend"] == "numpy"]["ref_data"].iloc[0])
    at = {b: frame.index[frame["backend"] == b][0] for b in ("jax", "torch-cpu", "roofline")}
    frame.at[at["roofline"], "ref_data"] = [level * 2] * 5  # a roofline row is not judged
    frame.at[at["jax"], "ref_data"] = []  # no reference: no share
    frame.at[at["torch-cpu"], "ref_data"] = [level * 2]  # one reference, far over: judged
    cells = trust.cell_intervals(frame)
    assert math.isnan(cells.loc[at["roofline"], "unsettled_share"])
    assert math.isnan(cells.loc[at["jax"], "unsettled_share"])
    assert cells.loc[at["torch-cpu"], "unsettled_share"] == 1.0
    assert cells.loc[at["torch-cpu"], "doubts"] == (trust.UNSETTLED,)


def test_the_neighbour_share_reads_whole_rounds_and_adds_what_was_stolen() -> None:
    # Rounds of 1 s (each as long as the window: judged alone); a neighbour took 0.3 cores,
    # over NEIGHBOUR_CORES, during one of ten.
    one = [0.3] + [0.0] * 9
    frame = pd.DataFrame({
        "busy_data": [None, one, one, [0.2] + [0.0] * 9, [0.2] + [0.0] * 9],
        "steal_data": [None, None, None, [0.1] + [0.0] * 9, None],
        "data": [None, [0.5] * 10, [1.0] * 10, [1.0] * 10, [1.0] * 10],
        "iterations": [1, 2, math.nan, 1, 1],  # data is per iteration: a round is x2
    })
    shares = trust._neighbour_shares(frame)
    assert math.isnan(shares[0])  # not recorded
    assert list(shares[1:]) == [0.1, 0.1, 0.1, 0.0]  # without the steal, 0.2 cores: none


def test_a_cell_is_doubted_from_a_tenth_of_its_rounds_beside_a_neighbour_and_past_a_tenth_wide(
) -> None:
    def doubts(unsettled: float, neighbour: float, spread: float) -> tuple[str, ...]:
        return trust._doubts(pd.Series({"unsettled_share": unsettled,
                                        "neighbour_share": neighbour, "spread": spread}))

    assert doubts(0.5, 0.0, 0.0) == ()  # half unsettled is not most
    assert doubts(0.51, trust.NEIGHBOUR_SHARE, trust.WIDE + 0.001) == trust.DOUBTS
    assert doubts(0.0, trust.NEIGHBOUR_SHARE - 0.001, trust.WIDE) == ()
    assert doubts(math.nan, math.nan, math.nan) == ()
