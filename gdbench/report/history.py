"""One HTML page of every benchmark over many runs."""

from __future__ import annotations

import html
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gdbench.data.errors import InputError
from gdbench.judge import regress, trust
from gdbench.judge.stats import CONFIDENCE, RESAMPLES, Estimate, ratio_of_medians
from gdbench.records import formats
from gdbench.records.results import (
    backends_in,
    has_paired_rounds,
    load_run,
    load_runs,
    read_run,
    workloads_in,
)
from gdbench.report.tables import footnotes, us_cell

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DEFAULT_THRESHOLD = regress.parse_threshold(regress.DEFAULT_THRESHOLD)
PAIRED = regress.PAIRED
UNPAIRED = regress.UNPAIRED
# The gate's verdicts that fail a run, and how the page marks them.
FLAGS = {regress.REGRESSION: "regression flagged by the gate",
         regress.DISAGREES: "disagrees with numpy (a wrong result)"}
FLAG_RED = "#d62728"
# One colour and marker per machine; no red, which marks the gate's flags.
_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22", "#ff7f0e"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "h"]
# A constant sample: ratio_of_medians(x, _ONES) is median(x) with the bootstrap
# interval of that median alone.
_ONES = [1.0, 1.0]


# --- the data the page shows (pure) ------------------------------------------------------

@dataclass
class History:
    """Everything the page shows.

    ``runs``: one row per run, sorted by datetime (run, path, datetime, commit, dirty,
    branch, fingerprint, machine, series, basis, against). ``points``: one row per run x
    training benchmark, in the same order (see :func:`history_points`). ``gates``: each
    run's ``regress.compare_runs`` against what it was judged by (absent: nothing to
    judge it by). ``baseline``: the baseline run, if given.
    """

    runs: pd.DataFrame
    points: pd.DataFrame
    gates: dict[str, pd.DataFrame]
    baseline: pd.DataFrame | None
    threshold: float


def _branch(doc: dict[str, Any]) -> str | None:
    """The branch in a run's commit_info (None when not recorded)."""
    info = doc.get("commit_info")
    branch = info.get("branch") if isinstance(info, dict) else None
    return branch if isinstance(branch, str) and branch else None


