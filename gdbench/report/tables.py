"""Tables from saved runs: one run, or two side by side."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd

from gdbench.judge import limits, retime, target, trust
from gdbench.judge.stats import ratio_of_medians
from gdbench.records import formats
from gdbench.records.formats import Section
from gdbench.records.results import (
    backends_in,
    has_paired_rounds,
    load_run,
    runs_of,
    workloads_in,
)

# --- the numbers ---------------------------------------------------------------------------

def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark with the derived metrics (raw numbers, for CSV and plots).

    Adds, for each benchmark (same run, workload and dtype for every comparison):
    ``speedup`` (numpy's µs/step over this one's), ``efficiency_pct`` (the roofline's
    µs/step over this one's, in %), ``label`` (the backend, with the dtype appended when
    it is not float32); and for training rows: ``limit_us`` (the least time a step can
    take, :mod:`gdbench.judge.limits`, under the run's roofs: :func:`roofs_by_run`),
    ``limit_pct`` (limit_us over step_us, in %) and ``limit_kind`` (compute or memory),
    ``intensity`` (FLOPs per byte the step must move), ``roof_gflops`` (the roof above
    it: min(compute roof, memory roof × intensity), GFLOP/s; a step's GFLOP/s above it
    is a limit_pct above 100),
    ``steps_to_target`` (steps of the plan to the workload's shared target, NaN when
    never), ``hot_s`` (steps_to_target × the step time) and ``cold_s`` (prepare_s + hot_s);
    and each figure's interval and the reasons to doubt it
    (:func:`gdbench.judge.trust.cell_intervals`: ``step_us_low``, ``step_us_high``,
    ``spread``, ``speedup_low``, ``speedup_high``, ``speedup_spread``,
    ``unsettled_share``, ``doubts``). GFLOP/s, % of the limit and hot_s are the step time
    in other units: their relative interval is ``spread``.
    """
    out = frame.copy()
    out["dtype"] = out["dtype"].fillna("")
    key = ["run", "workload", "dtype"]
    numpy_us = out[out["backend"] == "numpy"].drop_duplicates(key).set_index(key)["step_us"]
    # The roofline rows of each device: a GPU row's efficiency is over the GPU's roofline
    # loop, never the CPU's; the shared target is recorded by the CPU's.
    devices = out["device"].map(limits.device_of)
    roofs = out[out["kind"] == "roofline"].assign(_device=devices)
    roof = roofs[roofs["_device"] == limits.CPU].drop_duplicates(key).set_index(key)
    own_roof = roofs.drop_duplicates([*key, "_device"]).set_index([*key, "_device"])
    idx = pd.MultiIndex.from_frame(out[key])
    idx_device = pd.MultiIndex.from_frame(out[key].assign(_device=devices))
    step_us = out["step_us"].to_numpy(dtype=float)
    out["speedup"] = numpy_us.reindex(idx).to_numpy() / step_us
    out["efficiency_pct"] = 100 * own_roof["step_us"].reindex(idx_device).to_numpy() / step_us
    out["label"] = [b if d in ("", "float32") else f"{b} {d}"
                    for b, d in zip(out["backend"], out["dtype"], strict=True)]
    training = (out["kind"] == "training").to_numpy()
    limit_us, kinds, intensity = _limits(out)
    out["limit_us"] = np.where(training, limit_us, np.nan)
    out["limit_pct"] = 100 * out["limit_us"].to_numpy(dtype=float) / step_us
    out["limit_kind"] = np.where(training, kinds, "")
    out["intensity"] = np.where(training, intensity, np.nan)
    # The roof above the point: the step's FLOPs done in the least time a step can take.
    out["roof_gflops"] = (out["flops"].to_numpy(dtype=float) / out["steps"].to_numpy(
        dtype=float)) / (out["limit_us"].to_numpy(dtype=float) * 1e3)
    target_steps = roof["target_steps"].reindex(idx).to_numpy(dtype=float)
    out["steps_to_target"] = np.where(training, target_steps, np.nan)
    out["hot_s"] = out["steps_to_target"] * step_us * 1e-6
    out["cold_s"] = pd.to_numeric(out["prepare_s"], errors="coerce") + out["hot_s"]
    return out.join(trust.cell_intervals(out))


def roofs_by_run(frame: pd.DataFrame) -> dict[tuple[str, str, str], limits.Roofs]:
    """The roofs of each run, dtype and device in the frame
    (:func:`gdbench.judge.limits.run_roofs`), keyed by (run, dtype, device); a run without
    a timed roofline loop on a device has none for it. The tables' limit and the roofline
    figure both read them."""
    roof = frame[frame["kind"] == "roofline"]
    out = {}
    keys = ["run", roof["dtype"].fillna(""), roof["device"].map(limits.device_of)]
    for (run, dtype, device), rows in roof.groupby(keys, sort=False):
        roofs = limits.run_roofs(rows.to_dict("records"), str(device))
        if roofs is not None:
            out[(str(run), str(dtype), str(device))] = roofs
    return out


