"""Figures from a saved run, each written as PNG and SVG into DIR (created if needed).

scaling      µs per step against FLOPs per step (log-log), one line per backend, and the
             roofline: a plain NumPy matmul pair of one step's shapes, the machine's ceiling.
speedup      speed-up vs numpy per workload (numpy's time over the backend's; grouped
             bars from ×1, up is faster).
convergence  the loss (MSE over all rows) after each epoch, for every backend available
             here, on one workload (--workload, default crops). It is recomputed here,
             outside any timing: for e = 1..E, a fresh run trains a plan of e epochs (the
             first e epochs of the E-epoch plan, since an epoch's shuffle depends only on
             the seed and its number). The lines should lie on top of one another. A
             workload that trains fewer than 10 epochs in the benchmark (medium, large,
             xl train 1 or 2) is shown over 10 epochs of the same recipe instead, with a
             note in the title (--epochs to choose).
roofline     GFLOP/s against arithmetic intensity (FLOPs per byte a step must move), a
             point per backend × workload under the roofs measured in the run: the flat
             compute roof (the best GEMM rate of its roofline loops) and a diagonal memory
             roof per copy bandwidth (gdbench.judge.limits.run_roofs, the roofs of the tables'
             limit too); beside it, each backend's fixed cost α per step. The caption
             says what measured each roof, and warns of any point above its roof.
fit          µs per step against FLOPs per step with each backend's fitted line
             step = α + FLOPs / β: α is the fixed cost of a step, β its throughput.
loss-time    loss against wall-clock seconds on one workload (--workload, else the run's
             first): each backend's line starts after its prepare (compilation
             included) and runs at its median step time along the float64 reference's
             loss curve; the dotted line is the shared target.

Titles name the machine. Files are written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gdbench import implementations
from gdbench.commands.options import positive_int
from gdbench.data.errors import InputError
from gdbench.data.workloads import get_workload
from gdbench.records.results import load_run
from gdbench.report.plots import (
    MIN_EPOCHS_SHOWN,
    convergence_figure,
    fit_figure,
    loss_time_figure,
    losses_per_epoch,
    roofline_figure,
    save,
    scaling_figure,
    speedup_figure,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN.json", help="a saved run (pytest-benchmark JSON)")
    parser.add_argument("-o", "--output", default="results/plots", metavar="DIR",
                        help="folder for the PNG and SVG files (default: results/plots)")
    parser.add_argument("--workload", default="crops",
                        help="the workload of the convergence figure (default: crops)")
    parser.add_argument("--backends", nargs="+", metavar="NAME",
                        help="backends of the convergence figure (default: all available)")
    parser.add_argument("--epochs", type=positive_int, metavar="E",
                        help="epochs of the convergence figure (default: the workload's, "
                             f"at least {MIN_EPOCHS_SHOWN})")
    parser.add_argument("--no-convergence", action="store_true",
                        help="skip the convergence figure (it trains every backend E times)")


def main(args: argparse.Namespace) -> int:
    frame = load_run(args.run)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    names: list[str] = []
    note = ""
    if not args.no_convergence:
        # Check the convergence options before writing anything.
        workload = get_workload(args.workload)
        if args.backends:
            names = list(args.backends)
            for name in names:
                implementations.get(name)  # InputError: unknown, or unavailable and why
        else:
            status = implementations.available()
            names = [n for n, why in status.items() if why is None]
            skipped = [n for n, why in status.items() if why is not None]
            note = f"; not available here: {', '.join(skipped)}" if skipped else ""
        shown = args.epochs or max(workload.epochs, MIN_EPOCHS_SHOWN)
        if shown != workload.epochs:
            note += (f"\nthe benchmark trains {workload.epochs} epoch"
                     f"{'s' * (workload.epochs != 1)}; shown over {shown} of the same recipe")
    written = save(scaling_figure(frame), out_dir, "scaling")
    written += save(speedup_figure(frame), out_dir, "speedup")
    written += save(roofline_figure(frame), out_dir, "roofline")
    written += save(fit_figure(frame), out_dir, "fit")
    loss_workload = args.workload if args.workload in set(frame["workload"]) else str(
        frame["workload"].iloc[0])
    written += save(loss_time_figure(frame, loss_workload), out_dir, "loss-time")
    if not args.no_convergence:
        _, losses = losses_per_epoch(args.workload, names, args.epochs,
                                     progress=lambda line: print(line, file=sys.stderr))
        written += save(convergence_figure(args.workload, losses, note), out_dir, "convergence")
    for path in written:
        print(path)
    return 0
