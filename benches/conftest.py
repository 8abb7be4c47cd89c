"""Options, parametrisation and machine_info for the timed suite.

    pytest benches                                   # default workloads, every backend
    pytest benches --quick                           # the small CI profile
    pytest benches --backends numpy jax-scan --workloads crops small
    pytest benches --benchmark-disable               # each benchmark once, as a plain test

pytest-benchmark's own flags keep their meaning: --benchmark-max-time (seconds of rounds
per benchmark, paired reference rounds included), --benchmark-min-rounds,
--benchmark-min-time (floor of one round), --benchmark-disable-gc, --benchmark-json,
--benchmark-save-data, --benchmark-compare ...
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gdbench import implementations, machine
from gdbench.data.workloads import DEFAULT, QUICK, WORKLOADS, Problem
from gdbench.implementations.base import TrainResult, agreement, train_once


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("gdbench", "gdbench benchmark suite")
    g.addoption("--backends", nargs="+", metavar="NAME", default=None,
                help=f"backends to run (default: all of {', '.join(implementations.names())})")
    g.addoption("--workloads", nargs="+", metavar="NAME", default=None,
                help=f"workloads to run, of {', '.join(WORKLOADS)} "
                     f"(default: {' '.join(DEFAULT)}; with --quick: {' '.join(QUICK)})")
    g.addoption("--quick", action="store_true",
                help="the CI profile: the crops, small and medium workloads, 1.5 s of rounds "
                     "per benchmark (default: crops to large, 2 s)")
    g.addoption("--dtype", choices=["float32", "float64"], default="float32",
                help="dtype of data and weights (default: float32)")
    g.addoption("--threads", type=int, default=None, metavar="N",
                help="pin the run to N CPUs and cap BLAS, OpenMP, torch and XLA at N "
                     "threads (default: the libraries' own)")
    g.addoption("--progress", action="store_true",
                help="print one line per finished benchmark (gdbench run sets this)")


def _selected(config: pytest.Config) -> tuple[list[str], list[str]]:
    backends = config.getoption("backends") or implementations.names()
    workloads = config.getoption("workloads") or (
        QUICK if config.getoption("quick") else DEFAULT)
    for name in backends:
        if name not in implementations.names():
            raise pytest.UsageError(f"unknown backend {name!r}; the known backends are: "
                                    f"{', '.join(implementations.names())}")
    for name in workloads:
        if name not in WORKLOADS:
            raise pytest.UsageError(f"unknown workload {name!r}; the known workloads are: "
                                    f"{', '.join(WORKLOADS)}")
    return list(backends), list(workloads)


def pytest_configure(config: pytest.Config) -> None:
    threads = config.getoption("threads", None)
    if threads is not None and threads <= 0:
        raise pytest.UsageError(f"--threads must be a positive integer, got {threads}")
    if threads:
        config._gdbench_thread_limit = machine.pin_threads(threads)  # type: ignore[attr-defined]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    backends, workloads = _selected(metafunc.config)
    if "workload_name" in metafunc.fixturenames:
        if "backend_name" in metafunc.fixturenames:
            pairs = [(w, b) for w in workloads for b in backends]
            metafunc.parametrize(("workload_name", "backend_name"), pairs,
                                 ids=[f"{w}-{b}" for w, b in pairs])
        else:
            metafunc.parametrize("workload_name", workloads)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["gdbench"] = machine.describe()
    # pytest-benchmark keeps no record of skipped tests; keep why each backend could not run.
    machine_info["gdbench"]["unavailable"] = {
        name: why for name, why in implementations.available().items() if why}


# A round lasts at least this long: shorter runs are repeated inside it, so the round
# times the loop rather than the wake-up of idle threads (a lone 0.1 ms jax-scan call on
# a 2-core VM varies by 100%), yet stays short next to the machine's speed drifts, which
# last seconds, so a reference round timed just before it sees the same machine.
ROUND_FLOOR_S = 0.005
MAX_ROUNDS = 1000
QUICK_MAX_TIME_S = 1.5
DEFAULT_MAX_TIME_S = 2.0


@dataclass(frozen=True)
class RoundPlan:
    rounds: int
    iterations: int  # runs per timed round
    ref_iterations: int  # reference calls per paired reference round


@dataclass
class Settings:
    """How many rounds to time, from pytest-benchmark's flags and the profile."""

    max_time_s: float
    min_rounds: int
    round_floor_s: float
    dtype: str

    def plan(self, run: Callable[[], None], reference: Callable[[], None] | None) -> RoundPlan:
        """Rounds that fit max_time_s (reference rounds included), at least min_rounds,
        each at least round_floor_s long, from the fastest of three timed calls."""
        once = _fastest(run)
        iterations = max(1, math.ceil(self.round_floor_s / once))
        round_s = once * iterations
        ref_iterations = 1
        if reference is not None:
            ref_once = _fastest(reference)
            ref_iterations = max(1, math.ceil(self.round_floor_s / ref_once))
            round_s += ref_once * ref_iterations
        rounds = max(self.min_rounds, min(MAX_ROUNDS, int(self.max_time_s / round_s)))
        return RoundPlan(rounds, iterations, ref_iterations)


