"""`gdbench compare` and render_run on constructed runs: every format, two runs side by
side, runs from different machines told apart, and bad files."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _benchjson import (
    bad_run_files,
    machine_info,
    make_run,
    on_gpu,
    run_cli,
    save_run,
    write_run,
)

from gdbench.records import formats
from gdbench.records.results import load_run, load_runs
from gdbench.report.tables import (
    INTERVAL_NOTE,
    break_even,
    fit_table,
    machine_warning,
    render_run,
    side_by_side,
    side_by_side_section,
    summary,
)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run.json", workloads=("crops", "small"), seed=1)


def test_summary_speedup_and_efficiency(run: Path) -> None:
    s = summary(load_run(run)).set_index(["workload", "backend"])
    numpy_us, jax_us = s.loc[("crops", "numpy"), "step_us"], s.loc[("crops", "jax"), "step_us"]
    roof_us = s.loc[("crops", "roofline"), "step_us"]
    assert s.loc[("crops", "numpy"), "speedup"] == pytest.approx(1.0)
    assert s.loc[("crops", "jax"), "speedup"] == pytest.approx(numpy_us / jax_us)
    assert s.loc[("crops", "jax"), "efficiency_pct"] == pytest.approx(100 * roof_us / jax_us)


def _gpu_run(tmp_path: Path, yardsticks: dict[str, tuple[float, float]] | None) -> Path:
    """A constructed run in which jax and jax-scan trained on the GPU (device "cuda") beside
    numpy on the CPU, with the GPU's yardsticks of ``yardsticks`` (GFLOP/s, GB/s)."""
    doc = on_gpu(make_run(workloads=("crops", "small"), seed=1), ("jax", "jax-scan"),
                 yardsticks)
    path = save_run(tmp_path / "gpu.json", doc)
    return path


def test_a_gpu_rows_limit_and_efficiency_come_from_the_gpus_yardsticks(tmp_path: Path,
                                                                      capsys) -> None:
    path = _gpu_run(tmp_path, {"crops": (50.0, 900.0), "small": (400.0, 1500.0)})
    s = summary(load_run(path)).set_index(["workload", "backend"])
    # small: B=32, d=16, k=2, float32; the GPU's roofs are its best torch.mm rate (small's
    # 400 GFLOP/s) and small's own 1,500 GB/s copy (the largest, and the fastest).
    flops_step = 32 * (4 * 16 * 2 + 6 * 2)
    bytes_step = (32 * 18 + 2 * (2 * 16 + 2)) * 4
    bound = max(flops_step / 400e9, bytes_step / 1500e9)
    assert s.loc[("small", "jax"), "limit_us"] == pytest.approx(bound * 1e6)
    assert s.loc[("small", "jax"), "limit_kind"] == "compute"  # 11 ns of GEMM, 1.7 of copy
    # numpy, on the CPU, keeps the CPU's roofs: 20 GB/s and the CPU's best GEMM rate.
    gemm = max(s.loc[("small", "roofline"), "gflops"], s.loc[("crops", "roofline"), "gflops"])
    cpu_bound = max(flops_step / (gemm * 1e9), bytes_step / 20e9)
    assert s.loc[("small", "numpy"), "limit_us"] == pytest.approx(cpu_bound * 1e6)
    # Efficiency: over the roofline loop of the row's own device.
    for backend, roof in (("jax", "roofline-cuda"), ("numpy", "roofline")):
        assert s.loc[("small", backend), "efficiency_pct"] == pytest.approx(
            100 * s.loc[("small", roof), "step_us"] / s.loc[("small", backend), "step_us"])
    code, out, _ = run_cli(capsys, "compare", str(path))
    assert code == 0
    assert ("(cuda) compute 400 GFLOP/s: the fastest GPU yardstick, two torch.mm on "
            "cuda of small's step shapes") in out
    header = next(line for line in render_run(path).splitlines() if "workload" in line)
    assert header.split()[-2:] == ["roofline", "roofline-cuda"]  # the rooflines last


def test_a_gpu_row_without_gpu_yardsticks_has_no_limit_and_the_table_says_why(
        tmp_path: Path, capsys) -> None:
    path = _gpu_run(tmp_path, None)
    s = summary(load_run(path)).set_index(["workload", "backend"])
    for workload in ("crops", "small"):
        for backend in ("jax", "jax-scan"):  # never the CPU's roofs
            assert math.isnan(s.loc[(workload, backend), "limit_us"])
            assert math.isnan(s.loc[(workload, backend), "efficiency_pct"])
            assert s.loc[(workload, backend), "limit_kind"] == ""
        assert s.loc[(workload, "numpy"), "limit_us"] > 0  # the CPU's row keeps its own
    code, out, _ = run_cli(capsys, "compare", str(path))
    assert code == 0
    assert ("(cuda) no limit: no cuda yardstick in this run (gdbench run measures "
            "one") in out.replace("\n", " ")


def test_summary_limit_from_the_roofline_rates(run: Path) -> None:
    s = summary(load_run(run)).set_index(["workload", "backend"])
    jax = s.loc[("small", "jax")]
    # The GEMM rate is the best of the run's rooflines (crops' own is far lower: numpy's
    # per-call cost at 3 x 3 shapes), and small's copy bandwidth is 20 GB/s.
    gemm = max(s.loc[("small", "roofline"), "gflops"], s.loc[("crops", "roofline"), "gflops"])
    assert s.loc[("crops", "roofline"), "gflops"] < gemm
    # small: B=32, d=16, k=2, float32.
    flops_step = 32 * (4 * 16 * 2 + 6 * 2)
    bytes_step = (32 * 18 + 2 * (2 * 16 + 2)) * 4
    bound = max(flops_step / (gemm * 1e9), bytes_step / 20e9)
    assert jax["limit_us"] == pytest.approx(bound * 1e6)
    assert jax["limit_pct"] == pytest.approx(100 * bound * 1e6 / jax["step_us"])
    assert jax["limit_kind"] == ("compute" if bound == flops_step / (gemm * 1e9) else "memory")
    crops = s.loc[("crops", "jax")]  # crops is bounded with the same, best GEMM rate
    crops_bound = max(3 * (4 * 3 * 2 + 6 * 2) / (gemm * 1e9), (3 * 5 + 2 * 8) * 4 / 20e9)
    assert crops["limit_us"] == pytest.approx(crops_bound * 1e6)
    assert math.isnan(s.loc[("small", "roofline"), "limit_us"])  # only training rows


