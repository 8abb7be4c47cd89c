"""Run the benchmark suite (benches/) through pytest, save the run, and print the table.

Each backend is timed in a pytest process of its own (the numpy process also times the
rooflines; when a backend trains on a GPU, one more process times the GPU's yardsticks),
so that no other library's threads share the machine with it; thread settings
(--threads) are in the environment before any library is imported. A training benchmark
that a host neighbour spoiled for most of its rounds (its paired reference more than 25%
over the workload's quiet level) is timed again in a fresh process of its backend, and
the better-settled timing is kept (machine_info.gdbench.resettled says which). Stopped
before its end (Ctrl-C, SIGTERM), it still saves what its finished jobs measured, named
``...-cut-short`` (``machine_info.gdbench.cut_short`` says what was kept). The
processes' runs are merged into one pytest-benchmark JSON (with every round's time)
under results/runs/ in the current directory (or --out), named by time, machine and
profile so that no run overwrites another: ``pytest-benchmark compare``, pandas and
``gdbench compare`` all read it. Extra arguments after ``--`` go to every pytest
process, e.g. ``gdbench run --quick -- --benchmark-max-time=2``.

Your own problem: ``--shape N,D,K --batch B --epochs E`` times synthetic, seeded data of
that shape; ``--data my.csv --targets COL --batch B`` a CSV file, read as gdbench train
reads it. Workloads declared in your pyproject.toml, as tables
``[tool.gdbench.workloads.NAME]`` (keys: shape or data and targets, batch_size, epochs,
lr, seed, standardize), are timed by name with ``--workloads NAME``. Each workload's
definition is saved with its benchmarks (``extra_info.workload_def``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gdbench import implementations
from gdbench.commands.options import add_world_argument, positive_float, positive_int
from gdbench.data.errors import InputError
from gdbench.data.workloads import WORKLOADS, Workload, define, get_workload, parse_shape, to_json
from gdbench.harness import launcher, machine
from gdbench.judge import retime
from gdbench.records.results import write_atomic
from gdbench.records.run import Run, merge, run_name, unused_path
from gdbench.report import tables

# Relative: results go under the directory gdbench run is started from, never into
# site-packages.
RUNS = Path("results") / "runs"

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="the CI profile: crops, small and medium, 1.5 s of rounds per "
                             "benchmark (default: crops to large, 2 s)")
    parser.add_argument("--backends", nargs="+", metavar="NAME",
                        help="only these backends (default: every backend; unavailable ones "
                             "are listed as skipped with their reason)")
    parser.add_argument("--workloads", nargs="+", metavar="NAME",
                        help="only these workloads (default: crops small medium large; "
                             "xl is opt-in)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="pin the run to N CPUs and cap BLAS, OpenMP, torch and XLA at N "
                             "threads; the CI gate uses 1 (recorded either way)")
    add_world_argument(parser)
    parser.add_argument("--out", type=Path, default=RUNS, metavar="DIR",
                        help=f"where to save the run JSON (default: {RUNS}, under the current "
                             "directory)")
    parser.add_argument("--format", choices=["table", "md", "csv", "html"], default="table",
                        help="format of the printed table (default: table)")
    parser.add_argument("--suite-path", action="store_true",
                        help="print the folder of the benchmark suite and exit (to run it "
                             "with pytest directly from an install)")
    _add_own_problem(parser)
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="after --, extra arguments for pytest / pytest-benchmark")


def _shape(text: str) -> tuple[int, int, int]:
    try:
        return parse_shape(text, "expected")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("expected: ")) from None


def _add_own_problem(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "your own problem (timed instead of the default workloads, or beside --workloads)")
    g.add_argument("--shape", type=_shape, metavar="N,D,K",
                   help="synthetic, seeded data: N rows, D features, K outputs")
    g.add_argument("--data", metavar="PATH",
                   help="a CSV file, read as gdbench train reads it: the features are the "
                        "numeric columns that are not targets")
    g.add_argument("--targets", nargs="+", metavar="COLUMN", help="the CSV's target columns")
    g.add_argument("--batch", "--batch-size", dest="batch", type=positive_int, metavar="B",
                   help="rows per step (needed with --shape or --data)")
    g.add_argument("--epochs", type=positive_int, metavar="E", help="passes over the data "
                   "(default: 1)")
    g.add_argument("--lr", type=positive_float, help="learning rate (default: 0.05)")
    g.add_argument("--seed", type=int, help="seed of the data, the batch order and the "
                                            "initial weights (default: 0)")
    g.add_argument("--standardize", action="store_true",
                   help="scale the CSV's features to zero mean and unit variance")


def main(args: argparse.Namespace) -> int:
    if getattr(args, "suite_path", False):
        print(launcher.BENCHES)
        return 0
    return run_suite(args)[0]

def _selection(args: argparse.Namespace) -> tuple[dict[str, str | None], list[str]]:
    """{backend: why it cannot run here, or None} and the backends asked for; InputError
    for a suite missing from the install or a name that is not a backend or workload."""
    if not (launcher.BENCHES / "bench_training.py").is_file():
        raise InputError(f"{launcher.BENCHES}: the benchmark suite is missing from this "
                         "install; reinstall gdbench")
    status = implementations.available()
    backends = list(args.backends or implementations.names())
    for name in backends:
        if name not in status:
            raise InputError(f"unknown backend {name!r}; the known backends are: "
                             f"{', '.join(status)}")
    _resolve_workloads(args)
    return status, backends


def own_workload(args: argparse.Namespace) -> Workload | None:
    """The workload that --shape or --data describe (None without either), checked as any
    definition is; named by its shape or file, batch and epochs."""
    own = {key: getattr(args, key, None) for key in
           ("shape", "data", "targets", "batch", "epochs", "lr", "seed")}
    if own["shape"] is None and own["data"] is None:
        given = [f"--{k}" for k, v in own.items() if v is not None]
        given += ["--standardize"] if getattr(args, "standardize", False) else []
        if given:
            raise InputError(f"{given[0]} describes your own problem: give --shape N,D,K or "
                             "--data PATH with it")
        return None
    if own["shape"] is not None and own["data"] is not None:
        raise InputError("give --shape (synthetic data) or --data (a CSV file), not both")
    if own["batch"] is None:
        raise InputError("--batch B is needed with --shape or --data")
    if own["shape"] is not None and (own["targets"] or getattr(args, "standardize", False)):
        raise InputError("--targets and --standardize go with --data, not --shape")
    epochs = own["epochs"] or 1
    raw: dict[str, Any] = {"batch_size": own["batch"], "epochs": epochs}
    raw.update({k: own[k] for k in ("lr", "seed") if own[k] is not None})
    if own["shape"] is not None:
        raw["shape"] = list(own["shape"])
        stem = "x".join(str(x) for x in own["shape"])
    else:
        raw.update(data=own["data"], standardize=bool(getattr(args, "standardize", False)))
        if own["targets"]:
            raw["targets"] = list(own["targets"])
        stem = "".join(c if c.isalnum() or c in "._-" else "-"
                       for c in Path(str(own["data"])).stem)
    where = "--shape" if own["shape"] is not None else "--data"
    return define(f"{stem or 'data'}-b{own['batch']}-e{epochs}", raw, where)


def _resolve_workloads(args: argparse.Namespace) -> None:
    """Check every workload named, and put the user's own (--shape or --data, and those
    declared in pyproject.toml) in ``args``: their names in ``args.workloads`` and their
    definitions in ``args.definitions``, which every job passes to its suite."""
    names = list(args.workloads or [])
    users = [get_workload(name) for name in names if name not in WORKLOADS]
    own = own_workload(args)
    if own is not None:
        users.append(own)
        names.append(own.name)
    args.workloads = names or None
    args.definitions = tuple((w.name, to_json(w)) for w in users)


def _profile(args: argparse.Namespace) -> str:
    """The run's profile, in its file name: quick, default or its workloads, and threads."""
    profile = "quick" if args.quick else "default"
    if args.workloads:
        profile = "-".join(args.workloads)
    return profile + (f"-{args.threads}t" if args.threads else "")


