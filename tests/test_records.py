"""The run model (gdbench.records.run): a saved run and its benchmarks, read by name."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import pytest
from _benchjson import make_run, write_run

from gdbench.data.errors import InputError
from gdbench.harness import machine
from gdbench.records.run import (
    ROOFLINE,
    TRAINING,
    Benchmark,
    Run,
    merge,
    merge_rounds,
    run_name,
    unused_path,
)


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
    assert path.read_text() == json.dumps(run.doc, indent=4)  # as pytest-benchmark writes it
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


# --- each property's fallbacks, by value ---------------------------------------------------

def test_name_key_workload_and_backend_fall_back_in_order() -> None:
    full = Benchmark({"name": "n", "fullname": "f.py::n", "group": "g",
                      "params": {"workload": "pw", "backend": "pb"},
                      "extra_info": {"workload": "ew", "backend": "eb", "kind": "training"}})
    assert (full.name, full.key, full.workload, full.backend) == ("n", "f.py::n", "ew", "eb")
    params = Benchmark({"fullname": "f.py::n", "group": "g",
                        "params": {"workload": "pw", "backend": "pb"}})
    assert (params.name, params.key, params.workload, params.backend) == (
        "f.py::n", "f.py::n", "pw", "pb")
    # A saved kind wins over the name.
    assert Benchmark({"name": "roofline-ish", "extra_info": {"kind": "training"}}).training
    bare = Benchmark({"name": "bench_training[x]", "group": "g"})
    assert (bare.key, bare.workload, bare.backend) == ("bench_training[x]", "g",
                                                        "bench_training[x]")
    assert Benchmark({}).name == ""


def test_round_seconds_are_each_rounds_time_per_run_times_its_runs() -> None:
    bench = Benchmark({"stats": {"data": [0.5, 0.25], "iterations": 4}})
    assert bench.round_seconds == [2.0, 1.0]
    assert Benchmark({"stats": {"data": [0.5], "iterations": 0}}).round_seconds == [0.5]
    assert Benchmark({"stats": {"data": [0.5]}}).round_seconds == [0.5]
    for stats in ({"data": []}, {"data": "x"}, {}):
        assert Benchmark({"stats": stats}).round_seconds is None
    assert Benchmark({}).round_seconds is None


def test_neighbour_data_adds_busy_and_steal_round_by_round() -> None:
    def bench(**extra: object) -> Benchmark:
        return Benchmark({"stats": {"data": [1.0, 1.0, 1.0], "iterations": 1},
                          "extra_info": extra})

    assert bench(busy_data=[0.1, 0.0, 2], steal_data=[0.2, 0.5, 0]).neighbour_data == \
        pytest.approx([0.3, 0.5, 2.0])
    # Steal missing or misaligned counts as none; busy misaligned or missing is no data.
    assert bench(busy_data=[0.1, 0.0, 2]).neighbour_data == [0.1, 0.0, 2.0]
    assert bench(busy_data=[0.1, 0.0, 2], steal_data=[1.0]).neighbour_data == [0.1, 0.0, 2.0]
    assert bench(busy_data=[0.1, 0.0], steal_data=[0, 0]).neighbour_data is None
    assert bench(steal_data=[0, 0, 0]).neighbour_data is None
    assert Benchmark({"extra_info": {"busy_data": [0.1]}}).neighbour_data is None


def test_ref_data_is_floats_or_none() -> None:
    assert Benchmark({"extra_info": {"ref_data": [1, 2]}}).ref_data == [1.0, 2.0]
    assert isinstance(Benchmark({"extra_info": {"ref_data": [1]}}).ref_data[0], float)
    for refs in ([], "1", None):
        assert Benchmark({"extra_info": {"ref_data": refs}}).ref_data is None


def test_a_roofline_is_never_paired_nor_a_disagreement() -> None:
    roof = Benchmark({"name": "bench_roofline[crops]",
                      "extra_info": {"kind": "roofline", "ref_data": [1.0], "agrees": False}})
    assert not roof.paired and not roof.disagrees
    named = Benchmark({"name": "my_roofline_loop"})  # no kind: the name decides
    assert named.kind == ROOFLINE and named.backend == ROOFLINE


def test_benchmarks_skip_what_is_not_a_dict_and_a_run_without_them_has_none() -> None:
    run = Run({"benchmarks": [{"name": "a"}, "junk", 3, {"name": "b"}]})
    assert [b.name for b in run.benchmarks] == ["a", "b"]
    assert run.index("b") == 1
    assert Run({}).benchmarks == [] and not Run({}).trained


def test_the_workload_definition_is_the_first_saved_for_that_workload() -> None:
    run = Run({"benchmarks": [
        {"name": "a", "extra_info": {"workload": "mine", "workload_def": "not a dict"}},
        {"name": "b", "extra_info": {"workload": "other", "workload_def": {"shape": [1]}}},
        {"name": "c", "extra_info": {"workload": "mine", "workload_def": {"shape": [8]}}},
        {"name": "d", "extra_info": {"workload": "mine", "workload_def": {"shape": [9]}}}]})
    assert run.workload_definition("mine") == {"shape": [8]}
    assert run.workload_definition("other") == {"shape": [1]}
    assert run.workload_definition("crops") is None


def test_the_run_name_is_time_cpu_count_fingerprint_and_profile() -> None:
    info = {"gdbench": {"cpu_model": "Intel(R) Xeon(R) Platinum 8000 CPU @ 2.0GHz!",
                        "cpu_count": 2}}
    when = time.mktime((2026, 12, 7, 8, 37, 36, 0, 0, -1))
    name = run_name("default-1t", info, when=when)
    assert name == (f"20261207-083736_intel-r--xeon-r--platinu-2c_"
                    f"{machine.fingerprint(info)}_default-1t")
    assert run_name("quick", {}, when=when).startswith("20261207-083736_unknown-c_")
    xeon = {"gdbench": {"cpu_model": "(Xeon X)", "cpu_count": 4}}
    assert run_name("q", xeon, when=when).startswith("20261207-083736_xeon-x-4c_")


def test_merge_completes_gdbench_facts_from_every_part_and_dedupes_blas() -> None:
    lib = {"prefix": "libopenblas", "filepath": "/a.so", "num_threads": 2, "fingerprint": 0}
    a = {"machine_info": {"node": "n1", "gdbench": {"blas": [lib], "torch": None,
                                                      "jax": {}, "cpu_count": 2}},
         "benchmarks": [{"name": "x"}], "commit_info": {"id": "c"}}
    b = {"machine_info": {"node": "n2", "gdbench": {"blas": [lib, {**lib, "filepath": "/b.so"},
                                                               {**lib, "prefix": "libmkl"}],
                                                      "torch": "2.13", "jax": {"v": 1},
                                                      "cpu_count": 8}},
         "benchmarks": [{"name": "y"}]}
    doc = merge([a, b], {})
    facts = doc["machine_info"]["gdbench"]
    assert doc["machine_info"]["node"] == "n1" and doc["commit_info"] == {"id": "c"}
    assert facts["torch"] == "2.13" and facts["jax"] == {"v": 1} and facts["cpu_count"] == 2
    assert [(x["prefix"], x["filepath"]) for x in facts["blas"]] == [
        ("libopenblas", "/a.so"), ("libopenblas", "/b.so"), ("libmkl", "/a.so")]
    assert facts["unavailable"] == {} and facts["isolation"] == "process per backend"
    without = {k: v for k, v in facts.items() if k != "fingerprint"}
    assert facts["fingerprint"] == machine.fingerprint({**doc["machine_info"],
                                                        "gdbench": without})
    assert a["machine_info"]["gdbench"] == {"blas": [lib], "torch": None, "jax": {},
                                            "cpu_count": 2}  # the parts are not changed


def _block(data: list[float], **extra: object) -> dict:
    return {"name": "bench_training[crops-numpy]", "group": "crops",
            "stats": {"data": data, "iterations": 2, "median": 0.0},
            "extra_info": {"kind": "training", "steps": 10, "flops": 4e6, **extra}}


def test_merge_rounds_recomputes_every_statistic_over_all_the_rounds() -> None:
    a = _block([1.0, 3.0], norm_data=[1.0, 3.0], ref_data=[1.0, 1.0], wake_data=[5.0, 6.0],
               agrees=True, max_abs_diff_vs_numpy=1e-7, compile_s=1.0)
    b = _block([2.0], norm_data=[4.0], ref_data=[0.5], wake_data=[7.0], agrees=False,
               max_abs_diff_vs_numpy=3e-7, compile_s=3.0)
    c = _block([5.0, 4.0], norm_data=[2.0, 2.0], ref_data=[2.0, 2.0], wake_data=[8.0, 9.0],
               max_abs_diff_vs_numpy="n/a", compile_s=8.0)
    merged = merge_rounds([a, b, c])
    stats, extra = merged["stats"], merged["extra_info"]
    assert stats["data"] == [1.0, 3.0, 2.0, 5.0, 4.0] and stats["median"] == 3.0
    assert stats["iterations"] == 2 and stats["rounds"] == 5 and stats["min"] == 1.0
    assert extra["norm_data"] == [1.0, 3.0, 4.0, 2.0, 2.0] and extra["norm_median"] == 2.0
    assert extra["ref_data"] == [1.0, 1.0, 0.5, 2.0, 2.0] and extra["ref_s"] == 1.0
    assert extra["wake_data"] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert extra["step_us"] == pytest.approx(3.0 / 10 * 1e6)
    assert extra["gflops"] == pytest.approx(4e6 / 3.0 / 1e9)
    assert extra["agrees"] is False and extra["max_abs_diff_vs_numpy"] == 3e-7
    assert extra["compile_s"] == 3.0
    assert extra["blocks"] == 3 and extra["block_rounds"] == [2, 1, 2]
    assert merged["name"] == a["name"] and a["stats"]["data"] == [1.0, 3.0]  # a is unchanged


def test_merge_rounds_keeps_only_what_every_block_kept_aligned() -> None:
    a = _block([1.0, 3.0], norm_data=[1.0, 3.0], ref_data=[1.0, 1.0], wake_data=[5.0, 6.0])
    b = _block([2.0], norm_data=[4.0], ref_data=[], wake_data=[7.0, 8.0])
    extra = merge_rounds([a, b])["extra_info"]
    assert extra["norm_data"] == [1.0, 3.0, 4.0]
    assert extra["ref_data"] == [1.0, 1.0]  # b saved none: not aligned, so a's own stay
    assert "wake_data" not in extra  # b's are not aligned with its rounds
    c = _block([2.0], ref_data=[1.0], wake_data=[7.0])  # no norm_data
    extra = merge_rounds([a, c])["extra_info"]
    assert extra["norm_data"] == [1.0, 3.0] and "wake_data" not in extra
    plain = merge_rounds([_block([1.0]), _block([3.0])])["extra_info"]
    assert "agrees" not in plain and "max_abs_diff_vs_numpy" not in plain
    assert "compile_s" not in plain and "wake_data" not in plain
    without = {**_block([2.0]), "extra_info": {"kind": "training"}}
    assert set(merge_rounds([without, without])["extra_info"]) == {"kind", "blocks",
                                                                   "block_rounds"}


def test_merge_rounds_refuses_a_block_that_saved_no_rounds_naming_it() -> None:
    for bad in ([], None, "x"):
        block = _block([1.0])
        block["stats"]["data"] = bad
        with pytest.raises(InputError, match=r"^benchmark bench_training\[crops-numpy\]: a "
                                             r"block saved no rounds \(run without "
                                             r"--benchmark-save-data\?\)$"):
            merge_rounds([_block([1.0]), block])


def test_merged_neighbours_are_over_all_the_timed_seconds() -> None:
    a = _block([1.0, 3.0], busy_data=[0.4, 0.0], steal_data=[0.0, 0.8])
    b = _block([2.0], busy_data=[1.2], steal_data=[0.0])
    extra = merge_rounds([a, b])["extra_info"]
    assert extra["busy_data"] == [0.4, 0.0, 1.2] and extra["steal_data"] == [0.0, 0.8, 0.0]
    timed = (1.0 + 3.0 + 2.0) * 2  # seconds: rounds × their iterations
    assert extra["neighbour_cores"] == pytest.approx(1.6 / timed)
    assert extra["steal_cores"] == pytest.approx(0.8 / timed)
    short = merge_rounds([_block([0.1], busy_data=[0.05], steal_data=[0.0])] * 2)["extra_info"]
    assert short["neighbour_cores"] == pytest.approx(0.1 / 0.4)  # under a second timed
    once = {**_block([1.0, 1.0], busy_data=[0.5, 0.5], steal_data=[0.0, 0.0])}
    once["stats"] = {"data": [1.0, 1.0]}  # no iterations saved: one run per round
    merged = merge_rounds([once, once])
    assert merged["stats"]["iterations"] == 1
    assert merged["extra_info"]["neighbour_cores"] == pytest.approx(0.5)
    zero = merge_rounds([_block([0.0], busy_data=[1.0], steal_data=[1.0], flops=0)] * 2)[
        "extra_info"]
    assert zero["neighbour_cores"] == 0.0 and zero["steal_cores"] == 0.0
    a["extra_info"].update(neighbour_cores=9.0, steal_cores=9.0)
    b["extra_info"]["busy_data"] = [1.2, 0.0]  # misaligned: none kept, stale loads dropped
    extra = merge_rounds([a, b])["extra_info"]
    assert not {"busy_data", "steal_data", "neighbour_cores", "steal_cores"} & set(extra)


def test_unused_path_never_overwrites(tmp_path: Path) -> None:
    first = unused_path(tmp_path, "run")
    first.write_text("{}")
    second = unused_path(tmp_path, "run")
    second.write_text("{}")
    assert first == tmp_path / "run.json"
    assert second == tmp_path / "run-2.json"
    assert unused_path(tmp_path, "run").name == "run-3.json"
