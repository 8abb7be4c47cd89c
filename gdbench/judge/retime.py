"""The re-timing policy: which benchmarks a host neighbour spoiled, and which timing to keep.

A training benchmark saves, with every round, the time of its workload's single-threaded
reference loop taken just before it, and what other programs took from its CPUs while the
round was timed. A round whose reference read more than a tolerance over the workload's
quiet level, or that was timed beside a busy neighbour (:func:`neighbours`), is unsettled;
a benchmark most of whose rounds were unsettled was timed while the machine was busy: it
is timed again in a fresh job, and the timing with fewer unsettled rounds is kept.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gdbench.harness import launcher
from gdbench.judge.stats import (
    SETTLED_TOLERANCE,
    mostly_unsettled,
    neighbour_rounds,
    quiet_level,
)
from gdbench.records.run import Benchmark, Run


@dataclass(frozen=True)
class Policy:
    """When a timing was spoiled, and how often it may be timed again.

    A round is unsettled when its reference read more than ``tolerance`` over the quiet
    level; a timing most of whose rounds were unsettled (more than UNSETTLED_SHARE) is
    spoiled and timed again in a fresh job, at most ``passes`` times, the re-runs together
    taking at most ``budget_share`` of the first pass's time. Each command names its own
    policy below; the mechanism is one.
    """

    tolerance: float
    passes: int
    budget_share: float = math.inf

    def spoiled(self, refs: Sequence[float], level: float,
                neighbours: Sequence[bool] | np.ndarray | None = None) -> tuple[bool, float]:
        """Whether most rounds with these reference times (and, where given, these
        neighbour flags: :func:`neighbours`) were unsettled, and their share."""
        return mostly_unsettled(refs, level, self.tolerance, neighbours)


# gdbench run judges each benchmark against its workload's quiet level over every backend's
# process (quiet_levels). Its tolerance is wider than the gate's (SETTLED_TOLERANCE), which
# compares a benchmark with itself: at a cache-bound workload the reference reads its
# median well over that level in some backends' processes on a quiet machine, while the
# rounds a neighbour spoiled read far over it (docs/fidelity.md has the figures).
RUN = Policy(tolerance=0.25, passes=2, budget_share=0.25)
# --quick must end within CI's limit, with room for its re-runs.
RUN_QUICK = replace(RUN, budget_share=0.1)
# gdbench ab and gdbench audit judge a benchmark against its own quiet level, pooled over
# every timing of it, with the gate's tolerance: what they time again is what the gate
# would leave out. The audit tries a side more often: the libraries' slow modes can last
# tens of seconds, longer than one timing.
AB = Policy(tolerance=SETTLED_TOLERANCE, passes=2)
AUDIT = Policy(tolerance=SETTLED_TOLERANCE, passes=3)

def paired_training(parts: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The training benchmarks of these processes' runs that saved per-round references."""
    for part in parts:
        for bench in Run(part).paired_training():
            yield bench.raw


def _paired(parts: Sequence[dict[str, Any]]) -> Iterator[Benchmark]:
    return (Benchmark(raw) for raw in paired_training(parts))


def quiet_levels(parts: Sequence[dict[str, Any]]) -> dict[str, float]:
    """{workload: its reference's quiet level}: the median, over every backend's benchmark
    of the workload, of that benchmark's own quiet level. The reference loop is the
    workload's whichever process times it, so a benchmark spoiled from its first round to
    its last stands out against the others; the median, not the pooled low percentile,
    because one process can read the reference faster throughout: numpy's, whose loop
    warms the very array the reference gathers from."""
    return workload_levels((bench.workload, bench.ref_data or []) for bench in _paired(parts))


def workload_levels(refs: Iterable[tuple[str, Sequence[float]]]) -> dict[str, float]:
    """{workload: its reference's quiet level} from (workload, one benchmark's reference
    times) pairs, as :func:`quiet_levels` judges them: the median of each benchmark's own
    quiet level. The tables judge a saved run's benchmarks with it."""
    levels: dict[str, list[float]] = {}
    for workload, ref_data in refs:
        levels.setdefault(workload, []).append(quiet_level(ref_data))
    return {workload: float(np.median(each)) for workload, each in levels.items()}


def neighbours(bench: Benchmark) -> np.ndarray | None:
    """Which of a benchmark's rounds were timed beside a busy neighbour
    (:func:`gdbench.judge.stats.neighbour_rounds` of what others took from its CPUs,
    stolen time included); None when the suite did not record it."""
    taken, rounds = bench.neighbour_data, bench.round_seconds
    if taken is None or rounds is None:
        return None
    return neighbour_rounds(taken, rounds)


