"""Prove, on this machine, that each figure of a run is what its backend's loop costs.

For every training benchmark (backend x workload) of a run, the same backend's ``run``
is timed again, alone, in a fresh process with the run's thread settings, and checked:

interference  the suite's µs/step against the standalone µs/step; flagged when they
              differ by more than 10% (another library's threads, or the harness itself,
              slowed or sped the suite's figure).
sync          the timed call must wait for the device: re-timed with one more explicit
              wait after it (``backend.wait``), it must not move by more than 10%, once
              the wait's own cost (waits timed alone, which find nothing) is taken out.
              On a CUDA device, torch's stream must also be idle the moment ``run``
              returns: a loop whose GPU keeps up with its launches leaves only its last
              kernels pending, too little for any timing to show, but not for the stream.
x2 plan       doubling the epochs must roughly double the time (1.25x to 2.5x: a fixed
              per-call cost makes short runs scale below 2x, down to 1.5x when it is as
              long as the loop); a call that returns before its work is done barely moves.
busy after    cores the process keeps busy in the 50 ms after ``run`` returns. Thread
              pools that spin-wait (OpenBLAS, OpenMP) read near one core per thread. It
              is a warning, not a failure: the suite times each backend in its own
              process, so a spinning pool slows nothing it measures, but it would slow
              whatever a user's program runs next to it.
pairing       the harness's own cost, immune to the machine's speed episodes: rounds timed
              as the suite times them (after a reference round) over rounds timed back
              to back, blocks of each taking turns in one process; flagged beyond 10%.
              When suite/alone fails and pairing does not, the machine's speed may
              have changed between the two timings: both sides are then timed again
              twice, taking turns (suite, alone, suite, alone), and each side's rounds
              pooled, the first timings' included; the pooled figure is the verdict's,
              and the run keeps the pooled suite timing (extra_info.blocks).
floor         the share of a timed round that is timer and loop rather than ``run``.

And once per audit: the timer's resolution, and the machine's noise: an A/A comparison
of two blocks of the single-threaded drift reference, with a warning when the spread is
too large for the regression gate's threshold.

The verdicts are written into the run file (``machine_info.gdbench.audit``), atomically,
so a saved run says whether it was audited and what was found. Exit 0 when every row
passes, 1 when any row fails, 2 on bad input.

The audit runs here, on the machine it proves, never through ``gdbench run --executor``:
the suite's figures and the standalone ones must come from the same machine.

The standalone timing is :mod:`gdbench.harness.standalone`'s; the verdicts are
:mod:`gdbench.judge.audit`'s; this module runs the suite, times each side again while
the machine was unsettled (:data:`gdbench.judge.retime.AUDIT`), and saves the verdicts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd

from gdbench.commands import run as run_command
from gdbench.commands.options import world_env
from gdbench.data.errors import InputError
from gdbench.data.workloads import WORKLOADS, define, get_workload
from gdbench.harness import launcher, timing
from gdbench.harness.standalone import STANDALONE_S, Standalone, aa_rounds, standalone, timer_info
from gdbench.judge import retime as retime_policy
from gdbench.judge.audit import (
    BUSY_LIMIT,
    DOUBLING_RANGE,
    HARNESS_LIMIT,
    INTERFERENCE_LIMIT,
    SYNC_LIMIT,
    Row,
    failures,
    noise,
    suite_rounds,
    verdict,
    warnings,
)
from gdbench.judge.regress import DEFAULT_THRESHOLD, parse_threshold
from gdbench.judge.stats import SETTLED_TOLERANCE, WAKE_TOLERANCE
from gdbench.records import formats
from gdbench.records.results import load_run
from gdbench.records.run import Run, merge_rounds

# A row whose suite/alone fails while its pairing is clean is confirmed: both sides are
# timed again this many times, taking turns, and each side's rounds are pooled.
CONFIRM_PAIRS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("--run", metavar="RUN.json", type=Path,
                        help="audit this saved run instead of running the suite first")
    run_command.add_arguments(parser, where=False)  # the audit runs here
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD, metavar="PCT",
                        help="the gate threshold the machine's noise is judged against "
                             f"(default: {DEFAULT_THRESHOLD.replace('%', '%%')})")
    parser.add_argument("--seconds", type=float, default=STANDALONE_S, metavar="S",
                        help=f"seconds of standalone rounds per benchmark (default: "
                             f"{STANDALONE_S})")


def main(args: argparse.Namespace) -> int:
    threshold = parse_threshold(args.threshold)
    path: Path | None = args.run
    run_code = 0  # a failed benchmark process of the run fails the audit too
    if path is None:
        run_code, path = run_command.run_suite(args)
        if path is None:
            return run_code or 1
        print()
    frame = load_run(path)
    # The data-parallel backends' workers as the run had them, for every process timed again.
    with world_env(recorded_world(frame)):
        return _audit(args, threshold, path, frame, run_code)


def recorded_world(frame: pd.DataFrame) -> int | None:
    """The world size the run's data-parallel benchmarks ran with (None: it has none)."""
    worlds = frame["world"].dropna()
    return int(worlds.iloc[0]) if not worlds.empty else None