def test_the_limit_is_under_the_run_s_roofs(tmp_path: Path, capsys) -> None:
    """crops' own 1 MiB copy read 0.2 GB/s, small's (also 1 MiB) 0.6 GB/s: crops' data can
    move as fast as small's did, so both are bounded by the faster copy; the flat roof is
    the best roofline loop's. The note under the table names the same roofs. (Slow
    copies, so that memory binds on both workloads and the copy chosen shows.)"""
    path = write_run(tmp_path / "run.json", workloads=("crops", "small"), seed=1,
                     bandwidths={"crops": 0.2, "small": 0.6})
    s = summary(load_run(path)).set_index(["workload", "backend"])
    gemm = max(s.loc[("small", "roofline"), "gflops"], s.loc[("crops", "roofline"), "gflops"])
    for workload, (b, d, k) in {"crops": (3, 3, 2), "small": (32, 16, 2)}.items():
        flops_step, bytes_step = b * (4 * d * k + 6 * k), (b * (d + k) + 2 * (k * d + k)) * 4
        bound = max(flops_step / (gemm * 1e9), bytes_step / 0.6e9)
        jax = s.loc[(workload, "jax")]
        assert jax["limit_kind"] == "memory"
        assert jax["limit_us"] == pytest.approx(bound * 1e6)
        assert jax["intensity"] == pytest.approx(flops_step / bytes_step)
        # The roof above the point: min(compute roof, memory roof × intensity).
        assert jax["roof_gflops"] == pytest.approx(
            min(gemm, 0.6 * flops_step / bytes_step))
        assert jax["roof_gflops"] == pytest.approx(
            jax["gflops"] * 100 / jax["limit_pct"])  # above the roof = over 100%
    code, out, _ = run_cli(capsys, "compare", str(path))
    assert code == 0
    assert (f"roofs: compute {gemm:.3g} GFLOP/s: the fastest roofline loop, two cached "
            "NumPy GEMMs of small's step shapes; memory 0.6 GB/s: a streaming copy of 1 MiB "
            "on 1 thread (small's roofline), for crops, small") in out


def test_a_run_without_copy_sizes_bounds_each_workload_by_its_own_copy(
        tmp_path: Path) -> None:
    doc = make_run(workloads=("crops", "small"), seed=1,
                   bandwidths={"crops": 0.2, "small": 0.6})
    for bench in doc["benchmarks"]:  # a run from before the suite recorded them
        bench["extra_info"].pop("copy_bytes", None)
        bench["extra_info"].pop("copy_threads", None)
    path = save_run(tmp_path / "old.json", doc)
    s = summary(load_run(path)).set_index(["workload", "backend"])
    gemm = s.loc[("small", "roofline"), "gflops"] * 1e9
    bytes_step = (3 * 5 + 2 * 8) * 4
    assert s.loc[("crops", "jax"), "limit_us"] == pytest.approx(bytes_step / 0.2e9 * 1e6)
    assert 3 * 36 / gemm < bytes_step / 0.2e9  # memory binds


def test_summary_time_to_target(run: Path) -> None:
    s = summary(load_run(run)).set_index(["workload", "backend"])
    jax = s.loc[("small", "jax")]
    assert jax["steps_to_target"] == 128
    assert jax["hot_s"] == pytest.approx(128 * jax["step_us"] * 1e-6)
    assert jax["cold_s"] == pytest.approx(0.35 + jax["hot_s"])  # prepare, compile included
    assert math.isnan(s.loc[("crops", "jax"), "hot_s"])  # crops never reaches it
    # The roofline rows keep the workload's own record, which the tables' note reads.
    assert s.loc[("small", "roofline"), "target_steps"] == 128


def test_break_even_of_the_compiled_backends(run: Path) -> None:
    s = summary(load_run(run))
    table = break_even(s).set_index(["workload", "backend"])
    assert set(table.index.get_level_values("backend")) == {"jax", "jax-scan"}  # compiled
    by = s.set_index(["workload", "backend"])
    scan, numpy = by.loc[("small", "jax-scan")], by.loc[("small", "numpy")]
    expected = (0.35 - 0.001) / ((numpy["step_us"] - scan["step_us"]) * 1e-6)
    assert table.loc[("small", "jax-scan"), "vs numpy"] == f"{expected:,.0f}"
    # jax's step is slower than numpy's on crops: it never catches up.
    assert table.loc[("crops", "jax"), "vs numpy"] == "never"


def _break_even_rows(*rows: tuple[str, str, str, float, float, float]) -> pd.DataFrame:
    """A summary's break-even columns: (kind, workload, backend, prepare s, compile s,
    µs/step) per row."""
    return pd.DataFrame(rows, columns=["kind", "workload", "label", "prepare_s", "compile_s",
                                       "step_us"])


def test_break_even_against_each_eager_backend_in_the_runs_order() -> None:
    # jax compiles (0.5 s of prepare) and then saves 10 µs a step on torch-cpu and 40 on
    # numpy; the workloads come in the run's order, not the alphabet's.
    s = _break_even_rows(
        ("training", "small", "torch-cpu", 0.1, 0.0, 30.0),
        ("training", "small", "numpy", 0.02, 0.0, 60.0),
        ("training", "small", "jax", 0.5, 0.4, 20.0),
        ("training", "crops", "numpy", 0.02, 0.0, 60.0),
        ("training", "crops", "jax", 0.5, 0.4, 20.0),
        # A row of another kind (a suite's own benchmark may name any) never counts as the
        # eager reference, whatever its prepare says.
        ("inference", "crops", "torch-cpu", 0.0, 0.0, 5.0),
    )
    assert break_even(s).to_dict("records") == [
        {"workload": "small", "backend": "jax", "vs torch-cpu": "40,000", "vs numpy": "12,000"},
        {"workload": "crops", "backend": "jax", "vs torch-cpu": "", "vs numpy": "12,000"}]


def test_a_backend_compiles_when_its_compile_passes_the_threshold_strictly() -> None:
    from gdbench.report.tables import COMPILED_MIN_S

    s = _break_even_rows(
        ("training", "crops", "numpy", 0.0, 0.0, 60.0),
        ("training", "crops", "at", 0.5, COMPILED_MIN_S, 20.0),
        ("training", "crops", "past", 0.5, np.nextafter(COMPILED_MIN_S, 1.0), 20.0),
        ("training", "crops", "unknown", 0.5, math.nan, 20.0))
    assert list(break_even(s)["backend"]) == ["past"]


def test_fits_need_two_workloads_and_keep_the_runs_order(run: Path) -> None:
    from gdbench.report.tables import fits

    s = summary(load_run(run))
    assert list(fits(s)) == ["numpy", "torch-cpu", "jax", "jax-scan"]
    # numpy timed on one workload only: no fit for it, and the others still have theirs.
    one = s[~((s["label"] == "numpy") & (s["workload"] == "small"))]
    assert list(fits(one)) == ["torch-cpu", "jax", "jax-scan"]


def test_fit_table_has_one_row_per_backend_with_intervals(run: Path) -> None:
    fits = fit_table(summary(load_run(run)))
    assert list(fits.columns) == ["backend", "α µs/step", "α 95% CI", "β GFLOP/s", "β 95% CI"]
    assert list(fits["backend"]) == ["numpy", "torch-cpu", "jax", "jax-scan"]
    assert all(c.startswith("[") for c in fits["α 95% CI"])


