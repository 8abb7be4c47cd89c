"""The timed suite's conftest (benches/conftest.py): its agreement check, its selection of
backends and workloads, its settings and its machine_info, driven without pytest-benchmark.

pytest's config, metafunc and items are faked (SimpleNamespace objects holding just what the
conftest reads); the agreement check and the NumPy reference it compares with are real.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import gdbench.benches.conftest as suite
from gdbench import implementations
from gdbench.data.workloads import DEFAULT, QUICK, WORKLOADS
from gdbench.harness import launcher, timing
from gdbench.implementations.base import RTOL, TrainResult, train_once


def _config(args: tuple[str, ...] = (), **options: Any) -> Any:
    """A pytest config whose getoption answers ``options`` (over the suite's defaults)."""
    values: dict[str, Any] = {
        "backends": None, "workloads": None, "quick": False, "dtype": "float32",
        "threads": None, "roofline": "with", "memory": "auto", "isolated": False,
        "progress": False, "benchmark_min_rounds": 5, "benchmark_min_time": 0.000005,
        "benchmark_max_time": 1.0, **options}
    return SimpleNamespace(getoption=lambda name, default=None: values.get(name, default),
                           invocation_params=SimpleNamespace(args=list(args)))


# --- the agreement check every timed benchmark ends with ----------------------------------

@pytest.fixture(scope="module")
def crops_problems() -> suite.Problems:
    return suite.Problems("float32")


def _shifted(reference: TrainResult, dW: float = 0.0, db: float = 0.0) -> TrainResult:
    return TrainResult("other", reference.W + dW, reference.b + db, reference.final_loss,
                       reference.steps)


def test_the_suites_reference_is_numpy_trained_on_the_workload_once(
        crops_problems: suite.Problems) -> None:
    problem, reference = crops_problems.get("crops")
    assert problem.dtype == np.float32 and problem.name == "crops"
    expected, *_ = train_once("numpy", WORKLOADS["crops"].build("float32"))
    np.testing.assert_array_equal(reference.W, expected.W)
    np.testing.assert_array_equal(reference.b, expected.b)
    assert crops_problems.get("crops")[1] is reference  # built once per session
    assert suite.Problems("float64").get("crops")[0].dtype == np.float64


def test_the_suites_agreement_check_fails_weights_off_by_one(
        crops_problems: suite.Problems) -> None:
    _, reference = crops_problems.get("crops")
    diff, agrees = crops_problems.agreement("crops", _shifted(reference, dW=1.0))
    assert diff == pytest.approx(1.0) and agrees is False
    diff, agrees = crops_problems.agreement("crops", _shifted(reference, db=-1.0))
    assert diff == pytest.approx(1.0) and agrees is False


def test_the_suites_agreement_check_reports_the_larger_of_the_two_distances(
        crops_problems: suite.Problems) -> None:
    _, reference = crops_problems.get("crops")
    scale = max(1.0, float(np.max(np.abs(reference.W))), float(np.max(np.abs(reference.b))))
    tolerance = RTOL["float32"] * scale
    assert crops_problems.agreement("crops", reference) == (0.0, True)
    inside = _shifted(reference, dW=0.25 * tolerance, db=-0.5 * tolerance)
    diff, agrees = crops_problems.agreement("crops", inside)
    assert diff == pytest.approx(0.5 * tolerance, rel=1e-3) and agrees is True
    outside = _shifted(reference, dW=0.25 * tolerance, db=2 * tolerance)
    diff, agrees = crops_problems.agreement("crops", outside)
    assert diff == pytest.approx(2 * tolerance, rel=1e-3) and agrees is False


# --- the suite's options -------------------------------------------------------------------

class _Group:
    """pytest's option group, adding each option to a real argparse parser."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(exit_on_error=False)

    def addoption(self, *names: str, **kwargs: Any) -> None:
        self.parser.add_argument(*names, **kwargs)


def _options(*argv: str) -> dict[str, Any]:
    groups: dict[tuple[str, str], _Group] = {}
    parser = SimpleNamespace(getgroup=lambda *name: groups.setdefault(name, _Group()))
    suite.pytest_addoption(parser)  # type: ignore[arg-type]
    assert list(groups) == [("gdbench", "gdbench benchmark suite")]
    return vars(groups["gdbench", "gdbench benchmark suite"].parser.parse_args(argv))


def test_the_suites_options_and_their_defaults() -> None:
    assert _options() == {
        "backends": None, "workloads": None, "quick": False, "dtype": "float32",
        "threads": None, "progress": False, "roofline": "with", "memory": "auto",
        "isolated": False, "workload_defs": None}
    mine = 'mine={"shape": [64, 4, 2], "batch_size": 8}'
    assert _options("--backends", "numpy", "jax", "--workloads", "crops", "small", "--quick",
                    "--dtype", "float64", "--threads", "2", "--progress", "--roofline", "only",
                    "--memory", "off", "--isolated", "--workload-def", mine) == {
        "backends": ["numpy", "jax"], "workloads": ["crops", "small"], "quick": True,
        "dtype": "float64", "threads": 2, "progress": True, "roofline": "only",
        "memory": "off", "isolated": True, "workload_defs": [mine]}
    assert _options("--roofline", "without", "--memory", "on")["memory"] == "on"


@pytest.mark.parametrize("argv", [["--dtype", "float16"], ["--roofline", "never"],
                                  ["--memory", "always"], ["--threads", "two"],
                                  ["--backends"]])
def test_a_bad_option_value_is_refused(argv: list[str]) -> None:
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        _options(*argv)


# --- which backends and workloads -----------------------------------------------------------

@pytest.mark.parametrize(("options", "backends", "workloads"), [
    ({}, implementations.default_names(), DEFAULT),
    ({"quick": True}, implementations.default_names(), QUICK),
    ({"quick": True, "backends": ["jax"], "workloads": ["large"]}, ["jax"], ["large"]),
])
def test_the_suite_selects_the_default_backends_and_the_profiles_workloads_unless_told(
        options: dict[str, Any], backends: list[str], workloads: list[str]) -> None:
    assert suite._selected(_config(**options)) == (backends, workloads)


@pytest.mark.parametrize(("option", "name", "known"), [
    ("backends", "numpi", "numpy, torch-cpu"), ("workloads", "tiny", "crops, small")])
def test_an_unknown_name_is_a_usage_error_listing_the_known_ones(
        option: str, name: str, known: str) -> None:
    with pytest.raises(pytest.UsageError) as info:
        suite._selected(_config(**{option: [name]}))
    assert str(info.value).startswith(f"unknown {option[:-1]} {name!r}; the known {option} "
                                       f"are: {known}")


def test_the_names_are_checked_when_the_suite_is_configured() -> None:
    # Before collection: a usage error raised there is one line, not a collection traceback.
    for option, name in (("backends", "numpi"), ("workloads", "tiny")):
        with pytest.raises(pytest.UsageError, match=f"unknown {option[:-1]} {name!r}"):
            suite.pytest_configure(_config(**{option: [name]}))


@pytest.mark.parametrize(("argv", "error"), [
    (["--backends", "nope"], "unknown backend 'nope'; the known backends are: "
                             f"{', '.join(implementations.names())}"),
    (["--workloads", "crops", "tiny"], "unknown workload 'tiny'; the known workloads are: "
                                       f"{', '.join(WORKLOADS)}"),
    (["--threads", "0"], "--threads must be a positive integer, got 0"),
])
def test_pytest_benches_with_a_bad_name_says_so_in_one_line(
        argv: list[str], error: str) -> None:
    # The real suite in a real pytest process, as a user runs it from a checkout
    # (``pytest benches --backends nope``): the refusal comes before anything is imported
    # or timed.
    folder = launcher.BENCHES
    proc = subprocess.run([sys.executable, "-m", "pytest", folder.name, "-p", "no:cacheprovider",
                           *argv], cwd=folder.parent, capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [f"ERROR: {error}"], proc.stderr


@pytest.mark.parametrize("threads", [0, -2])
def test_threads_below_one_is_a_usage_error(threads: int) -> None:
    with pytest.raises(pytest.UsageError) as info:
        suite.pytest_configure(_config(threads=threads))
    assert str(info.value) == f"--threads must be a positive integer, got {threads}"


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_pins_the_run_and_keeps_the_limiter(
        monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    pinned: list[int] = []
    monkeypatch.setattr(suite.machine, "pin_threads", lambda n: pinned.append(n) or "limiter")
    config = _config(threads=threads)
    suite.pytest_configure(config)  # 1 is the CI gate's setting
    assert pinned == [threads] and config._gdbench_thread_limit == "limiter"
    suite.pytest_configure(_config())
    assert pinned == [threads]  # no --threads: the libraries' own


class _Metafunc:
    def __init__(self, config: Any, fixturenames: list[str]) -> None:
        self.config, self.fixturenames = config, fixturenames
        self.calls: list[tuple[Any, ...]] = []

    def parametrize(self, names: Any, values: Any, ids: Any = None) -> None:
        self.calls.append((names, values, ids))


def test_training_benchmarks_get_every_workload_backend_pair_and_rooflines_each_workload() -> None:
    config = _config(backends=["numpy", "jax"], workloads=["crops", "small"])
    training = _Metafunc(config, ["benchmark", "workload_name", "backend_name"])
    suite.pytest_generate_tests(training)  # type: ignore[arg-type]
    pairs = [("crops", "numpy"), ("crops", "jax"), ("small", "numpy"), ("small", "jax")]
    assert training.calls == [(("workload_name", "backend_name"), pairs,
                               ["crops-numpy", "crops-jax", "small-numpy", "small-jax"])]
    roofline = _Metafunc(config, ["benchmark", "workload_name"])
    suite.pytest_generate_tests(roofline)  # type: ignore[arg-type]
    assert roofline.calls == [("workload_name", ["crops", "small"], None)]
    other = _Metafunc(config, ["benchmark"])
    suite.pytest_generate_tests(other)  # type: ignore[arg-type]
    assert other.calls == []


@pytest.mark.parametrize(("roofline", "kept"), [
    ("with", ["bench_training[crops-numpy]", "bench_roofline[crops]", "bench_training[a-b]"]),
    ("without", ["bench_training[crops-numpy]", "bench_training[a-b]"]),
    ("only", ["bench_roofline[crops]"]),
])
def test_roofline_keeps_or_drops_the_roofline_benchmarks_and_reports_the_dropped(
        roofline: str, kept: list[str]) -> None:
    names = ["bench_training[crops-numpy]", "bench_roofline[crops]", "bench_training[a-b]"]
    items = [SimpleNamespace(name=n) for n in names]
    deselected: list[str] = []
    config = _config(roofline=roofline)
    config.hook = SimpleNamespace(pytest_deselected=lambda items: deselected.extend(
        i.name for i in items))
    suite.pytest_collection_modifyitems(config, items)  # type: ignore[arg-type]
    assert [i.name for i in items] == kept
    assert deselected == ([] if roofline == "with" else [n for n in names if n not in kept])


@pytest.mark.parametrize(("roofline", "isolated", "kept"), [
    ("with", True, ["bench_training[crops-numpy]", "bench_roofline[crops]"]),
    ("with", False, ["bench_training[crops-numpy]", "bench_roofline[crops]",
                     "bench_gpu_roofline[crops]"]),
    ("without", False, ["bench_training[crops-numpy]"]),
    ("only", False, ["bench_roofline[crops]"]),
    ("gpu", True, ["bench_gpu_roofline[crops]"]),
])
def test_the_gpus_yardsticks_are_timed_in_a_process_of_their_own_or_in_a_shared_one(
        roofline: str, isolated: bool, kept: list[str]) -> None:
    # gdbench run's isolated processes (numpy's: --roofline with) never load torch for
    # them; a plain pytest session (make test), where every backend shares the process, does.
    names = ["bench_training[crops-numpy]", "bench_roofline[crops]", "bench_gpu_roofline[crops]",
             "test_agreement[jax-crops]"]
    kept = [*kept, "test_agreement[jax-crops]"]  # a test collected beside: always kept
    items = [SimpleNamespace(name=n) for n in names]
    deselected: list[str] = []
    config = _config(roofline=roofline, isolated=isolated)
    config.hook = SimpleNamespace(pytest_deselected=lambda items: deselected.extend(
        i.name for i in items))
    suite.pytest_collection_modifyitems(config, items)  # type: ignore[arg-type]
    assert [i.name for i in items] == kept
    assert deselected == [n for n in names if n not in kept]
    # A process timing the GPU's yardsticks alone wakes no NumPy BLAS threads.
    assert suite._uses_numpy_blas(_config(backends=["jax"], roofline=roofline)) is (
        roofline in ("with", "only"))


# --- settings, machine_info and numpy's BLAS ------------------------------------------------

@pytest.mark.parametrize(("quick", "memory", "measured"), [
    (False, "auto", True), (True, "auto", False), (True, "on", True), (False, "off", False)])
def test_memory_is_measured_except_in_quick_runs_unless_told(
        quick: bool, memory: str, measured: bool) -> None:
    request = SimpleNamespace(config=_config(quick=quick, memory=memory))
    settings = suite.settings.__wrapped__(request)  # the fixture's own function
    assert settings.memory is measured


def test_settings_take_pytest_benchmarks_flags_with_the_round_floor_at_least_the_suites() -> None:
    settings_of = suite.settings.__wrapped__  # the fixture's own function
    settings = settings_of(SimpleNamespace(config=_config(
        ("--benchmark-max-time=0.3",), benchmark_max_time=0.3, benchmark_min_rounds=7,
        benchmark_min_time=0.02, dtype="float64")))
    assert settings == suite.Settings(max_time_s=0.3, min_rounds=7, round_floor_s=0.02,
                                      dtype="float64", memory=True)
    floor = settings_of(SimpleNamespace(config=_config(quick=True))).round_floor_s
    assert floor == timing.ROUND_FLOOR_S  # pytest-benchmark's 5 µs default is too short


def test_settings_plan_rounds_with_their_own_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def plan_rounds(run: Any, reference: Any, **kwargs: Any) -> str:
        seen.update(kwargs, run=run, reference=reference)
        return "plan"

    monkeypatch.setattr(suite.timing, "plan_rounds", plan_rounds)
    settings = suite.Settings(max_time_s=1.5, min_rounds=3, round_floor_s=0.01, dtype="float32")
    assert settings.memory is False  # unless told: timing only
    run, reference, probe = print, repr, float
    assert settings.plan(run, reference, probe) == "plan"
    assert seen == {"run": run, "reference": reference, "max_time_s": 1.5, "min_rounds": 3,
                    "round_floor_s": 0.01, "probe": probe}


@pytest.mark.parametrize("isolated", [True, False])
def test_machine_info_records_isolation_seconds_of_rounds_and_why_backends_could_not_run(
        monkeypatch: pytest.MonkeyPatch, isolated: bool) -> None:
    loaded: list[bool] = []
    monkeypatch.setattr(suite.machine, "describe",
                        lambda load_libraries: loaded.append(load_libraries) or {"cpu": "x"})
    why = {"numpy": None, "jax": None, "torch-cuda": "no CUDA device"}
    monkeypatch.setattr(suite.implementations, "why_unavailable", why.__getitem__)
    info: dict[str, Any] = {}
    config = _config(backends=["numpy", "torch-cuda"], quick=True, isolated=isolated)
    suite.pytest_benchmark_update_machine_info(config, info)  # type: ignore[arg-type]
    assert loaded == [not isolated]  # an isolated process loads no other backend's library
    assert info == {"gdbench": {
        "cpu": "x", "isolation": "process per backend" if isolated else "none",
        "max_time_s": timing.QUICK_MAX_TIME_S, "unavailable": {"torch-cuda": "no CUDA device"}}}


def test_backend_status_asks_about_the_selected_backends_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def why_unavailable(name: str) -> str | None:
        asked.append(name)
        return "no CUDA device" if "cuda" in name else None

    monkeypatch.setattr(suite.implementations, "why_unavailable", why_unavailable)
    request = SimpleNamespace(config=_config(backends=["numpy", "torch-cuda"]))
    status = suite.backend_status.__wrapped__(request)  # the fixture's own function
    assert status == {"numpy": None, "torch-cuda": "no CUDA device"}
    assert asked == ["numpy", "torch-cuda"]  # asking imports a library: no other one


@pytest.mark.parametrize(("backends", "roofline", "uses"), [
    (["numpy"], "without", True), (["jax"], "with", True), (["jax"], "only", True),
    (["jax", "torch-cpu"], "without", False)])
def test_numpys_blas_keeps_its_threads_only_where_something_timed_runs_on_it(
        backends: list[str], roofline: str, uses: bool) -> None:
    assert suite._uses_numpy_blas(_config(backends=backends, roofline=roofline)) is uses


# --- progress lines -------------------------------------------------------------------------

def _report(when: str, outcome: str, longrepr: Any = None,
            progress: str | None = None) -> Any:
    return SimpleNamespace(
        when=when, outcome=outcome, passed=outcome == "passed", skipped=outcome == "skipped",
        failed=outcome == "failed", longrepr=longrepr,
        nodeid="benches/bench_training.py::bench_training[crops-numpy]",
        user_properties=[("progress", progress)] if progress else [])


@pytest.fixture
def progress(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], None]:
    """The conftest's progress hook in a session of 12 benchmarks, 4 of them done."""
    monkeypatch.setitem(suite._CONFIG, "config", _config(progress=True))
    monkeypatch.setitem(suite._PROGRESS, "done", 4)
    monkeypatch.setitem(suite._PROGRESS, "total", 12)
    return suite.pytest_runtest_logreport  # type: ignore[return-value]


def test_progress_prints_one_line_per_finished_benchmark(
        progress: Callable[[Any], None], capsys: pytest.CaptureFixture[str]) -> None:
    progress(_report("setup", "passed"))  # not finished yet: nothing
    progress(_report("call", "passed", progress="12.000 us/step"))
    progress(_report("call", "passed"))
    progress(_report("call", "failed"))
    progress(_report("setup", "skipped", ("f", 1, "Skipped: jax: jax is not installed")))
    progress(_report("call", "skipped", "no reason as a tuple"))
    progress(_report("teardown", "passed"))
    assert capsys.readouterr().out.splitlines() == [
        "[  5/12] bench_training[crops-numpy]: 12.000 us/step",
        "[  6/12] bench_training[crops-numpy]: ok",
        "[  7/12] bench_training[crops-numpy]: FAILED",
        "[  8/12] bench_training[crops-numpy]: jax: jax is not installed",
        "[  9/12] bench_training[crops-numpy]: skipped"]


def test_progress_counts_the_sessions_benchmarks_and_reads_its_config(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite, "_CONFIG", {})
    monkeypatch.setattr(suite, "_PROGRESS", {"done": 0, "total": 0})
    config = _config(progress=True)
    session = SimpleNamespace(config=config, items=["a", "b", "c"])
    suite.pytest_sessionstart(session)  # type: ignore[arg-type]
    suite.pytest_collection_finish(session)  # type: ignore[arg-type]
    assert suite._CONFIG["config"] is config
    assert suite._PROGRESS == {"done": 0, "total": 3}


def test_without_progress_the_hook_prints_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(suite._CONFIG, "config", _config())
    suite.pytest_runtest_logreport(_report("call", "passed"))
    monkeypatch.delitem(suite._CONFIG, "config")
    suite.pytest_runtest_logreport(_report("call", "passed"))
    assert capsys.readouterr().out == ""
    assert suite.pytest_report_teststatus(_report("call", "passed"), _config()) is None


def test_with_progress_its_lines_replace_pytests_dots() -> None:
    config = _config(progress=True)
    assert suite.pytest_report_teststatus(_report("call", "passed"), config) == (
        "passed", "", "PASSED")
    assert suite.pytest_report_teststatus(_report("setup", "skipped"), config) == (
        "skipped", "", "SKIPPED")
    assert suite.pytest_report_teststatus(_report("setup", "passed"), config) is None
