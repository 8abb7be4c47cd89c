"""The run model: a saved run, its benchmarks, its file name, and one run made of parts.

A run is pytest-benchmark's own JSON (``pytest-benchmark compare`` reads it), with
gdbench's facts in each benchmark's ``extra_info`` and in ``machine_info.gdbench``.
:class:`Run` and :class:`Benchmark` read and change it through named properties, so the
key names live here; :func:`gdbench.records.results.load_run` gives the same runs as a
tidy DataFrame for tables and plots.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_benchmark.stats import Stats

from gdbench.data.errors import InputError
from gdbench.harness import machine
from gdbench.records.results import read_run, write_atomic

TRAINING = "training"  # a benchmark that trains a backend (extra_info.kind)
ROOFLINE = "roofline"  # a benchmark that measures the machine's limits


@dataclass(frozen=True)
class Benchmark:
    """One entry of a run's ``benchmarks``: pytest-benchmark's dict, read by name."""

    raw: dict[str, Any]

    @property
    def extra(self) -> dict[str, Any]:
        info = self.raw.get("extra_info")
        return info if isinstance(info, dict) else {}

    @property
    def name(self) -> str:
        """pytest-benchmark's name, e.g. ``bench_training[crops-numpy]``."""
        return str(self.raw.get("name") or self.raw.get("fullname") or "")

    @property
    def key(self) -> str:
        """What identifies it across the parts of a run: pytest's full name, else its name."""
        return str(self.raw.get("fullname") or self.raw.get("name"))

    @property
    def kind(self) -> str:
        """``training`` or ``roofline`` (older runs said so only in the name)."""
        return str(self.extra.get("kind") or (ROOFLINE if ROOFLINE in self.name else TRAINING))

    @property
    def training(self) -> bool:
        return self.kind == TRAINING

    @property
    def workload(self) -> str:
        params = self.raw.get("params") or {}
        return str(self.extra.get("workload") or params.get("workload") or self.raw.get("group"))

    @property
    def backend(self) -> str:
        params = self.raw.get("params") or {}
        return str(self.extra.get("backend") or params.get("backend")
                   or (ROOFLINE if self.kind == ROOFLINE else self.name))

    @property
    def ref_data(self) -> list[float] | None:
        """Each round's paired reference time (seconds), when the suite saved them."""
        refs = self.extra.get("ref_data")
        return [float(x) for x in refs] if isinstance(refs, list) and refs else None

    @property
    def round_seconds(self) -> list[float] | None:
        """Each round's wall-clock seconds (its time per run × the runs in it), when saved."""
        stats = self.raw.get("stats") or {}
        data = stats.get("data")
        if not isinstance(data, list) or not data:
            return None
        iterations = stats.get("iterations") or 1
        return [float(x) * iterations for x in data]

    @property
    def neighbour_data(self) -> list[float] | None:
        """Each round's CPU seconds taken from this process's CPUs by others, stolen
        time included (``busy_data`` + ``steal_data``), when saved aligned with the rounds."""
        busy, steal = self.extra.get("busy_data"), self.extra.get("steal_data")
        rounds = self.round_seconds
        if not (isinstance(busy, list) and rounds and len(busy) == len(rounds)):
            return None
        if not (isinstance(steal, list) and len(steal) == len(busy)):
            steal = [0.0] * len(busy)
        return [float(b) + float(s) for b, s in zip(busy, steal, strict=True)]

    @property
    def paired(self) -> bool:
        """A training benchmark that saved a reference time with every round."""
        return self.training and self.ref_data is not None

    @property
    def disagrees(self) -> bool:
        """Its backend's weights were found to differ from numpy's."""
        return self.training and self.extra.get("agrees") is False