def test_render_run_word_for_word(tmp_path: Path) -> None:
    """Constant rounds: jax is half numpy's speed and disagrees with it (✗); the roofline
    cell has neither a speed-up nor a share of the limit."""
    from gdbench.report.tables import _CSV

    path = save_run(tmp_path / "r.json", make_run(
        workloads=("crops",), backends=("numpy", "jax"), sigma=0.0, drift=[1.0],
        disagree=("jax",)))
    title = "µs per step (×speed-up vs numpy, % of the limit) — Test CPU 9000, 2 cores"
    assert render_run(path).splitlines() == [
        title, "=" * len(title),
        f"{path} on Test CPU 9000, 2 cores (fingerprint c30ed8f1493d, 2026-01-02 03:04 UTC)",
        INTERVAL_NOTE,
        "workload                  numpy                           jax  roofline",
        "crops     6.00 ±0% (×1.00, 25%)  12.0 ±0% (×0.500 ±0%, 12%) ✗  1.50 ±0%"]
    csv = render_run(path, "csv").splitlines()
    assert csv[0] == ",".join(_CSV) and len(csv) == 1 + 3


def test_the_csv_lists_a_rows_doubts_joined_by_semicolons() -> None:
    from gdbench.report.tables import _CSV, _csv_columns

    rows = pd.DataFrame({c: [1.0, 2.0] for c in _CSV})
    rows["doubts"] = [("unsettled", "neighbours"), math.nan]
    assert _csv_columns(rows)["doubts"].tolist() == ["unsettled;neighbours", ""]


def test_an_interval_without_bounds_is_blank() -> None:
    from gdbench.report.tables import _interval

    assert _interval(math.nan, math.nan) == ""
    assert _interval(1.0, 2.5) == "[1.00, 2.50]"


def test_render_run_cells_and_skipped_backends(tmp_path: Path) -> None:
    path = write_run(tmp_path / "r.json", workloads=("crops", "small"),
                     backends=("numpy", "jax"), seed=1)
    text = render_run(path)
    assert text == render_run(load_run(path))  # a path or a frame
    header = next(line for line in text.splitlines() if line.startswith("workload"))
    assert header.split() == ["workload", "numpy", "jax", "roofline"]  # torch-cpu skipped
    crops = next(line for line in text.splitlines() if line.startswith("crops"))
    assert "(×1.00, " in crops and "%)" in crops
    md = render_run(path, "md")
    assert "| workload | numpy | jax | roofline |" in md


@pytest.mark.parametrize("fmt", ["table", "md", "csv", "html"])
def test_compare_one_run_in_every_format(run: Path, capsys, fmt: str) -> None:
    code, out, err = run_cli(capsys, "compare", str(run), "--format", fmt)
    assert code == 0 and err == ""
    if fmt == "md":
        assert "### µs per step" in out and "| crops |" in out
        assert "### speed-up vs numpy" in out and "### agrees with numpy" in out
    elif fmt == "csv":
        frame = pd.read_csv(io.StringIO(out))
        assert {"workload", "backend", "step_us", "speedup", "gflops", "efficiency_pct",
                "limit_pct", "hot_s", "cold_s", "compile_s", "agrees"} <= set(frame.columns)
        assert len(frame) == 10
    elif fmt == "html":
        assert out.count("<table") == 10 and "<h3>GFLOP/s" in out
    else:
        for title in ("% of the limit", "compile seconds", "time to the shared target",
                      "break-even", "memory of one run", "fixed cost α and throughput β"):
            assert title in out


def test_compare_two_runs_side_by_side(tmp_path: Path, run: Path, capsys) -> None:
    new = write_run(tmp_path / "new.json", workloads=("crops", "small"), seed=2,
                    factors={"torch-cpu": 1.25})
    code, out, _ = run_cli(capsys, "compare", str(run), str(new), "--format", "md")
    assert code == 0
    torch_rows = [line for line in out.splitlines() if "| torch-cpu |" in line]
    assert len(torch_rows) == 2 and all("▲ slower" in line for line in torch_rows)
    assert "DIFFERENT MACHINES" not in out
    assert "| new/old | new/old ÷ref | 95% CI |" in out
    code, out, _ = run_cli(capsys, "compare", str(run), str(new), "--format", "csv")
    frame = pd.read_csv(io.StringIO(out)).set_index(["workload", "backend"])
    # The machine drifted differently in the two runs: the raw ratio moved, the paired
    # (normalised) one did not.
    assert frame.loc[("crops", "torch-cpu"), "norm_ratio"] == pytest.approx(1.25, rel=0.05)
    assert frame.loc[("crops", "torch-cpu"), "tested"] == "normalised"
    assert bool(frame.loc[("crops", "torch-cpu"), "significant"])
    assert frame.loc[("crops", "numpy"), "norm_ratio"] == pytest.approx(1.0, abs=0.05)
    assert frame.loc[("crops", "roofline"), "tested"] == "raw"
    assert pd.isna(frame.loc[("crops", "roofline"), "norm_ratio"])
    old_run, new_run = load_run(run), load_run(new)
    for key in [("crops", "torch-cpu"), ("small", "numpy")]:
        medians = [r.set_index(["workload", "backend"]).loc[key, "median_s"]
                   for r in (old_run, new_run)]
        assert frame.loc[key, "ratio"] == pytest.approx(medians[1] / medians[0], rel=1e-5)


def test_side_by_side_marks_only_the_paired_change_under_drift(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old.json", workloads=("crops", "small"), seed=1,
                    slow_share=0.0)
    new = write_run(tmp_path / "new.json", workloads=("crops", "small"), seed=2,
                    drift=[1.6])  # the whole new run on a 1.6x slower machine
    sbs = side_by_side(load_runs([old, new]))
    train = sbs[sbs["backend"] != "roofline"]
    assert (train["ratio"] > 1.4).all()  # raw times: all slower
    assert (train["norm_ratio"].sub(1).abs() < 0.05).all()
    assert not train["significant"].any()


def test_side_by_side_without_references_tests_raw_times(tmp_path: Path, capsys) -> None:
    old = write_run(tmp_path / "old.json", workloads=("crops",), seed=1, slow_share=0.0,
                    paired=False)
    new = write_run(tmp_path / "new.json", workloads=("crops",), seed=2, slow_share=0.0,
                    paired=False, factors={"jax": 1.25})
    sbs = side_by_side(load_runs([old, new])).set_index("backend")
    assert sbs["norm_ratio"].isna().all() and (sbs["tested"] == "raw").all()
    assert sbs.loc["jax", "ratio"] == pytest.approx(1.25, rel=0.1)
    assert sbs.loc["jax", "significant"]
    code, out, _ = run_cli(capsys, "compare", str(old), str(new))
    assert code == 0 and "÷ref" not in out and " raw" not in out
    jax = next(line for line in out.splitlines() if line.startswith("crops     jax "))
    assert "▲ slower" in jax


def test_side_by_side_of_a_paired_run_and_an_older_one_tests_raw_times(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old.json", workloads=("crops",), seed=1, slow_share=0.0,
                    paired=False)
    new = write_run(tmp_path / "new.json", workloads=("crops",), seed=2, slow_share=0.0)
    for frame in (load_runs([old, new]), load_runs([new, old])):  # either side unpaired
        sbs = side_by_side(frame)
        assert sbs["norm_ratio"].isna().all() and (sbs["tested"] == "raw").all()


