"""The run model (gdbench.records.run): a saved run and its benchmarks, read by name."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from _benchjson import make_run, write_run

from gdbench.data.errors import InputError
from gdbench.records.run import ROOFLINE, TRAINING, Benchmark, Run, merge


def _run() -> dict:
    return make_run(workloads=("crops", "small"), backends=("numpy", "jax"))


def test_benchmarks_are_read_by_name() -> None:
    run = Run(_run())
    training = [b for b in run.benchmarks if b.training]
    assert {(b.backend, b.workload) for b in training} == {
        (backend, workload) for backend in ("numpy", "jax") for workload in ("crops", "small")}
    roof = [b for b in run.benchmarks if not b.training]
    assert roof and all(b.kind == ROOFLINE and b.backend == ROOFLINE for b in roof)
    first = training[0]
    assert first.ref_data == [float(x) for x in first.raw["extra_info"]["ref_data"]]
    assert first.paired and first.key == str(first.raw.get("fullname") or first.raw["name"])
    assert list(run.paired_training()) == training
    assert run.trained


def test_an_older_benchmark_without_kind_or_extra_info_is_read_from_its_name() -> None:
    roof = Benchmark({"name": "bench_roofline[crops]", "group": "crops"})
    assert roof.kind == ROOFLINE and roof.backend == ROOFLINE and not roof.training
    assert roof.workload == "crops" and roof.extra == {} and roof.ref_data is None
    train = Benchmark({"name": "bench_training[crops-numpy]",
                       "params": {"backend": "numpy", "workload": "crops"}})
    assert train.kind == TRAINING and train.backend == "numpy" and train.workload == "crops"
    assert not train.paired  # no reference with its rounds
    assert Benchmark({"name": "x", "extra_info": "not a dict"}).extra == {}


def test_disagreement_is_a_training_benchmark_whose_agrees_is_false() -> None:
    bench = copy.deepcopy(next(b for b in _run()["benchmarks"] if "training" in b["name"]))
    assert Benchmark(bench).training and not Benchmark(bench).disagrees
    bench["extra_info"]["agrees"] = False
    assert Benchmark(bench).disagrees
    bench["extra_info"]["agrees"] = None  # unknown is not a disagreement
    assert not Benchmark(bench).disagrees


def test_a_run_of_rooflines_only_trained_nothing() -> None:
    doc = _run()
    doc["benchmarks"] = [b for b in doc["benchmarks"] if not Benchmark(b).training]
    assert not Run(doc).trained and list(Run(doc).paired_training()) == []


def test_index_replace_and_note_change_the_document_itself() -> None:
    doc = _run()
    run = Run(doc)
    name = doc["benchmarks"][2]["name"]
    assert run.index(name) == 2 and run.index("no such benchmark") is None
    run.replace(2, {"name": "new"})
    assert doc["benchmarks"][2] == {"name": "new"}
    run.note("resettled", {"benchmark": "a"})
    run.note("resettled", {"benchmark": "b"})
    assert doc["machine_info"]["gdbench"]["resettled"] == [{"benchmark": "a"},
                                                           {"benchmark": "b"}]
    bare = Run({"benchmarks": []})
    bare.gdbench["x"] = 1
    assert bare.doc["machine_info"] == {"gdbench": {"x": 1}}


def test_load_and_save_round_trip_atomically(tmp_path: Path) -> None:
    path = write_run(tmp_path / "run.json", workloads=("crops",), backends=("numpy",))
    run = Run.load(path)
    run.gdbench["audit"] = {"passed": True}
    run.save(path)
    assert json.loads(path.read_text())["machine_info"]["gdbench"]["audit"] == {"passed": True}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary left
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_load_refuses_what_is_not_a_run_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        Run.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError) as err:
        Run.load(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_merge_concatenates_the_parts_and_keeps_every_benchmark() -> None:
    a = make_run(workloads=("crops",), backends=("numpy",))
    b = make_run(workloads=("crops",), backends=("jax",))
    doc = merge([a, b], {"torch-cuda": "no CUDA device"})
    assert [x["name"] for x in doc["benchmarks"]] == (
        [x["name"] for x in a["benchmarks"]] + [x["name"] for x in b["benchmarks"]])
    assert Run(doc).gdbench["unavailable"] == {"torch-cuda": "no CUDA device"}
    assert Run(doc).gdbench["isolation"] == "process per backend"
