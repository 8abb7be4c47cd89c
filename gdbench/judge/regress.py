"""The regression gate: a run against a baseline, benchmark by benchmark, with intervals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from gdbench.data.errors import InputError
from gdbench.judge.limits import CPU, device_of
from gdbench.judge.stats import (
    CONFIDENCE,
    RESAMPLES,
    SETTLED_TOLERANCE,
    Estimate,
    ratio_of_medians,
    settled_pair,
)
from gdbench.records import formats
from gdbench.records.results import (
    backends_in,
    has_paired_rounds,
    workloads_in,
)

DEFAULT_THRESHOLD = "15%"
REGRESSION = "regression"
IMPROVEMENT = "improvement"
NOT_SIGNIFICANT = "not significant"
OK = "ok"
MISSING_NEW = "missing in new run"
MISSING_BASE = "not in baseline"
REFERENCE = "reference"
UNCONFIRMED = "not reproduced"
DISAGREES = "disagrees with numpy"

# How a training benchmark was compared (the ``method`` column of compare_runs).
PAIRED = "paired"
UNPAIRED = "unpaired roofline"
RAW = "raw"
GPU_RAW_NOTE = "GPU benchmark: raw times (the NumPy reference measures the CPU, not the GPU)"


# --- the statistics (pure) ---------------------------------------------------------------

def parse_threshold(text: str) -> float:
    """'15%' -> 0.15 and '0.15' -> 0.15; anything else raises InputError."""
    s = str(text).strip()
    is_percent = s.endswith("%")
    try:
        value = float(s[:-1] if is_percent else s)
    except ValueError:
        raise InputError(f"threshold must look like 15% or 0.15, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"threshold must be positive, like 15% or 0.15, got {text!r}")
    if is_percent:
        return value / 100
    if value >= 1:
        raise InputError(f"threshold {text!r} is ambiguous: write {s}% for a percentage, "
                         "or a fraction below 1 such as 0.15")
    return value


def verdict(estimate: Estimate, threshold: float) -> str:
    """regression / improvement / not significant / ok, for a new/baseline ratio."""
    slower = estimate.ratio > 1 + threshold
    faster = estimate.ratio < 1 / (1 + threshold)
    if not estimate.resampled:  # medians only: the threshold alone decides
        return REGRESSION if slower else IMPROVEMENT if faster else OK
    if slower and estimate.low > 1:
        return REGRESSION
    if faster and estimate.high < 1:
        return IMPROVEMENT
    return NOT_SIGNIFICANT if slower or faster else OK


# --- the gate ------------------------------------------------------------------------------

def roofline_row(frame: pd.DataFrame, row: pd.Series) -> pd.Series | None:
    """The CPU roofline row of the same workload and dtype in the same run.

    A roofline without a recorded dtype will do; one of another dtype will not (a float64
    benchmark over a float32 roofline measures the dtype, not the machine). A GPU's
    yardstick rows are never one: they measure another device.
    """
    roof = frame[(frame["kind"] == "roofline") & (frame["workload"] == row["workload"])
                 & (frame["device"].map(device_of) == CPU)]
    if not pd.isna(row["dtype"]):
        same = roof["dtype"] == row["dtype"]
        roof = roof[same] if same.any() else roof[roof["dtype"].isna()]
    return None if roof.empty else roof.iloc[0]


def _samples(row: pd.Series) -> list[float] | None:
    """The row's timed rounds when there are two or more (else None)."""
    data = row["data"]
    return data if isinstance(data, list) and len(data) >= 2 else None


def on_gpu(row: pd.Series) -> bool:
    """Whether a benchmark ran on another device than the CPU (``device != "cpu"``)."""
    return device_of(row["device"]) != CPU


def _compare_raw(b: pd.Series, n: pd.Series, notes: list[str]) -> Estimate:
    """new/baseline of the raw median times, with the interval of the rounds when both
    runs saved two or more."""
    rounds = [_samples(n), _samples(b)]
    if rounds[0] is not None and rounds[1] is not None:
        return ratio_of_medians(rounds[0], rounds[1])
    notes.append("no per-round data: medians only, no significance test")
    return Estimate(n["median_s"] / b["median_s"])