def test_side_by_side_with_a_run_without_rounds_has_no_interval(tmp_path: Path) -> None:
    """A run that saved no rounds: the ratio of the two medians, no interval, and nothing
    said significant."""
    old = write_run(tmp_path / "old.json", workloads=("crops",), seed=1, slow_share=0.0,
                    paired=False, save_data=False)
    new = write_run(tmp_path / "new.json", workloads=("crops",), seed=2, slow_share=0.0)
    for frame in (load_runs([old, new]), load_runs([new, old])):
        sbs = side_by_side(frame)
        assert (sbs["tested"] == "").all() and sbs["significant"].isna().all()
        assert sbs["ratio"].notna().all()
        assert sbs["low"].isna().all() and sbs["high"].isna().all()
        section = side_by_side_section(frame)
        assert set(section.table["change"]) == {"(no rounds saved)"}
        assert set(section.table["95% CI"]) == {""}
        assert "new/old ÷ref" not in section.table
        assert section.notes[-1] == ("new/old is the ratio of median times; ▲/▼ mark changes "
                                     "whose 95% bootstrap interval over the rounds excludes 1.")


def test_an_interval_that_touches_1_is_no_change(tmp_path: Path) -> None:
    """Two runs of the same constant rounds: every interval is exactly [1, 1], which does
    not exclude 1."""
    doc = make_run(workloads=("crops",), seed=1, sigma=0.0, drift=[1.0])
    old, new = save_run(tmp_path / "old.json", doc), save_run(tmp_path / "new.json", doc)
    sbs = side_by_side(load_runs([old, new]))
    assert (sbs["low"] == 1.0).all() and (sbs["high"] == 1.0).all()
    assert sbs["significant"].tolist() == [False] * len(sbs)


def test_the_side_by_side_table_word_for_word(tmp_path: Path) -> None:
    """Constant rounds, so every figure is exact: numpy 20% faster (tested on raw times in
    the old run, which has no reference rounds for it), jax 25% slower, and a workload
    that only the new run timed."""
    old = make_run(workloads=("crops",), backends=("numpy", "jax"), sigma=0.0, drift=[1.0])
    for bench in old["benchmarks"]:
        if bench["extra_info"]["backend"] == "numpy":
            for key in ("ref_data", "norm_data", "norm_median", "ref_s"):
                del bench["extra_info"][key]
    new = make_run(workloads=("crops", "small"), backends=("numpy", "jax"), sigma=0.0,
                   drift=[1.0], factors={"jax": 1.25, "numpy": 0.8})
    frame = load_runs([save_run(tmp_path / "o.json", old), save_run(tmp_path / "n.json", new)])
    sbs = side_by_side(frame)
    assert list(sbs.columns) == [
        "name", "workload", "backend", "old_step_us", "old_step_us_low", "old_step_us_high",
        "old_spread", "old_doubts", "new_step_us", "new_step_us_low", "new_step_us_high",
        "new_spread", "new_doubts", "ratio", "norm_ratio", "low", "high", "tested",
        "significant"]
    alone = sbs[sbs["workload"] == "small"]
    assert alone["tested"].tolist() == [""] * 3 and alone["significant"].tolist() == [None] * 3
    section = side_by_side_section(frame)
    assert section.title == "n vs o"
    only = {"new/old": "", "new/old ÷ref": "", "95% CI": "", "change": "only in one run"}
    assert section.table.to_dict("records") == [
        {"workload": "crops", "backend": "numpy", "µs/step o": "6.00 ±0%",
         "µs/step n": "4.80 ±0%", "new/old": "0.800", "new/old ÷ref": "",
         "95% CI": "[0.800, 0.800] raw", "change": "▼ faster"},
        {"workload": "crops", "backend": "jax", "µs/step o": "12.0 ±0%",
         "µs/step n": "15.0 ±0%", "new/old": "1.250", "new/old ÷ref": "1.250",
         "95% CI": "[1.250, 1.250]", "change": "▲ slower"},
        {"workload": "crops", "backend": "roofline", "µs/step o": "1.50 ±0%",
         "µs/step n": "1.50 ±0%", "new/old": "1.000", "new/old ÷ref": "",
         "95% CI": "[1.000, 1.000] raw", "change": ""},
        {"workload": "small", "backend": "numpy", "µs/step o": "", "µs/step n": "8.00 ±0%",
         **only},
        {"workload": "small", "backend": "jax", "µs/step o": "", "µs/step n": "18.8 ±0%",
         **only},
        {"workload": "small", "backend": "roofline", "µs/step o": "", "µs/step n": "3.00 ±0%",
         **only}]
    header = "on Test CPU 9000, 2 cores (fingerprint c30ed8f1493d, 2026-01-02 03:04 UTC)"
    assert section.notes == [
        f"old = {tmp_path / 'o.json'} {header}", f"new = {tmp_path / 'n.json'} {header}",
        INTERVAL_NOTE,
        "new/old is the ratio of median times (it includes the machine's speed); new/old "
        "÷ref is that of the median of each round's time ÷ its reference round, timed just "
        "before it (the machine's drift cancels). ▲/▼ mark changes whose 95% bootstrap "
        "interval over the rounds excludes 1: the interval of new/old ÷ref where there is "
        "one, else (marked raw) of new/old."]


def test_a_cell_with_two_doubts_has_both_footnotes(tmp_path: Path) -> None:
    from gdbench.report.tables import FOOTNOTES

    calm = write_run(tmp_path / "calm.json", workloads=("crops",), sigma=0.0, drift=[1.0])
    noisy = write_run(tmp_path / "noisy.json", workloads=("crops",), seed=0, slow_share=0.3,
                      sigma=0.2)
    frame = load_runs([calm, noisy])
    both = summary(frame[frame["run"] == "noisy"])["doubts"]
    assert ("unsettled", "wide") in both.tolist() and ("unsettled",) not in both.tolist()
    assert side_by_side_section(frame).footnotes == [FOOTNOTES["unsettled"],
                                                     FOOTNOTES["wide"]]


def test_three_runs_in_one_table_with_blanks_where_a_run_lacks_a_benchmark(
        tmp_path: Path) -> None:
    from gdbench.report.tables import merged_section

    runs = [save_run(tmp_path / f"{name}.json", make_run(
        workloads=workloads, backends=("numpy",), sigma=0.0, drift=[1.0],
        factors={"numpy": factor})) for name, workloads, factor in (
            ("a", ("crops", "small"), 1.0), ("b", ("crops",), 2.0),
            ("c", ("crops", "small"), 0.5))]
    section = merged_section(load_runs(runs))
    assert section.title == "µs per step, every run"
    assert section.table.to_dict("records") == [
        {"workload": "crops", "backend": "numpy", "µs/step a": "6.00 ±0%",
         "µs/step b": "12.0 ±0%", "µs/step c": "3.00 ±0%"},
        {"workload": "crops", "backend": "roofline", "µs/step a": "1.50 ±0%",
         "µs/step b": "1.50 ±0%", "µs/step c": "1.50 ±0%"},
        {"workload": "small", "backend": "numpy", "µs/step a": "10.0 ±0%", "µs/step b": "",
         "µs/step c": "5.00 ±0%"},
        {"workload": "small", "backend": "roofline", "µs/step a": "3.00 ±0%",
         "µs/step b": "", "µs/step c": "3.00 ±0%"}]
    assert section.footnotes == []


