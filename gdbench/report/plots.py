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
from gdbench.report.tables import summary

if TYPE_CHECKING:
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
        roofline = label == "roofline"
        ax.plot(rows["flops_per_step"], rows["step_us"], marker=_MARKERS[i % len(_MARKERS)],
                linestyle="--" if roofline else "-", color="black" if roofline else None,
                linewidth=2.5 if roofline else 1.5,
                label="roofline (NumPy matmul pair)" if roofline else label)
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


def roofline_figure(frame: pd.DataFrame) -> Figure:
    """GFLOP/s against arithmetic intensity (FLOPs per byte a step must move), one point
    per backend × workload, under both ceilings measured in the run: the GEMM rate
    (horizontal) and the copy bandwidth (the diagonal bandwidth × intensity), per workload."""
    s = summary(frame)
    train = s[(s["kind"] == "training") & s["limit_us"].notna()].copy()
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"Roofline: throughput against arithmetic intensity\n{_machine(frame)}")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte a step must move)")
    ax.set_ylabel("GFLOP/s (median)")
    if train.empty:
        ax.text(0.5, 0.5, "this run has no ceilings (made before gdbench measured them)",
                ha="center", va="center", transform=ax.transAxes)
        return fig
    itemsize = np.where(train["dtype"] == "float64", 8, 4)
    rows_per_step = train["epochs"].astype(float) * train["n"].astype(float) / train[
        "steps"].astype(float)
    step_bytes = [limits.step_bytes(b, int(d), int(k), int(i)) for b, d, k, i in zip(
        rows_per_step, train["d"], train["k"], itemsize, strict=True)]
    train["intensity"] = train["flops"].astype(float) / train["steps"].astype(float) / np.asarray(
        step_bytes)
    roof = s[s["kind"] == "roofline"].set_index("workload")
    for workload in workloads_in(train):
        x = float(train.loc[train["workload"] == workload, "intensity"].iloc[0])
        gemm, bandwidth = roof.loc[workload, "gflops"], roof.loc[workload, "bandwidth_gbs"]
        xs = np.geomspace(x / 4, x * 4, 20)
        ax.plot(xs, np.minimum(gemm, bandwidth * xs), color="0.6", linewidth=1)
        ax.annotate(f"{workload}: {gemm:.3g} GFLOP/s, {bandwidth:.3g} GB/s", (x * 4, gemm),
                    fontsize=7, color="0.4", ha="right", va="bottom")
    for i, label in enumerate(backends_in(train.assign(backend=train["label"]))):
        rows = train[train["label"] == label]
        ax.scatter(rows["intensity"], rows["gflops"], marker=_MARKERS[i % len(_MARKERS)],
                   label=label, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


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
    roof = s[(s["kind"] == "roofline") & (s["workload"] == workload)]
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
        # No date in the SVG, so the same figure gives the same file.
        metadata = {"Date": None} if ext == "svg" else None
        fig.savefig(buf, format=ext, dpi=150, metadata=metadata)
        path = out_dir / f"{stem}.{ext}"
        write_atomic(path, buf.getvalue())
        paths.append(path)
    return paths


# --- the command ---------------------------------------------------------------------------