def _audit(args: argparse.Namespace, threshold: float, path: Path, frame: pd.DataFrame,
           run_code: int) -> int:
    run = Run.load(path)
    info = run.gdbench
    threads = info.get("threads_pinned")
    training = frame[frame["kind"] == "training"]
    if training.empty:
        raise InputError(f"{path}: no training benchmark to audit")
    rows = []
    for i, (_, r) in enumerate(training.iterrows(), start=1):
        print(f"[{i:>3}/{len(training)}] alone: {r['backend']} on {r['workload']}", flush=True)
        def alone_now(r: pd.Series = r) -> Standalone:
            return standalone(str(r["backend"]), str(r["workload"]),
                              str(r["dtype"] or "float32"), threads, args.seconds,
                              _definition(run, str(r["workload"])))

        ref_s = None if pd.isna(r["ref_s"]) else float(r["ref_s"])
        rounds_us, refs, wakes = suite_rounds(r)
        row = Row(str(r["workload"]), str(r["backend"]), float(r["step_us"]), ref_s,
                  alone_now(), rounds_us, refs, wakes)
        for _ in range(retime_policy.AUDIT.passes):
            if not row.alone_unsettled():
                break
            print("      the machine was unsettled while timing alone: again", flush=True)
            row = replace(row, alone=row.alone.pooled(alone_now()))
        row = _resettle_suite(row, run, str(r["name"]), str(r["dtype"] or "float32"),
                              threads, info.get("max_time_s"))
        row = _confirm(row, run, str(r["name"]), str(r["dtype"] or "float32"), threads,
                       info.get("max_time_s"), alone_now)
        rows.append(row)
    first_workload = str(training["workload"].iloc[0])
    own = _definition(run, first_workload)
    workload = define(first_workload, json.loads(own)) if own else get_workload(first_workload)
    first = workload.build(
        str(training["dtype"].iloc[0] or "float32"))
    reference = timing.single_threaded(timing.reference_loop(
        first.dataset.X, first.W0, first.plan.batches()))
    machine_checks = {"timer": timer_info(), "noise": noise(*aa_rounds(reference), threshold)}
    failed = [r for r in rows if failures(r)]
    audit = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "passed": not failed,
             "limits": {"interference": INTERFERENCE_LIMIT, "pairing": HARNESS_LIMIT,
                        "sync": SYNC_LIMIT, "doubling": list(DOUBLING_RANGE),
                        "busy_cores": BUSY_LIMIT},
             "rows": [record(r) for r in rows], **machine_checks}
    run.gdbench["audit"] = audit
    run.save(path)
    print(render(rows, machine_checks, path, args.format))
    return run_code or (1 if failed else 0)


def _definition(run: Run, workload: str) -> str | None:
    """A user's workload's definition as the run saved it (JSON), for the processes that
    time it again; None for gdbench's own, which every process knows by name."""
    definition = None if workload in WORKLOADS else run.workload_definition(workload)
    return None if definition is None else json.dumps(definition, sort_keys=True)


def _record_resettled(run: Run, decision: dict[str, Any]) -> None:
    """Add one of the audit's decisions to ``machine_info.gdbench.resettled``."""
    run.note("resettled", {"benchmark": decision.pop("benchmark"), "by": "audit", **decision})