def _compare_training(base: pd.DataFrame, new: pd.DataFrame, b: pd.Series, n: pd.Series,
                      notes: list[str]) -> tuple[str, Estimate, float, float]:
    """(method, new/baseline estimate, baseline and new normalised medians) of one
    training benchmark; appends what the reader must know to ``notes``."""
    if on_gpu(b) or on_gpu(n):
        # The paired reference and the roofline are NumPy loops on one CPU thread: they
        # say nothing of the GPU's speed, so a GPU benchmark is judged by its raw times.
        notes.append(GPU_RAW_NOTE)
        return RAW, _compare_raw(b, n, notes), math.nan, math.nan
    if has_paired_rounds(b) and has_paired_rounds(n):
        # The paired design: each round over the reference round timed just before it,
        # from the rounds taken on a settled machine (stats.settled_pair): judged by the
        # reference, and by the wake probe where both runs read it (not with --threads 1).
        new_norm, base_norm = n["norm_data"], b["norm_data"]
        if isinstance(n["ref_data"], list) and isinstance(b["ref_data"], list):
            wakes = (n.get("wake_data"), b.get("wake_data"))
            both = all(isinstance(w, list) for w in wakes)  # the wake probe judges too
            kept = settled_pair(new_norm, n["ref_data"], base_norm, b["ref_data"],
                                *(wakes if both else (None, None)))
            new_norm, base_norm = kept.new, kept.base
            if kept.note():
                notes.append(kept.note())
        est = ratio_of_medians(new_norm, base_norm)
        if not est.resampled:
            notes.append("one round: no significance test")
        return (PAIRED, est, float(np.median(base_norm)), float(np.median(new_norm)))
    lacking = [role for role, r in (("baseline", b), ("new run", n)) if not has_paired_rounds(r)]
    broof, nroof = roofline_row(base, b), roofline_row(new, n)
    base_norm = new_norm = math.nan
    if broof is None or nroof is None:
        # Nothing to normalise by: compare raw times, which include the machine's speed.
        notes.append("no roofline: raw times")
        return RAW, _compare_raw(b, n, notes), base_norm, new_norm
    notes.append(f"unpaired roofline (no per-round reference in the "
                 f"{' or '.join(lacking)})")
    base_norm = b["median_s"] / broof["median_s"]
    new_norm = n["median_s"] / nroof["median_s"]
    present = [n, b, nroof, broof]  # the argument order of ratio_of_medians
    rounds = [_samples(r) for r in present]
    if all(x is not None for x in rounds):
        est = ratio_of_medians(*[x for x in rounds if x is not None])
    else:
        notes.append("no per-round data: medians only, no significance test")
        est = Estimate(ratio_of_medians(*[[r["median_s"]] for r in present]).ratio)
    return UNPAIRED, est, base_norm, new_norm