def test_side_by_side_lists_benchmarks_of_only_one_run(tmp_path: Path, run: Path) -> None:
    other = write_run(tmp_path / "new.json", workloads=("crops",), seed=2)
    frame = pd.concat([load_run(run), load_run(other)], ignore_index=True)
    sbs = side_by_side(frame).set_index(["workload", "backend"])
    assert pd.isna(sbs.loc[("small", "numpy"), "ratio"])
    assert pd.notna(sbs.loc[("crops", "numpy"), "ratio"])


def test_runs_from_different_machines_are_told_apart(tmp_path: Path, run: Path,
                                                     capsys) -> None:
    other = write_run(tmp_path / "gpu.json", workloads=("crops", "small"), seed=2,
                      info=machine_info(cpu="Big Server CPU", cores=64))
    code, out, err = run_cli(capsys, "compare", str(run), str(other), "--format", "md")
    assert code == 0
    assert out.startswith("> **⚠ these runs come from 2 DIFFERENT MACHINES")
    assert "@ Test CPU 9000, 2 cores" in out and "@ Big Server CPU, 64 cores" in out
    # Also on stderr, since stdout may be redirected (md, html and csv are for files).
    (warning,) = machine_warning(load_runs([str(run), str(other)]))
    assert warning == ("these runs come from 2 DIFFERENT MACHINES (run: Test CPU 9000, 2 "
                       "cores [c30ed8f1493d]; gpu: Big Server CPU, 64 cores [4d02de1cd259]); "
                       "the numbers below compare machines as well as code")
    assert err == f"gdbench compare: warning: {warning}\n"
    for fmt in ("html", "csv"):
        assert run_cli(capsys, "compare", str(run), str(other), "--format", fmt)[2] == err
    third = write_run(tmp_path / "third.json", workloads=("crops",), seed=3)
    code, out, err = run_cli(capsys, "compare", str(run), str(other), str(third))
    assert code == 0 and err == ""  # a table is read on the terminal: said once, there
    assert out.startswith("!! WARNING: these runs come from 2 DIFFERENT MACHINES")
    assert "µs/step third @ Test CPU 9000, 2 cores" in out


def test_three_runs_of_one_machine_are_merged_without_warning(tmp_path: Path, run: Path,
                                                              capsys) -> None:
    paths = [str(write_run(tmp_path / f"r{i}.json", workloads=("crops",), seed=i))
             for i in range(3)]
    code, out, _ = run_cli(capsys, "compare", *paths, "--format", "md")
    assert code == 0 and "WARNING" not in out and "⚠" not in out
    assert "| workload | backend | µs/step r0 | µs/step r1 | µs/step r2 |" in out


@pytest.mark.parametrize("what", ["missing", "empty", "truncated", "not JSON", "not a run",
                                  "no benchmarks"])
def test_bad_files_exit_2_with_one_line(tmp_path: Path, run: Path, capsys,
                                        what: str) -> None:
    bad = bad_run_files(tmp_path)[what]
    code, out, err = run_cli(capsys, "compare", str(run), str(bad))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gdbench compare: error: ")
    assert str(bad) in lines[0]


# --- an interval in every cell, and marks on the cells to doubt ----------------------------

def _doubtful_run(tmp_path: Path) -> Path:
    """A calm run of crops in which jax's rounds are bimodal (half at twice the time of
    the other half): its interval is wide. The other cells are narrow."""
    doc = make_run(workloads=("crops",), backends=("numpy", "jax"), rounds=40, sigma=0.01,
                   slow_share=0.0, seed=4)
    for bench in doc["benchmarks"]:
        if bench["extra_info"]["backend"] == "jax":
            data = [12e-6 * 250 * (1 + i % 2) for i in range(40)]
            bench["stats"].update(data=data, median=float(np.median(data)))
    path = save_run(tmp_path / "doubtful.json", doc)
    return path


def test_the_run_table_gives_every_cell_its_interval_and_marks_a_wide_one(
        tmp_path: Path) -> None:
    path = _doubtful_run(tmp_path)
    s = summary(load_run(path)).set_index("backend")
    text = render_run(path)
    crops = next(line for line in text.splitlines() if line.startswith("crops"))
    numpy, jax = s.loc["numpy"], s.loc["jax"]
    assert (f"{formats.us(numpy['step_us'])} {formats.plus_minus(numpy['spread'])} (×1.00, "
            in crops)
    assert (f"{formats.us(jax['step_us'])} {formats.plus_minus(jax['spread'])} "
            f"({formats.times(jax['speedup'])} {formats.plus_minus(jax['speedup_spread'])}, "
            in crops)
    assert jax["doubts"] == ("wide",) and numpy["doubts"] == ()
    assert crops.count("§") == 1 and crops.rstrip().split("  ")[-1].strip().startswith(
        formats.us(s.loc["roofline", "step_us"]))
    footnote = text.splitlines()[-1]
    assert footnote.startswith("§ its interval reaches further than ±10%")
    assert "--threads 1" in footnote and "gdbench audit" in footnote
    assert "†" not in text  # nothing unsettled: no such footnote


def test_a_run_of_narrow_cells_has_no_marks_and_no_footnotes(tmp_path: Path) -> None:
    path = write_run(tmp_path / "calm.json", workloads=("crops",), rounds=40, sigma=0.01,
                     slow_share=0.0)
    text = render_run(path)
    assert "±" in text and not {"†", "§"} & set(text)


@pytest.mark.parametrize("fmt", ["table", "md", "html"])
def test_compare_puts_the_interval_in_every_figure_and_the_footnote_after_the_table(
        tmp_path: Path, capsys, fmt: str) -> None:
    path = _doubtful_run(tmp_path)
    code, out, _ = run_cli(capsys, "compare", str(path), "--format", fmt)
    assert code == 0
    jax = summary(load_run(path)).set_index("backend").loc["jax"]
    us = f"{formats.us(jax['step_us'])} {formats.plus_minus(jax['spread'])} §"
    assert us in out
    assert f"{formats.times(jax['speedup'])} {formats.plus_minus(jax['speedup_spread'])}" in out
    assert f"{formats.number(jax['gflops'])} {formats.plus_minus(jax['spread'])}" in out
    assert out.index(us) < out.index("§ its interval reaches") < out.index("speed-up vs numpy")


def test_the_csv_has_each_interval_in_columns_of_its_own(tmp_path: Path, capsys) -> None:
    path = _doubtful_run(tmp_path)
    code, out, _ = run_cli(capsys, "compare", str(path), "--format", "csv")
    frame = pd.read_csv(io.StringIO(out), keep_default_na=False).set_index("backend")
    for backend in ("numpy", "jax", "roofline"):
        row = frame.loc[backend]
        assert float(row["step_us_low"]) < float(row["step_us"]) < float(row["step_us_high"])
    assert float(frame.loc["jax", "speedup_low"]) < float(frame.loc["jax", "speedup"]) < \
        float(frame.loc["jax", "speedup_high"])
    assert frame.loc["jax", "doubts"] == "wide" and frame.loc["numpy", "doubts"] == ""


