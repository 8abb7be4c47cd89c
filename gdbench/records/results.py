"""Saved runs (pytest-benchmark JSON) as a tidy pandas DataFrame, one row per benchmark.

Importable from a notebook::

    from gdbench.records.results import load_run
    frame = load_run("results/runs/0001.json")
    frame.pivot(index="workload", columns="backend", values="step_us")

Times: ``median_s``, ``iqr_s`` and the per-round ``data`` are seconds per round, and one
round is one whole training run (``steps`` steps); ``step_us`` is µs per step; ``gflops``
is GFLOP/s; ``compile_s`` is seconds. Training benchmarks pair each round with a
reference round (the workload's reference loop) timed just before it: ``norm_data`` is
each round's time over its reference's (unitless, aligned with ``data``), ``norm_median``
its median, ``ref_s`` the reference's median seconds; None / NaN for roofline rows and
for runs saved before paired timing. ``busy_data`` and ``steal_data`` (aligned with
``data``) are the CPU seconds other programs used on the process's CPUs during each
round, and the seconds stolen from them; ``neighbour_cores`` and ``steal_cores`` both
over the seconds of timed rounds. ``commit`` and ``dirty`` come from pytest-benchmark's
commit_info: the commit id the run was made from, and whether the tree had uncommitted
changes (None when not recorded).

Training rows also carry ``prepare_s`` (seconds of prepare, compilation included) and the
memory of one instrumented run (``memory_*``, see :mod:`gdbench.harness.memory`); roofline rows
carry the workload's facts: ``bandwidth_gbs`` (the bandwidth of a streaming copy as large
as the workload's dataset, GB/s; ``copy_bytes`` its size, ``copy_threads`` its threads),
the shared target (``target_loss``, ``target_steps``: steps to reach it, trained past
the plan if need be, NaN when not within ``target_cap_steps``) and the float64
reference's ``loss_curve`` at ``loss_curve_steps``.
Data-parallel rows (torch-ddp, jax-sharded) carry ``world`` (workers), ``single_process``
(the one-process backend they are set against), ``compute_only_step_us`` (the same loop
without its collective, µs per step; ``compute_only_data`` its rounds, seconds per run)
and ``collective_step_us`` (what the collective costs per step: the median of the loop
with it less the median of the loop without it, timed in turns of blocks;
``collective_full_step_us`` the former, which its share is of). A GPU's
yardsticks are roofline rows too, with their ``device`` (backend ``roofline-cuda``:
torch.mm of the step's shapes on the device, and a device-to-device copy; no target). Any
problem with a file raises :class:`gdbench.data.errors.InputError` with one line naming
the file.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gdbench import implementations
from gdbench.data.errors import InputError
from gdbench.data.workloads import WORKLOADS
from gdbench.harness import machine

COLUMNS = [
    "run", "path", "fingerprint", "machine", "machine_known", "datetime", "commit", "dirty",
    "name", "workload",
    "backend", "kind", "median_s", "iqr_s", "mean_s", "stddev_s", "min_s", "rounds",
    "iterations", "step_us", "gflops", "flops", "compile_s", "final_loss",
    "max_abs_diff_vs_numpy", "agrees", "device", "n", "d", "k", "batch_size", "epochs",
    "steps", "dtype", "sync", "gc_off", "data", "norm_data", "ref_data", "wake_data",
    "busy_data", "steal_data", "neighbour_cores", "steal_cores", "norm_median", "ref_s",
    "prepare_s", "bandwidth_gbs", "copy_bytes", "copy_threads", "target_loss", "target_steps",
    "target_plan_steps", "target_cap_steps",
    "loss_curve_steps", "loss_curve", "memory_method", "memory_peak_bytes",
    "memory_allocations_per_step", "memory_allocated_bytes_per_step",
    "world", "single_process", "compute_only_step_us", "collective_step_us",
    "collective_full_step_us",
    "compute_only_data",
]
_INT_COLUMNS = ["rounds", "iterations", "n", "d", "k", "batch_size", "epochs", "steps",
                "copy_threads", "world"]
_FLOAT_COLUMNS = ["median_s", "iqr_s", "mean_s", "stddev_s", "min_s", "step_us", "gflops",
                  "flops", "compile_s", "final_loss", "max_abs_diff_vs_numpy", "norm_median",
                  "neighbour_cores", "steal_cores",
                  "ref_s", "prepare_s", "bandwidth_gbs", "copy_bytes", "target_loss",
                  "target_steps", "target_plan_steps", "target_cap_steps", "memory_peak_bytes",
                  "memory_allocations_per_step", "memory_allocated_bytes_per_step",
                  "compute_only_step_us", "collective_step_us", "collective_full_step_us"]


def read_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed JSON of one saved run, checked to be a pytest-benchmark run with benchmarks."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory, not a run JSON file") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a text file, so not a pytest-benchmark JSON run") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read it ({exc.strerror})") from None
    if not text.strip():
        raise InputError(f"{p}: the file is empty (an interrupted run?)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}, column "
                         f"{exc.colno}); is the file truncated?") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise InputError(f"{p}: not a pytest-benchmark run (no 'benchmarks' list); save runs "
                         "with gdbench run or pytest --benchmark-json")
    if not doc["benchmarks"]:
        raise InputError(f"{p}: the run has no benchmarks (were they all skipped?)")
    return doc


def load_run(path: str | os.PathLike[str], run: str | None = None) -> pd.DataFrame:
    """One saved run as a tidy DataFrame (columns :data:`COLUMNS`, one row per benchmark).

    ``run`` names the run in the ``run`` column (default: the file name without .json).
    """
    p = Path(path)
    doc = read_run(p)
    info = doc.get("machine_info")
    info = info if isinstance(info, dict) else {}
    known = isinstance(info.get("gdbench"), dict)
    label = machine.label(info)
    if not known:
        # Saved by plain pytest: pytest-benchmark's own CPU fields are all there is.
        label += " (no gdbench machine info)"
    head = {
        "run": run or p.stem,
        "path": str(p),
        "fingerprint": machine.fingerprint(info),
        "machine": label,
        "machine_known": known,
        "datetime": doc.get("datetime"),
        **_commit_info(doc.get("commit_info")),
    }
    rows = [{**head, **_row(p, i, bench)} for i, bench in enumerate(doc["benchmarks"])]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in _FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in _INT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    frame["datetime"] = pd.to_datetime(frame["datetime"], errors="coerce", utc=True)
    # Python True / False / None, whatever the mix (pandas would make an all-bool column
    # numpy bools, on which `is True` fails).
    frame["agrees"] = frame["agrees"].astype(object)
    frame["dirty"] = frame["dirty"].astype(object)
    return frame


def _commit_info(raw: Any) -> dict[str, Any]:
    """commit (str id or None) and dirty (True / False / None) from a run's commit_info."""
    info = raw if isinstance(raw, dict) else {}
    commit, dirty = info.get("id"), info.get("dirty")
    return {"commit": commit if isinstance(commit, str) and commit else None,
            "dirty": dirty if isinstance(dirty, bool) else None}


