"""The figures of a saved run: scaling, speed-up, roofline, the α/β fit, loss-time, convergence."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gdbench import implementations
from gdbench.data.datasets import mse
from gdbench.data.workloads import get_workload, make_problem
from gdbench.harness import machine
from gdbench.implementations.base import train_once
from gdbench.judge import limits
from gdbench.records.results import backends_in, workloads_in, write_atomic
from gdbench.report.tables import fits, roofs_by_run, summary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = ("png", "svg")
# A benchmark of one or two epochs has no curve to show; this many epochs of its recipe do.
MIN_EPOCHS_SHOWN = 10
_STYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def _figure(width: float = 7.5, height: float = 5.0) -> Figure:
    # Imported here: every gdbench command builds the parser, which imports this module,
    # and matplotlib takes a third of a second to import.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure with its own Agg canvas: no pyplot, so nothing global changes in a notebook.
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _machine(frame: pd.DataFrame) -> str:
    return str(frame["machine"].iloc[0])


def scaling_figure(frame: pd.DataFrame) -> Figure:
    """µs per step against FLOPs per step, log-log, a line per backend and the roofline."""
    s = summary(frame)
    s = s[s["flops"].notna() & s["steps"].notna()].copy()
    s["flops_per_step"] = s["flops"] / s["steps"].astype(float)
    # One x per workload, the training step's FLOPs: the roofline counts only its two
    # GEMMs (no 6·B·k elementwise part) and would otherwise sit a little to the left.
    train_x = s[s["kind"] == "training"].groupby("workload")["flops_per_step"].median()
    s["flops_per_step"] = s["workload"].map(train_x).fillna(s["flops_per_step"])
    fig = _figure()
    ax = fig.add_subplot()
    for i, label in enumerate(backends_in(s.assign(backend=s["label"]))):
        rows = s[s["label"] == label].sort_values("flops_per_step")
        roofline = label.startswith("roofline")  # the CPU's, or a GPU's yardsticks
        name = "roofline (NumPy matmul pair)" if label == "roofline" else \
            f"{label} (torch.mm pair)" if roofline else label
        ax.plot(rows["flops_per_step"], rows["step_us"], marker=_MARKERS[i % len(_MARKERS)],
                linestyle="--" if roofline else "-",
                color=("black" if label == "roofline" else "0.45") if roofline else None,
                linewidth=2.5 if roofline else 1.5, label=name)
    for workload in workloads_in(s):
        x = s.loc[s["workload"] == workload, "flops_per_step"].iloc[0]
        ax.annotate(workload, (x, 1), xycoords=("data", "axes fraction"),
                    xytext=(0, -4), textcoords="offset points", ha="center", va="top",
                    fontsize=8, color="0.4")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("work per step (FLOPs, 4·B·d·k + 6·B·k)")
    ax.set_ylabel("time per step (µs, median)")
    ax.set_title(f"Step time vs work per step\n{_machine(frame)}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def speedup_figure(frame: pd.DataFrame) -> Figure:
    """Speed-up vs numpy per workload: grouped bars from ×1 on a log axis (up is faster)."""
    s = summary(frame)
    s = s[(s["kind"] == "training") & (s["backend"] != "numpy") & s["speedup"].notna()]
    fig = _figure(max(7.5, 1.6 * max(1, len(workloads_in(s)))), 5.0)
    ax = fig.add_subplot()
    ax.set_title(f"Speed-up vs numpy (numpy's time ÷ the backend's)\n{_machine(frame)}")
    ax.set_ylabel("speed-up vs numpy (×, log scale; above 1 is faster)")
    ax.set_xlabel("workload")
    if s.empty:
        ax.text(0.5, 0.5, "no numpy benchmark to compare with in this run",
                ha="center", va="center", transform=ax.transAxes)
        return fig
    workloads = workloads_in(s)
    labels = backends_in(s.assign(backend=s["label"]))
    width = 0.8 / len(labels)
    x0 = np.arange(len(workloads))
    for i, label in enumerate(labels):
        rows = s[s["label"] == label].set_index("workload")["speedup"]
        values = rows.reindex(workloads).to_numpy(dtype=float)
        x = x0 - 0.4 + width * (i + 0.5)
        # Bars start at ×1, so a slowdown points down and a speed-up up.
        bars = ax.bar(x, values - 1, bottom=1, width=width, label=label)
        for bar, v in zip(bars, values, strict=True):
            if np.isfinite(v):
                ax.annotate(f"{v:.2g}", (bar.get_x() + bar.get_width() / 2, v),
                            xytext=(0, 2 if v >= 1 else -2), textcoords="offset points",
                            ha="center", va="bottom" if v >= 1 else "top", fontsize=7)
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"×{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_tick))
    ax.axhline(1, color="black", linewidth=1)
    ax.set_xticks(x0, workloads)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def roofline_points(frame: pd.DataFrame) -> tuple[pd.DataFrame, limits.Roofs | None]:
    """The roofline's points and roofs: one row per training benchmark of the run's
    first (run, dtype, device) with a limit, the CPU's first (``label``, ``workload``,
    ``intensity`` FLOPs per byte, ``gflops``, ``roof_gflops`` the roof above it,
    ``limit_kind`` which roof that is, ``above`` whether the point beats it), and those roofs
    (:func:`gdbench.report.tables.roofs_by_run`, which the tables' limit uses too); no rows and
    None when the run has no roofs."""
    s = summary(frame)
    roofs = roofs_by_run(s)
    columns = ["label", "workload", "intensity", "gflops", "roof_gflops", "limit_kind",
               "above"]
    if not roofs:
        return pd.DataFrame(columns=columns), None
    # The CPU's roofs when the run has them, else the first device's; the points are the
    # rows bounded by those roofs (a GPU row only by a GPU's).
    (run, dtype, device), run_roofs = min(roofs.items(), key=lambda kv: kv[0][2] != limits.CPU)
    train = s[(s["kind"] == "training") & (s["run"] == run) & (s["dtype"] == dtype)
              & (s["device"].map(limits.device_of) == device) & s["limit_us"].notna()].copy()
    train["above"] = train["gflops"] > train["roof_gflops"]
    return train[columns].reset_index(drop=True), run_roofs


def roofline_caption(points: pd.DataFrame, roofs: limits.Roofs,
                     backend_fits: dict[str, limits.Fit], smallest_flops: float) -> list[str]:
    """The roofline figure's caption, a paragraph per item: what each roof was measured
    with; a WARNING naming every point above its roof (the measured roof is wrong there);
    and what the fixed cost α of a step allows on the smallest workload
    (``smallest_flops`` FLOPs per step)."""
    lines = ["Left: every backend × workload at its median step time, under the roofs "
             "measured in this run, the same that give the limit in gdbench compare: "
             + "; ".join(roofs.describe()) + ". A buffer that stays in cache copies faster "
             "than one streamed from memory, so each workload's memory roof is the fastest "
             "copy of a buffer at least as large as its data."]
    above = points[points["above"]]
    if above.empty:
        lines.append("No point lies above its roof.")
    else:
        listed = "; ".join(
            f"{r['label']} on {r['workload']}: {r['gflops']:.3g} GFLOP/s over its "
            f"{r['limit_kind']} roof of {r['roof_gflops']:.3g}" for _, r in above.iterrows())
        lines.append(f"WARNING: {len(above)} point{'s' * (len(above) != 1)} above "
                     f"{'their roofs' if len(above) != 1 else 'its roof'} ({listed}): the "
                     "measured roof is too low there, and so is the limit in gdbench "
                     "compare.")
    alphas = {label: f.alpha_s for label, f in backend_fits.items() if f.alpha_s > 0}
    if alphas and smallest_flops > 0:
        low, high = min(alphas, key=alphas.__getitem__), max(alphas, key=alphas.__getitem__)
        lines.append(
            "Right: the fixed cost α of one step, from the fit step = α + FLOPs / β over "
            "the workloads (95% intervals). A step of F FLOPs runs at most F / α: with the "
            f"smallest workload's F = {smallest_flops:.3g} FLOPs, {high}'s α of "
            f"{alphas[high] * 1e6:.3g} µs allows {smallest_flops / alphas[high] / 1e9:.2g} "
            f"GFLOP/s, and {low}'s α of {alphas[low] * 1e6:.3g} µs allows "
            f"{smallest_flops / alphas[low] / 1e9:.2g} GFLOP/s: the small workloads sit far "
            "under the roofs because of what a step costs, not what it computes or moves.")
    return lines


def roofline_figure(frame: pd.DataFrame) -> Figure:
    """Left, the roofline (Williams, Waterman and Patterson, 2009): GFLOP/s against
    arithmetic intensity (FLOPs per byte a step must move), log-log, a point per backend
    × workload under the run's measured roofs (:func:`roofline_points`): the flat compute
    roof and a diagonal memory roof per copy (bandwidth × intensity), each labelled.
    Right, each backend's fixed cost α per step (:func:`gdbench.report.tables.fits`). The
    caption (:func:`roofline_caption`) says what measured each roof, and warns of any
    point above its roof, which is also ringed in red."""
    import textwrap

    points, roofs = roofline_points(frame)
    fig = _figure(12.5, 6.8)
    ax, ax_alpha = fig.subplots(1, 2, width_ratios=[2.2, 1])
    fig.suptitle(f"Roofline: throughput against arithmetic intensity, and the fixed cost "
                 f"of a step\n{_machine(frame)}")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte a step must move)")
    ax.set_ylabel("GFLOP/s (median step)")
    if roofs is None or points.empty:
        why = ("this run has no roofs (made before gdbench measured them)" if roofs is None
               else "this run has no training benchmark under its roofs")
        ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
        ax_alpha.set_axis_off()
        return fig
    labels = backends_in(points.assign(backend=points["label"]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    _draw_roofs(ax, roofs, points)
    handles = []
    for i, label in enumerate(labels):
        rows = points[points["label"] == label]
        handles.append(ax.scatter(rows["intensity"], rows["gflops"], zorder=3, label=label,
                                  marker=_MARKERS[i % len(_MARKERS)], color=f"C{i}"))
    above = points[points["above"]]
    if not above.empty:
        handles.append(ax.scatter(above["intensity"], above["gflops"], s=180, zorder=4,
                                  facecolors="none", edgecolors="red", linewidths=1.5,
                                  label="above its roof"))
    for workload in workloads_in(points):
        column = points[points["workload"] == workload]
        ax.annotate(workload, (column["intensity"].iloc[0], column["gflops"].min()),
                    xytext=(0, -10), textcoords="offset points", ha="center", va="top",
                    fontsize=9, color="0.25")
    # Up to the highest point when one beats the roofs: it is shown, never cut off.
    ax.set_ylim(float(points["gflops"].min()) / 6,
                max(roofs.compute_flops_per_s / 1e9 * 4, float(points["gflops"].max()) * 3))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, loc="lower right", fontsize=7.5, title="backends",
              title_fontsize=8)
    s = summary(frame)
    backend_fits = fits(s)
    _draw_alpha(ax_alpha, labels, backend_fits)
    train = s[s["kind"] == "training"]
    smallest = float((train["flops"] / train["steps"].astype(float)).min())
    caption = roofline_caption(points, roofs, backend_fits, smallest)
    text = "\n".join(textwrap.fill(line, 175) for line in caption)
    fig.supxlabel(text, x=0.01, ha="left", fontsize=7.5,
                  color="#b00" if points["above"].any() else "0.15")
    return fig


def _draw_roofs(ax: Axes, roofs: limits.Roofs, points: pd.DataFrame) -> None:
    """The flat compute roof and one diagonal per memory roof, up to where it meets the
    flat one (its ridge), each labelled along its line."""
    compute = roofs.compute_flops_per_s / 1e9
    ridges = [compute / (m.bytes_per_s / 1e9) for m in roofs.memory]
    x_low = min([*points["intensity"], *ridges]) / 8  # room for the diagonals' labels
    x_high = max([*points["intensity"], *ridges]) * 4
    ax.plot([min(ridges), x_high], [compute, compute], color="black", linewidth=2)
    ax.annotate(f"compute roof {compute:.3g} GFLOP/s (GEMM pair, {roofs.compute_by.workload}"
                "'s shapes)", (x_high, compute), xytext=(-4, 3), textcoords="offset points",
                ha="right", va="bottom", fontsize=8)
    for i, (m, ridge) in enumerate(zip(roofs.memory, ridges, strict=True)):
        bandwidth = m.bytes_per_s / 1e9
        y = m.measured_by
        size = "" if np.isnan(y.copy_bytes) else f": {y.copy_bytes / 2**20:.3g} MiB copy"
        ax.plot([x_low, ridge], [bandwidth * x_low, compute], color="black",
                linewidth=1.5, linestyle=_STYLES[1 + i % (len(_STYLES) - 1)])
        # Along the diagonal: the angle of y = bandwidth·x in data units, which the
        # log-log transform turns into the line's angle on the page when drawn.
        x = x_low * 1.15
        ax.text(x, bandwidth * x, f"  memory roof {bandwidth:.3g} GB/s{size} "
                f"({', '.join(m.workloads)})", fontsize=8, ha="left", va="bottom",
                rotation=float(np.degrees(np.arctan(bandwidth))), rotation_mode="anchor",
                transform_rotates_text=True)
    ax.set_xlim(x_low, x_high)


def _draw_alpha(ax: Axes, labels: list[str], backend_fits: dict[str, limits.Fit]) -> None:
    """Each backend's fixed cost α (µs per step) with its 95% interval, log scale, in
    the roofline's colours and markers."""
    ax.set_title("fixed cost of a step, α", fontsize=10)
    ax.set_xlabel("α (µs per step; step = α + FLOPs / β)")
    shown = [(i, label) for i, label in enumerate(labels)
             if label in backend_fits and backend_fits[label].alpha_s > 0]
    if not shown:
        ax.text(0.5, 0.5, "one workload per backend: nothing to fit", ha="center",
                va="center", transform=ax.transAxes)
        return
    for row, (i, label) in enumerate(shown):
        f = backend_fits[label]
        alpha = f.alpha_s * 1e6
        low, high = f.alpha_low * 1e6, f.alpha_high * 1e6
        xerr = None if np.isnan(low) else [[max(alpha - low, 0.0)], [max(high - alpha, 0.0)]]
        ax.errorbar([alpha], [row], xerr=xerr, marker=_MARKERS[i % len(_MARKERS)],
                    color=f"C{i}", capsize=3, linestyle="none")
        ax.annotate(f"{alpha:.3g} µs", (alpha, row), xytext=(0, 7), textcoords="offset points",
                    ha="center", fontsize=7.5)
    ax.set_yticks(range(len(shown)), [label for _, label in shown])
    spans = [v for _, label in shown for v in (
        backend_fits[label].alpha_s, backend_fits[label].alpha_low,
        backend_fits[label].alpha_high) if v > 0]  # NaN compares False
    ax.set_xlim(min(spans) * 1e6 / 3, max(spans) * 1e6 * 3)
    ax.set_ylim(len(shown) - 0.5, -0.7)  # the first backend on top, room for its label
    ax.set_xscale("log")
    ax.grid(True, axis="x", which="both", alpha=0.3)


def fit_figure(frame: pd.DataFrame) -> Figure:
    """Measured µs per step against FLOPs per step, with each backend's fitted line
    step = α + FLOPs / β (:mod:`gdbench.judge.limits`)."""
    s = summary(frame)
    train = s[(s["kind"] == "training") & s["steps"].notna()]
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"Fixed cost α and throughput β: step = α + FLOPs / β\n{_machine(frame)}")
    ax.set_xlabel("work per step (FLOPs)")
    ax.set_ylabel("time per step (µs, median)")
    for i, label in enumerate(backends_in(train.assign(backend=train["label"]))):
        rows = train[train["label"] == label].sort_values("flops")
        flops = (rows["flops"].astype(float) / rows["steps"].astype(float)).to_numpy()
        points = ax.scatter(flops, rows["step_us"], marker=_MARKERS[i % len(_MARKERS)],
                            zorder=3)
        if len(np.unique(flops)) < 2:
            continue
        alpha, beta = limits.fit_alpha_beta(flops, rows["step_us"].to_numpy(float) * 1e-6)
        xs = np.geomspace(flops.min(), flops.max(), 50)
        ax.plot(xs, (alpha + xs / beta) * 1e6, color=points.get_facecolor()[0],
                label=f"{label}: α {alpha * 1e6:.3g} µs, β {beta / 1e9:.3g} GFLOP/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "one workload per backend: nothing to fit", ha="center",
                va="center", transform=ax.transAxes)
    return fig


