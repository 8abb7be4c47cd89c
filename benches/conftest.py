"""Options, parametrisation and machine_info for the timed suite.

The options are registered by the suite's pytest plugin (gdbench.benches.plugin), so that
they parse from anywhere: each has a --gdbench- spelling besides the one shown here.

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

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gdbench import implementations
from gdbench.benches import plugin
from gdbench.data.errors import InputError
from gdbench.data.workloads import DEFAULT, QUICK, WORKLOADS, Problem, Workload, define
from gdbench.harness import machine, timing
from gdbench.harness.timing import RoundPlan
from gdbench.implementations.base import TrainResult, agreement, train_once


def pytest_addoption(parser: pytest.Parser) -> None:
    """The suite's options come from its plugin (gdbench.benches.plugin), which an install
    loads through its pytest11 entry point; without it, register them here."""
    if not plugin.registered(parser):
        plugin.pytest_addoption(parser)


_OWN: dict[tuple[str, ...], dict[str, Workload]] = {}  # parsed once per set of options


def own_workloads(config: pytest.Config) -> dict[str, Workload]:
    """The user's workloads given with --workload-def NAME=JSON, checked as gdbench run
    checks them (gdbench.data.workloads.define); a bad one is a usage error."""
    texts = tuple(config.getoption("workload_defs", None) or ())
    if texts not in _OWN:
        own = {}
        for text in texts:
            name, sep, body = text.partition("=")
            where = f"--workload-def {name}"
            if not sep:
                raise pytest.UsageError(f"--workload-def: expected NAME=JSON, got {text!r}")
            try:
                own[name] = define(name, json.loads(body), where)
            except json.JSONDecodeError as exc:
                raise pytest.UsageError(f"{where}: not JSON ({exc.msg})") from None
            except InputError as exc:
                raise pytest.UsageError(str(exc)) from None
        _OWN[texts] = own
    return _OWN[texts]


def known_workloads(config: pytest.Config) -> dict[str, Workload]:
    """gdbench's workloads and the user's (:func:`own_workloads`), by name."""
    return {**WORKLOADS, **own_workloads(config)}


def _selected(config: pytest.Config) -> tuple[list[str], list[str]]:
    backends = config.getoption("backends") or implementations.default_names()
    workloads = config.getoption("workloads") or (
        QUICK if config.getoption("quick") else DEFAULT)
    for name in backends:
        if name not in implementations.names():
            raise pytest.UsageError(f"unknown backend {name!r}; the known backends are: "
                                    f"{', '.join(implementations.names())}")
    known = known_workloads(config)
    for name in workloads:
        if name not in known:
            raise pytest.UsageError(f"unknown workload {name!r}; the known workloads are: "
                                    f"{', '.join(known)}")
    return list(backends), list(workloads)


def pytest_configure(config: pytest.Config) -> None:
    threads = config.getoption("threads", None)
    if threads is not None and threads <= 0:
        raise pytest.UsageError(f"--threads must be a positive integer, got {threads}")
    # An unknown name is refused here, in one line, not at collection (a traceback there).
    _selected(config)
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


# The benchmark functions each --roofline choice keeps.
ROOFLINE_CHOICES = {"with": {"bench_training", "bench_roofline"},
                    "without": {"bench_training"}, "only": {"bench_roofline"},
                    "gpu": {"bench_gpu_roofline"}}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--roofline: keep the benchmarks of the choice (:data:`ROOFLINE_CHOICES`), deselect
    the suite's others; anything else collected beside them (tests/) is left alone."""
    roofline = config.getoption("roofline")
    kept = ROOFLINE_CHOICES[roofline]
    if roofline == "with" and not config.getoption("isolated"):
        kept = kept | ROOFLINE_CHOICES["gpu"]  # one process for everything: torch may load
    suite = set().union(*ROOFLINE_CHOICES.values())
    keep = [item for item in items if item.name.split("[")[0] in kept
            or item.name.split("[")[0] not in suite]
    if len(keep) == len(items):
        return
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    isolated = bool(config.getoption("isolated"))
    machine_info["gdbench"] = machine.describe(load_libraries=not isolated)
    machine_info["gdbench"]["isolation"] = "process per backend" if isolated else "none"
    # Seconds of rounds per benchmark, so that a benchmark can be timed again alike.
    machine_info["gdbench"]["max_time_s"] = _max_time(config)
    # pytest-benchmark keeps no record of skipped tests; keep why each backend could not run.
    backends, _ = _selected(config)
    machine_info["gdbench"]["unavailable"] = {
        name: why for name in backends if (why := implementations.why_unavailable(name))}


