"""Run the benchmark suite (benches/) through pytest, save the run, and print the table.

Each backend is timed in a pytest process of its own (the numpy process also times the
rooflines), so that no other library's threads share the machine with it; thread
settings (--threads) are in the environment before any library is imported. A training
benchmark that a host neighbour spoiled for most of its rounds (its paired reference
more than 25% over the workload's quiet level) is timed again in a fresh process of its
backend, and the better-settled timing is kept (machine_info.gdbench.resettled says
which). The processes' runs are merged into one pytest-benchmark JSON (with every round's time)
under results/runs/ in the current directory (or --out), named by time, machine and
profile so that no run overwrites another: ``pytest-benchmark compare``, pandas and
``gdbench compare`` all read it. Extra arguments after ``--`` go to every pytest
process, e.g. ``gdbench run --quick -- --benchmark-max-time=2``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import gdbench.benches
from gdbench import implementations, machine
from gdbench.data.errors import InputError
from gdbench.data.workloads import get_workload
from gdbench.options import positive_int
from gdbench.results import write_atomic
from gdbench.stats import mostly_unsettled, quiet_level

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
# A benchmark most of whose rounds a host neighbour spoiled (its reference more than
# RESETTLE_TOLERANCE over the workload's quiet level, see quiet_levels) is timed again in
# a fresh process of its backend, at most RESETTLE_PASSES times, and the timing with the
# fewer spoiled rounds is kept; the re-runs together may add at most RESETTLE_BUDGET of
# the first pass's time. The tolerance is wider than the gate's (SETTLED_TOLERANCE),
# which compares a benchmark with itself: the reference at `medium` (an 8 MB gather,
# cache-bound) reads its median up to 13% over that level in one backend's process on a
# quiet machine (jax's, in two runs), while the rounds a neighbour spoiled read 28-100%
# over it.
RESETTLE_TOLERANCE = 0.25
RESETTLE_PASSES = 2
RESETTLE_BUDGET = 0.25
# --quick must end within 90 s on 2 cores: its first pass takes 66-70 s there, and with a
# quarter more for re-runs one took 89.9 s.
QUICK_RESETTLE_BUDGET = 0.1


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


def pytest_command(args: argparse.Namespace, json_path: Path,
                   selection: Sequence[str] = ()) -> list[str]:
    """The pytest command line of one benchmark process; ``selection`` narrows it (for
    example to one backend) after the user's own options."""
    # The garbage collector is off while rounds are timed (timing.collector_off says why).
    cmd = [sys.executable, "-m", "pytest", str(BENCHES), "-q", "-p", "no:cacheprovider",
           f"--rootdir={BENCHES}", *SUITE_INI,
           "--progress", "--benchmark-save-data", "--benchmark-disable-gc",
           "--benchmark-group-by=group",
           "--benchmark-sort=name", f"--benchmark-json={json_path}", f"--dtype={args.dtype}"]
    if args.quick:
        cmd.append("--quick")
    if args.backends and "--backends" not in selection:
        cmd += ["--backends", *args.backends]
    if args.workloads and "--workloads" not in selection:
        cmd += ["--workloads", *args.workloads]
    if args.threads:
        cmd.append(f"--threads={args.threads}")
    cmd += list(selection)
    extra = list(args.pytest_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + extra


def processes(backends: Sequence[str], status: dict[str, str | None]) -> list[
        tuple[str, list[str]]]:
    """(label, pytest options) of each benchmark process, in the order they run.

    One process per backend that can run here, as asv runs each benchmark in its own
    process: no other library's thread pool shares the machine with the backend being
    timed. The numpy process also times the rooflines (they are numpy GEMMs); without
    numpy they get a process of their own.
    """
    runnable = [name for name in backends if not status[name]]
    procs = [(name, ["--isolated", "--backends", name,
                     "--roofline", "with" if name == "numpy" else "without"])
             for name in runnable]
    if "numpy" not in runnable:
        procs.append(("roofline", ["--isolated", "--backends", "numpy", "--roofline", "only"]))
    return procs


def retime_selection(backend: str, workloads: Sequence[str]) -> list[str]:
    """The pytest options that time ``backend``'s training benchmarks on ``workloads``
    again, in a process of their own (no rooflines)."""
    return ["--isolated", "--backends", backend, "--roofline", "without",
            "--workloads", *workloads]


def process_env(threads: int | None, **extra: str) -> dict[str, str]:
    """The environment of a benchmark process: this one's, unbuffered, with ``extra`` and
    the thread settings of ``--threads`` (before any library is imported)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    if threads:
        env.update(machine.thread_env(threads))
    return env


def merge(parts: Sequence[dict[str, Any]], unavailable: dict[str, str]) -> dict[str, Any]:
    """One pytest-benchmark run from the runs of several processes on one machine.

    The benchmarks are concatenated; machine_info is the first process's, with gdbench's
    part completed by what each process saw of its own libraries (BLAS, torch, jax) and
    the fingerprint recomputed over the whole.
    """
    doc = dict(parts[0])
    doc["benchmarks"] = [bench for part in parts for bench in part.get("benchmarks", [])]
    info = dict(doc.get("machine_info") or {})
    merged: dict[str, Any] = {}
    blas: dict[str, dict[str, Any]] = {}
    for part in parts:
        g = (part.get("machine_info") or {}).get("gdbench") or {}
        for key, value in g.items():
            if key == "blas":
                blas.update({str(lib.get("prefix")) + str(lib.get("filepath")): lib
                             for lib in value})
            elif merged.get(key) in (None, [], {}):
                merged[key] = value
    merged["blas"] = list(blas.values())
    merged["unavailable"] = dict(unavailable)
    merged["isolation"] = "process per backend"
    info["gdbench"] = merged
    merged["fingerprint"] = machine.fingerprint({**info, "gdbench": {
        k: v for k, v in merged.items() if k != "fingerprint"}})
    doc["machine_info"] = info
    return doc


# --- timing again what the machine's unsettled moments spoiled --------------------------------

def paired_training(parts: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The training benchmarks of these processes' runs that saved per-round references."""
    for part in parts:
        for bench in part.get("benchmarks", []):
            info = bench.get("extra_info") or {}
            refs = info.get("ref_data")
            if info.get("kind") == "training" and isinstance(refs, list) and refs:
                yield bench


def quiet_levels(parts: Sequence[dict[str, Any]]) -> dict[str, float]:
    """{workload: its reference's quiet level}: the median, over every backend's benchmark
    of the workload, of that benchmark's own quiet level. The reference loop is the
    workload's whichever process times it, so a benchmark spoiled from its first round to
    its last stands out against the others; the median, not the pooled low percentile,
    because one process can read the reference faster throughout: numpy's, whose loop
    warms the very array the reference gathers from (at `medium`, 3.1 ms against 4.2-4.5
    in the six other processes of one run)."""
    levels: dict[str, list[float]] = {}
    for bench in paired_training(parts):
        info = bench["extra_info"]
        levels.setdefault(str(info["workload"]), []).append(quiet_level(info["ref_data"]))
    return {workload: float(np.median(each)) for workload, each in levels.items()}


def unsettled(bench: dict[str, Any], levels: dict[str, float]) -> tuple[bool, float]:
    """Whether most of a training benchmark's rounds had a reference more than
    RESETTLE_TOLERANCE over its workload's quiet level, and their share."""
    info = bench["extra_info"]
    return mostly_unsettled(info["ref_data"], levels[str(info["workload"])],
                            RESETTLE_TOLERANCE)


def spoiled(parts: Sequence[dict[str, Any]],
            tried: Collection[tuple[str, str]] = ()) -> dict[str, dict[str, float]]:
    """{backend: {workload: unsettled share}} of the training benchmarks that had most
    of their rounds unsettled, leaving out the (backend, workload) pairs in ``tried``."""
    levels = quiet_levels(parts)
    out: dict[str, dict[str, float]] = {}
    for bench in paired_training(parts):
        info = bench["extra_info"]
        key = (str(info["backend"]), str(info["workload"]))
        mostly, share = unsettled(bench, levels)
        if mostly and key not in tried:
            out.setdefault(key[0], {})[key[1]] = share
    return out


def _name(bench: dict[str, Any]) -> str:
    return str(bench.get("fullname") or bench.get("name"))


def keep_settled(parts: list[dict[str, Any]], again: dict[str, Any]) -> list[dict[str, Any]]:
    """Put each training benchmark of ``again`` (a re-run) in place of the same benchmark in
    ``parts`` when fewer of its rounds were unsettled, judged against the quiet levels of
    all of them (:func:`quiet_levels`); return what was decided, one record per benchmark."""
    levels = quiet_levels([*parts, again])
    where = {_name(bench): (part["benchmarks"], i)
             for part in parts for i, bench in enumerate(part.get("benchmarks", []))}
    decided = []
    for new in paired_training([again]):
        if _name(new) not in where:
            continue
        benches, i = where[_name(new)]
        before, after = unsettled(benches[i], levels)[1], unsettled(new, levels)[1]
        if after < before:
            benches[i] = new
        # Named as the audit names what it re-times (pytest-benchmark's name), and by whom.
        decided.append({"benchmark": str(new.get("name") or _name(new)), "by": "run",
                        "unsettled_first": round(before, 3),
                        "unsettled_again": round(after, 3),
                        "kept": "again" if after < before else "first"})
    return decided


def _resettle(parts: list[dict[str, Any]],
              run_one: Callable[[str, list[str], str], dict[str, Any] | None],
              seconds: dict[str, float], first_pass_s: float,
              budget_share: float = RESETTLE_BUDGET) -> list[dict[str, Any]]:
    """Time again, in a fresh process of its backend, each training benchmark that the
    machine's unsettled moments spoiled (see :func:`spoiled`), keep the better-settled
    timing of each (:func:`keep_settled`), and return what was decided. Within
    RESETTLE_PASSES passes and ``budget_share`` of the first pass's time: a re-run that
    would not fit (its backend's first process's seconds per workload, times the
    workloads to time again) is skipped, and says so."""
    timed = Counter(str(b["extra_info"]["backend"]) for b in paired_training(parts))
    per_workload = {backend: seconds[backend] / n for backend, n in timed.items()
                    if backend in seconds}
    decided: list[dict[str, Any]] = []
    skipped: set[tuple[str, str]] = set()  # no time for them: said once
    budget = budget_share * first_pass_s
    for _ in range(RESETTLE_PASSES):
        todo = spoiled(parts, skipped)
        if not todo:
            break
        for backend, shares in todo.items():
            worst = max(shares, key=shares.__getitem__)
            why = (f"{shares[worst]:.0%} of its rounds on {worst} had a reference over "
                   f"{RESETTLE_TOLERANCE:.0%} above the quiet level")
            if per_workload.get(backend, math.inf) * len(shares) > budget:
                skipped.update((backend, w) for w in shares)
                print(f"-- {backend}: {why}; no time left to time it again ({budget:.0f} s "
                      f"left of the {budget_share:.0%} of the first pass allowed)",
                      flush=True)
                continue
            began = time.perf_counter()
            again = run_one(backend, retime_selection(backend, list(shares)),
                            f"again: {why}")
            budget -= time.perf_counter() - began
            if again is not None:
                decided += keep_settled(parts, again)
    return decided


def _read_part(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list) else None


def _trained(doc: dict[str, Any]) -> bool:
    return any(b.get("extra_info", {}).get("kind") == "training" for b in doc["benchmarks"])


def _run_process(cmd: list[str], env: dict[str, str]) -> int:
    """Run one benchmark process, echoing its progress lines as they come; its whole
    output is shown only when it fails (pytest-benchmark's own tables are long)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("["):
                print(line, end="", flush=True)
    except BaseException:  # interrupted: the benchmark process goes too
        proc.kill()
        proc.wait()
        raise
    code = proc.wait()
    if code:
        print("".join(lines[-200:]), end="", file=sys.stderr)
    return code


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Inside the block, SIGTERM (a cancelled CI job, ``kill``) raises SystemExit(143) as
    Ctrl-C raises KeyboardInterrupt, so that the cleanup runs: the benchmark process is
    stopped and no partial file is left behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(args: argparse.Namespace) -> int:
    if getattr(args, "suite_path", False):
        print(BENCHES)
        return 0
    return run_suite(args)[0]


def run_suite(args: argparse.Namespace) -> tuple[int, Path | None]:
    """Run, save and print the suite: (the exit code of the first benchmark process that
    failed, else 0; the saved run or None). The run keeps the parts of the processes that
    passed; each failed process is named on stderr, last."""
    if not (BENCHES / "bench_training.py").is_file():
        raise InputError(f"{BENCHES}: the benchmark suite is missing from this install; "
                         "reinstall gdbench")
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
    env = process_env(args.threads)
    procs = processes(backends, status)
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
        failed = _run_process(pytest_command(args, partial, selection), env)
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
        part = _read_part(partial) if partial.exists() else None
        return None if failed else part

    with terminate_as_exit():  # stopped by SIGTERM, it cleans up as on Ctrl-C
        try:
            first_began = time.perf_counter()
            for i, (label, selection) in enumerate(procs):
                part = run_one(label, selection, f"process {i + 1} of {len(procs)}")
                if part is not None:
                    parts.append(part)
            if not parts or not any(_trained(p) for p in parts):
                for line in failures:
                    print(line, file=sys.stderr)
                print("gdbench run: no backend ran (every one skipped or failed); nothing saved",
                      file=sys.stderr)
                return code or 1, None
            resettled = _resettle(parts, run_one, seconds, time.perf_counter() - first_began,
                                  QUICK_RESETTLE_BUDGET if args.quick else RESETTLE_BUDGET)
            doc = merge(parts, unavailable)
            doc["machine_info"]["gdbench"]["resettled"] = resettled
            final = unused_path(out, run_name(profile, doc["machine_info"], started))
            write_atomic(final, json.dumps(doc, indent=4))  # a reader never sees half a run
        finally:
            for partial in partials:  # interrupted or rejected: leave nothing half-made
                partial.unlink(missing_ok=True)
    from gdbench import tables

    print()
    print(tables.render_run(final, fmt=args.format))
    for name, why in unavailable.items():
        print(f"skipped {name}: {why}")
    print(f"\nsaved {final}")
    for line in failures:
        print(line, file=sys.stderr)
    return code, final