def load_runs(paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """Several runs in one frame; runs whose file names clash get their folder prefixed."""
    stems = [Path(p).stem for p in paths]
    names = []
    for p, stem in zip(paths, stems, strict=True):
        name = stem if stems.count(stem) == 1 else f"{Path(p).parent.name}/{stem}"
        while name in names:  # the same file given twice
            name += "'"
        names.append(name)
    return pd.concat([load_run(p, n) for p, n in zip(paths, names, strict=True)],
                     ignore_index=True)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _rounds(raw: Any) -> list[float] | None:
    """A non-empty list of positive finite numbers as floats, else None."""
    if not isinstance(raw, list) or not raw:
        return None
    values = [_number(x) for x in raw]
    if any(v is None or not math.isfinite(v) or v <= 0 for v in values):
        return None
    return [float(v) for v in values if v is not None]


def _aligned(raw: Any, data: list[float] | None) -> list[float] | None:
    """A list of finite numbers (any sign: readings in kernel ticks less exact CPU time
    can dip below zero) as long as ``data``, else None."""
    if not isinstance(raw, list) or data is None or len(raw) != len(data):
        return None
    values = [_number(x) for x in raw]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values if v is not None]


def _positive(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and math.isfinite(number) and number > 0 else None


def _row(path: Path, index: int, bench: Any) -> dict[str, Any]:
    """One benchmark entry as a flat dict; times stay in seconds per round."""
    if not isinstance(bench, dict):
        raise InputError(f"{path}: benchmark #{index + 1} is not an object")
    name = str(bench.get("name", f"#{index + 1}"))
    stats = bench.get("stats")
    median = _number(stats.get("median")) if isinstance(stats, dict) else None
    if stats is None or median is None or not math.isfinite(median) or median <= 0:
        raise InputError(f"{path}: benchmark {name} has no positive stats.median; "
                         "not a pytest-benchmark run?")
    assert isinstance(stats, dict)
    extra: dict[str, Any] = bench.get("extra_info") or {}
    params: dict[str, Any] = bench.get("params") or {}
    if not isinstance(extra, dict) or not isinstance(params, dict):
        raise InputError(f"{path}: benchmark {name} has a malformed extra_info or params")
    kind = extra.get("kind") or ("roofline" if "roofline" in name else "training")
    backend = extra.get("backend") or params.get("backend")
    backend = backend or ("roofline" if kind == "roofline" else name)
    steps = _number(extra.get("steps"))
    flops = _number(extra.get("flops"))
    # Recomputed from the stats (the same formulas as the suite's extra_info), so a run
    # whose extra_info lacks them still gives per-step numbers.
    step_us = median / steps * 1e6 if steps else extra.get("step_us")
    gflops = flops / median / 1e9 if flops else extra.get("gflops")
    data = _rounds(stats.get("data"))
    norm_data = _rounds(extra.get("norm_data"))
    # Each round's reference time, kept only when aligned with norm_data.
    ref_data = _rounds(extra.get("ref_data"))
    if ref_data is not None and (norm_data is None or len(ref_data) != len(norm_data)):
        ref_data = None
    # Each round's wake probe reading (seconds per round trip), kept only when aligned.
    wake_data = _rounds(extra.get("wake_data"))
    if wake_data is not None and (norm_data is None or len(wake_data) != len(norm_data)):
        wake_data = None
    # What other programs took from its CPUs during each round (CPU seconds; stolen
    # seconds apart), kept only when aligned with the rounds.
    busy_data, steal_data = (_aligned(extra.get(key), data) for key in ("busy_data",
                                                                         "steal_data"))
    norm_median = _positive(extra.get("norm_median"))
    if norm_median is None and norm_data is not None:
        norm_median = float(statistics.median(norm_data))
    agrees = extra.get("agrees")
    options = bench.get("options")
    return {
        "name": name,
        "workload": extra.get("workload") or params.get("workload") or bench.get("group"),
        "backend": backend,
        "kind": kind,
        "median_s": median,
        "iqr_s": stats.get("iqr"),
        "mean_s": stats.get("mean"),
        "stddev_s": stats.get("stddev"),
        "min_s": stats.get("min"),
        "rounds": stats.get("rounds", len(data) if data else None),
        "iterations": stats.get("iterations", 1),
        "step_us": step_us,
        "gflops": gflops,
        "flops": flops,
        "compile_s": extra.get("compile_s"),
        "final_loss": extra.get("final_loss"),
        "max_abs_diff_vs_numpy": extra.get("max_abs_diff_vs_numpy"),
        "agrees": agrees if isinstance(agrees, bool) else None,
        "device": extra.get("device"),
        "n": extra.get("n"),
        "d": extra.get("d"),
        "k": extra.get("k"),
        "batch_size": extra.get("batch_size"),
        "epochs": extra.get("epochs"),
        "steps": steps,
        "dtype": extra.get("dtype"),
        "sync": extra.get("sync"),
        # Timed with the garbage collector off (pytest-benchmark's --benchmark-disable-gc)?
        "gc_off": bool(options.get("disable_gc")) if isinstance(options, dict) else False,
        "data": data,
        "norm_data": norm_data,
        "ref_data": ref_data,
        "wake_data": wake_data,
        "busy_data": busy_data,
        "steal_data": steal_data,
        "neighbour_cores": extra.get("neighbour_cores"),
        "steal_cores": extra.get("steal_cores"),
        "norm_median": norm_median,
        "ref_s": _positive(extra.get("ref_s")),
        # Written by later suites; a run from before them has None here.
        "prepare_s": extra.get("prepare_s"),
        "bandwidth_gbs": _positive(extra.get("bandwidth_gbs")),
        "copy_bytes": _positive(extra.get("copy_bytes")),
        "copy_threads": _positive(extra.get("copy_threads")),
        "target_loss": extra.get("target_loss"),
        "target_steps": extra.get("target_steps"),
        "target_plan_steps": extra.get("target_plan_steps"),
        "target_cap_steps": extra.get("target_cap_steps"),
        "loss_curve_steps": extra.get("loss_curve_steps"),
        "loss_curve": extra.get("loss_curve"),
        "memory_method": extra.get("memory_method"),
        "memory_peak_bytes": extra.get("memory_peak_bytes"),
        "memory_allocations_per_step": extra.get("memory_allocations_per_step"),
        "memory_allocated_bytes_per_step": extra.get("memory_allocated_bytes_per_step"),
        # Data-parallel backends only: their workers, the one-process backend they are set
        # against, and the same loop timed without its collective (per-run seconds).
        "world": extra.get("world"),
        "single_process": extra.get("single_process"),
        "compute_only_step_us": extra.get("compute_only_step_us"),
        "collective_step_us": extra.get("collective_step_us"),
        "collective_full_step_us": extra.get("collective_full_step_us"),
        "compute_only_data": _rounds(extra.get("compute_only_data")),
    }


def benchmark_row(bench: dict[str, Any], source: str = "<benchmark>") -> pd.Series:
    """One benchmark entry of a run as a row of :func:`load_run`'s columns that it has."""
    return pd.Series(_row(Path(source), 0, bench))


def has_paired_rounds(row: pd.Series | None) -> bool:
    """Whether a benchmark row carries per-round reference ratios (``norm_data``)."""
    return row is not None and isinstance(row["norm_data"], list) and len(row["norm_data"]) > 0


def runs_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One dict per run in the frame, in order: run, path, fingerprint, machine, datetime,
    commit, dirty."""
    keep = ["run", "path", "fingerprint", "machine", "machine_known", "datetime", "commit",
            "dirty"]
    return list(frame[keep].drop_duplicates("run").to_dict("records"))


def write_atomic(path: str | os.PathLike[str], content: str | bytes) -> None:
    """Write a file so that a reader sees the old content or the new, never a partial one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; results are meant to be shared
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ordered(values: Iterable[Any], order: Sequence[str]) -> list[str]:
    """Distinct values, those in ``order`` first in that order, then the rest sorted."""
    seen = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    return [v for v in order if v in seen] + sorted(v for v in seen if v not in order)


def workloads_in(frame: pd.DataFrame) -> list[str]:
    """The frame's workloads, smallest first (the order of data.workloads.WORKLOADS)."""
    return ordered(frame["workload"], list(WORKLOADS))


def backends_in(frame: pd.DataFrame) -> list[str]:
    """The frame's backends in registry order (numpy first), the rooflines last (the
    CPU's, then a GPU's yardsticks, ``roofline-cuda``)."""
    rooflines = sorted({n for n in frame["backend"] if isinstance(n, str)
                        and n.startswith("roofline")})
    names = [n for n in frame["backend"] if n not in rooflines]
    return ordered(names, implementations.names()) + rooflines