def loss_time_figure(frame: pd.DataFrame, workload: str) -> Figure:
    """Loss against wall-clock time on one workload, a line per backend: each starts after
    its prepare (compilation included) and advances at its median step time along the
    float64 reference's loss curve (every backend agrees with it); the shared target is
    the horizontal line."""
    s = summary(frame)
    roof = s[(s["kind"] == "roofline") & (s["workload"] == workload)
             & (s["device"].map(limits.device_of) == limits.CPU)]  # it records the curve
    train = s[(s["kind"] == "training") & (s["workload"] == workload)]
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"Loss against time on {workload}, prepare and compile included\n"
                 f"{_machine(frame)}")
    ax.set_xlabel("wall-clock seconds from the start of prepare")
    ax.set_ylabel("loss (MSE over all rows)")
    if roof.empty or not isinstance(roof["loss_curve"].iloc[0], list) or train.empty:
        ax.text(0.5, 0.5, f"this run has no loss curve for {workload}", ha="center",
                va="center", transform=ax.transAxes)
        return fig
    steps = np.asarray(roof["loss_curve_steps"].iloc[0], float)
    losses = np.asarray(roof["loss_curve"].iloc[0], float)
    for i, label in enumerate(backends_in(train.assign(backend=train["label"]))):
        r = train[train["label"] == label].iloc[0]
        start = float(r["prepare_s"]) if pd.notna(r["prepare_s"]) else 0.0
        ax.plot(start + steps * r["step_us"] * 1e-6, losses, label=label,
                linestyle=_STYLES[i % len(_STYLES)], marker=_MARKERS[i % len(_MARKERS)],
                markersize=3)
    if pd.notna(roof["target_loss"].iloc[0]):
        ax.axhline(roof["target_loss"].iloc[0], color="black", linewidth=1, linestyle=":",
                   label="target (1.01 × least squares)")
    ax.set_xscale("log")
    if (losses > 0).all():
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _minor_tick(value: float, _pos: int) -> str:
    """Label the 2s, 3s and 5s of a log axis (×0.2, ×3, ...), no other minor tick."""
    if value <= 0:
        return ""
    lead = value / 10 ** np.floor(np.log10(value))
    return f"×{value:g}" if round(lead) in (2, 3, 5) and abs(lead - round(lead)) < 1e-6 else ""