def test_two_runs_side_by_side_give_each_sides_interval(tmp_path: Path, capsys) -> None:
    old, new = write_run(tmp_path / "old.json", workloads=("crops",)), _doubtful_run(tmp_path)
    sbs = side_by_side(load_runs([old, new])).set_index("backend")
    jax = sbs.loc["jax"]
    assert jax["new_step_us_low"] < jax["new_step_us"] < jax["new_step_us_high"]
    assert jax["new_doubts"] == "wide"
    code, out, _ = run_cli(capsys, "compare", str(old), str(new))
    line = next(x for x in out.splitlines() if x.startswith("crops     jax "))
    assert f"{formats.us(jax['new_step_us'])} {formats.plus_minus(jax['new_spread'])} §" in line
    assert "§ its interval reaches further than ±10%" in out


def test_time_to_target_past_the_plan_and_the_stated_cap(tmp_path: Path, capsys) -> None:
    """small's target lies past its plan (the reference trained on to step 600); crops
    does not reach it by the cap."""
    doc = make_run(workloads=("crops", "small"), seed=1)
    for bench in doc["benchmarks"]:
        info = bench["extra_info"]
        if info["kind"] == "roofline":
            info["target_steps"] = 600 if info["workload"] == "small" else None
            info["target_cap_steps"] = 50 * info["target_plan_steps"]
    path = save_run(tmp_path / "run.json", doc)
    s = summary(load_run(path)).set_index(["workload", "backend"])
    jax = s.loc[("small", "jax")]
    assert jax["steps_to_target"] == 600
    assert jax["hot_s"] == pytest.approx(600 * jax["step_us"] * 1e-6)
    code, out, _ = run_cli(capsys, "compare", str(path))
    assert code == 0
    assert "small: 600 steps (2.34 × its plan of 256)" in out
    assert "crops: not reached in 12,500 steps (50 × its plan: the cap)" in out
    assert "up to 50 × the plan's steps or 2e+11 FLOPs" in out


# --- the pieces of a cell and of a section, word for word -------------------------------------

def test_each_doubt_has_its_mark_and_its_footnote() -> None:
    from gdbench.judge import trust
    from gdbench.report import tables

    row = pd.Series({"step_us": 99.3, "spread": 0.021, "doubts": (trust.UNSETTLED,
                                                                    trust.WIDE_INTERVAL)})
    assert tables.marks(row) == "†§" and tables.us_cell(row) == "99.3 ±2.1% †§"
    assert tables.marks(pd.Series({"doubts": math.nan})) == ""  # a row without intervals
    calm = pd.Series({"step_us": 99.3, "spread": 0.021, "doubts": ()})
    assert tables.us_cell(calm) == "99.3 ±2.1%"
    rows = pd.DataFrame({"doubts": [(trust.NEIGHBOUR,), math.nan, trust.DOUBTS]})
    assert tables.footnotes(rows) == [
        "† most of its rounds were timed while the machine ran slower (their paired reference "
        "read over 25% above the workload's quiet level), even after gdbench run timed it "
        "again: close other programs and run it again; gdbench audit tells whether this "
        "machine can time it within 10%.",
        "‡ other programs took a share of its CPUs (or the hypervisor stole it) beside 10% or "
        "more of its rounds: close other programs and run it again, or leave CPUs to spare "
        "with --threads N below the machine's count.",
        "§ its interval reaches further than ±10%: its rounds disagree. Run with --threads 1 "
        "(a thread pool that loses a core to another program slows by several times), close "
        "other programs, or check the machine with gdbench audit."]
    assert tables.footnotes(pd.DataFrame({"step_us": [1.0]})) == []
    assert tables.INTERVAL_NOTE == ("±: the 95% bootstrap interval of the median round, the "
                                    "farther side, relative to the figure")


@pytest.mark.parametrize(("agrees", "diff", "cell"), [
    (True, 0.0, "✓"), (False, 0.0312, "✗ (0.031)"), (False, math.nan, "✗"),
    (None, math.nan, "")])
def test_the_agreement_cell(agrees: object, diff: float, cell: str) -> None:
    from gdbench.report import tables

    assert tables._agreement(pd.Series({"agrees": agrees, "max_abs_diff_vs_numpy": diff},
                                       dtype=object)) == cell


def test_a_runs_header_names_its_file_machine_fingerprint_and_date() -> None:
    from gdbench.report import tables

    run = {"run": "r1", "path": "results/runs/r1.json", "machine": "CPU A, 2 cores",
           "fingerprint": "abc123", "datetime": pd.Timestamp("2026-01-02 12:34:56")}
    assert tables._header(run) == ("results/runs/r1.json on CPU A, 2 cores (fingerprint "
                                   "abc123, 2026-01-02 12:34 UTC)")
    renamed = {**run, "run": "base", "datetime": pd.NaT}
    assert tables._header(renamed) == ("base: results/runs/r1.json on CPU A, 2 cores "
                                       "(fingerprint abc123)")


def test_a_backend_in_another_dtype_is_labelled_with_it(tmp_path: Path) -> None:
    path = write_run(tmp_path / "run.json", workloads=("crops",), backends=("numpy", "jax"),
                     dtype="float64")
    s = summary(load_run(path))
    training = s[s["kind"] == "training"]
    assert sorted(training["label"]) == ["jax float64", "numpy float64"]
    assert (training["dtype"] == "float64").all()
    roof = s[s["kind"] == "roofline"]
    assert (roof["limit_kind"] == "").all()  # only a training row has a limit


def test_a_runs_first_six_tables_cell_by_cell(tmp_path: Path) -> None:
    from gdbench.report import tables

    path = write_run(tmp_path / "run.json", workloads=("crops",), backends=("numpy", "jax"),
                     seed=1, slow_share=0.0)
    sections = tables.run_sections(load_run(path))
    on = " — Test CPU 9000, 2 cores"
    expected = [
        ("µs per step", {"numpy": "5.91 ±2.1%", "jax": "12.1 ±1.8%", "roofline": "1.53 ±3%"}),
        ("speed-up vs numpy (higher is faster)", {"numpy": "×1.00", "jax": "×0.487 ±2.7%"}),
        ("GFLOP/s", {"numpy": "0.0183 ±2.1%", "jax": "0.00891 ±1.8%",
                     "roofline": "0.0705 ±3%"}),
        ("% of the limit (the least time a step can take ÷ the backend's)",
         {"numpy": "26% ±2.1%", "jax": "13% ±1.8%"}),  # the roofline's 1.53 over each
        ("compile seconds (outside the timed loop)", {"numpy": "0", "jax": "0.3"}),
        ("agrees with numpy (✓ / ✗ with max |ΔW|)", {"numpy": "✓", "jax": "✓"}),
    ]
    for section, (title, cells) in zip(sections, expected, strict=False):
        assert section.title == title + on
        assert section.table.to_dict("records") == [{"workload": "crops", **cells}]
    assert sections[0].notes[1] == tables.INTERVAL_NOTE
    assert sections[3].notes[0] == (
        "limit = max(FLOPs / compute roof, bytes / memory roof) per step, both roofs measured "
        "in this run on the row's own device: the compute roof is the best GEMM rate of its "
        "roofline loops (two cached GEMMs of a step's shapes), a workload's memory roof the "
        "fastest copy of a buffer at least as large as its dataset; bytes = the step's rows of "
        "X and Y, and W and b read and written once. GPU rows are bounded only by GPU "
        "yardsticks. gdbench plot draws the same roofs.")