def unsettled(bench: dict[str, Any], levels: dict[str, float],
              policy: Policy = RUN) -> tuple[bool, float]:
    """Whether most of a training benchmark's rounds had a reference more than the policy's
    tolerance over its workload's quiet level or a busy neighbour, and their share."""
    b = Benchmark(bench)
    return policy.spoiled(b.ref_data or [], levels[b.workload], neighbours(b))


def spoiled(parts: Sequence[dict[str, Any]], tried: Collection[tuple[str, str]] = (),
            policy: Policy = RUN) -> dict[str, dict[str, float]]:
    """{backend: {workload: unsettled share}} of the training benchmarks that had most
    of their rounds unsettled, leaving out the (backend, workload) pairs in ``tried``."""
    levels = quiet_levels(parts)
    out: dict[str, dict[str, float]] = {}
    for bench in _paired(parts):
        mostly, share = unsettled(bench.raw, levels, policy)
        if mostly and (bench.backend, bench.workload) not in tried:
            out.setdefault(bench.backend, {})[bench.workload] = share
    return out


def keep_settled(parts: list[dict[str, Any]], again: dict[str, Any],
                 policy: Policy = RUN) -> list[dict[str, Any]]:
    """Put each training benchmark of ``again`` (a re-run) in place of the same benchmark in
    ``parts`` when fewer of its rounds were unsettled, judged against the quiet levels of
    all of them (:func:`quiet_levels`); return what was decided, one record per benchmark."""
    levels = quiet_levels([*parts, again])
    where = {Benchmark(bench).key: (part["benchmarks"], i)
             for part in parts for i, bench in enumerate(part.get("benchmarks", []))}
    decided = []
    for new in _paired([again]):
        if new.key not in where:
            continue
        benches, i = where[new.key]
        before = unsettled(benches[i], levels, policy)[1]
        after = unsettled(new.raw, levels, policy)[1]
        if after < before:
            benches[i] = new.raw
        # Named as the audit names what it re-times (pytest-benchmark's name), and by whom.
        decided.append({"benchmark": new.name, "by": "run",
                        "unsettled_first": round(before, 3),
                        "unsettled_again": round(after, 3),
                        "kept": "again" if after < before else "first"})
    return decided


def _neighbour_note(parts: Sequence[dict[str, Any]], backend: str, workload: str) -> str:
    """", or a busy neighbour beside N% of them" when the suite saw one."""
    for bench in _paired(parts):
        if (bench.backend, bench.workload) == (backend, workload):
            seen = neighbours(bench)
            if seen is not None and seen.any():
                return f", or a busy neighbour beside {seen.mean():.0%} of them"
    return ""


def resettle(parts: list[dict[str, Any]],
              run_one: Callable[[str, list[str], str], dict[str, Any] | None],
              seconds: dict[str, float], first_pass_s: float,
              policy: Policy = RUN) -> list[dict[str, Any]]:
    """Time again, in a fresh process of its backend, each training benchmark that the
    machine's unsettled moments spoiled (see :func:`spoiled`), keep the better-settled
    timing of each (:func:`keep_settled`), and return what was decided. Within
    the policy's passes and its budget share of the first pass's time: a re-run that
    would not fit (its backend's first process's seconds per workload, times the
    workloads to time again) is skipped, and says so."""
    timed = Counter(b.backend for b in _paired(parts))
    per_workload = {backend: seconds[backend] / n for backend, n in timed.items()
                    if backend in seconds}
    decided: list[dict[str, Any]] = []
    skipped: set[tuple[str, str]] = set()  # no time for them: said once
    budget = policy.budget_share * first_pass_s
    for _ in range(policy.passes):
        todo = spoiled(parts, skipped, policy)
        if not todo:
            break
        for backend, shares in todo.items():
            worst = max(shares, key=shares.__getitem__)
            why = (f"{shares[worst]:.0%} of its rounds on {worst} had a reference over "
                   f"{policy.tolerance:.0%} above the quiet level"
                   f"{_neighbour_note(parts, backend, worst)}")
            if per_workload.get(backend, math.inf) * len(shares) > budget:
                skipped.update((backend, w) for w in shares)
                print(f"-- {backend}: {why}; no time left to time it again ({budget:.0f} s "
                      f"left of the {policy.budget_share:.0%} of the first pass allowed)",
                      flush=True)
                continue
            began = time.perf_counter()
            again = run_one(backend, launcher.retime_selection(backend, list(shares)),
                            f"again: {why}")
            budget -= time.perf_counter() - began
            if again is not None:
                decided += keep_settled(parts, again, policy)
    return decided
