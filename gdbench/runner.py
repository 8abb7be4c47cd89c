"""Run the benchmark suite (benches/) through pytest, save the run, and print the table.

The run is saved as pytest-benchmark's own JSON (with every round's time) under
results/runs/, named by time, machine and profile so that no run overwrites another:
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

from data.errors import InputError
from gdbench import machine

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ROOT / "benches"
RUNS = ROOT / "results" / "runs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="the CI profile: small workloads, 0.3 s of rounds per benchmark")
    parser.add_argument("--backends", nargs="+", metavar="NAME",
                        help="only these backends (default: every backend; unavailable ones "
                             "are listed as skipped with their reason)")
    parser.add_argument("--workloads", nargs="+", metavar="NAME",
                        help="only these workloads (default: crops small medium large; "
                             "xl is opt-in)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="pin BLAS/OpenMP and torch to N threads (recorded either way)")
    parser.add_argument("--out", type=Path, default=RUNS, metavar="DIR",
                        help=f"where to save the run JSON (default: {RUNS.relative_to(ROOT)})")
    parser.add_argument("--format", choices=["table", "md", "csv", "html"], default="table",
                        help="format of the printed table (default: table)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="after --, extra arguments for pytest / pytest-benchmark")


def run_name(profile: str, when: float | None = None) -> str:
    """'YYYYmmdd-HHMMSS_<cpu>_<fingerprint>_<profile>': sortable, and says which machine."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    info = machine.describe()
    cpu = "".join(c if c.isalnum() else "-" for c in info["cpu_model"]).strip("-").lower()
    return f"{stamp}_{cpu[:24]}-{info['cpu_count']}c_{info['fingerprint']}_{profile}"


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
           "--progress", "--benchmark-save-data", "--benchmark-group-by=group",
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


def main(args: argparse.Namespace) -> int:
    if not BENCHES.is_dir():
        raise InputError(f"{BENCHES}: not found; gdbench run needs the source checkout "
                         "(pip install -e . from a clone)")
    if args.threads is not None and args.threads <= 0:
        raise InputError(f"--threads must be a positive integer, got {args.threads}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    profile = "quick" if args.quick else "default"
    if args.workloads:
        profile = "-".join(args.workloads)
    final = unused_path(out, run_name(profile))
    partial = final.with_suffix(".json.tmp")
    print(f"gdbench run: {profile} profile on {machine.label({'gdbench': machine.describe()})}",
          flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(pytest_command(args, partial), cwd=ROOT, env=env, check=False)
    if not partial.exists() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        print(f"gdbench run: pytest exited {proc.returncode} and saved no run", file=sys.stderr)
        return proc.returncode or 1
    try:
        run = json.loads(partial.read_text())
    except json.JSONDecodeError:
        partial.unlink(missing_ok=True)
        print("gdbench run: pytest left an unreadable run file; nothing saved", file=sys.stderr)
        return 1
    trained = [b for b in run.get("benchmarks", [])
               if b.get("extra_info", {}).get("kind") == "training"]
    if not trained:
        partial.unlink(missing_ok=True)
        print("gdbench run: no backend ran (every one skipped or failed); nothing saved",
              file=sys.stderr)
        return proc.returncode or 1
    os.replace(partial, final)  # atomic: a reader never sees a half-written run
    from gdbench import tables

    print()
    print(tables.render_run(final, fmt=args.format))
    print(f"\nsaved {final.relative_to(ROOT) if final.is_relative_to(ROOT) else final}")
    if proc.returncode:
        print(f"gdbench run: pytest exited {proc.returncode}: a benchmark failed (see above)",
              file=sys.stderr)
    return proc.returncode