def test_the_time_to_target_table_cell_by_cell(tmp_path: Path) -> None:
    from gdbench.report import tables

    path = write_run(tmp_path / "run.json", workloads=("crops", "small"),
                     backends=("numpy", "jax"), seed=1, slow_share=0.0)
    section = next(s for s in tables.run_sections(load_run(path))
                   if s.title.startswith("time to the shared target"))
    assert section.title == ("time to the shared target, hot s / cold s (cold adds prepare "
                             "and compile) — Test CPU 9000, 2 cores")
    # crops never reaches its target: blank cells. small's at step 128: hot = 128 steps of
    # its µs per step (with the step's interval), cold adds prepare (jax: 0.35 s).
    assert section.table.to_dict("records") == [
        {"workload": "crops", "numpy": "", "jax": ""},
        {"workload": "small", "numpy": "0.00131 ±2% / 0.00231",
         "jax": "0.00192 ±1.9% / 0.352"}]
    assert section.notes == [
        "target: 1.01 × the least-squares MSE, steps from the float64 reference, trained past "
        "its plan if need be, up to 50 × the plan's steps or 2e+11 FLOPs, whichever is fewer "
        "(the cap): crops: not reached in 250 steps (1 × its plan: the cap); small: 128 of "
        "256 steps; hot = steps × µs/step, cold = prepare_s + hot"]


def test_a_float64_rows_limit_moves_eight_bytes_an_item(tmp_path: Path) -> None:
    path = write_run(tmp_path / "run.json", workloads=("crops",), backends=("numpy", "jax"),
                     dtype="float64", seed=1, bandwidths={"crops": 0.01})
    s = summary(load_run(path)).set_index(["workload", "backend"])
    jax = s.loc[("crops", "jax")]
    flops_step, bytes_step = 3 * (4 * 3 * 2 + 6 * 2), (3 * 5 + 2 * 8) * 8
    assert jax["limit_kind"] == "memory"
    assert jax["limit_us"] == pytest.approx(bytes_step / 0.01e9 * 1e6)  # a slow copy binds
    assert jax["intensity"] == pytest.approx(flops_step / bytes_step)


def test_a_run_saved_without_dtypes_is_labelled_and_bounded_as_float32(tmp_path: Path) -> None:
    from gdbench.report import tables

    doc = make_run(workloads=("crops",), backends=("numpy", "jax"), seed=1,
                   bandwidths={"crops": 0.01})
    for bench in doc["benchmarks"]:
        bench["extra_info"].pop("dtype", None)
    path = save_run(tmp_path / "old.json", doc)
    s = summary(load_run(path))
    training = s[s["kind"] == "training"].set_index("backend")
    assert sorted(training["label"]) == ["jax", "numpy"] and (s["dtype"] == "").all()
    assert training.loc["jax", "limit_us"] == pytest.approx((3 * 5 + 2 * 8) * 4 / 0.01e9 * 1e6)
    assert tables._limits_line(s).startswith("roofs: compute ")
    # The roofs read straight from the run (as gdbench plot reads them) are keyed alike.
    assert list(tables.roofs_by_run(load_run(path))) == [("old", "", "cpu")]


def _edit_first_training_row(tmp_path: Path, **values: object) -> pd.DataFrame:
    """The summary of a crops-and-small run whose first training row (crops' numpy) is
    changed to ``values``, indexed by workload and backend."""
    frame = load_run(write_run(tmp_path / "run.json", workloads=("crops", "small"),
                               backends=("numpy", "jax"), seed=1))
    first = frame.index[frame["kind"] == "training"][0]
    assert frame.loc[first, "backend"] == "numpy" and frame.loc[first, "workload"] == "crops"
    for key, value in values.items():
        frame[key] = frame[key].astype(object)
        frame.at[first, key] = value
    return summary(frame).set_index(["workload", "backend"])


@pytest.mark.parametrize("values", [{"steps": 0}, {"flops": math.inf}, {"d": None},
                                    {"steps": None}])
def test_a_row_without_usable_figures_has_no_limit_and_the_rows_after_it_do(
        tmp_path: Path, values: dict) -> None:
    s = _edit_first_training_row(tmp_path, **values)
    assert math.isnan(s.loc[("crops", "numpy"), "limit_us"])
    assert s.loc[("crops", "numpy"), "limit_kind"] == ""
    for workload, backend in (("crops", "jax"), ("small", "numpy"), ("small", "jax")):
        assert s.loc[(workload, backend), "limit_us"] > 0


def test_a_one_step_run_has_a_limit(tmp_path: Path) -> None:
    frame = load_run(write_run(tmp_path / "run.json", workloads=("crops",),
                               backends=("numpy",), seed=1))
    one = frame.assign(steps=1, epochs=1, n=3, flops=3 * (4 * 3 * 2 + 6 * 2))
    numpy = summary(one).set_index("backend").loc["numpy"]
    assert numpy["intensity"] == pytest.approx(3 * 36 / ((3 * 5 + 2 * 8) * 4))
    assert numpy["limit_us"] > 0


def test_a_row_whose_workload_has_no_copy_has_no_limit_and_the_rows_after_it_do(
        tmp_path: Path) -> None:
    doc = make_run(workloads=("crops", "small"), backends=("numpy", "jax"), seed=1)
    for bench in doc["benchmarks"]:
        info = bench["extra_info"]
        if info["kind"] == "roofline" and info["workload"] == "crops":
            info.update(bandwidth_gbs=None, copy_bytes=None)
        elif info["kind"] == "roofline":  # small's copy, of unknown size: its own only
            info["copy_bytes"] = None
    path = save_run(tmp_path / "run.json", doc)
    s = summary(load_run(path)).set_index(["workload", "backend"])
    assert math.isnan(s.loc[("crops", "numpy"), "limit_us"])
    assert math.isnan(s.loc[("crops", "jax"), "limit_us"])
    assert s.loc[("small", "numpy"), "limit_us"] > 0 and s.loc[("small", "jax"), "limit_us"] > 0


def test_a_run_without_a_roofline_loop_says_its_roofs_are_not_in_it(tmp_path: Path) -> None:
    from gdbench.report import tables

    doc = make_run(workloads=("crops",), backends=("numpy", "jax"), seed=1)
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["extra_info"]["kind"] != "roofline"]
    path = save_run(tmp_path / "run.json", doc)
    assert tables._limits_line(summary(load_run(path))) == "roofs: not in this run"


