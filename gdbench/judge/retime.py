"""The re-timing policy: which benchmarks a host neighbour spoiled, and which timing to keep.

A training benchmark saves, with every round, the time of its workload's single-threaded
reference loop taken just before it. A benchmark most of whose rounds read that reference
more than a tolerance over the workload's quiet level was timed while the machine was busy;
it is timed again in a fresh job, and the timing with fewer spoiled rounds is kept.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import numpy as np

from gdbench.harness import launcher
from gdbench.judge.stats import mostly_unsettled, quiet_level

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

def resettle(parts: list[dict[str, Any]],
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
            again = run_one(backend, launcher.retime_selection(backend, list(shares)),
                            f"again: {why}")
            budget -= time.perf_counter() - began
            if again is not None:
                decided += keep_settled(parts, again)
    return decided