def _resettle_suite(row: Row, run: Run, name: str, dtype: str,
                    threads: int | None, max_time_s: float | None) -> Row:
    """``row``, or, when most of the suite's rounds ran on an unsettled machine, the row of
    a timing of the same benchmark again, in a fresh process as ``gdbench run`` times it,
    that had fewer unsettled rounds. A timing kept replaces the benchmark in ``run`` (its
    memory figures, measured apart from timing, carried over) and is recorded in
    ``machine_info.gdbench.resettled``: the run then holds the figure the audit checks."""
    for _ in range(retime_policy.AUDIT.passes):
        if not row.suite_unsettled():
            break
        print("      the machine was unsettled while the suite timed it: the suite again",
              flush=True)
        again = retime(row.backend, row.workload, dtype, threads, max_time_s,
                       _definition(run, row.workload))
        if again is None:
            break
        candidate = row.with_suite(again)
        before = row.unsettled_shares(candidate)[0]
        after = candidate.unsettled_shares(row)[0]
        kept = after < before
        index = run.index(name)
        if kept and index is not None:
            old = run.benchmarks[index].extra
            again["extra_info"].update({k: v for k, v in old.items()
                                        if k.startswith("memory_")})
            run.replace(index, again)
            row = candidate
        _record_resettled(run, {"benchmark": name, "unsettled_first": round(before, 3),
                                "unsettled_again": round(after, 3),
                                "kept": "again" if kept else "first"})
    return row


def _confirm(row: Row, run: Run, name: str, dtype: str, threads: int | None,
             max_time_s: float | None, alone_now: Callable[[], Standalone]) -> Row:
    """``row``, or, when it has drifted (:attr:`Row.drifted`), the row of both sides timed
    again CONFIRM_PAIRS times, taking turns (suite, alone, suite, alone), each side's
    rounds pooled with its first timing's.

    The libraries' fast and slow modes can last seconds to half a minute, so one timing
    of each side, a minute apart, can land in different modes whatever the harness does;
    pooled over timings spread across the same minutes, both sides see the modes alike,
    and a real difference stays. Every timing counts, the first one included: nothing is
    picked. The pooled benchmark replaces the suite's in ``run`` (its rounds in order,
    ``extra_info.blocks`` saying how many timings, the first one's memory figures kept),
    and ``machine_info.gdbench.resettled`` records suite/alone before and after."""
    index = run.index(name)
    if not row.drifted or index is None:
        return row
    print("      suite/alone off with a clean pairing: both timed again, taking turns",
          flush=True)
    copies, alone = [run.benchmarks[index].raw], row.alone
    for _ in range(CONFIRM_PAIRS):
        again = retime(row.backend, row.workload, dtype, threads, max_time_s,
                       _definition(run, row.workload))
        if again is None:
            break
        copies.append(again)
        alone = alone.pooled(alone_now())
    if len(copies) == 1:
        return row

    run.replace(index, merge_rounds(copies))
    pooled = replace(row, alone=alone, timings=len(copies)).with_suite(run.benchmarks[index].raw)
    _record_resettled(run, {"benchmark": name, "kept": "pooled", "timings": len(copies),
                            "interference_first": round(row.interference, 3),
                            "interference_pooled": round(pooled.interference, 3)})
    return pooled


def retime(backend: str, workload: str, dtype: str, threads: int | None,
           max_time_s: float | None, definition: str | None = None) -> dict[str, Any] | None:
    """The suite's training benchmark of ``backend`` on ``workload``, timed again in a fresh
    process as ``gdbench run`` times it (no memory instrumentation), or None if it fails;
    ``definition`` (JSON) for a workload of the user's."""
    selection = [*launcher.retime_selection(backend, [workload]), "--memory", "off"]
    if max_time_s:
        selection.append(f"--benchmark-max-time={max_time_s}")
    job = launcher.Job(f"{backend} again", tuple(selection), dtype=dtype, threads=threads,
                       definitions=((workload, definition),) if definition else ())
    outcome = launcher.run_job(job)
    found = [] if outcome.failed else list(retime_policy.paired_training([outcome.part or {}]))
    return found[0] if found else None