def _limits(out: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Each row's limit (µs per step), which roof binds, and the step's arithmetic
    intensity (FLOPs per byte); NaN and "" where the run lacks the roofs of the row's
    device, or the workload's copy (:func:`roofs_by_run`)."""
    roofs = roofs_by_run(out)
    result = np.full(len(out), np.nan)
    intensity = np.full(len(out), np.nan)
    kinds = [""] * len(out)
    for i, r in enumerate(out.itertuples(index=False)):
        try:
            steps, epochs, n = float(r.steps), float(r.epochs), float(r.n)
            d, k, flops = int(r.d), int(r.k), float(r.flops)
        except (TypeError, ValueError):
            continue
        run_roofs = roofs.get((str(r.run), str(r.dtype), limits.device_of(r.device)))
        if not (steps > 0 and math.isfinite(flops)) or run_roofs is None:
            continue
        bandwidth = run_roofs.bandwidth(str(r.workload))
        if math.isnan(bandwidth):
            continue
        itemsize = 8 if r.dtype == "float64" else 4
        step_flops = flops / steps
        step_bytes = limits.step_bytes(epochs * n / steps, d, k, itemsize)
        intensity[i] = step_flops / step_bytes
        result[i] = run_roofs.bound_s(str(r.workload), step_flops, step_bytes) * 1e6
        kinds[i] = limits.bound_kind(step_flops, step_bytes, run_roofs.compute_flops_per_s,
                                     bandwidth)
    return result, kinds, intensity


def _pivot(s: pd.DataFrame, cell: Any) -> pd.DataFrame:
    """workload x backend label, each cell ``cell(row)``; absent backends have no column."""
    labels = backends_in(s.assign(backend=s["label"]))
    table = pd.DataFrame(index=workloads_in(s), columns=labels, dtype=object)
    for _, r in s.iterrows():
        if r["label"] in labels:
            table.loc[r["workload"], r["label"]] = cell(r)
    table = table.dropna(axis=1, how="all").fillna("")
    return table.rename_axis("workload").reset_index()


# --- how far a cell can be trusted ------------------------------------------------------

MARKS = {trust.UNSETTLED: "†", trust.NEIGHBOUR: "‡", trust.WIDE_INTERVAL: "§"}
INTERVAL_NOTE = ("±: the 95% bootstrap interval of the median round, the farther side, "
                 "relative to the figure")
FOOTNOTES = {
    trust.UNSETTLED: (f"† most of its rounds were timed while the machine ran slower (their "
                      f"paired reference read over {retime.RUN.tolerance:.0%} above the "
                      "workload's quiet level), even after gdbench run timed it again: close "
                      "other programs and run it again; gdbench audit tells whether this "
                      "machine can time it within 10%."),
    trust.NEIGHBOUR: (f"‡ other programs took a share of its CPUs (or the hypervisor stole "
                      f"it) beside {trust.NEIGHBOUR_SHARE:.0%} or more of its rounds: close "
                      "other programs and run it again, or leave CPUs to spare with --threads N "
                      "below the machine's count."),
    trust.WIDE_INTERVAL: (f"§ its interval reaches further than ±{trust.WIDE:.0%}: its rounds "
                          "disagree. Run with --threads 1 (a thread pool that loses a core to "
                          "another program slows by several times), close other programs, or "
                          "check the machine with gdbench audit."),
}


def marks(r: pd.Series) -> str:
    """The marks of a row's doubts ("" when none), to follow its cell."""
    doubts = r.get("doubts")
    return "".join(MARKS[d] for d in doubts) if isinstance(doubts, tuple) else ""


def footnotes(rows: pd.DataFrame) -> list[str]:
    """What each mark among these rows means and what to do about it."""
    doubts = rows["doubts"] if "doubts" in rows.columns else []
    return [FOOTNOTES[d] for d in trust.doubted([d for d in doubts if isinstance(d, tuple)])]


def us_cell(r: pd.Series) -> str:
    """µs/step with its interval and its marks: ``99.3 ±2.1% §``."""
    mark = marks(r)
    text = formats.with_interval(formats.us(r["step_us"]), r["spread"])
    return f"{text} {mark}" if mark else text


def _speedup_cell(r: pd.Series) -> str:
    return formats.with_interval(formats.times(r["speedup"]), r["speedup_spread"])


def _agreement(r: pd.Series) -> str:
    if r["agrees"] is True:
        return "✓"
    if r["agrees"] is False:
        diff = r["max_abs_diff_vs_numpy"]
        return "✗" if pd.isna(diff) else f"✗ ({diff:.2g})"
    return ""


def _header(run: dict[str, Any]) -> str:
    when = "" if pd.isna(run["datetime"]) else f", {run['datetime']:%Y-%m-%d %H:%M} UTC"
    name = "" if run["run"] == os.path.splitext(os.path.basename(run["path"]))[0] else \
        f"{run['run']}: "
    return f"{name}{run['path']} on {run['machine']} (fingerprint {run['fingerprint']}{when})"


def run_sections(frame: pd.DataFrame) -> list[Section]:
    """The metric tables of each run in the frame (workload x backend)."""
    sections = []
    for run in runs_of(frame):
        s = summary(frame[frame["run"] == run["run"]])
        train = s[s["kind"] != "roofline"]
        where = f" — {run['machine']}"
        sections += [
            Section(f"µs per step{where}", _pivot(s, us_cell), [_header(run), INTERVAL_NOTE],
                    footnotes(s)),
            Section(f"speed-up vs numpy (higher is faster){where}",
                    _pivot(train, _speedup_cell)),
            Section(f"GFLOP/s{where}", _pivot(s, lambda r: formats.with_interval(
                formats.number(r["gflops"]), r["spread"]))),
            Section(f"% of the limit (the least time a step can take ÷ the backend's){where}",
                    _pivot(train, lambda r: formats.with_interval(
                        formats.percent(r["limit_pct"]), r["spread"])),
                    [LIMIT_NOTE, _limits_line(s)]),
            Section(f"compile seconds (outside the timed loop){where}",
                    _pivot(train, lambda r: f"{r['compile_s']:.3g}")),
            Section(f"agrees with numpy (✓ / ✗ with max |ΔW|){where}",
                    _pivot(train, _agreement)),
        ]
        sections += _extra_sections(s, where)
    return sections


LIMIT_NOTE = ("limit = max(FLOPs / compute roof, bytes / memory roof) per step, both roofs "
              "measured in this run on the row's own device: the compute roof is the best "
              "GEMM rate of its roofline loops (two cached GEMMs of a step's shapes), a "
              "workload's memory roof the fastest copy of a buffer at least as large as its "
              "dataset; bytes = the step's rows of X and Y, and W and b read and written "
              "once. GPU rows are bounded only by GPU yardsticks. gdbench plot draws the "
              "same roofs.")


def _limits_line(s: pd.DataFrame) -> str:
    roofs = roofs_by_run(s)
    train = s[s["kind"] == "training"]
    # A device with training rows but no roofs of its own: its rows have no limit, and why.
    missing = [(str(dtype), str(device)) for (dtype, device) in dict.fromkeys(zip(
        train["dtype"].fillna(""), train["device"].map(limits.device_of), strict=True))
        if not any(k[1:] == (dtype, device) for k in roofs)]
    if not roofs and all(device == limits.CPU for _, device in missing):
        return "roofs: not in this run"
    kinds = {k[1:] for k in roofs} | set(missing)
    gpus = any(device != limits.CPU for _, device in kinds)

    def prefix(dtype: str, device: str) -> str:  # which roofs, when the run has several
        if gpus:
            return f"({dtype}, {device}) " if len({d for d, _ in kinds}) > 1 else f"({device}) "
        return f"({dtype}) " if len(kinds) > 1 else ""

    lines = [prefix(dtype, device) + line
             for (_, dtype, device), r in roofs.items() for line in r.describe()]
    lines += [f"{prefix(dtype, device)}no limit: {limits.limit_roofs([], device)[1]}"
              for dtype, device in missing]
    return "roofs: " + "; ".join(lines)


def _extra_sections(s: pd.DataFrame, where: str) -> list[Section]:
    """Time to target, memory, break-even and the α/β fit, where the run has them."""
    train = s[s["kind"] == "training"]
    out = []
    roof = s[(s["kind"] == "roofline") & s["target_plan_steps"].notna()]  # the CPU's rows
    if not roof.empty:
        reached = [f"{r['workload']}: {_target_steps(r)}" for _, r in roof.iterrows()]
        out.append(Section(
            f"time to the shared target, hot s / cold s (cold adds prepare and compile){where}",
            _pivot(train, lambda r: "" if pd.isna(r["hot_s"]) else
                   f"{formats.with_interval(formats.number(r['hot_s']), r['spread'])} / "
                   f"{formats.number(r['cold_s'])}"),
            ["target: 1.01 × the least-squares MSE, steps from the float64 reference, "
             f"trained past its plan if need be, up to {target.CAP_PLANS} × the plan's steps "
             f"or {target.CAP_FLOPS:.0e} FLOPs, whichever is fewer (the cap): "
             + "; ".join(reached) + "; hot = steps × µs/step, cold = prepare_s + hot"]))
        breakeven = break_even(s)
        if not breakeven.empty:
            out.append(Section(f"break-even: steps after which a compiled backend, compile "
                               f"included, overtakes an eager one{where}", breakeven,
                               ["(prepare_c - prepare_e) / (step_e - step_c); never when "
                                "its step is not faster"]))
    if train["memory_method"].notna().any():
        out.append(Section(f"memory of one run: peak above its start, allocations per "
                           f"step{where}", _pivot(train, _memory_cell),
                           ["see gdbench.harness.memory: tracemalloc (numpy), torch.profiler "
                            "(torch CPU), the CUDA allocator (for CUDA graphs, the graph "
                            "pool reserved in prepare), JAX: the device's peak when it rose "
                            "during the run, else XLA's memory analysis of the compiled "
                            "calls"]))
    out += data_parallel_sections(s, where)
    fits = fit_table(s)
    if not fits.empty:
        out.append(Section(f"fixed cost α and throughput β: step = α + FLOPs / β{where}", fits,
                           ["fitted over the run's workloads, weighted by relative error; "
                            "95% intervals from resampling each workload's rounds",
                            *_collective_fit_lines(s)]))
    return out


def _target_steps(r: pd.Series) -> str:
    """How far the float64 reference trained to reach a workload's target."""
    plan = int(r["target_plan_steps"])
    cap = r.get("target_cap_steps")
    if pd.isna(r["target_steps"]):
        most = plan if cap is None or pd.isna(cap) else int(cap)
        return f"not reached in {most:,} steps ({most / plan:.3g} × its plan: the cap)"
    steps = int(r["target_steps"])
    if steps <= plan:
        return f"{steps:,} of {plan:,} steps"
    return f"{steps:,} steps ({steps / plan:.3g} × its plan of {plan:,})"


def _memory_cell(r: pd.Series) -> str:
    peak = r["memory_peak_bytes"]
    if pd.isna(peak):
        return "n/a" if isinstance(r["memory_method"], str) else ""
    allocs = r["memory_allocations_per_step"]
    count = "" if pd.isna(allocs) else f", {allocs:.3g}/step"
    what = MEMORY_KIND.get(str(r["memory_method"]), "")
    return f"{formats.number(peak / 1024)} KiB{what}{count}"


# Figures that are not a peak measured during the run say what they are.
MEMORY_KIND = {"torch-cuda-graph-pool": " graph pool", "jax-memory-analysis": " (XLA analysis)"}


COMPILED_MIN_S = 0.05  # a backend whose prepare compiled for longer than this is compiled
EAGER = ("torch-cpu", "numpy")


def break_even(s: pd.DataFrame) -> pd.DataFrame:
    """Per workload and compiled backend: steps to overtake each eager reference."""
    rows = []
    train = s[(s["kind"] == "training") & s["prepare_s"].notna()]
    for workload, group in train.groupby("workload", sort=False):
        by = {r["label"]: r for _, r in group.iterrows()}
        for label, r in by.items():
            if not r["compile_s"] > COMPILED_MIN_S:
                continue
            row = {"workload": workload, "backend": label}
            for eager in EAGER:
                e = by.get(eager)
                row[f"vs {eager}"] = "" if e is None else _steps(target.break_even_steps(
                    r["prepare_s"], r["step_us"] * 1e-6, e["prepare_s"], e["step_us"] * 1e-6))
            rows.append(row)
    return pd.DataFrame(rows)


def _steps(n: float) -> str:
    return "never" if math.isinf(n) else f"{n:,.0f}"


def fits(s: pd.DataFrame) -> dict[str, limits.Fit]:
    """Each backend label's fit step = α + FLOPs / β over the run's workloads, with 95%
    intervals from resampling the rounds (:func:`gdbench.judge.limits.fit_with_interval`);
    backends timed on fewer than two workloads have none."""
    out = {}
    train = s[(s["kind"] == "training") & s["steps"].notna()]
    for label, group in train.groupby("label", sort=False):
        if group["workload"].nunique() < 2:
            continue
        steps = group["steps"].astype(float).to_numpy()
        flops = (group["flops"].astype(float) / steps).tolist()
        rounds = [np.asarray(d if isinstance(d, list) else [m]) / n for d, m, n in
                  zip(group["data"], group["median_s"], steps, strict=True)]
        out[str(label)] = limits.fit_with_interval(flops, rounds)
    return out


COMPUTE_ONLY = " compute-only"  # the label suffix of a data-parallel loop without its collective


def compute_only_fits(s: pd.DataFrame) -> dict[str, limits.Fit]:
    """Each data-parallel backend's fit of its loop without the collective
    (``compute_only_data``), labelled "<backend> compute-only"; set beside the backend's
    own fit, the difference in α is what the collective adds to every step."""
    out = {}
    train = s[(s["kind"] == "training") & s["steps"].notna()]
    only = train[train["compute_only_data"].map(lambda d: isinstance(d, list))]
    for label, group in only.groupby("label", sort=False):
        if group["workload"].nunique() < 2:
            continue
        steps = group["steps"].astype(float).to_numpy()
        flops = (group["flops"].astype(float) / steps).tolist()
        rounds = [np.asarray(d) / n for d, n in zip(group["compute_only_data"], steps,
                                                       strict=True)]
        out[f"{label}{COMPUTE_ONLY}"] = limits.fit_with_interval(flops, rounds)
    return out


def fit_table(s: pd.DataFrame) -> pd.DataFrame:
    """α (µs) and β (GFLOP/s) per backend with 95% intervals, over the run's workloads;
    a data-parallel backend's compute-only fit follows its own."""
    rows = [{
        "backend": label,
        "α µs/step": formats.number(fit.alpha_s * 1e6),
        "α 95% CI": _interval(fit.alpha_low * 1e6, fit.alpha_high * 1e6),
        "β GFLOP/s": formats.number(fit.beta / 1e9),
        "β 95% CI": _interval(fit.beta_low / 1e9, fit.beta_high / 1e9),
    } for label, fit in {**fits(s), **compute_only_fits(s)}.items()]
    table = pd.DataFrame(rows)
    if not table.empty:
        bases = table["backend"].str.removesuffix(COMPUTE_ONLY)
        order = {b: i for i, b in enumerate(backends_in(table.assign(backend=bases)))}
        key = bases.map(order) + table["backend"].str.endswith(COMPUTE_ONLY) * 0.5
        table = table.loc[key.sort_values(kind="stable").index].reset_index(drop=True)
    return table


def _collective_fit_lines(s: pd.DataFrame) -> list[str]:
    """For each data-parallel backend fitted with and without its collective: the
    difference in α, the collective's fixed cost per step."""
    own, only = fits(s), compute_only_fits(s)
    lines = []
    for label, fit in own.items():
        alone = only.get(f"{label}{COMPUTE_ONLY}")
        if alone is not None:
            lines.append(f"{label}: α − α compute-only = "
                         f"{formats.us((fit.alpha_s - alone.alpha_s) * 1e6)} µs per step, the "
                         "collective's fixed cost (the same loop without it is the "
                         "compute-only row)")
    return lines


# --- data parallelism ----------------------------------------------------------------------

COLLECTIVE_NOTE = ("collective = the data-parallel loop's µs/step less the same loop's "
                   "without its collective (compute-only: each worker updates its own "
                   "replica), on the same workers, timed in turns of blocks after the "
                   "benchmark, in the same run; the difference of the two medians. Its "
                   "share is of the loop's median step in those same turns.")
PARALLEL_NOTE = ("×: the one-process backend's µs/step over the data-parallel one's, in the "
                 "same run (above ×1 the workers are faster); the one process runs with the "
                 "run's threads (--threads N, else its library's default, every core). "
                 "faster from: the smallest workload of the run on which the workers win, "
                 "or never.")


def collective_table(s: pd.DataFrame) -> pd.DataFrame:
    """workload × data-parallel backend: what its collective costs per step (µs), out of
    its whole step, and its share of it."""
    dp = s[(s["kind"] == "training") & s["collective_step_us"].notna()]
    if dp.empty:
        return pd.DataFrame()
    def cell(r: pd.Series) -> str:
        # Of the loop with its collective as timed beside the compute-only one (a
        # backend with two speeds can run in another in the benchmark's own rounds).
        full = r["collective_full_step_us"]
        step = float(full) if isinstance(full, (int, float)) and math.isfinite(full) \
            else float(r["step_us"])
        return (f"{formats.us(r['collective_step_us'])} of {formats.us(step)} "
                f"({formats.percent(100 * r['collective_step_us'] / step)})")

    return _pivot(dp, cell)


def parallel_break_even(s: pd.DataFrame) -> pd.DataFrame:
    """Per data-parallel backend: on each workload, its one-process counterpart's µs/step
    over its own (``single_process``, the same dtype, the same run), and the smallest
    workload from which its workers are faster, or "never"."""
    train = s[s["kind"] == "training"]
    dp = train[train["single_process"].map(lambda x: isinstance(x, str))]
    workloads = workloads_in(dp)
    rows = []
    for label, group in dp.groupby("label", sort=False):
        first = group.iloc[0]
        against = str(first["single_process"])
        other = train[(train["backend"] == against) & (train["dtype"] == first["dtype"])]
        theirs = other.drop_duplicates("workload").set_index("workload")["step_us"]
        mine = group.drop_duplicates("workload").set_index("workload")["step_us"]
        row: dict[str, Any] = {"backend": label, "workers": _workers(first["world"]),
                               "against": against}
        faster = None
        for w in workloads:
            if w not in mine.index or w not in theirs.index:
                row[w] = ""
                continue
            ratio = float(theirs[w] / mine[w])
            row[w] = formats.times(ratio)
            if ratio > 1 and faster is None:
                faster = w
        compared = any(row[w] for w in workloads)
        row["faster from"] = faster or ("never" if compared else f"no {against} in this run")
        rows.append(row)
    return pd.DataFrame(rows, columns=["backend", "workers", "against", *workloads,
                                       "faster from"])


def _workers(world: Any) -> str:
    return "" if pd.isna(world) else str(int(world))


def data_parallel_sections(s: pd.DataFrame, where: str) -> list[Section]:
    """The collective's cost per step and the workers' break-even, where the run has
    data-parallel backends."""
    out = []
    collective = collective_table(s)
    if not collective.empty:
        out.append(Section(f"data parallelism: what the collective costs per step, µs of the "
                           f"step's µs (share){where}", collective, [COLLECTIVE_NOTE]))
    parallel = parallel_break_even(s)
    if not parallel.empty:
        out.append(Section(f"data parallelism: N workers against one process{where}",
                           parallel, [PARALLEL_NOTE]))
    return out


def _interval(low: float, high: float) -> str:
    if math.isnan(low):
        return ""
    return f"[{formats.number(low)}, {formats.number(high)}]"


def _load(frame_or_path: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
    if isinstance(frame_or_path, pd.DataFrame):
        return frame_or_path
    return load_run(frame_or_path)


def render_run(frame_or_path: pd.DataFrame | str | os.PathLike[str], fmt: str = "table") -> str:
    """The summary printed after ``gdbench run``: workloads x backends, each cell
    "µs/step (×speed-up vs numpy, efficiency % of the roofline)".

    ``frame_or_path`` is a frame from :func:`gdbench.records.results.load_run` or a run's path.
    Backends that were skipped have no column. ``fmt``: table, md, csv (raw numbers) or
    html. Raises InputError for an unreadable run file.
    """
    frame = _load(frame_or_path)
    if fmt == "csv":
        return formats.csv(_csv_columns(summary(frame)))
    sections = []
    for run in runs_of(frame):
        s = summary(frame[frame["run"] == run["run"]])

        sections.append(Section(
            f"µs per step (×speed-up vs numpy, % of the limit) — {run['machine']}",
            _pivot(s, _run_cell), [_header(run), INTERVAL_NOTE], footnotes(s)))
        sections += data_parallel_sections(s, f" — {run['machine']}")
    return formats.render(sections, fmt)


def _run_cell(r: pd.Series) -> str:
    """One cell of the table gdbench run prints: ``99.3 ±2.1% (×1.25 ±3%, 45%) §``."""
    mark = marks(r)
    us = formats.with_interval(formats.us(r["step_us"]), r["spread"])
    if r["kind"] != "roofline":
        extras = [x for x in (_speedup_cell(r), formats.percent(r["limit_pct"])) if x]
        us += f" ({', '.join(extras)})"
        mark += "✗" if r["agrees"] is False else ""
    return f"{us} {mark}" if mark else us


_CSV = ["run", "machine", "fingerprint", "workload", "backend", "dtype", "kind", "device",
        "step_us", "step_us_low", "step_us_high", "speedup", "speedup_low", "speedup_high",
        "unsettled_share", "neighbour_share", "neighbour_cores", "steal_cores", "doubts",
        "gflops", "efficiency_pct", "limit_us", "limit_pct",
        "limit_kind", "compile_s", "prepare_s", "steps_to_target", "hot_s", "cold_s",
        "memory_peak_bytes", "memory_allocations_per_step", "agrees",
        "max_abs_diff_vs_numpy", "final_loss", "median_s", "iqr_s", "rounds", "steps",
        "world", "compute_only_step_us", "collective_step_us"]


def _csv_columns(s: pd.DataFrame) -> pd.DataFrame:
    """The csv's columns; ``doubts`` as words joined by ";" ("" when none)."""
    out = s[_CSV].copy()
    out["doubts"] = [";".join(d) if isinstance(d, tuple) else "" for d in out["doubts"]]
    return out


# --- two or more runs ----------------------------------------------------------------------

def machine_warning(frame: pd.DataFrame) -> list[str]:
    runs = runs_of(frame)
    machines = {r["fingerprint"]: r["machine"] for r in runs}
    if len(machines) < 2:
        return []
    listed = "; ".join(f"{r['run']}: {r['machine']} [{r['fingerprint']}]" for r in runs)
    return [f"these runs come from {len(machines)} DIFFERENT MACHINES ({listed}); the "
            "numbers below compare machines as well as code"]


def _column_names(frame: pd.DataFrame) -> dict[str, str]:
    """run -> its column name: the run, and its machine when the machines differ."""
    runs = runs_of(frame)
    several = len({r["fingerprint"] for r in runs}) > 1
    return {r["run"]: f"{r['run']} @ {r['machine']}" if several else r["run"] for r in runs}


def side_by_side(frame: pd.DataFrame) -> pd.DataFrame:
    """Two runs matched by benchmark name: old and new µs/step, new/old, the normalised
    new/old, and a 95% CI.

    The first run in the frame is "old". Raw numbers: ``ratio`` is the raw median time
    new/old; ``norm_ratio`` is median(new norm_data) / median(old norm_data), NaN unless
    both runs paired the benchmark's rounds with reference rounds; ``low``/``high`` is the
    interval of ``norm_ratio`` when there is one, else of ``ratio`` (``tested`` says
    which: "normalised" or "raw"); ``significant`` is True when it excludes 1, None when a
    run has no rounds saved. Each side's µs/step has its own interval (``old_step_us_low``,
    ``old_step_us_high``, ``old_spread``, and the same for new) and its doubts
    (``old_doubts``, ``new_doubts``: :data:`gdbench.judge.trust.DOUBTS` joined by ";").
    """
    frame = frame.join(trust.cell_intervals(frame))
    old_run, new_run = [r["run"] for r in runs_of(frame)]
    old = frame[frame["run"] == old_run].drop_duplicates("name").set_index("name")
    new = frame[frame["run"] == new_run].drop_duplicates("name").set_index("name")
    rows = []
    for name in dict.fromkeys([*old.index, *new.index]):
        o = old.loc[name] if name in old.index else None
        n = new.loc[name] if name in new.index else None
        r = n if n is not None else o
        assert r is not None
        row: dict[str, Any] = {"name": name, "workload": r["workload"], "backend": r["backend"],
                               **_side("old", o), **_side("new", n),
                               "ratio": math.nan, "norm_ratio": math.nan, "low": math.nan,
                               "high": math.nan, "tested": "", "significant": None}
        if o is not None and n is not None:
            row["ratio"] = n["median_s"] / o["median_s"]
            if has_paired_rounds(o) and has_paired_rounds(n):
                est = ratio_of_medians(n["norm_data"], o["norm_data"])
                row.update(norm_ratio=est.ratio, tested="normalised")
            elif isinstance(o["data"], list) and isinstance(n["data"], list):
                est = ratio_of_medians(n["data"], o["data"])
                row["tested"] = "raw"
            else:
                est = ratio_of_medians([n["median_s"]], [o["median_s"]])
            row.update(low=est.low, high=est.high)
            if est.resampled:
                row["significant"] = bool(est.low > 1 or est.high < 1)
        rows.append(row)
    out = pd.DataFrame(rows)
    order_w = {w: i for i, w in enumerate(workloads_in(out))}
    order_b = {b: i for i, b in enumerate(backends_in(out))}
    keys = pd.DataFrame({"w": out["workload"].map(order_w), "b": out["backend"].map(order_b)})
    return out.loc[keys.sort_values(["w", "b"], kind="stable").index].reset_index(drop=True)


def _side(prefix: str, r: pd.Series | None) -> dict[str, Any]:
    """One run's µs/step of a benchmark, its interval and its doubts, keys prefixed."""
    keys = ["step_us", "step_us_low", "step_us_high", "spread"]
    values = dict.fromkeys(keys, math.nan) if r is None else {k: r[k] for k in keys}
    doubts = "" if r is None else ";".join(r["doubts"])
    return {**{f"{prefix}_{k}": v for k, v in values.items()}, f"{prefix}_doubts": doubts}


def _side_cell(sbs: pd.DataFrame, prefix: str) -> list[str]:
    """One side's µs/step cells of a side-by-side table, with intervals and marks."""
    return [us_cell(pd.Series({"step_us": r[f"{prefix}_step_us"],
                               "spread": r[f"{prefix}_spread"],
                               "doubts": tuple(filter(None, r[f"{prefix}_doubts"].split(";")))}))
            for _, r in sbs.iterrows()]


def _change(r: pd.Series) -> str:
    if math.isnan(r["ratio"]):
        return "only in one run"
    if r["significant"] is None:
        return "(no rounds saved)"
    if not r["significant"]:
        return ""
    return "▲ slower" if r["low"] > 1 else "▼ faster"


def side_by_side_section(frame: pd.DataFrame) -> Section:
    sbs = side_by_side(frame)
    names = _column_names(frame)
    old_run, new_run = [r["run"] for r in runs_of(frame)]

    def ci(r: pd.Series) -> str:
        if math.isnan(r["low"]):
            return ""
        raw = " raw" if r["tested"] == "raw" and sbs["tested"].eq("normalised").any() else ""
        return f"[{r['low']:.3f}, {r['high']:.3f}]{raw}"

    table = pd.DataFrame({
        "workload": sbs["workload"],
        "backend": sbs["backend"],
        f"µs/step {names[old_run]}": _side_cell(sbs, "old"),
        f"µs/step {names[new_run]}": _side_cell(sbs, "new"),
        "new/old": ["" if math.isnan(x) else f"{x:.3f}" for x in sbs["ratio"]],
        "new/old ÷ref": ["" if math.isnan(x) else f"{x:.3f}" for x in sbs["norm_ratio"]],
        "95% CI": [ci(r) for _, r in sbs.iterrows()],
        "change": [_change(r) for _, r in sbs.iterrows()],
    })
    notes = [f"old = {_header(r)}" if i == 0 else f"new = {_header(r)}"
             for i, r in enumerate(runs_of(frame))] + [INTERVAL_NOTE]
    if sbs["norm_ratio"].isna().all():
        table = table.drop(columns="new/old ÷ref")
        notes.append("new/old is the ratio of median times; ▲/▼ mark changes whose 95% "
                     "bootstrap interval over the rounds excludes 1.")
    else:
        notes.append("new/old is the ratio of median times (it includes the machine's "
                     "speed); new/old ÷ref is that of the median of each round's time ÷ its "
                     "reference round, timed just before it (the machine's drift cancels). "
                     "▲/▼ mark changes whose 95% bootstrap interval over the rounds excludes "
                     "1: the interval of new/old ÷ref where there is one, else (marked raw) "
                     "of new/old.")
    doubts = [tuple(filter(None, d.split(";")))
              for d in [*sbs["old_doubts"], *sbs["new_doubts"]]]
    return Section(f"{new_run} vs {old_run}", table, notes,
                   footnotes(pd.DataFrame({"doubts": doubts})))


def merged_section(frame: pd.DataFrame) -> Section:
    """µs/step of every run, one column per run (named by machine when they differ)."""
    names = _column_names(frame)
    s = summary(frame)
    keys = s[["workload", "label"]].drop_duplicates()
    table = pd.DataFrame({"workload": keys["workload"], "backend": keys["label"]})
    for run, column in names.items():
        cells = s[s["run"] == run].drop_duplicates(["workload", "label"]).set_index(
            ["workload", "label"]).apply(us_cell, axis=1)
        table[f"µs/step {column}"] = cells.reindex(
            pd.MultiIndex.from_frame(keys)).fillna("").to_numpy()
    order_w = {w: i for i, w in enumerate(workloads_in(s))}
    order_b = {b: i for i, b in enumerate(backends_in(s.assign(backend=s["label"])))}
    order = pd.DataFrame({"w": table["workload"].map(order_w),
                          "b": table["backend"].map(order_b)})
    table = table.loc[order.sort_values(["w", "b"], kind="stable").index]
    return Section("µs per step, every run", table,
                   [*(_header(r) for r in runs_of(frame)), INTERVAL_NOTE], footnotes(s))


def render_compare(frame: pd.DataFrame, fmt: str = "table") -> str:
    """What ``gdbench compare`` prints for the runs in ``frame`` (see the module doc)."""
    n_runs = len(runs_of(frame))
    if fmt == "csv":
        if n_runs == 2:
            return formats.csv(side_by_side(frame))
        return formats.csv(_csv_columns(summary(frame)))
    warnings = machine_warning(frame)
    if n_runs == 1:
        sections = run_sections(frame)
    elif n_runs == 2:
        sections = [side_by_side_section(frame)]
    else:
        sections = [merged_section(frame)]
    return formats.render(sections, fmt, warnings)


# --- the command ---------------------------------------------------------------------------