def test_the_roofs_of_each_dtype_and_device_are_named_when_a_run_has_several(
        tmp_path: Path) -> None:
    from gdbench.report import tables

    def merged(first: dict, second: dict) -> pd.DataFrame:
        doc = {**first, "benchmarks": first["benchmarks"] + second["benchmarks"]}
        return summary(load_run(save_run(tmp_path / "run.json", doc)))

    f32 = make_run(workloads=("crops",), backends=("numpy", "jax"), seed=1)
    f64 = make_run(workloads=("crops",), backends=("numpy",), dtype="float64", seed=1)
    lines = tables._limits_line(merged(f32, f64)).removeprefix("roofs: ").split("; ")
    assert [line.split(" ")[:2] for line in lines] == [
        ["(float32)", "compute"], ["(float32)", "memory"],
        ["(float64)", "compute"], ["(float64)", "memory"]]
    # In the order the run has them.
    lines = tables._limits_line(merged(f64, f32)).removeprefix("roofs: ").split("; ")
    assert [line.split(" ")[0] for line in lines] == ["(float64)"] * 2 + ["(float32)"] * 2
    gpu = on_gpu(f32, ("jax",), {"crops": (50.0, 900.0)})
    lines = tables._limits_line(merged(gpu, f64)).removeprefix("roofs: ").split("; ")
    assert sorted(line.split(" ")[:3] for line in lines) == [
        ["(float32,", "cpu)", "compute"], ["(float32,", "cpu)", "memory"],
        ["(float32,", "cuda)", "compute"], ["(float32,", "cuda)", "memory"],
        ["(float64,", "cpu)", "compute"], ["(float64,", "cpu)", "memory"]]
    lines = tables._limits_line(summary(load_run(_gpu_run(tmp_path, None)))).split("; ")
    assert lines[0].startswith("roofs: (cpu) compute ") and lines[1].startswith("(cpu) memory")
    assert lines[2].startswith("(cuda) no limit: no cuda yardstick in this run")


def test_a_cell_beside_a_neighbour_is_marked() -> None:
    from gdbench.judge import trust
    from gdbench.report import tables

    row = pd.Series({"step_us": 99.3, "spread": 0.021, "doubts": (trust.NEIGHBOUR,)})
    assert tables.us_cell(row) == "99.3 ±2.1% ‡"


def test_every_run_of_a_frame_gets_its_tables(tmp_path: Path) -> None:
    from gdbench.report import tables

    one = write_run(tmp_path / "one.json", workloads=("crops",), backends=("numpy",), seed=1)
    two = write_run(tmp_path / "two.json", workloads=("crops",), backends=("numpy",), seed=2)
    titles = [s.title for s in tables.run_sections(load_runs([one, two]))]
    assert titles.count("µs per step — Test CPU 9000, 2 cores") == 2
    assert len(titles) == 2 * len(tables.run_sections(load_run(one)))


def test_a_backend_missing_from_one_workload_leaves_its_cell_blank(tmp_path: Path) -> None:
    from gdbench.report import tables

    doc = make_run(workloads=("crops", "small"), backends=("numpy", "jax"), seed=1,
                   slow_share=0.0)
    doc["benchmarks"] = [b for b in doc["benchmarks"]
                         if (b["extra_info"]["workload"], b["extra_info"]["backend"])
                         != ("crops", "jax")]
    path = save_run(tmp_path / "run.json", doc)
    table = tables.run_sections(load_run(path))[0].table
    assert table.loc[table["workload"] == "crops", "jax"].tolist() == [""]
    assert table.loc[table["workload"] == "small", "jax"].tolist() != [""]


def test_the_break_even_memory_and_fit_sections_word_for_word(tmp_path: Path) -> None:
    from gdbench.report import tables

    doc = make_run(workloads=("crops", "small"), backends=("numpy", "jax"), seed=1,
                   slow_share=0.0)
    for bench in doc["benchmarks"]:
        if bench["extra_info"]["kind"] == "training":
            bench["extra_info"].update(memory_method="tracemalloc", memory_peak_bytes=4096.0,
                                       memory_allocations_per_step=2.0)
    path = save_run(tmp_path / "run.json", doc)
    on = " — Test CPU 9000, 2 cores"
    sections = {s.title: s for s in tables.run_sections(load_run(path))}
    breakeven = sections["break-even: steps after which a compiled backend, compile included, "
                         "overtakes an eager one" + on]
    assert breakeven.notes == ["(prepare_c - prepare_e) / (step_e - step_c); never when its "
                               "step is not faster"]
    # jax compiles (0.3 s) and is slower per step than numpy: it never overtakes it; the
    # run has no torch-cpu to compare with.
    assert breakeven.table.to_dict("records") == [
        {"workload": w, "backend": "jax", "vs torch-cpu": "", "vs numpy": "never"}
        for w in ("crops", "small")]
    memory = sections["memory of one run: peak above its start, allocations per step" + on]
    assert memory.table.to_dict("records") == [
        {"workload": w, "numpy": "4.00 KiB, 2/step", "jax": "4.00 KiB, 2/step"}
        for w in ("crops", "small")]
    assert memory.notes == [
        "see gdbench.harness.memory: tracemalloc (numpy), torch.profiler (torch CPU), the CUDA "
        "allocator (for CUDA graphs, the graph pool reserved in prepare), JAX: the device's "
        "peak when it rose during the run, else XLA's memory analysis of the compiled calls"]
    fit = sections["fixed cost α and throughput β: step = α + FLOPs / β" + on]
    assert fit.table.to_dict("records") == [
        {"backend": "numpy", "α µs/step": "5.80", "α 95% CI": "[5.71, 5.93]",
         "β GFLOP/s": "1.01", "β 95% CI": "[0.967, 1.06]"},
        {"backend": "jax", "α µs/step": "12.1", "α 95% CI": "[11.8, 12.3]",
         "β GFLOP/s": "1.54", "β 95% CI": "[1.40, 1.75]"}]
    assert fit.notes == ["fitted over the run's workloads, weighted by relative error; 95% "
                         "intervals from resampling each workload's rounds"]


def test_a_target_reached_at_the_plans_last_step_is_within_the_plan() -> None:
    from gdbench.report import tables

    row = pd.Series({"target_plan_steps": 256, "target_steps": 256, "target_cap_steps": 12800})
    assert tables._target_steps(row) == "256 of 256 steps"
    past = pd.Series({"target_plan_steps": 256, "target_steps": 257, "target_cap_steps": 12800})
    assert tables._target_steps(past) == "257 steps (1 × its plan of 256)"


@pytest.mark.parametrize(("method", "peak", "allocs", "cell"), [
    ("tracemalloc", 4096.0, 2.0, "4.00 KiB, 2/step"),
    ("tracemalloc", 4096.0, math.nan, "4.00 KiB"),  # no allocation count: no count
    ("tracemalloc", math.nan, math.nan, "n/a"),  # measured, but nothing came of it
    (math.nan, math.nan, math.nan, ""),  # a run without memory measurements
    ("jax-memory-analysis", 2048.0, math.nan, "2.00 KiB (XLA analysis)"),
    ("torch-cuda-graph-pool", 10240.0, 0.0, "10.0 KiB graph pool, 0/step"),
])
def test_the_memory_cell(method: object, peak: float, allocs: float, cell: str) -> None:
    from gdbench.report import tables

    row = pd.Series({"memory_method": method, "memory_peak_bytes": peak,
                     "memory_allocations_per_step": allocs}, dtype=object)
    assert tables._memory_cell(row) == cell