def compare_runs(base: pd.DataFrame, new: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per benchmark of either run: normalised times, change, CI and verdict.

    ``base_norm``/``new_norm`` are the benchmark's normalised median (unitless: the median
    of its rounds over their reference rounds, or, unpaired, its median over its
    roofline's; NaN for raw); ``ratio``, ``low``, ``high`` are new/baseline and its 95% CI;
    ``raw_ratio`` is the plain new/baseline median time; ``method`` is paired, unpaired
    roofline or raw (empty for roofline rows and missing benchmarks). A benchmark on a GPU
    (``device != "cpu"``) is always compared raw: the reference loop and the roofline are
    NumPy on the CPU. Roofline rows are kept as the machine's reference (a GPU's yardstick
    rows as the GPU's).
    """
    rows: list[dict[str, Any]] = []
    base_by_name = {r["name"]: r for _, r in base.iterrows()}
    new_by_name = {r["name"]: r for _, r in new.iterrows()}
    for name in dict.fromkeys([*base_by_name, *new_by_name]):
        b, n = base_by_name.get(name), new_by_name.get(name)
        any_row = n if n is not None else b
        assert any_row is not None
        out: dict[str, Any] = {"name": name, "workload": any_row["workload"],
                               "backend": any_row["backend"], "kind": any_row["kind"],
                               "base_norm": math.nan, "new_norm": math.nan,
                               "ratio": math.nan, "low": math.nan, "high": math.nan,
                               "raw_ratio": math.nan, "method": "", "verdict": "",
                               "note": ""}
        rows.append(out)
        # A wrong result fails whatever its speed, even in a benchmark new in this run.
        wrong = n is not None and n["agrees"] is False
        notes = [_disagreement(n)] if wrong else []
        if b is None or n is None:
            out["verdict"] = DISAGREES if wrong else MISSING_NEW if n is None else MISSING_BASE
            out["note"] = "; ".join(notes)
            continue
        out["raw_ratio"] = n["median_s"] / b["median_s"]
        if any_row["kind"] == "roofline":
            out["verdict"] = REFERENCE
            out["note"] = "machine speed: raw new/baseline time" if not on_gpu(any_row) \
                else "GPU speed: raw new/baseline time"
            continue
        method, est, base_norm, new_norm = _compare_training(base, new, b, n, notes)
        out.update(base_norm=base_norm, new_norm=new_norm, ratio=est.ratio, low=est.low,
                   high=est.high, method=method,
                   verdict=DISAGREES if wrong else verdict(est, threshold),
                   note="; ".join(notes))
    frame = pd.DataFrame(rows)
    order_w = {w: i for i, w in enumerate(workloads_in(frame))}
    order_b = {x: i for i, x in enumerate(backends_in(frame))}
    frame["_w"] = frame["workload"].map(order_w)
    frame["_b"] = frame["backend"].map(order_b)
    return frame.sort_values(["_w", "_b"], kind="stable").drop(columns=["_w", "_b"])


def _disagreement(row: pd.Series) -> str:
    """Why a benchmark fails for its result, with the recorded distance when there is one."""
    diff = row["max_abs_diff_vs_numpy"]
    size = "" if pd.isna(diff) else f" (weights off by up to {diff:.3g})"
    return f"disagrees with numpy{size}: a wrong result fails whatever its speed"


_MARK = {REGRESSION: "❌ regression", DISAGREES: "❌ disagrees with numpy",
         IMPROVEMENT: "✅ improvement", NOT_SIGNIFICANT: "~ not significant", OK: "ok",
         REFERENCE: "reference", UNCONFIRMED: "~ not reproduced",
         MISSING_NEW: "⚠ missing in new run", MISSING_BASE: "new benchmark"}


def report_table(gate: pd.DataFrame) -> pd.DataFrame:
    """The gate's rows as formatted cells for the markdown report."""
    def ci(r: pd.Series) -> str:
        if math.isnan(r["low"]):
            return ""
        return f"[{formats.signed_percent(r['low'])}, {formats.signed_percent(r['high'])}]"

    return pd.DataFrame({
        "workload": gate["workload"],
        "backend": gate["backend"],
        "baseline ×ref": gate["base_norm"].map(_norm),
        "new ×ref": gate["new_norm"].map(_norm),
        "change": [formats.signed_percent(r) for r in gate["ratio"].where(
            gate["kind"] != "roofline", gate["raw_ratio"])],
        "95% CI": [ci(r) for _, r in gate.iterrows()],
        "raw time change": gate["raw_ratio"].map(formats.signed_percent),
        "verdict": gate["verdict"].map(_MARK),
        "note": gate["note"],
    })


def _norm(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.3g}"


def summary(gate: pd.DataFrame, threshold: float) -> tuple[str, int]:
    """A one-line verdict and the exit code (1 when any benchmark regressed or disagrees
    with numpy)."""
    counts = gate["verdict"].value_counts()
    n_reg = int(counts.get(REGRESSION, 0))
    n_wrong = int(counts.get(DISAGREES, 0))
    parts = [f"{n_reg} regression{'s' * (n_reg != 1)}"]
    if n_wrong:
        parts.append(f"{n_wrong} disagreeing with numpy")
    parts += [f"{int(counts.get(IMPROVEMENT, 0))} improved",
              f"{int(counts.get(OK, 0))} unchanged"]
    if counts.get(UNCONFIRMED, 0):
        parts.append(f"{int(counts[UNCONFIRMED])} not reproduced by the confirmation run")
    if counts.get(NOT_SIGNIFICANT, 0):
        parts.append(f"{int(counts[NOT_SIGNIFICANT])} beyond the threshold but not significant")
    missing = int(counts.get(MISSING_NEW, 0)) + int(counts.get(MISSING_BASE, 0))
    if missing:
        parts.append(f"{missing} missing from one run")
    failed = n_reg + n_wrong > 0
    head = "FAIL" if failed else "PASS"
    return f"{head}: {', '.join(parts)} (threshold +{threshold:.0%})", int(failed)


def _commit(r: pd.Series) -> str:
    """'commit 1c8c13c411df (clean)', '... (dirty: uncommitted changes)' or 'commit unknown'."""
    if not isinstance(r["commit"], str) or not r["commit"]:
        return "commit unknown"
    state = {True: " (dirty: uncommitted changes)", False: " (clean)"}.get(r["dirty"], "")
    return f"commit `{r['commit'][:12]}`{state}"


def _describe(frame: pd.DataFrame, role: str) -> str:
    r = frame.iloc[0]
    when = "" if pd.isna(r["datetime"]) else f", {r['datetime']:%Y-%m-%d %H:%M} UTC"
    return (f"{role}: `{r['path']}` on {r['machine']} (fingerprint {r['fingerprint']}{when}), "
            f"{_commit(r)}")


def other_machine(base: pd.DataFrame, new: pd.DataFrame) -> str | None:
    """Which machines, when the two runs come from different ones (else None)."""
    b, n = base.iloc[0], new.iloc[0]
    if b["fingerprint"] == n["fingerprint"]:
        return None
    return (f"the baseline comes from another machine: {b['machine']} (fingerprint "
            f"{b['fingerprint']}) vs {n['machine']} (fingerprint {n['fingerprint']})")


def collector(frame: pd.DataFrame) -> str:
    """'off' when every benchmark of the run was timed with the garbage collector off
    (pytest-benchmark's --benchmark-disable-gc), 'on' when none was, else 'mixed'."""
    off = frame["gc_off"].astype(bool)
    return "off" if off.all() else "on" if not off.any() else "mixed"


def other_collector(base: pd.DataFrame, new: pd.DataFrame) -> str | None:
    """Why the two runs' figures differ by how they were timed, when the garbage
    collector was on in one and off in the other (else None)."""
    base_gc, new_gc = collector(base), collector(new)
    if base_gc == new_gc:
        return None
    return (f"the baseline was timed with the garbage collector {base_gc} and this run with "
            f"it {new_gc}: loops that make Python garbage every step (torch-"
            "tutorial) move by that alone; gdbench run times with it off")


def confirm(gate: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Keep a regression only where the confirmation run's gate shows it too.

    The machine's speed drifts between runs in ways no reference fully cancels, so one
    run can show a significant slowdown that is not there; a real regression reproduces
    in a second run, while noise rarely lands on the same benchmark twice. A disagreement
    with numpy in either run stands: a wrong result is not noise.
    """
    gate = gate.copy()
    again = dict(zip(second["name"], zip(second["verdict"], second["ratio"], strict=True),
                     strict=True))
    for i in gate.index:
        first = gate.at[i, "verdict"]
        verdict2, ratio2 = again.get(gate.at[i, "name"], (MISSING_NEW, math.nan))
        if verdict2 == DISAGREES and first != DISAGREES:
            gate.at[i, "verdict"] = DISAGREES
            note = "the confirmation run disagrees with numpy"
        elif first == REGRESSION and verdict2 != REGRESSION:
            gate.at[i, "verdict"] = UNCONFIRMED
            note = f"confirmation run: {formats.signed_percent(ratio2)} ({verdict2})"
        else:
            continue
        gate.at[i, "note"] = "; ".join(filter(None, [gate.at[i, "note"], note]))
    return gate


def build_report(base: pd.DataFrame, new: pd.DataFrame, threshold: float, fmt: str = "md",
                 warning: str | None = None,
                 confirmation: pd.DataFrame | None = None) -> tuple[str, int]:
    """The gate's report in ``md`` or ``table`` format, and the exit code."""
    gate = compare_runs(base, new, threshold)
    if confirmation is not None:
        gate = confirm(gate, compare_runs(base, confirmation, threshold))
    if not ((gate["kind"] == "training") & gate["ratio"].notna()).any():
        raise InputError(f"{new.iloc[0]['path']} and the baseline {base.iloc[0]['path']} have "
                         "no training benchmark in common; is it the right baseline?")
    line, code = summary(gate, threshold)
    notes = [
        _describe(base, "baseline"),
        _describe(new, "new run"),
        "Metric: each round's time ÷ its reference round (the workload's reference loop, "
        "timed just before it, so the machine's drift cancels); ×ref is the median of those "
        "ratios, change = new/baseline of it, over the rounds taken while the machine was "
        f"settled (reference within {SETTLED_TOLERANCE:.0%} of its quiet level, in both runs "
        "alike; the note counts the rounds left out). "
        f"Fails when the change exceeds +{threshold:.0%} and the whole {CONFIDENCE:.0%} "
        f"bootstrap CI ({RESAMPLES:,} resamples of the rounds) is above +0%, and whatever the "
        "speed when the backend's weights disagree with numpy. Raw time change "
        "includes the machine's speed; roofline rows show it.",
    ]
    if confirmation is not None:
        notes.append(f"Confirmation run: `{confirmation.iloc[0]['path']}`; a regression "
                     "counts only when it shows there too.")
    on_gpus = int(gate["note"].str.contains(GPU_RAW_NOTE, regex=False).sum())
    if on_gpus:
        notes.append(f"{on_gpus} GPU benchmark{'s' * (on_gpus != 1)} compared by raw time "
                     "(new/baseline median): the reference loop runs NumPy on the CPU, so it "
                     "cancels none of the GPU's drift; raw time includes the GPU's speed.")
    unpaired = int((gate["method"] == UNPAIRED).sum())
    if unpaired:
        notes.append(f"{unpaired} benchmark{'s' * (unpaired != 1)} lacked per-round "
                     "references (a run from before paired timing?) and fell back on the "
                     "unpaired roofline: median ÷ the roofline benchmark's median, which "
                     "the machine's drift can move by tens of percent.")
    if fmt == "md":
        notes = [f"{n}  " for n in notes]  # markdown line breaks
    title = f"gdbench check: {'❌ ' if code else '✅ '}{line}" if fmt == "md" else \
        f"gdbench check: {line}"
    warnings = [warning] if warning else []
    section = formats.Section(title, report_table(gate), ["\n".join(notes)])
    return formats.render([section], fmt, warnings), code


# --- the command ---------------------------------------------------------------------------

