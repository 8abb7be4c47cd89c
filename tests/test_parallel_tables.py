"""The data-parallel answers in the tables, on constructed runs: what the collective costs
per step, the workload from which N workers beat one process (or never), and the α/β fit
with and without the collective."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _benchjson import make_run

from gdbench.records.results import load_run
from gdbench.report.tables import (
    collective_table,
    compute_only_fits,
    data_parallel_sections,
    fit_table,
    fits,
    parallel_break_even,
    render_compare,
    render_run,
    summary,
)

# µs per step of the constructed data-parallel rows: (step, collective). torch-ddp loses to
# torch-cpu (25, 30 µs) on crops and wins on small; jax-sharded never beats jax-scan
# (0.8, 4 µs), and its collective is a fixed 10 µs a step.
DATA_PARALLEL = {
    "torch-ddp": ("torch-cpu", {"crops": (600.0, 500.0), "small": (20.0, 5.0)}),
    "jax-sharded": ("jax-scan", {"crops": (12.0, 10.0), "small": (15.0, 10.0)}),
}


def _data_parallel_bench(like: dict[str, Any], backend: str, single: str, step_us: float,
                         collective_us: float) -> dict[str, Any]:
    """A copy of ``like`` (a training benchmark of the same workload) as ``backend``'s,
    with constant rounds, so that every figure is known exactly."""
    bench = copy.deepcopy(like)
    info = bench["extra_info"]
    workload, steps = info["workload"], info["steps"]
    round_s = step_us * steps * 1e-6
    bench["name"] = f"bench_training[{workload}-{backend}]"
    bench["params"]["backend"] = info["backend"] = backend
    bench["stats"].update(median=round_s, mean=round_s, min=round_s, max=round_s,
                          data=[round_s] * 5, rounds=5)
    only_s = (step_us - collective_us) * steps * 1e-6
    info.update(world=2, single_process=single, step_us=step_us,
                collective_step_us=collective_us, compute_only_data=[only_s] * 5,
                compute_only_step_us=step_us - collective_us)
    info.pop("norm_data", None)
    return bench


def write_parallel_run(path: Path, against: tuple[str, ...] = ("torch-cpu", "jax-scan"),
                       ) -> Path:
    doc = make_run(workloads=("crops", "small"), backends=("numpy", *against), sigma=0.0,
                   drift=[1.0])
    benches = doc["benchmarks"]
    like = {b["extra_info"]["workload"]: b for b in benches
            if b["extra_info"]["backend"] == "numpy"}
    for backend, (single, figures) in DATA_PARALLEL.items():
        for workload, (step_us, collective_us) in figures.items():
            benches.append(_data_parallel_bench(like[workload], backend, single, step_us,
                                                collective_us))
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def frame(tmp_path: Path) -> pd.DataFrame:
    return summary(load_run(write_parallel_run(tmp_path / "run.json")))


def test_the_run_loads_the_data_parallel_fields(frame: pd.DataFrame) -> None:
    r = frame.set_index(["workload", "backend"]).loc[("crops", "torch-ddp")]
    assert r["world"] == 2 and r["single_process"] == "torch-cpu"
    assert r["collective_step_us"] == 500.0 and r["compute_only_step_us"] == 100.0
    assert r["compute_only_data"] == pytest.approx([100e-6 * r["steps"]] * 5)
    assert pd.isna(frame.set_index(["workload", "backend"]).loc[("crops", "numpy"), "world"])


def test_the_collective_s_cost_per_step_and_its_share(frame: pd.DataFrame) -> None:
    table = collective_table(frame).set_index("workload")
    assert list(table.columns) == ["torch-ddp", "jax-sharded"]  # only data-parallel rows
    assert table.loc["crops", "torch-ddp"] == "500 of 600 (83%)"
    assert table.loc["small", "torch-ddp"] == "5.00 of 20.0 (25%)"
    assert table.loc["crops", "jax-sharded"] == "10.0 of 12.0 (83%)"


def test_the_workers_beat_one_process_from_a_workload_or_never(frame: pd.DataFrame) -> None:
    table = parallel_break_even(frame).set_index("backend")
    assert list(table.columns) == ["workers", "against", "crops", "small", "faster from"]
    ddp = table.loc["torch-ddp"]
    assert (ddp["workers"], ddp["against"]) == ("2", "torch-cpu")
    assert ddp["crops"] == "×0.0417"  # 25 / 600
    assert ddp["small"] == "×1.50"  # 30 / 20
    assert ddp["faster from"] == "small"
    assert table.loc["jax-sharded", "faster from"] == "never"


def test_the_workers_rows_keep_the_runs_order_and_one_workload_is_enough(
        frame: pd.DataFrame) -> None:
    assert list(parallel_break_even(frame)["backend"]) == ["torch-ddp", "jax-sharded"]
    crops = frame[frame["workload"] == "crops"]
    table = parallel_break_even(crops)
    assert table.to_dict("records") == [
        {"backend": "torch-ddp", "workers": "2", "against": "torch-cpu", "crops": "×0.0417",
         "faster from": "never"},
        {"backend": "jax-sharded", "workers": "2", "against": "jax-scan", "crops": "×0.0667",
         "faster from": "never"}]


def test_workers_as_fast_as_one_process_are_not_faster(frame: pd.DataFrame) -> None:
    """×1.00 exactly is no win; a run that does not say how many workers leaves it blank."""
    even = frame.copy()
    small = (even["workload"] == "small") & (even["label"] == "torch-ddp")
    cpu = (even["workload"] == "small") & (even["label"] == "torch-cpu")
    even.loc[small, "step_us"] = float(even.loc[cpu, "step_us"].iloc[0])
    even.loc[even["label"] == "torch-ddp", "world"] = float("nan")
    ddp = parallel_break_even(even).set_index("backend").loc["torch-ddp"]
    assert (ddp["small"], ddp["faster from"], ddp["workers"]) == ("×1.00", "never", "")


def test_without_the_one_process_backend_there_is_no_verdict(tmp_path: Path) -> None:
    frame = summary(load_run(write_parallel_run(tmp_path / "r.json", against=("torch-cpu",))))
    table = parallel_break_even(frame).set_index("backend")
    assert table.loc["jax-sharded", "faster from"] == "no jax-scan in this run"
    assert table.loc["jax-sharded", "crops"] == ""


def test_the_fit_shows_the_collective_as_a_fixed_cost(frame: pd.DataFrame) -> None:
    table = fit_table(frame)
    assert list(table["backend"]) == ["numpy", "torch-cpu", "torch-ddp", "torch-ddp compute-only",
                                     "jax-scan", "jax-sharded", "jax-sharded compute-only"]
    # jax-sharded's collective is 10 µs on both workloads: α moves by exactly that, and
    # the throughput β stays.
    own, alone = fits(frame)["jax-sharded"], compute_only_fits(frame)["jax-sharded compute-only"]
    assert own.alpha_s - alone.alpha_s == pytest.approx(10e-6, rel=1e-9)
    assert own.beta == pytest.approx(alone.beta, rel=1e-9)


def test_compute_only_fits_need_two_workloads_and_keep_the_runs_order(
        frame: pd.DataFrame) -> None:
    assert list(compute_only_fits(frame)) == ["torch-ddp compute-only",
                                              "jax-sharded compute-only"]
    # torch-ddp's compute-only loop timed on one workload only: no fit for it, and
    # jax-sharded, after it, still has its own.
    one = frame.copy()
    small_ddp = (one["label"] == "torch-ddp") & (one["workload"] == "small")
    one.loc[small_ddp, "compute_only_data"] = None
    assert list(compute_only_fits(one)) == ["jax-sharded compute-only"]


def test_the_data_parallel_sections_and_their_notes_word_for_word(frame: pd.DataFrame) -> None:
    collective, parallel = data_parallel_sections(frame, " — here")
    assert collective.title == ("data parallelism: what the collective costs per step, µs of "
                                "the step's µs (share) — here")
    assert collective.notes == [
        "collective = the data-parallel loop's µs/step less the same loop's without its "
        "collective (compute-only: each worker updates its own replica), on the same "
        "workers, timed in turns of blocks after the benchmark, in the same run; the "
        "difference of the two medians. Its share is of the loop's median step in those same "
        "turns."]
    assert parallel.title == "data parallelism: N workers against one process — here"
    assert parallel.notes == [
        "×: the one-process backend's µs/step over the data-parallel one's, in the same run "
        "(above ×1 the workers are faster); the one process runs with the run's threads "
        "(--threads N, else its library's default, every core). faster from: the smallest "
        "workload of the run on which the workers win, or never."]


def test_render_run_and_compare_show_the_sections_and_their_notes(tmp_path: Path) -> None:
    path = write_parallel_run(tmp_path / "run.json")
    for text in (render_run(path), render_compare(load_run(path))):
        assert "data parallelism: what the collective costs per step" in text
        assert "data parallelism: N workers against one process" in text
        assert "faster from: the smallest workload of the run on which the workers win" in text
        assert ("data parallelism: N workers against one process — Test CPU 9000, 2 cores"
                in text.splitlines())
    assert ("jax-sharded: α − α compute-only = 10.00 µs per step, the collective's fixed cost "
            "(the same loop without it is the compute-only row)") in render_compare(load_run(path))
    plain = make_run(workloads=("crops",), backends=("numpy",))
    assert collective_table(summary(load_run(_save(tmp_path, plain)))).empty
    assert parallel_break_even(summary(load_run(_save(tmp_path, plain)))).empty


def _save(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(doc))
    return path


def test_the_share_is_of_the_loop_timed_beside_the_compute_only_one(tmp_path: Path) -> None:
    """A backend with two speeds: its benchmark's rounds read 600 µs/step, the turns
    beside the compute-only loop 1,000; the collective (500) is a share of the latter."""
    path = write_parallel_run(tmp_path / "run.json")
    doc = json.loads(path.read_text())
    for b in doc["benchmarks"]:
        info = b["extra_info"]
        if info["backend"] == "torch-ddp" and info["workload"] == "crops":
            info["collective_full_step_us"] = 1000.0
    path.write_text(json.dumps(doc))
    table = collective_table(summary(load_run(path))).set_index("workload")
    assert table.loc["crops", "torch-ddp"] == "500 of 1,000 (50%)"
    assert table.loc["small", "torch-ddp"] == "5.00 of 20.0 (25%)"  # older runs: the median