def losses_per_epoch(
    workload: str, backends: Sequence[str], epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[int, dict[str, list[float]]]:
    """(E, {backend: [loss after 0, 1, ..., E epochs]}), losses as float64 MSE.

    Each point is a fresh run of a plan of e epochs, untimed. E defaults to the workload's
    epochs, at least MIN_EPOCHS_SHOWN. Raises InputError for an unknown or unavailable
    backend or workload. ``progress``, if given, is told of each backend as it starts.
    """
    w = get_workload(workload)
    problem = w.build()
    n_epochs = epochs or max(w.epochs, MIN_EPOCHS_SHOWN)
    start = mse(problem.dataset, problem.W0, problem.b0)
    out: dict[str, list[float]] = {}
    for i, name in enumerate(backends, start=1):
        if progress:
            progress(f"convergence: training {name} ({i}/{len(backends)}), "
                     f"{n_epochs} runs of 1 to {n_epochs} epochs")
        backend = implementations.get(name)  # one instance, prepared afresh per plan
        losses = [start]
        for e in range(1, n_epochs + 1):
            p = make_problem(w.name, problem.dataset, batch_size=w.batch_size, epochs=e,
                             lr=w.lr, seed=problem.plan.seed)
            result, *_ = train_once(backend, p)
            losses.append(result.final_loss)
        out[name] = losses
    return n_epochs, out


def convergence_figure(
    workload: str, losses: dict[str, list[float]], note: str = ""
) -> Figure:
    """Loss per epoch, one line per backend (they should coincide)."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(losses.items()):
        # Distinct dashes, and markers at staggered epochs, keep coinciding lines visible.
        every = max(1, len(values) // 10)
        ax.plot(range(len(values)), values, linestyle=_STYLES[i % len(_STYLES)],
                marker=_MARKERS[i % len(_MARKERS)], markevery=(i % every, every),
                markersize=5, linewidth=1.5, alpha=0.85, label=name)
    final = np.array([v[-1] for v in losses.values()])
    spread = float((final.max() - final.min()) / abs(final.min())) if final.size else 0.0
    host = machine.label({"gdbench": {"cpu_model": machine.cpu_model(),
                                      "cpu_count": os.cpu_count()}})
    ax.set_title(f"Loss per epoch: {workload} (recomputed untimed on {host})\n"
                 f"final losses differ by at most {spread:.1e} (relative)" + note,
                 fontsize=10)
    ax.set_xlabel("epoch (0 = initial weights)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss (MSE over all rows, target units²)")
    if all(v > 0 for values in losses.values() for v in values):
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """``stem``.png and ``stem``.svg in ``out_dir``, each written atomically."""
    paths = []
    for ext in FORMATS:
        buf = io.BytesIO()
        # No date in the SVG's metadata: the file says nothing of when it was drawn.
        metadata = {"Date": None} if ext == "svg" else None
        fig.savefig(buf, format=ext, dpi=150, metadata=metadata)
        path = out_dir / f"{stem}.{ext}"
        write_atomic(path, buf.getvalue())
        paths.append(path)
    return paths


# --- the command ---------------------------------------------------------------------------