def _fastest(fn: Callable[[], None]) -> float:
    fn()  # first call: caches, lazy initialisation
    return max(1e-9, min(_timed(fn) for _ in range(3)))


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest) -> Settings:
    config = request.config
    quick = config.getoption("quick")
    # Unless --benchmark-max-time is given, a benchmark's rounds last long enough to span
    # several of a shared machine's speed episodes (which last seconds): 1.5 s (quick) or
    # 2 s each. With 0.3 s, the same benchmark moved 20-40% from run to run here.
    max_time = QUICK_MAX_TIME_S if quick else DEFAULT_MAX_TIME_S
    if any(a.startswith("--benchmark-max-time") for a in config.invocation_params.args):
        max_time = float(config.getoption("benchmark_max_time"))
    return Settings(
        max_time_s=max_time,
        min_rounds=int(config.getoption("benchmark_min_rounds")),
        round_floor_s=max(ROUND_FLOOR_S, float(config.getoption("benchmark_min_time"))),
        dtype=config.getoption("dtype"),
    )


class Problems:
    """Each workload's Problem and NumPy reference result, built once per session."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self._cache: dict[str, tuple[Problem, TrainResult]] = {}

    def get(self, workload: str) -> tuple[Problem, TrainResult]:
        if workload not in self._cache:
            problem = WORKLOADS[workload].build(self.dtype)
            reference, *_ = train_once(implementations.REFERENCE, problem)
            self._cache[workload] = (problem, reference)
        return self._cache[workload]

    def agreement(self, workload: str, result: TrainResult) -> tuple[float, bool]:
        """(max |W - W_numpy| or |b - b_numpy|, agrees) with gdbench verify's tolerance."""
        _, reference = self.get(workload)
        dW, db, ok = agreement(result, reference, self.dtype)
        return max(dW, db), ok


@pytest.fixture(scope="session")
def problems(settings: Settings) -> Problems:
    return Problems(settings.dtype)


@pytest.fixture(scope="session")
def backend_status() -> dict[str, str | None]:
    return implementations.available()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG.get("config")
    if config is None or not config.getoption("progress"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _PROGRESS["done"] += 1
        line = f"[{_PROGRESS['done']:>3}/{_PROGRESS['total']}] {report.nodeid.split('::')[-1]}: "
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            line += reason.removeprefix("Skipped: ")
        elif report.failed:
            line += "FAILED"
        else:
            info = dict(report.user_properties).get("progress", "ok")
            line += str(info)
        print(line, flush=True)


_CONFIG: dict[str, Any] = {}
_PROGRESS = {"done": 0, "total": 0}


def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config


def pytest_collection_finish(session: pytest.Session) -> None:
    _PROGRESS["total"] = len(session.items)


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    """With --progress, the progress lines replace pytest's dots."""
    if config.getoption("progress") and (report.when == "call" or not report.passed):
        return report.outcome, "", report.outcome.upper()
    return None
