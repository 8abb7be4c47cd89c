"""gdbench.records.results: a saved run becomes a tidy frame; every bad file is one clear error."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import statistics
from pathlib import Path

import pandas as pd
import pytest
from _benchjson import bad_run_files, machine_info, make_run, save_run, write_run

from gdbench.data.errors import InputError
from gdbench.harness import machine
from gdbench.records.results import (
    COLUMNS,
    backends_in,
    has_paired_rounds,
    load_run,
    load_runs,
    ordered,
    read_run,
    runs_of,
    workloads_in,
    write_atomic,
)


def test_one_row_per_benchmark_with_the_documented_columns(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops", "small"), backends=("numpy", "jax"), rounds=7)
    path = save_run(tmp_path / "run1.json", doc)
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
    path = save_run(tmp_path / "r.json", doc)
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
    path = save_run(tmp_path / "r.json", doc)
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
    path = save_run(tmp_path / "bare.json", doc)
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


def test_commit_and_dirty_come_from_commit_info(tmp_path: Path) -> None:
    path = write_run(tmp_path / "r.json", commit={"id": "abc123", "dirty": True})
    frame = load_run(path)
    assert (frame["commit"] == "abc123").all()
    assert all(d is True for d in frame["dirty"])
    assert runs_of(frame)[0]["commit"] == "abc123" and runs_of(frame)[0]["dirty"] is True
    clean = load_run(write_run(tmp_path / "c.json", commit={"id": "def", "dirty": False}))
    assert all(d is False for d in clean["dirty"])
    for odd in ({}, {"id": "", "dirty": "yes"}, {"id": 12, "dirty": 1}, None):
        doc = make_run(workloads=("crops",), backends=("numpy",))
        doc["commit_info"] = odd
        p = tmp_path / "odd.json"
        p.write_text(json.dumps(doc))
        frame = load_run(p)
        assert frame["commit"].isna().all()
        assert all(d is None for d in frame["dirty"])


def test_fields_missing_from_a_bare_entry_fall_back(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=6)
    bench = doc["benchmarks"][1]
    extra = bench["extra_info"]
    for key in ("steps", "flops", "norm_median"):
        del extra[key]
    extra.update(step_us=12.5, gflops=0.25, agrees="yes", ref_s=-1.0)
    del bench["stats"]["rounds"]
    del bench["stats"]["iterations"]
    path = save_run(tmp_path / "r.json", doc)
    row = load_run(path).iloc[1]
    assert row["step_us"] == 12.5 and row["gflops"] == 0.25  # as recorded, not recomputed
    assert row["rounds"] == 6 and row["iterations"] == 1
    assert row["norm_median"] == pytest.approx(statistics.median(extra["norm_data"]))
    assert row["agrees"] is None and math.isnan(row["ref_s"])
    del bench["stats"]["data"]
    path.write_text(json.dumps(doc))
    assert load_run(path).iloc[1]["rounds"] is pd.NA


def test_a_recorded_norm_median_is_kept(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=5)
    doc["benchmarks"][1]["extra_info"]["norm_median"] = 7.5
    path = save_run(tmp_path / "r.json", doc)
    assert load_run(path).iloc[1]["norm_median"] == 7.5


@pytest.mark.parametrize("median", [0, -1.0, "1.0", None, float("nan")])
def test_a_benchmark_without_a_positive_median_is_an_input_error(tmp_path: Path,
                                                                 median: object) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    doc["benchmarks"][1]["stats"]["median"] = median
    path = save_run(tmp_path / "r.json", doc)
    with pytest.raises(InputError, match=r"benchmark bench_training\[crops-numpy\] has no "
                                         r"positive stats.median"):
        load_run(path)


@pytest.mark.parametrize("bad", [["not a dict"], [{"name": "x", "stats": {"median": 1.0},
                                                    "extra_info": [1]}]])
def test_malformed_entries_are_input_errors(tmp_path: Path, bad: list) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    doc["benchmarks"] = bad
    path = save_run(tmp_path / "r.json", doc)
    with pytest.raises(InputError, match=r"benchmark (#1 is not an object|x has a malformed)"):
        load_run(path)


def test_the_same_file_twice_gets_two_names(tmp_path: Path) -> None:
    p = write_run(tmp_path / "run.json", workloads=("crops",))
    frame = load_runs([p, p, p])
    folder = tmp_path.name
    assert [r["run"] for r in runs_of(frame)] == [f"{folder}/run", f"{folder}/run'",
                                                  f"{folder}/run''"]
    assert load_run(p, run="mine")["run"].eq("mine").all()


def test_ordering_helpers() -> None:
    assert ordered(["b", 3, "z", "a", "b", None, "x"], ["x", "b", "q"]) == ["x", "b", "a", "z"]
    frame = pd.DataFrame({"workload": ["medium", "crops", "mine", "small", "crops"],
                          "backend": ["roofline", "jax", "numpy", "zz-custom", "torch-cpu"]})
    assert workloads_in(frame) == ["crops", "small", "medium", "mine"]
    assert backends_in(frame) == ["numpy", "torch-cpu", "jax", "zz-custom", "roofline"]
    assert backends_in(frame[frame["backend"] != "roofline"]) == [
        "numpy", "torch-cpu", "jax", "zz-custom"]


def test_has_paired_rounds() -> None:
    assert has_paired_rounds(pd.Series({"norm_data": [1.0]}))
    assert not has_paired_rounds(pd.Series({"norm_data": []}))
    assert not has_paired_rounds(pd.Series({"norm_data": None}))
    assert not has_paired_rounds(None)


@pytest.mark.parametrize("problem", ["unreadable", "not UTF-8", "a directory"])
def test_unreadable_files_are_one_line_input_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str) -> None:
    path = tmp_path / "r.json"
    if problem == "a directory":
        path.mkdir()
        fragment = "is a directory"
    elif problem == "not UTF-8":
        path.write_bytes(b"\xff\xfe{\x00")
        fragment = "not a text file"
    else:
        path.write_text("{}")

        def denied(self: Path, encoding: str | None = None) -> str:
            raise PermissionError(errno.EACCES, "Permission denied")  # as root never sees

        monkeypatch.setattr(Path, "read_text", denied)
        fragment = r"cannot read it \(Permission denied\)"
    with pytest.raises(InputError, match=fragment) as info:
        read_run(path)
    assert str(path) in str(info.value)


# --- write_atomic ---------------------------------------------------------------------------

def test_write_atomic_writes_utf8_text_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folders" / "report.md"  # created on demand
    write_atomic(target, "µs ✅\n")
    assert target.read_bytes() == "µs ✅\n".encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_atomic_renames_a_hidden_temporary_in_the_same_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        seen.append((str(src), str(dst)))
        assert Path(src).read_bytes() == b"new"  # complete before it takes the name
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "run.json"
    write_atomic(target, b"new")
    [(src, dst)] = seen
    assert Path(dst) == target
    assert Path(src).parent == tmp_path
    assert Path(src).name.startswith(".run.json.") and src.endswith(".tmp")


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")
    real_fdopen = os.fdopen

    class HalfWriter:
        """Writes the first half of the data, then the disk fills up."""

        def __init__(self, fd: int, mode: str) -> None:
            self.file = real_fdopen(fd, mode)

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def write(self, data: bytes) -> int:
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            raise OSError("no space left on device")

    monkeypatch.setattr(os, "fdopen", HalfWriter)
    with pytest.raises(OSError, match="no space left"):
        write_atomic(target, "new content")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_an_interrupt_mid_write_also_cleans_up(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.md"

    def interrupted(path: str, mode: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "chmod", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("what", "message"), [
    ("missing", "{p}: no such file"),
    ("empty", "{p}: the file is empty (an interrupted run?)"),
    ("not JSON", "{p}: not valid JSON (Expecting value at line 1, column 1); is the file "
                 "truncated?"),
    ("not a run", "{p}: not a pytest-benchmark run (no 'benchmarks' list); save runs with "
                  "gdbench run or pytest --benchmark-json"),
    ("a JSON list", "{p}: not a pytest-benchmark run (no 'benchmarks' list); save runs with "
                    "gdbench run or pytest --benchmark-json"),
    ("no benchmarks", "{p}: the run has no benchmarks (were they all skipped?)"),
    ("no stats", "{p}: benchmark x has no positive stats.median; not a pytest-benchmark run?"),
])
def test_bad_files_word_for_word(tmp_path: Path, what: str, message: str) -> None:
    path = bad_run_files(tmp_path)[what]
    with pytest.raises(InputError) as info:
        load_run(path)
    assert str(info.value) == message.format(p=path)


def test_other_read_errors_word_for_word(tmp_path: Path) -> None:
    (tmp_path / "d.json").mkdir()
    (tmp_path / "b.json").write_bytes(b"\xff\xfe")
    with pytest.raises(InputError) as info:
        read_run(tmp_path / "d.json")
    assert str(info.value) == f"{tmp_path / 'd.json'}: is a directory, not a run JSON file"
    with pytest.raises(InputError) as info:
        read_run(tmp_path / "b.json")
    assert str(info.value) == (f"{tmp_path / 'b.json'}: not a text file, so not a "
                               "pytest-benchmark JSON run")
    doc = make_run(workloads=("crops",), backends=("numpy",))
    doc["benchmarks"][0] = 7
    (tmp_path / "r.json").write_text(json.dumps(doc))
    with pytest.raises(InputError) as info:
        load_run(tmp_path / "r.json")
    assert str(info.value) == f"{tmp_path / 'r.json'}: benchmark #1 is not an object"
    doc["benchmarks"][0] = {"name": "y", "stats": {"median": 1.0}, "params": "p"}
    (tmp_path / "r.json").write_text(json.dumps(doc))
    with pytest.raises(InputError) as info:
        load_run(tmp_path / "r.json")
    assert str(info.value) == (f"{tmp_path / 'r.json'}: benchmark y has a malformed "
                               "extra_info or params")


def test_column_types(tmp_path: Path) -> None:
    frame = load_run(write_run(tmp_path / "r.json", workloads=("crops",)))
    for col in ["rounds", "iterations", "n", "d", "k", "batch_size", "epochs", "steps"]:
        assert str(frame[col].dtype) == "Int64", col
    for col in ["median_s", "iqr_s", "mean_s", "stddev_s", "min_s", "step_us", "gflops",
                "flops", "compile_s", "final_loss", "max_abs_diff_vs_numpy", "norm_median",
                "ref_s"]:
        assert frame[col].dtype == float, col
    assert str(frame["datetime"].dtype).startswith("datetime64") and \
        str(frame["datetime"].iloc[0]) == "2026-01-02 03:04:05+00:00"
    assert frame["agrees"].dtype == object and frame["dirty"].dtype == object


def test_a_plain_pytest_run_is_labelled_as_such(tmp_path: Path) -> None:
    path = write_run(tmp_path / "r.json", info=machine_info(cpu="Plain CPU", cores=4,
                                                           gdbench=False))
    assert load_run(path)["machine"].iloc[0] == "Plain CPU, 4 cores (no gdbench machine info)"
    doc = make_run(workloads=("crops",))
    doc["machine_info"] = "broken"
    (tmp_path / "b.json").write_text(json.dumps(doc))
    frame = load_run(tmp_path / "b.json")
    assert frame["machine"].iloc[0] == "unknown CPU, ? cores (no gdbench machine info)"
    assert not frame["machine_known"].any()


def test_names_kinds_and_backends_fall_back_in_order(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    roof, train = doc["benchmarks"]
    roof["extra_info"] = {}
    roof["params"] = {}
    train["extra_info"] = {"kind": "training"}
    train["params"] = {"backend": "from-params", "workload": "w-params"}
    del train["name"]
    (tmp_path / "r.json").write_text(json.dumps(doc))
    frame = load_run(tmp_path / "r.json")
    assert list(frame["name"]) == ["bench_roofline[crops]", "#2"]
    assert list(frame["kind"]) == ["roofline", "training"]
    assert list(frame["backend"]) == ["roofline", "from-params"]
    assert list(frame["workload"]) == ["crops", "w-params"]
    train["params"] = {}
    train["name"] = "plain_bench"
    (tmp_path / "r.json").write_text(json.dumps(doc))
    row = load_run(tmp_path / "r.json").iloc[1]
    assert row["backend"] == "plain_bench" and row["workload"] == "crops"  # group


def test_run_level_columns_by_value(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    doc["datetime"] = "2026-01-02T03:04:05"  # a naive time, as older pytest-benchmark wrote
    path = save_run(tmp_path / "r.json", doc)
    frame = load_run(path)
    assert frame["machine_known"].tolist() == [True, True]
    assert frame["sync"].tolist() == ["none", "none"]
    assert str(frame["datetime"].dt.tz) == "UTC"
    assert frame["datetime"].iloc[0] == pd.Timestamp("2026-01-02 03:04:05", tz="UTC")


def test_a_read_error_word_for_word(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.json"
    path.write_text("{}")

    def denied(self: Path, encoding: str | None = None) -> str:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(InputError) as info:
        read_run(path)
    assert str(info.value) == f"{path}: cannot read it (Permission denied)"


def test_every_field_comes_from_its_place_in_the_json(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=5)
    bench = doc["benchmarks"][1]
    stats, extra = bench["stats"], bench["extra_info"]
    stats["iterations"] = 3
    extra.update(compile_s=0.125, final_loss=0.5, device="cuda", sync="torch.cuda.synchronize",
                 n=11, d=12, k=13, batch_size=14, epochs=15, ref_s=0.0)
    extra["kind"] = "training"
    extra["backend"] = "from-extra"
    bench["params"]["backend"] = "from-params"
    extra["workload"] = "w-extra"
    bench["params"]["workload"] = "w-params"
    stats["rounds"] = 7  # pytest-benchmark's count wins over the saved data's length
    bench["name"] = "plain"  # the kind comes from extra_info, not from the name
    path = save_run(tmp_path / "r.json", doc)
    row = load_run(path).iloc[1]
    assert (row["median_s"], row["iqr_s"], row["mean_s"], row["stddev_s"], row["min_s"]) == (
        stats["median"], stats["iqr"], stats["mean"], stats["stddev"], stats["min"])
    assert (row["rounds"], row["iterations"], row["workload"]) == (7, 3, "w-extra")
    assert (row["compile_s"], row["final_loss"], row["device"], row["sync"]) == (
        0.125, 0.5, "cuda", "torch.cuda.synchronize")
    assert (row["n"], row["d"], row["k"], row["batch_size"], row["epochs"]) == (
        11, 12, 13, 14, 15)
    assert row["kind"] == "training" and row["backend"] == "from-extra"
    assert math.isnan(row["ref_s"])  # not positive
    doc["benchmarks"][0]["extra_info"]["kind"] = "roofline"
    doc["benchmarks"][0]["name"] = "plain_reference"
    path.write_text(json.dumps(doc))
    assert load_run(path).iloc[0]["kind"] == "roofline"


def test_load_runs_numbers_the_rows_afresh(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a.json", workloads=("crops",), backends=("numpy",))
    b = write_run(tmp_path / "b.json", workloads=("crops",), backends=("numpy",))
    frame = load_runs([a, b])
    assert list(frame.index) == [0, 1, 2, 3]
    assert list(frame["run"]) == ["a", "a", "b", "b"]


def test_later_suites_fields_come_from_extra_info(tmp_path: Path) -> None:
    doc = make_run(workloads=("small",), backends=("numpy",), rounds=5)
    roof_extra, train_extra = (b["extra_info"] for b in doc["benchmarks"])
    train_extra.update(prepare_s=0.75, memory_method="tracemalloc", memory_peak_bytes=4096.0,
                       memory_allocations_per_step=2.0,
                       memory_allocated_bytes_per_step=64.0)
    roof_extra.update(bandwidth_gbs=12.5, copy_bytes=2**20, copy_threads=2,
                      target_loss=0.25, target_steps=96,
                      target_plan_steps=256, loss_curve_steps=[0, 128, 256],
                      loss_curve=[1.0, 0.5, 0.25])
    path = save_run(tmp_path / "r.json", doc)
    roof, train = (r for _, r in load_run(path).iterrows())
    assert (train["prepare_s"], train["memory_method"], train["memory_peak_bytes"],
            train["memory_allocations_per_step"],
            train["memory_allocated_bytes_per_step"]) == (0.75, "tracemalloc", 4096.0, 2.0,
                                                          64.0)
    assert (roof["bandwidth_gbs"], roof["copy_bytes"], roof["copy_threads"],
            roof["target_loss"], roof["target_steps"],
            roof["target_plan_steps"]) == (12.5, 2**20, 2, 0.25, 96, 256)
    assert roof["loss_curve_steps"] == [0, 128, 256] and roof["loss_curve"] == [1.0, 0.5, 0.25]
    roof_extra["bandwidth_gbs"] = 0.0
    path.write_text(json.dumps(doc))
    assert math.isnan(load_run(path).iloc[0]["bandwidth_gbs"])


@pytest.mark.parametrize(("busy", "kept"), [
    ([0.01, -0.002, 0.0, 0.03, 0.0], [0.01, -0.002, 0.0, 0.03, 0.0]),  # any sign: kept
    ([0.01, 0.0, 0.0, 0.03], None),  # one reading short of the rounds
    ([0.01, 0.0, 0.0, 0.03, float("inf")], None),
    ([0.01, 0.0, 0.0, 0.03, "x"], None),
    ([0.01, 0.0, 0.0, 0.03, True], None),
    ("0.01", None),
])
def test_neighbour_readings_are_kept_only_when_aligned_with_the_rounds(
        tmp_path: Path, busy: object, kept: list[float] | None) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=5)
    bench = doc["benchmarks"][1]
    bench["extra_info"].update(busy_data=busy, steal_data=busy)
    path = save_run(tmp_path / "r.json", doc)
    row = load_run(path).iloc[1]
    for column in ("busy_data", "steal_data"):
        assert row[column] == kept if kept is not None else row[column] is None
    assert "busy_data" in COLUMNS and "steal_data" in COLUMNS


def test_neighbour_readings_of_a_run_saved_without_rounds_are_left_out(
        tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=5, save_data=False)
    doc["benchmarks"][1]["extra_info"].update(busy_data=[0.0] * 5)
    path = save_run(tmp_path / "r.json", doc)
    assert load_run(path).iloc[1]["busy_data"] is None


def test_reference_rounds_are_kept_only_when_aligned_with_the_paired_rounds(
        tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=5)
    extra = doc["benchmarks"][1]["extra_info"]
    path = save_run(tmp_path / "r.json", doc)
    assert load_run(path).iloc[1]["ref_data"] == extra["ref_data"]
    extra["ref_data"] = extra["ref_data"][:4]
    path.write_text(json.dumps(doc))
    assert load_run(path).iloc[1]["ref_data"] is None


def test_the_neighbour_and_data_parallel_fields_come_from_extra_info(tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=5)
    extra = doc["benchmarks"][1]["extra_info"]
    extra.update(neighbour_cores=0.125, steal_cores=0.25, world=2, single_process="numpy",
                 compute_only_step_us=7.5, collective_step_us=1.5,
                 collective_full_step_us=9.0, compute_only_data=[0.5, 0.25])
    path = save_run(tmp_path / "r.json", doc)
    row = load_run(path).iloc[1]
    assert (row["neighbour_cores"], row["steal_cores"], row["world"],
            row["single_process"]) == (0.125, 0.25, 2, "numpy")
    assert (row["compute_only_step_us"], row["collective_step_us"],
            row["collective_full_step_us"]) == (7.5, 1.5, 9.0)
    assert row["compute_only_data"] == [0.5, 0.25]


def test_wake_readings_are_kept_only_when_aligned_with_the_paired_rounds(
        tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",), rounds=5)
    extra = doc["benchmarks"][1]["extra_info"]
    extra["wake_data"] = [50e-6] * 5
    path = save_run(tmp_path / "r.json", doc)
    assert load_run(path).iloc[1]["wake_data"] == [50e-6] * 5
    extra["wake_data"] = [50e-6] * 4
    path.write_text(json.dumps(doc))
    assert load_run(path).iloc[1]["wake_data"] is None


def test_a_run_without_pytest_benchmarks_options_did_not_turn_the_collector_off(
        tmp_path: Path) -> None:
    doc = make_run(workloads=("crops",), backends=("numpy",))
    for bench in doc["benchmarks"]:
        bench.pop("options", None)
    path = save_run(tmp_path / "r.json", doc)
    assert not load_run(path)["gc_off"].any()


def test_one_benchmark_read_alone_names_itself_in_its_errors() -> None:
    from gdbench.records.results import benchmark_row

    with pytest.raises(InputError) as refused:
        benchmark_row("not an object")  # type: ignore[arg-type]
    assert str(refused.value) == "<benchmark>: benchmark #1 is not an object"