@dataclass
class Run:
    """A run's JSON document, read and changed through named properties."""

    doc: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Run:
        """The run saved at ``path``; InputError, one line naming the file, when it is not one."""
        return cls(read_run(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write it atomically: a reader sees the old file or the new, never half of one."""
        write_atomic(path, json.dumps(self.doc, indent=4))

    @property
    def benchmarks(self) -> list[Benchmark]:
        return [Benchmark(b) for b in self.doc.get("benchmarks", []) if isinstance(b, dict)]

    def paired_training(self) -> Iterator[Benchmark]:
        """The training benchmarks that saved a reference time with every round."""
        return (b for b in self.benchmarks if b.paired)

    @property
    def trained(self) -> bool:
        """Whether any backend was trained (not only the rooflines)."""
        return any(b.training for b in self.benchmarks)

    @property
    def gdbench(self) -> dict[str, Any]:
        """gdbench's facts about the run (``machine_info.gdbench``), created when missing."""
        return self.doc.setdefault("machine_info", {}).setdefault("gdbench", {})

    def index(self, name: str) -> int | None:
        """Where the benchmark named ``name`` sits in the run's list, or None."""
        return next((i for i, b in enumerate(self.benchmarks) if b.name == name), None)

    def replace(self, index: int, bench: dict[str, Any]) -> None:
        self.doc["benchmarks"][index] = bench

    def workload_definition(self, workload: str) -> dict[str, Any] | None:
        """The definition its benchmarks saved of ``workload`` (``extra_info.workload_def``),
        None when they saved none (runs from before definitions)."""
        for bench in self.benchmarks:
            definition = bench.extra.get("workload_def")
            if bench.workload == workload and isinstance(definition, dict):
                return definition
        return None

    def note(self, key: str, entry: dict[str, Any]) -> None:
        """Append ``entry`` to the list ``machine_info.gdbench[key]`` (what was decided)."""
        self.gdbench.setdefault(key, []).append(entry)


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
    merged["fingerprint"] = machine.fingerprint(info)  # from the facts, never a part's id
    doc["machine_info"] = info
    return doc


def merge_rounds(copies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One benchmark entry from its entries in several blocks: rounds concatenated.

    stats.data, extra_info.norm_data, ref_data, wake_data, busy_data and steal_data are
    concatenated in block order (each block's stay aligned with its data), and every
    statistic derived from them (pytest-benchmark's stats, step_us, gflops, norm_median,
    ref_s, neighbour_cores, steal_cores) is recomputed.
    The result agrees only if every block agreed; max_abs_diff_vs_numpy is the largest.
    """
    first = copies[0]
    rounds = [c.get("stats", {}).get("data") for c in copies]
    if any(not isinstance(r, list) or not r for r in rounds):
        raise InputError(f"benchmark {first.get('name')}: a block saved no rounds "
                         "(run without --benchmark-save-data?)")
    stats = Stats()
    for r in rounds:
        for x in r or []:
            stats.update(float(x))
    merged_stats = {**stats.as_dict(), "iterations": first["stats"].get("iterations", 1),
                    "data": stats.data}
    extra = dict(first.get("extra_info") or {})
    infos = [c.get("extra_info") or {} for c in copies]
    if all(isinstance(i.get("norm_data"), list) for i in infos):
        norm = [float(x) for i in infos for x in i["norm_data"]]
        ref = [float(x) for i in infos for x in i.get("ref_data") or []]
        extra.update(norm_data=norm, norm_median=statistics.median(norm))
        if len(ref) == len(norm):
            extra.update(ref_data=ref, ref_s=statistics.median(ref))
    # The wake probe's readings stay only where every block kept them aligned.
    wake = [float(x) for i in infos for x in i.get("wake_data") or []]
    if wake and len(wake) == len(extra.get("norm_data") or []) and \
            all(isinstance(i.get("wake_data"), list) for i in infos):
        extra["wake_data"] = wake
    else:
        extra.pop("wake_data", None)
    _merge_neighbours(extra, infos, rounds, first["stats"].get("iterations", 1))
    median = float(stats.median)
    if extra.get("steps"):
        extra["step_us"] = median / extra["steps"] * 1e6
    if extra.get("flops"):
        extra["gflops"] = extra["flops"] / median / 1e9
    if any(i.get("agrees") is False for i in infos):
        extra["agrees"] = False
    diffs = [i["max_abs_diff_vs_numpy"] for i in infos
             if isinstance(i.get("max_abs_diff_vs_numpy"), (int, float))]
    if diffs:
        extra["max_abs_diff_vs_numpy"] = max(diffs)
    compiles = [i["compile_s"] for i in infos if isinstance(i.get("compile_s"), (int, float))]
    if compiles:
        extra["compile_s"] = statistics.median(compiles)
    extra["blocks"] = len(copies)
    extra["block_rounds"] = [len(r or []) for r in rounds]
    return {**first, "stats": merged_stats, "extra_info": extra}


NEIGHBOUR_KEYS = ("busy_data", "steal_data")


def _merge_neighbours(extra: dict[str, Any], infos: Sequence[dict[str, Any]],
                      rounds: Sequence[list[float] | None], iterations: int) -> None:
    """busy_data and steal_data concatenated where every block kept them aligned with its
    rounds, with their loads recomputed over all the rounds; else left out."""
    aligned = all(isinstance(i.get(key), list) and len(i[key]) == len(r or [])
                  for i, r in zip(infos, rounds, strict=True) for key in NEIGHBOUR_KEYS)
    if not aligned:
        for key in (*NEIGHBOUR_KEYS, "neighbour_cores", "steal_cores"):
            extra.pop(key, None)
        return
    timed_s = sum(float(x) for r in rounds for x in r or []) * iterations
    for key, load in zip(NEIGHBOUR_KEYS, ("neighbour_cores", "steal_cores"), strict=True):
        values = [float(x) for i in infos for x in i[key]]
        extra[key] = values
        extra[load] = sum(values) / timed_s if timed_s > 0 else 0.0