def load_history(paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """The runs at ``paths`` in one frame (``results.load_runs``' columns, and the branch
    from each run's commit_info), sorted by run datetime (ties keep the order given). A
    run without a training benchmark or a datetime raises InputError."""
    if not paths:
        raise InputError("give one or more run JSON files")
    branches = [_branch(read_run(p)) for p in paths]
    frame = load_runs(paths)
    names = list(dict.fromkeys(frame["run"]))  # one per path, in the order given
    frame["branch"] = frame["run"].map(dict(zip(names, branches, strict=True))).astype(object)
    for name, path in zip(names, paths, strict=True):
        _check_run(frame[frame["run"] == name], path)
    order = {name: i for i, name in enumerate(names)}
    frame["_order"] = frame["run"].map(order)
    frame = frame.sort_values(["datetime", "_order"], kind="stable")
    return frame.drop(columns="_order").reset_index(drop=True)


def _check_run(run: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    if not (run["kind"] == "training").any():
        raise InputError(f"{path}: no training benchmark (only "
                         f"{', '.join(sorted(set(run['name'])))}); the history plots "
                         "training benchmarks")
    if run["datetime"].isna().all():
        raise InputError(f"{path}: no valid 'datetime' recorded, so the run cannot be "
                         "placed in the history")


def point_metric(run: pd.DataFrame, row: pd.Series) -> tuple[str, Estimate]:
    """(basis, estimate) of one training benchmark in its own run: paired, the median of
    its norm_data with the bootstrap interval of that median; unpaired roofline, its
    median over the same run's roofline median (interval when both have two or more
    rounds); ("", NaN) when neither is there."""
    if has_paired_rounds(row):
        return PAIRED, ratio_of_medians(row["norm_data"], _ONES)
    roof = regress.roofline_row(run, row)
    if roof is None:
        return "", Estimate(math.nan)
    data, roof_data = row["data"], roof["data"]
    if isinstance(data, list) and isinstance(roof_data, list) and \
            min(len(data), len(roof_data)) >= 2:
        return UNPAIRED, ratio_of_medians(data, roof_data)
    return UNPAIRED, Estimate(row["median_s"] / roof["median_s"])


def history_points(frame: pd.DataFrame, baseline: pd.DataFrame | None,
                   threshold: float) -> tuple[pd.DataFrame, dict[str, pd.DataFrame],
                                              dict[str, str]]:
    """(points, gates, against) of a :func:`load_history` frame.

    points: one row per run x training benchmark, runs in datetime order: run, name,
    workload, backend, dtype, datetime, commit, dirty, branch, fingerprint, machine,
    series (0, 1, ... per fingerprint in order of first appearance), basis (paired /
    unpaired roofline / ""), value (×ref, unitless), low, high (its 95% CI), against
    (what the run was judged by, "" for none), verdict, change, change_low, change_high
    (the gate's new/reference ratio and CI), flag (the verdict when it fails the gate,
    else ""), step_us, step_spread and doubts (its µs/step, the relative reach of that
    figure's interval and the reasons to doubt it: :func:`gdbench.judge.trust.cell_intervals`).
    gates: run -> regress.compare_runs of that run against its reference.
    against: run -> a description of that reference.
    """
    rows: list[dict[str, Any]] = []
    gates: dict[str, pd.DataFrame] = {}
    against: dict[str, str] = {}
    previous: dict[str, pd.DataFrame] = {}  # fingerprint -> the last run seen on it
    series: dict[str, int] = {}
    cells = trust.cell_intervals(frame)
    for name in dict.fromkeys(frame["run"]):
        run = frame[frame["run"] == name]
        head = run.iloc[0]
        fingerprint = head["fingerprint"]
        series.setdefault(fingerprint, len(series))
        if baseline is not None:
            reference: pd.DataFrame | None = baseline
            against[name] = f"baseline {baseline.iloc[0]['run']}"
        else:
            reference = previous.get(fingerprint)
            against[name] = "" if reference is None else \
                f"previous run on this machine, {reference.iloc[0]['run']}"
        previous[fingerprint] = run
        gate = None if reference is None else regress.compare_runs(reference, run, threshold)
        if gate is not None:
            gates[name] = gate
        by_name = {} if gate is None else {g["name"]: g for _, g in gate.iterrows()}
        for i, row in run[run["kind"] == "training"].iterrows():
            basis, est = point_metric(run, row)
            g = by_name.get(row["name"])
            verdict = "" if g is None else str(g["verdict"])
            rows.append({
                "run": name, "name": row["name"], "workload": row["workload"],
                "backend": row["backend"], "dtype": row["dtype"],
                "datetime": row["datetime"], "commit": row["commit"], "dirty": row["dirty"],
                "branch": row["branch"], "fingerprint": fingerprint,
                "machine": row["machine"], "series": series[fingerprint], "basis": basis,
                "value": est.ratio, "low": est.low, "high": est.high,
                "against": against[name], "verdict": verdict,
                "change": math.nan if g is None else g["ratio"],
                "change_low": math.nan if g is None else g["low"],
                "change_high": math.nan if g is None else g["high"],
                "flag": verdict if verdict in FLAGS else "",
                "step_us": row["step_us"], "step_spread": cells.loc[i, "spread"],
                "doubts": cells.loc[i, "doubts"],
            })
    return pd.DataFrame(rows), gates, against


def build_history(paths: Sequence[str | os.PathLike[str]],
                  baseline: str | os.PathLike[str] | None = None,
                  threshold: float = DEFAULT_THRESHOLD,
                  ) -> History:
    """Load the runs (and the baseline) and judge every run as the gate would."""
    frame = load_history(paths)
    base = None
    if baseline is not None:
        base = load_run(baseline)
        _check_run(base, baseline)
    points, gates, against = history_points(frame, base, threshold)
    keep = ["run", "path", "datetime", "commit", "dirty", "branch", "fingerprint", "machine"]
    runs = frame[keep].drop_duplicates("run").reset_index(drop=True)
    first = points.drop_duplicates("run").set_index("run")
    runs["series"] = runs["run"].map(first["series"])
    runs["basis"] = runs["run"].map(
        points.groupby("run")["basis"].agg(lambda b: ", ".join(sorted(set(b) - {""}))))
    runs["against"] = runs["run"].map(against)
    return History(runs, points, gates, base, threshold)


def latest_section(history: History) -> formats.Section:
    """The gate's table of the latest run against the baseline (or, without one, the
    previous run on its machine); an empty table when there is nothing to compare with.
    The first note says what was compared with what."""
    latest = history.runs.iloc[-1]
    gate = history.gates.get(latest["run"])
    what = f"latest run {latest['run']} ({_when(latest['datetime'])}, {_commit(latest)})"
    if gate is None:
        why = "no --baseline given and no earlier run on its machine"
        return formats.Section(f"{what}: nothing to compare it with", pd.DataFrame(), [why])
    line, _ = regress.summary(gate, history.threshold)
    notes = [f"{what} against the {latest['against']}."]
    if history.baseline is not None:
        machines = regress.other_machine(history.baseline, history.runs.iloc[[-1]])
        if machines:
            notes.append(f"⚠ {machines}; the reference normalisation cancels most, not all, "
                         "of that.")
    if not ((gate["kind"] == "training") & gate["ratio"].notna()).any():
        notes.append("⚠ no training benchmark in common: is it the right baseline?")
    notes.append(f"Change = new/reference of ×ref; the gate fails a benchmark when it exceeds "
                 f"+{history.threshold:.0%} and the whole {CONFIDENCE:.0%} bootstrap CI "
                 f"({RESAMPLES:,} resamples of the rounds) is above +0%, or when its weights "
                 "disagree with numpy.")
    return formats.Section(f"gdbench check: {line}", regress.report_table(gate), notes)


# --- the figures ---------------------------------------------------------------------------

def _figure(width: float, height: float) -> Figure:
    # Imported here: every gdbench command imports this module to build its parser.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _svg(fig: Figure, salt: str, titles: dict[str, str]) -> str:
    """The figure as an inline <svg> element; groups whose id is in ``titles`` get that
    <title> (the browser's hover text). ``salt`` keeps its ids unique in the page."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    # matplotlib numbers its ids per figure (figure_1, patch_1, ...): prefix them, and
    # the references to them, so that ids stay unique among the page's figures.
    ids = set(re.findall(r' id="([^"]+)"', svg))

    def prefix(m: re.Match[str]) -> str:
        name = m.group(2)
        keep = name.startswith(f"{salt}-") or name not in ids
        return m.group(1) + (name if keep else f"{salt}-{name}")

    svg = re.sub(r'( id="|url\(#|href="#)([^")]+)', prefix, svg)

    def add_title(m: re.Match[str]) -> str:
        text = titles.get(m.group(1))
        return m.group(0) if text is None else f"{m.group(0)}<title>{html.escape(text)}</title>"

    return re.sub(r'<g id="([^"]+)">', add_title, svg)


def _days(values: pd.Series) -> np.ndarray:
    """Datetimes as matplotlib's date numbers (days), from naive UTC."""
    import matplotlib.dates as mdates

    naive = [t.tz_convert(None).to_pydatetime() if t.tzinfo else t.to_pydatetime()
             for t in values]
    return np.asarray(mdates.date2num(naive), dtype=float)


def _style(series: int) -> tuple[str, str]:
    return _COLORS[series % len(_COLORS)], _MARKERS[series % len(_MARKERS)]


def baseline_level(history: History, name: str) -> float:
    """The baseline's ×ref of one benchmark (NaN without a baseline or the benchmark)."""
    base = history.baseline
    if base is None:
        return math.nan
    rows = base[base["name"] == name]
    return math.nan if rows.empty else point_metric(base, rows.iloc[0])[1].ratio


def benchmark_svg(history: History, name: str, salt: str) -> str:
    """One benchmark's ×ref against run date, a series per machine, as an inline SVG."""
    import matplotlib.dates as mdates

    pts = history.points[history.points["name"] == name]
    fig = _figure(4.6, 2.9)
    ax: Axes = fig.add_subplot()
    titles: dict[str, str] = {}
    for series, s in pts.groupby("series", sort=True):
        color, marker = _style(int(series))
        s = s[s["value"].notna()]
        x, y = _days(s["datetime"]), s["value"].to_numpy(float)
        # One line per machine: runs of different machines are never joined.
        ax.plot(x, y, "-", color=color, lw=1.2, alpha=0.7, gid=f"{salt}-series-{series}")
        ci = s["low"].notna().to_numpy()
        if ci.any():
            lows, highs = s["low"].to_numpy(float)[ci], s["high"].to_numpy(float)[ci]
            ax.errorbar(x[ci], y[ci],
                        yerr=[y[ci] - lows, highs - y[ci]], fmt="none", ecolor=color,
                        elinewidth=1, capsize=2.5, alpha=0.8)
        for (idx, p), xi, yi in zip(s.iterrows(), x, y, strict=True):
            pid = f"{salt}-p{idx}"
            titles[pid] = titles[f"{pid}-flag"] = point_title(p, history.threshold)
            ax.plot([xi], [yi], ls="none", marker=marker, ms=6, color=color, mec=color,
                    mfc=color if p["basis"] == PAIRED else "white", gid=pid)
            if p["flag"] == regress.REGRESSION:
                ax.plot([xi], [yi], ls="none", marker="o", ms=13, mfc="none", mec=FLAG_RED,
                        mew=2.2, gid=f"{pid}-flag")
            elif p["flag"]:
                ax.plot([xi], [yi], ls="none", marker="X", ms=11, color=FLAG_RED,
                        mec="white", mew=0.8, gid=f"{pid}-flag")
    level = baseline_level(history, name)
    if not math.isnan(level):
        ax.axhline(level, color="#444", ls="--", lw=1)
        ax.axhline(level * (1 + history.threshold), color=FLAG_RED, ls=":", lw=1)
    flags = [f for f in FLAGS if (pts["flag"] == f).any()]
    if flags:
        ax.legend(handles=[_flag_handle(f) for f in flags], loc="best", fontsize=7,
                  framealpha=0.85)
    days = _days(pts["datetime"])
    lo, hi = float(days.min()), float(days.max())
    pad = (hi - lo) * 0.08 if hi > lo else 1 / 24
    ax.set_xlim(lo - pad, hi + pad)
    # minticks 2: with 3 the locator finds no interval for some spans (runs 2-3 minutes
    # apart) and warns; with 2 every span from seconds to years has one.
    locator = mdates.AutoDateLocator(minticks=2, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_ylabel("×ref (time ÷ reference)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, color="#e4e4e4", lw=0.6)
    return _svg(fig, salt, titles)


def _flag_handle(flag: str) -> Any:
    """A legend entry for the mark of one of the gate's FLAGS."""
    from matplotlib.lines import Line2D

    if flag == regress.REGRESSION:
        return Line2D([], [], ls="none", marker="o", ms=9, mfc="none", mec=FLAG_RED, mew=2,
                      label=FLAGS[flag])
    return Line2D([], [], ls="none", marker="X", ms=8, color=FLAG_RED, label=FLAGS[flag])


def legend_svg(history: History) -> str:
    """The page's legend: one entry per machine, then what the marks mean."""
    from matplotlib.lines import Line2D

    handles = []
    for _, r in history.runs.drop_duplicates("fingerprint").iterrows():
        color, marker = _style(int(r["series"]))
        handles.append(Line2D([], [], color=color, marker=marker, ms=6,
                              label=f"{r['machine']} (fingerprint {r['fingerprint']})"))
    grey = "#555"
    handles.append(Line2D([], [], ls="none", marker="o", ms=6, color=grey, mfc="white",
                          label="hollow: unpaired roofline fallback (no per-round reference)"))
    handles.append(Line2D([], [], ls="none", marker="|", ms=12, color=grey,
                          label=f"bar: {CONFIDENCE:.0%} CI of the point's median"))
    handles += [_flag_handle(f) for f in FLAGS]
    if history.baseline is not None:
        handles.append(Line2D([], [], color="#444", ls="--", lw=1, label="baseline ×ref"))
        handles.append(Line2D([], [], color=FLAG_RED, ls=":", lw=1,
                              label=f"baseline +{history.threshold:.0%} (the threshold)"))
    rows = -(-len(handles) // 2)
    fig = _figure(9.0, 0.25 * rows + 0.15)
    fig.legend(handles=handles, loc="center", ncols=2, frameon=False, fontsize=8)
    return _svg(fig, "gdbench-legend", {})


# --- the page ------------------------------------------------------------------------------

def _when(value: Any) -> str:
    return "date unknown" if pd.isna(value) else f"{value:%Y-%m-%d %H:%M} UTC"


def short_commit(row: pd.Series | dict[str, Any]) -> str:
    """'1c8c13c', '1c8c13c (dirty)' or 'unknown'."""
    commit = row["commit"]
    if not isinstance(commit, str) or not commit:
        return "unknown"
    return commit[:7] + (" (dirty)" if row["dirty"] is True else "")


def _commit(row: pd.Series | dict[str, Any]) -> str:
    branch = row["branch"]
    on = f" on {branch}" if isinstance(branch, str) and branch else ""
    return f"commit {short_commit(row)}{on}"


def _ci(low: float, high: float, fmt: Any) -> str:
    return "" if pd.isna(low) else f"[{fmt(low)}, {fmt(high)}]"


def point_title(p: pd.Series, threshold: float) -> str:
    """The hover text of one point."""
    lines = [f"{_when(p['datetime'])} · {p['run']}", _commit(p),
             f"{p['machine']} · fingerprint {p['fingerprint']}"]
    basis = "unpaired roofline fallback" if p["basis"] == UNPAIRED else p["basis"]
    lines.append(f"×ref {formats.number(p['value'])} "
                 f"{_ci(p['low'], p['high'], formats.number)} ({basis})".replace("  ", " "))
    if p["against"]:
        change = formats.signed_percent(p["change"])
        lines.append(f"vs {p['against']}: {change} "
                     f"{_ci(p['change_low'], p['change_high'], formats.signed_percent)} "
                     f"→ {p['verdict']}".replace("  ", " "))
    else:
        lines.append("first run on this machine: nothing to judge it by")
    if p["flag"]:
        lines.append(f"⚠ {FLAGS[p['flag']]} (threshold +{threshold:.0%})")
    return "\n".join(lines)


def _table(frame: pd.DataFrame, row_class: Sequence[str] = ()) -> str:
    """A frame of formatted cells as an HTML table, with an optional class per row."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cls = row_class[i] if i < len(row_class) and row_class[i] else ""
        attr = f' class="{cls}"' if cls else ""
        cells = "".join(f"<td>{html.escape('' if pd.isna(v) else str(v))}</td>" for v in row)
        body.append(f"<tr{attr}>{cells}</tr>")
    # In a scrolling box: a wide table scrolls inside its card instead of widening the page.
    return (f'<div class="table"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def points_table(pts: pd.DataFrame) -> pd.DataFrame:
    """One benchmark's points as formatted cells, newest first."""
    pts = pts.iloc[::-1]
    return pd.DataFrame({
        "date (UTC)": [_when(t).removesuffix(" UTC") for t in pts["datetime"]],
        "run": pts["run"],
        "commit": [short_commit(r) for _, r in pts.iterrows()],
        "branch": pts["branch"].fillna(""),
        "machine": pts["fingerprint"],
        "µs/step": [_us_cell(p) for _, p in pts.iterrows()],
        "×ref": pts["value"].map(formats.number),
        f"{CONFIDENCE:.0%} CI": [_ci(lo, hi, formats.number)
                                 for lo, hi in zip(pts["low"], pts["high"], strict=True)],
        "basis": pts["basis"],
        "change": pts["change"].map(formats.signed_percent),
        "gate CI": [_ci(lo, hi, formats.signed_percent)
                    for lo, hi in zip(pts["change_low"], pts["change_high"], strict=True)],
        "verdict": [v if v else "first on machine" if not a else ""
                    for v, a in zip(pts["verdict"], pts["against"], strict=True)],
    })


def _us_cell(p: pd.Series) -> str:
    """µs/step with the reach of its interval and the marks of its doubts."""
    return us_cell(pd.Series({"step_us": p["step_us"], "spread": p["step_spread"],
                              "doubts": p["doubts"]}))


def doubt_note(pts: pd.DataFrame) -> str:
    """What the marks among these points mean, and what to do ("" when none)."""
    return " ".join(footnotes(pts))


def _title(pts: pd.DataFrame) -> str:
    first = pts.iloc[0]
    dtype = first["dtype"]
    extra = f" · {dtype}" if isinstance(dtype, str) and dtype != "float32" else ""
    return f"{first['workload']} · {first['backend']}{extra}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       margin: 0 auto; padding: 16px 24px 48px; max-width: 1500px; }
h1 { font-size: 22px; margin: 4px 0 6px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 14px 0 6px; }
.lead { color: #444; max-width: 75em; }
.warn { color: #a00; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr));
        gap: 12px; }
article { border: 1px solid #ddd; border-radius: 6px; padding: 6px 8px; background: #fff; }
article.flagged { border-color: #d62728; box-shadow: 0 0 0 1px #d62728 inset; }
article h4 { margin: 2px 0; font-size: 14px; }
.badge { background: #d62728; color: #fff; border-radius: 8px; padding: 0 7px;
         font-size: 12px; margin-left: 6px; font-weight: 600; }
svg { max-width: 100%; height: auto; display: block; }
details summary { cursor: pointer; color: #555; font-size: 12px; }
table { border-collapse: collapse; font-size: 12px; margin: 4px 0 10px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left;
         white-space: nowrap; }
th { background: #f4f4f4; }
tr.flagged td { background: #fde8e8; }
tr.improved td { background: #e8f6e8; }
div.table { overflow-x: auto; max-width: 100%; }
.legend svg { max-width: 900px; }
"""


def render_page(history: History) -> str:
    """The whole page: a standalone HTML document with no script and nothing to load."""
    runs, pts = history.runs, history.points
    n_machines = runs["fingerprint"].nunique()
    names = benchmark_names(pts)
    n_flagged = int((pts["flag"] != "").sum())
    judged = (f"the baseline {history.baseline.iloc[0]['path']}"
              if history.baseline is not None else "the previous run on its machine")
    lead = (f"{len(runs)} run{'s' * (len(runs) != 1)} from {_when(runs['datetime'].iloc[0])} "
            f"to {_when(runs['datetime'].iloc[-1])} on {n_machines} machine"
            f"{'s' * (n_machines != 1)}; {len(names)} training benchmark"
            f"{'s' * (len(names) != 1)}; {n_flagged} "
            f"point{'s' * (n_flagged != 1)} flagged. Each point is the gate's metric for "
            f"one run: ×ref, the median of the benchmark's rounds each over its paired "
            f"reference round (the workload's reference loop, timed just before it, so the "
            f"machine's drift cancels), with the {CONFIDENCE:.0%} bootstrap interval of "
            f"that median. Each run is judged as gdbench check would, against {judged} "
            f"(threshold +{history.threshold:.0%}). Hover a point for its commit and "
            f"verdict; each benchmark's table lists them.")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>gdbench history</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>gdbench history</h1>", f'<p class="lead">{html.escape(lead)}</p>']
    unpaired = runs[runs["basis"].str.contains(UNPAIRED)]["run"].tolist()
    if unpaired:
        parts.append(f'<p class="warn">⚠ {html.escape(", ".join(unpaired))}: no per-round '
                     "references (norm_data), saved before paired timing; their points "
                     "(hollow) are median ÷ the same run's roofline median, which the "
                     "machine's drift can move by tens of percent.</p>")
    missing = pts[pts["basis"] == ""]
    if not missing.empty:
        some = f"{len(missing)} points have" if len(missing) != 1 else "1 point has"
        parts.append(f'<p class="warn">⚠ {some} neither paired rounds nor a roofline to '
                     f"normalise by, and {'are' if len(missing) != 1 else 'is'} not "
                     "plotted.</p>")
    parts.append(f'<div class="legend">{legend_svg(history)}</div>')

    latest = latest_section(history)
    gate = history.gates.get(runs["run"].iloc[-1])
    role = "the baseline" if history.baseline is not None else "its machine's previous run"
    parts.append(f'<section id="latest"><h2>Latest run against {role}</h2>'
                 f"<h3>{html.escape(latest.title)}</h3>")
    parts.extend(f'<p class="{"warn" if n.startswith("⚠") else "note"}">{html.escape(n)}</p>'
                 for n in latest.notes)
    if gate is not None:
        parts.append(_table(latest.table, [
            "flagged" if v in FLAGS else "improved" if v == regress.IMPROVEMENT else ""
            for v in gate["verdict"]]))
    parts.append("</section>")

    parts.append('<section id="benchmarks"><h2>Benchmarks</h2>')
    note = doubt_note(pts)
    parts.append(f'<p class="note">µs/step: the median round over its steps, ± the reach of '
                 f"its {CONFIDENCE:.0%} bootstrap interval relative to it. "
                 f"{html.escape(note)}</p>")
    for workload in workloads_in(pts):
        parts.append(f"<h3>{html.escape(workload)}</h3><div class=\"grid\">")
        for name in names:
            b = pts[pts["name"] == name]
            if b.iloc[0]["workload"] != workload:
                continue
            flagged = int((b["flag"] != "").sum())
            badge = f'<span class="badge">{flagged} flagged</span>' if flagged else ""
            salt = f"gdbench-{_slug(name)}"
            table = points_table(b)
            classes = ["flagged" if f else "" for f in b["flag"].iloc[::-1]]
            cls = ' class="flagged"' if flagged else ""
            parts.append(
                f'<article id="{salt}" data-benchmark="{html.escape(name)}"{cls}>'
                f"<h4>{html.escape(_title(b))}{badge}</h4>"
                f"{benchmark_svg(history, name, salt)}"
                f"<details><summary>{len(b)} points: dates, commits, verdicts</summary>"
                f"{_table(table, classes)}</details></article>")
        parts.append("</div>")
    parts.append("</section>")

    parts.append('<section id="runs"><h2>Runs</h2>')
    table = pd.DataFrame({
        "#": range(1, len(runs) + 1),
        "date (UTC)": [_when(t).removesuffix(" UTC") for t in runs["datetime"]],
        "commit": [short_commit(r) for _, r in runs.iterrows()],
        "branch": runs["branch"].fillna(""),
        "machine": runs["machine"],
        "fingerprint": runs["fingerprint"],
        "metric": runs["basis"],
        # The gate's line before the long names, which may scroll.
        "gate": [regress.summary(history.gates[r], history.threshold)[0]
                 if r in history.gates else "" for r in runs["run"]],
        "judged against": runs["against"].replace("", "nothing (first on its machine)"),
        "run": runs["run"],
        "file": runs["path"],
    })
    parts.append(_table(table, ["flagged" if g.startswith("FAIL") else ""
                                for g in table["gate"]]))
    parts.append("</section></body></html>")
    return "\n".join(parts) + "\n"


def benchmark_names(pts: pd.DataFrame) -> list[str]:
    """The benchmarks' names, smallest workload first, then in registry order of backend."""
    w_rank = {w: i for i, w in enumerate(workloads_in(pts))}
    b_rank = {b: i for i, b in enumerate(backends_in(pts))}
    names = pts.drop_duplicates("name")
    keys = {r["name"]: (w_rank.get(r["workload"], len(w_rank)),
                        b_rank.get(r["backend"], len(b_rank)), r["name"])
            for _, r in names.iterrows()}
    return sorted(keys, key=keys.__getitem__)


# --- the command ---------------------------------------------------------------------------

