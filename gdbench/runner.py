"""Run the benchmark suite (benches/) through pytest, save the run, and print the table.

The run is saved as pytest-benchmark's own JSON (with every round's time) under
results/runs/ in the current directory (or --out), named by time, machine and profile so
that no run overwrites another:
``pytest-benchmark compare``, pandas and ``gdbench compare`` all read it. Extra arguments
after ``--`` go to pytest, e.g. ``gdbench run --quick -- --benchmark-max-time=2``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gdbench.benches
from gdbench import machine
from gdbench.data.errors import InputError
from gdbench.options import positive_int

# The suite ships inside the package as gdbench.benches (benches/ in a checkout, mapped by
# pyproject's package-dir), so an installed gdbench runs the same suite as a clone.
BENCHES = Path(gdbench.benches.__file__).resolve().parent
# Relative: results go under the directory gdbench run is started from, never into
# site-packages.
RUNS = Path("results") / "runs"
# The suite's own collection rules, given on the command line because an installed suite
# has no pyproject.toml beside it (and a user's own pytest configuration must not apply).
SUITE_INI = ["-o", "python_files=bench_*.py", "-o", "python_functions=bench_*",
             "-o", "addopts=", "-o", "testpaths="]


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
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="after --, extra arguments for pytest / pytest-benchmark")


def run_name(profile: str, machine_info: dict[str, Any], when: float | None = None) -> str:
    """'YYYYmmdd-HHMMSS_<cpu>-<N>c_<fingerprint>_<profile>': sortable, says which machine."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    info = machine_info.get("gdbench", {})
    model = str(info.get("cpu_model", "unknown"))
    cpu = "".join(c if c.isalnum() else "-" for c in model).strip("-").lower()
    return (f"{stamp}_{cpu[:24]}-{info.get('cpu_count', '')}c_"
            f"{machine.fingerprint(machine_info)}_{profile}")


def unused_path(directory: Path, stem: str) -> Path:
    """directory/stem.json, or stem-2.json, stem-3.json ... if that name is taken."""
    path = directory / f"{stem}.json"
    n = 2
    while path.exists():
        path = directory / f"{stem}-{n}.json"
        n += 1
    return path


def pytest_command(args: argparse.Namespace, json_path: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", str(BENCHES), "-q", "-p", "no:cacheprovider",
           f"--rootdir={BENCHES}", *SUITE_INI,
           "--progress", "--benchmark-save-data", "--benchmark-disable-gc",
           "--benchmark-group-by=group",
           "--benchmark-sort=name", f"--benchmark-json={json_path}", f"--dtype={args.dtype}"]
    if args.quick:
        cmd.append("--quick")
    if args.backends:
        cmd += ["--backends", *args.backends]
    if args.workloads:
        cmd += ["--workloads", *args.workloads]
    if args.threads:
        cmd.append(f"--threads={args.threads}")
    extra = list(args.pytest_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + extra


def _keep(partial: Path, out: Path, profile: str, started: float) -> Path | None:
    """Move pytest's finished run file to its final, never-used name; None if unusable."""
    if not partial.exists() or partial.stat().st_size == 0:
        print("gdbench run: pytest saved no run", file=sys.stderr)
        return None
    try:
        run = json.loads(partial.read_text())
    except json.JSONDecodeError:
        print("gdbench run: pytest left an unreadable run file; nothing saved", file=sys.stderr)
        return None
    trained = [b for b in run.get("benchmarks", [])
               if b.get("extra_info", {}).get("kind") == "training"]
    if not trained:
        print("gdbench run: no backend ran (every one skipped or failed); nothing saved",
              file=sys.stderr)
        return None
    final = unused_path(out, run_name(profile, run.get("machine_info", {}), started))
    os.replace(partial, final)  # atomic: a reader never sees a half-written run
    return final


def main(args: argparse.Namespace) -> int:
    if not (BENCHES / "bench_training.py").is_file():
        raise InputError(f"{BENCHES}: the benchmark suite is missing from this install; "
                         "reinstall gdbench")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    profile = "quick" if args.quick else "default"
    if args.workloads:
        profile = "-".join(args.workloads)
    if args.threads:
        profile += f"-{args.threads}t"
    started = time.time()
    partial = out / f".partial-{os.getpid()}-{int(started)}.json.tmp"
    print(f"gdbench run: {profile} profile on {machine.label({'gdbench': machine.describe()})}",
          flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.threads:
        env.update(machine.thread_env(args.threads))
    try:
        proc = subprocess.run(pytest_command(args, partial), env=env, check=False)
        final = _keep(partial, out, profile, started)
    finally:
        partial.unlink(missing_ok=True)  # interrupted or rejected: leave nothing half-made
    if final is None:
        return proc.returncode or 1
    from gdbench import tables

    print()
    print(tables.render_run(final, fmt=args.format))
    unavailable = json.loads(final.read_text())["machine_info"]["gdbench"].get("unavailable", {})
    for name, why in unavailable.items():
        print(f"skipped {name}: {why}")
    print(f"\nsaved {final}")
    if proc.returncode:
        print(f"gdbench run: pytest exited {proc.returncode}: a benchmark failed (see above)",
              file=sys.stderr)
    return proc.returncode
