"""Run the benchmark suite (benches/) through pytest, save the run, and print the table.

Each backend is timed in a pytest process of its own (the numpy process also times the
rooflines; when a backend trains on a GPU, one more process times the GPU's yardsticks),
so that no other library's threads share the machine with it; thread
settings (--threads) are in the environment before any library is imported. A training
benchmark that a host neighbour spoiled for most of its rounds (its paired reference
more than 25% over the workload's quiet level) is timed again in a fresh process of its
backend, and the better-settled timing is kept (machine_info.gdbench.resettled says
which). The processes' runs are merged into one pytest-benchmark JSON (with every round's time)
under results/runs/ in the current directory (or --out), named by time, machine and
profile so that no run overwrites another: ``pytest-benchmark compare``, pandas and
``gdbench compare`` all read it. A run stopped before its end (Ctrl-C, SIGTERM) still
saves what its finished processes measured, named ``...-cut-short``, and exits with the
signal's status. Extra arguments after ``--`` go to every pytest process, e.g.
``gdbench run --quick -- --benchmark-max-time=2``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from gdbench import implementations
from gdbench.commands.options import positive_int
from gdbench.data.errors import InputError
from gdbench.data.workloads import get_workload
from gdbench.harness import launcher, machine
from gdbench.judge import retime
from gdbench.records.results import write_atomic
from gdbench.records.run import merge, run_name, unused_path
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
    parser.add_argument("--out", type=Path, default=RUNS, metavar="DIR",
                        help=f"where to save the run JSON (default: {RUNS}, under the current "
                             "directory)")
    parser.add_argument("--format", choices=["table", "md", "csv", "html"], default="table",
                        help="format of the printed table (default: table)")
    parser.add_argument("--suite-path", action="store_true",
                        help="print the folder of the benchmark suite and exit (to run it "
                             "with pytest directly from an install)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="after --, extra arguments for pytest / pytest-benchmark")

def main(args: argparse.Namespace) -> int:
    if getattr(args, "suite_path", False):
        print(launcher.BENCHES)
        return 0
    return run_suite(args)[0]

def run_suite(args: argparse.Namespace) -> tuple[int, Path | None]:
    """Run, save and print the suite: (the exit code of the first benchmark process that
    failed, else 0; the saved run or None). The run keeps the parts of the processes that
    passed; each failed process is named on stderr, last."""
    if not (launcher.BENCHES / "bench_training.py").is_file():
        raise InputError(f"{launcher.BENCHES}: the benchmark suite is missing from this "
                         "install; reinstall gdbench")
    status = implementations.available()
    backends = args.backends or implementations.names()
    for name in backends:
        if name not in status:
            raise InputError(f"unknown backend {name!r}; the known backends are: "
                             f"{', '.join(status)}")
    for name in args.workloads or []:
        get_workload(name)  # an unknown name is an InputError listing the known ones
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    profile = "quick" if args.quick else "default"
    if args.workloads:
        profile = "-".join(args.workloads)
    if args.threads:
        profile += f"-{args.threads}t"
    started = time.time()
    print(f"gdbench run: {profile} profile on {machine.label({'gdbench': machine.describe()})}",
          flush=True)
    unavailable = {name: why for name in backends if (why := status[name])}
    env = launcher.process_env(args.threads)
    devices = {implementations.get(name).device for name in backends if not status[name]}
    procs = launcher.processes(backends, status) + launcher.yardstick_processes(devices)
    parts: list[dict[str, Any]] = []
    code = 0
    failures: list[str] = []  # one line per failed process, said last
    partials: list[Path] = []
    seconds: dict[str, float] = {}

    def run_one(label: str, selection: list[str], what: str) -> dict[str, Any] | None:
        nonlocal code
        partial = out / f".partial-{os.getpid()}-{int(started)}-{len(partials)}.json.tmp"
        partials.append(partial)
        print(f"-- {label} ({what})", flush=True)
        began = time.perf_counter()
        failed = launcher.run_process(launcher.pytest_command(args, partial, selection), env)
        if failed:  # its part is dropped: a failed benchmark's figures are not saved
            code = code or failed
            if what.startswith("again"):
                whose, kept = f"timing {label} again", "its first timings are kept"
            else:
                whose, kept = f"the {label} process", "its benchmarks are not in the saved run"
            failures.append(f"gdbench run: {whose} failed (pytest exit {failed}): {kept}; "
                            "its output is above")
        seconds[label] = time.perf_counter() - began
        print(f"   {label}: {seconds[label]:.0f} s", flush=True)
        part = launcher.read_part(partial) if partial.exists() else None
        return None if failed else part

    finished: list[str] = []  # the labels of the processes whose part is kept
    with launcher.terminate_as_exit():  # stopped by SIGTERM, it cleans up as on Ctrl-C
        try:
            first_began = time.perf_counter()
            for i, (label, selection) in enumerate(procs):
                part = run_one(label, selection, f"process {i + 1} of {len(procs)}")
                if part is not None:
                    parts.append(part)
                    finished.append(label)
            if not parts or not any(launcher.trained(p) for p in parts):
                for line in failures:
                    print(line, file=sys.stderr)
                print("gdbench run: no backend ran (every one skipped or failed); nothing saved",
                      file=sys.stderr)
                return code or 1, None
            budget = retime.QUICK_RESETTLE_BUDGET if args.quick else retime.RESETTLE_BUDGET
            resettled = retime.resettle(parts, run_one, seconds,
                                        time.perf_counter() - first_began, budget)
            doc = merge(parts, unavailable)
            doc["machine_info"]["gdbench"]["resettled"] = resettled
            final = unused_path(out, run_name(profile, doc["machine_info"], started))
            write_atomic(final, json.dumps(doc, indent=4))  # a reader never sees half a run
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM (terminate_as_exit)
            keep_cut_short(parts, unavailable, out, profile, started,
                           finished, [label for label, _ in procs if label not in finished])
            raise
        finally:
            for partial in partials:  # interrupted or rejected: leave nothing half-made
                partial.unlink(missing_ok=True)
    print()
    print(tables.render_run(final, fmt=args.format))
    for name, why in unavailable.items():
        print(f"skipped {name}: {why}")
    print(f"\nsaved {final}")
    for line in failures:
        print(line, file=sys.stderr)
    return code, final

def keep_cut_short(parts: list[dict[str, Any]], unavailable: dict[str, str], out: Path,
                   profile: str, started: float, finished: list[str],
                   unfinished: list[str]) -> Path | None:
    """Save what the processes that finished measured when the run is stopped before its
    end (Ctrl-C, SIGTERM: a CI job's timeout), as a run of its own whose profile ends in
    ``-cut-short`` and whose ``machine_info.gdbench.cut_short`` names the processes kept
    and those lost; None (and nothing saved) when no training benchmark finished. A
    benchmark timed again and interrupted keeps its first timing."""
    if not any(launcher.trained(p) for p in parts):
        return None
    doc = merge(parts, unavailable)
    doc["machine_info"]["gdbench"]["cut_short"] = {"kept": list(finished),
                                                   "not_finished": list(unfinished)}
    final = unused_path(out, run_name(f"{profile}-cut-short", doc["machine_info"], started))
    write_atomic(final, json.dumps(doc, indent=4))
    print(f"gdbench run: stopped before the end; kept the finished processes "
          f"({', '.join(finished)}), lost {', '.join(unfinished) or 'none'}",
          file=sys.stderr, flush=True)
    print(f"saved {final}", flush=True)
    return final