def _uses_numpy_blas(config: pytest.Config) -> bool:
    """Whether anything timed in this session runs on numpy's BLAS with its threads."""
    backends, _ = _selected(config)
    return "numpy" in backends or config.getoption("roofline") in ("with", "only")


@pytest.fixture(scope="session", autouse=True)
def quiet_numpy_blas(request: pytest.FixtureRequest) -> Any:
    """In a session that times no numpy-BLAS benchmark, numpy's BLAS runs on one thread.

    The untimed NumPy reference training and the agreement checks then wake no OpenBLAS
    workers that would spin beside the backend under test.
    """
    if _uses_numpy_blas(request.config):
        yield None
        return
    with timing.one_blas_thread(timing.numpy_blas()):
        yield None


@dataclass
class Settings:
    """How many rounds to time, from pytest-benchmark's flags and the profile."""

    max_time_s: float
    min_rounds: int
    round_floor_s: float
    dtype: str
    memory: bool = False  # instrument one more run for memory, after timing

    def plan(self, run: Callable[[], None], reference: Callable[[], None] | None,
             probe: Callable[[], object] | None = None) -> RoundPlan:
        return timing.plan_rounds(run, reference, max_time_s=self.max_time_s,
                                  min_rounds=self.min_rounds, round_floor_s=self.round_floor_s,
                                  probe=probe)


def _max_time(config: pytest.Config) -> float:
    """Seconds of rounds per benchmark. Unless --benchmark-max-time is given, long enough
    to span several of a shared machine's speed episodes (which last seconds): 1.5 s
    (quick) or 2 s."""
    if any(a.startswith("--benchmark-max-time") for a in config.invocation_params.args):
        return float(config.getoption("benchmark_max_time"))
    return timing.QUICK_MAX_TIME_S if config.getoption("quick") else timing.DEFAULT_MAX_TIME_S


@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest) -> Settings:
    config = request.config
    quick = config.getoption("quick")
    return Settings(
        max_time_s=_max_time(config),
        min_rounds=int(config.getoption("benchmark_min_rounds")),
        round_floor_s=max(timing.ROUND_FLOOR_S, float(config.getoption("benchmark_min_time"))),
        dtype=config.getoption("dtype"),
        memory={"on": True, "off": False}.get(config.getoption("memory"), not quick),
    )


class Problems:
    """Each workload's Problem and NumPy reference result, built once per session."""

    def __init__(self, dtype: str, workloads: dict[str, Workload] | None = None) -> None:
        self.dtype = dtype
        self.workloads = WORKLOADS if workloads is None else workloads
        self._cache: dict[str, tuple[Problem, TrainResult]] = {}

    def get(self, workload: str) -> tuple[Problem, TrainResult]:
        if workload not in self._cache:
            problem = self.workloads[workload].build(self.dtype)
            reference, *_ = train_once(implementations.REFERENCE, problem)
            self._cache[workload] = (problem, reference)
        return self._cache[workload]

    def agreement(self, workload: str, result: TrainResult) -> tuple[float, bool]:
        """(max |W - W_numpy| or |b - b_numpy|, agrees) with gdbench verify's tolerance."""
        _, reference = self.get(workload)
        dW, db, ok = agreement(result, reference, self.dtype)
        return max(dW, db), ok


@pytest.fixture(scope="session")
def problems(settings: Settings, request: pytest.FixtureRequest) -> Problems:
    return Problems(settings.dtype, known_workloads(request.config))


@pytest.fixture(scope="session")
def backend_status(request: pytest.FixtureRequest) -> dict[str, str | None]:
    """None or why not, for the selected backends only: asking about a backend imports its
    library, and an isolated process must not load another backend's."""
    backends, _ = _selected(request.config)
    return {name: implementations.why_unavailable(name) for name in backends}


@pytest.fixture(scope="session")
def blas() -> Any:
    """numpy's BLAS, for the single-threaded drift reference."""
    return timing.numpy_blas()


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