def table(rows: Sequence[Row]) -> pd.DataFrame:
    """The audit's rows as formatted cells."""
    return pd.DataFrame({
        "workload": [r.workload for r in rows],
        "backend": [r.backend for r in rows],
        "suite µs/step": [formats.us(r.suite_us) for r in rows],
        "alone µs/step": [formats.us(r.alone_us) for r in rows],
        "suite/alone": [f"{r.interference:.3f}" for r in rows],
        "compared": [r.compared() for r in rows],
        "+wait": [formats.signed_percent(1 + r.sync_change) for r in rows],
        "x2 plan": [f"×{r.alone.doubled_ratio:.2f}" for r in rows],
        "busy after": [f"{r.alone.busy_cores:.2f}" for r in rows],
        "pairing": [formats.signed_percent(r.alone.harness_ratio) for r in rows],
        "floor": [f"{r.alone.harness_share:.2%}" for r in rows],
        "verdict": [verdict(r) for r in rows],
    })


def record(row: Row) -> dict[str, Any]:
    """One row as the run saves it under machine_info.gdbench.audit.rows."""
    alone = {k: v for k, v in asdict(row.alone).items()
             if k not in ("round_us", "round_ref_s", "round_wake_s")}
    return {"workload": row.workload, "backend": row.backend,
            "suite_step_us": row.suite_step_us, **alone,
            "suite_settled_us": row.suite_us, "alone_settled_us": row.alone_us,
            # The wake probe's median readings (µs per round trip; None without one).
            **{f"{side}_wake_us": statistics.median(w) * 1e6 if w else None
               for side, w in (("suite", row.suite_round_wake_s),
                               ("alone", row.alone.round_wake_s))},
            "compared": row.compared(), "timings": row.timings,
            "interference": row.interference, "sync_change": row.sync_change,
            "verdict": verdict(row), "failures": failures(row),
            "warnings": warnings(row)}


def render(rows: Sequence[Row], checks: dict[str, Any], path: Path, fmt: str = "table") -> str:
    notes = [f"run: {path} (the verdicts are saved in it, under machine_info.gdbench.audit)",
             "suite/alone is µs/step in the suite over µs/step alone in a fresh process, "
             "over the rounds of both taken while the machine was settled (their "
             f"single-threaded reference within {SETTLED_TOLERANCE:.0%} of its quiet level, "
             f"and their wake probe, where both read one, within {WAKE_TOLERANCE:.0%} of its "
             "own; compared counts them, suite · alone); when too few were, the medians "
             "corrected by the reference's drift. A side mostly unsettled is timed again; "
             "a row off while its pairing is clean is timed again on both sides, taking "
             "turns, and each side's rounds pooled.",
             "pairing is a round timed as the suite times it (after a reference round) over "
             "one timed back to back, blocks of each taking turns in one process: what the "
             "harness itself costs the loop, whatever the machine does; floor is the share "
             "of a round that is timer and loop rather than run.",
             f"FAIL when suite/alone or pairing is off by more than {INTERFERENCE_LIMIT:.0%}, "
             f"when one more wait finds more than {SYNC_LIMIT:.0%} of run pending, or when "
             f"twice the plan takes less than ×{DOUBLING_RANGE[0]} or more than "
             f"×{DOUBLING_RANGE[1]} the time; "
             f"'spins' warns of more than {BUSY_LIMIT} cores busy after run returns."]
    timer = checks["timer"]
    notes.append(f"timer: perf_counter resolution {timer['resolution_s']:.0e} s, smallest "
                 f"step seen {timer['smallest_step_s']:.1e} s")
    n = checks["noise"]
    notes.append(f"machine noise (A/A of the drift reference): "
                 f"{formats.signed_percent(n['aa_ratio'])} [{formats.signed_percent(n['aa_low'])},"
                 f" {formats.signed_percent(n['aa_high'])}], rounds' IQR/median "
                 f"{n['iqr_over_median']:.1%}")
    details = [f"{r.backend} on {r.workload}: {'; '.join(failures(r) + warnings(r))}"
               for r in rows if failures(r) or warnings(r)]
    failed = sum(1 for r in rows if failures(r))
    title = (f"gdbench audit: {'FAIL' if failed else 'PASS'}, {failed} of {len(rows)} "
             "benchmarks failed")
    noisy = [n["warning"]] if n["warning"] else []
    sections = [formats.Section(title, table(rows), notes)]
    text = formats.render(sections, "md" if fmt == "md" else "table", noisy)
    return text + "".join(f"{line}\n" for line in details)