def run_suite(args: argparse.Namespace) -> tuple[int, Path | None]:
    """Run, save and print the suite: (the exit code of the first benchmark process that
    failed, else 0; the saved run or None). The run keeps the parts of the processes that
    passed; each failed process is named on stderr, last."""
    status, backends = _selection(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    profile = _profile(args)
    started = time.time()
    print(f"gdbench run: {profile} profile on {machine.label({'gdbench': machine.describe()})}",
          flush=True)
    unavailable = {name: why for name in backends if (why := status[name])}
    devices = {implementations.get(name).device for name in backends if not status[name]}
    procs = launcher.processes(backends, status) + launcher.yardstick_processes(devices)
    executor = launcher.LocalExecutor()
    parts: list[dict[str, Any]] = []
    finished: list[str] = []  # the labels of the jobs whose part is kept
    code = 0
    failures: list[str] = []  # one line per failed process, said last
    seconds: dict[str, float] = {}

    def run_one(label: str, selection: list[str], what: str) -> dict[str, Any] | None:
        nonlocal code
        print(f"-- {label} ({what})", flush=True)
        outcome = executor.run(launcher.Job.of(args, label, selection))
        seconds[label] = outcome.seconds
        print(f"   {label}: {outcome.seconds:.0f} s", flush=True)
        if outcome.failed:  # its part is dropped: a failed benchmark's figures are not saved
            code = code or outcome.code or 1
            if what.startswith("again"):
                whose, kept = f"timing {label} again", "its first timings are kept"
            else:
                whose, kept = f"the {label} process", "its benchmarks are not in the saved run"
            how = (f"pytest exit {outcome.code}" if outcome.code else
                   "it exited 0 but saved no readable run")
            failures.append(f"gdbench run: {whose} failed ({how}): {kept}; its output is "
                            "above")
        return None if outcome.failed else outcome.part

    def save(doc: dict[str, Any], suffix: str = "") -> Path:
        path = unused_path(out, run_name(profile + suffix, doc["machine_info"], started))
        write_atomic(path, json.dumps(doc, indent=4))  # a reader never sees half a run
        return path

    with launcher.terminate_as_exit():  # stopped by SIGTERM, it cleans up as on Ctrl-C
        try:
            first_began = time.perf_counter()
            for i, (label, selection) in enumerate(procs):
                part = run_one(label, selection, f"process {i + 1} of {len(procs)}")
                if part is not None:
                    parts.append(part)
                    finished.append(label)
        except (KeyboardInterrupt, SystemExit):
            _keep_cut_short(parts, unavailable, finished, [label for label, _ in procs], save)
            raise
        if not parts or not any(Run(p).trained for p in parts):
            for line in failures:
                print(line, file=sys.stderr)
            print("gdbench run: no backend ran (every one skipped or failed); nothing saved",
                  file=sys.stderr)
            return code or 1, None
        policy = retime.RUN_QUICK if args.quick else retime.RUN
        try:
            resettled = retime.resettle(parts, run_one, seconds,
                                        time.perf_counter() - first_began, policy)
        except (KeyboardInterrupt, SystemExit):  # the first timings are all there
            _keep_cut_short(parts, unavailable, finished, [label for label, _ in procs], save)
            raise
        doc = merge(parts, unavailable)
        doc["machine_info"]["gdbench"]["resettled"] = resettled
        final = save(doc)
    print()
    print(tables.render_run(final, fmt=args.format))
    for name, why in unavailable.items():
        print(f"skipped {name}: {why}")
    print(f"\nsaved {final}")
    for line in failures:
        print(line, file=sys.stderr)
    return code, final


def _keep_cut_short(parts: list[dict[str, Any]], unavailable: dict[str, str],
                    finished: list[str], labels: list[str],
                    save: Callable[..., Path]) -> None:
    """Save what the jobs that finished measured when the run is stopped before its end
    (Ctrl-C, SIGTERM: a CI job's timeout), as a run of its own whose profile ends in
    ``-cut-short`` and whose ``machine_info.gdbench.cut_short`` names the jobs kept and
    those lost; nothing when no training benchmark finished. A benchmark timed again and
    interrupted keeps its first timing."""
    if not any(Run(p).trained for p in parts):
        return
    lost = [label for label in labels if label not in finished]
    doc = merge(parts, unavailable)
    doc["machine_info"]["gdbench"]["cut_short"] = {"kept": list(finished),
                                                   "not_finished": lost}
    path = save(doc, "-cut-short")
    print(f"gdbench run: stopped before the end; kept the finished processes "
          f"({', '.join(finished)}), lost {', '.join(lost) or 'none'}",
          file=sys.stderr, flush=True)
    print(f"saved {path}", flush=True)
