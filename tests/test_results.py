"""gdbench.results: a saved run becomes a tidy frame; every bad file is one clear error."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from _benchjson import bad_run_files, machine_info, make_run, write_run

from gdbench import machine
from gdbench.data.errors import InputError
from gdbench.results import COLUMNS, load_run, load_runs, runs_of, write_atomic


def test_one_row_per_benchmark_with_the_documented_columns(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops", "small"), backends=("numpy", "jax"), rounds=7)
    path = tmp_path / "run1.json"
    path.write_text(json.dumps(doc))
    frame = load_run(path)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == len(doc["benchmarks"]) == 6
    assert set(frame["kind"]) == {"training", "roofline"}
    assert set(frame["backend"]) == {"numpy", "jax", "roofline"}
    assert (frame["run"] == "run1").all()
    assert (frame["fingerprint"] == machine.fingerprint(doc["machine_info"])).all()
    assert (frame["machine"] == machine.label(doc["machine_info"])).all()
    assert frame["machine_known"].all()


def test_times_are_per_round_seconds_and_per_step_microseconds(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=9)
    frame = load_run(write_run(tmp_path / "r.json", workloads=("crops",), backends=("numpy",),
                               rounds=9))
    bench = doc["benchmarks"][1]
    row = frame[frame["backend"] == "numpy"].iloc[0]
    assert row["median_s"] == pytest.approx(bench["stats"]["median"])
    assert row["step_us"] == pytest.approx(row["median_s"] / row["steps"] * 1e6)
    assert row["gflops"] == pytest.approx(row["flops"] / row["median_s"] / 1e9)
    assert len(row["data"]) == row["rounds"] == 9
    assert row["iterations"] == 1
    assert row["agrees"] is True
    roof = frame[frame["kind"] == "roofline"].iloc[0]
    assert math.isnan(roof["final_loss"])


def test_paired_rounds_are_read_for_training_benchmarks(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy", "jax"), rounds=9)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    frame = load_run(path).set_index("backend")
    extra = doc["benchmarks"][1]["extra_info"]
    numpy = frame.loc["numpy"]
    assert numpy["norm_data"] == pytest.approx(extra["norm_data"])
    assert len(numpy["norm_data"]) == len(numpy["data"]) == 9
    assert numpy["norm_data"] == pytest.approx(
        [t / r for t, r in zip(numpy["data"], extra["ref_data"], strict=True)])
    assert numpy["norm_median"] == pytest.approx(statistics.median(numpy["norm_data"]))
    assert numpy["ref_s"] == pytest.approx(statistics.median(extra["ref_data"]))
    roof = frame.loc["roofline"]
    assert roof["norm_data"] is None and math.isnan(roof["norm_median"])
    assert math.isnan(roof["ref_s"])


def test_a_run_from_before_paired_timing_has_no_norm_data(tmp_path: Path) -> None:
    frame = load_run(write_run(tmp_path / "r.json", paired=False))
    assert frame["norm_data"].isna().all()
    assert frame["norm_median"].isna().all() and frame["ref_s"].isna().all()
    assert frame["data"].notna().all()


def test_a_run_saved_without_rounds_keeps_its_paired_rounds(tmp_path: Path) -> None:
    frame = load_run(write_run(tmp_path / "r.json", save_data=False, rounds=7))
    train = frame[frame["kind"] == "training"]
    assert frame["data"].isna().all()
    assert all(len(x) == 7 for x in train["norm_data"])


@pytest.mark.parametrize("bad", [[], [1.0, "x"], [1.0, 0.0], [1.0, -2.0], "1.0", None])
def test_malformed_rounds_are_left_out(tmp_path: Path, bad: object) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=5)
    bench = doc["benchmarks"][1]
    bench["extra_info"]["norm_data"] = bad
    bench["extra_info"]["norm_median"] = "?"
    bench["stats"]["data"] = bad
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    row = load_run(path).iloc[1]
    assert row["norm_data"] is None and row["data"] is None
    assert math.isnan(row["norm_median"])


def test_a_run_saved_without_rounds_has_no_data(tmp_path: Path) -> None:
    frame = load_run(write_run(tmp_path / "r.json", save_data=False))
    assert frame["data"].isna().all()
    assert frame["median_s"].gt(0).all()


def test_a_run_from_plain_pytest_lacks_gdbench_machine_info(tmp_path: Path) -> None:
    path = write_run(tmp_path / "r.json", info=machine_info(cpu="Plain CPU", cores=4,
                                                           gdbench=False))
    frame = load_run(path)
    assert not frame["machine_known"].any()
    label = frame["machine"].iloc[0]
    assert "Plain CPU" in label and "4 cores" in label and "no gdbench machine info" in label


def test_minimal_entries_fall_back_on_params_and_group(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    for bench in doc["benchmarks"]:
        del bench["extra_info"]
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(doc))
    frame = load_run(path)
    assert list(frame["backend"]) == ["roofline", "numpy"]
    assert list(frame["kind"]) == ["roofline", "training"]
    assert (frame["workload"] == "crops").all()
    assert frame["steps"].isna().all()


def test_load_runs_keeps_clashing_file_names_apart(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    p1 = write_run(tmp_path / "a" / "run.json", workloads=("crops",), seed=1)
    p2 = write_run(tmp_path / "b" / "run.json", workloads=("crops",), seed=2)
    frame = load_runs([p1, p2])
    assert [r["run"] for r in runs_of(frame)] == ["a/run", "b/run"]


@pytest.mark.parametrize("what", ["missing", "empty", "truncated", "not JSON", "not a run",
                                  "a JSON list", "no benchmarks", "no stats"])
def test_bad_files_are_one_line_input_errors(tmp_path: Path, what: str) -> None:
    path = bad_run_files(tmp_path)[what]
    with pytest.raises(InputError) as info:
        load_run(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "report.md"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]
