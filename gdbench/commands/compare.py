"""Tables from saved runs: one run, two side by side, or several merged.

One run: tables of workload x backend for µs per step, speed-up vs numpy (numpy's time
over the backend's, higher is faster), GFLOP/s, efficiency vs the roofline (the roofline's
µs/step over the backend's, as a percentage: a plain NumPy matmul pair of one step's
shapes, the machine's own ceiling measured in the same run), compile seconds, and whether
the backend's weights agree with numpy's (✓ / ✗).

Two runs: each benchmark side by side, with new/old (the second file over the first, raw
median times, which include the machine's speed) and, for training benchmarks whose rounds
were paired with a reference round, the normalised new/old (median of each round's time
over its reference's; the machine's drift cancels). "▲ slower" and "▼ faster" mark
changes whose 95% bootstrap interval over the rounds excludes 1: the interval of the
normalised ratio when both runs have it (the test of gdbench check), else of the raw one.

Three or more runs: µs per step merged, one column per run, labelled by machine.

Runs from different machines (machine fingerprints differ) are never shown as one: the
output starts with a warning and every column names its machine.

--format: table (text), md (paste into a PR), csv (raw numbers, one row per benchmark),
html.
"""

from __future__ import annotations

import argparse
import sys

from gdbench.records import formats
from gdbench.records.results import (
    load_runs,
)
from gdbench.report.tables import machine_warning, render_compare


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN.json",
                        help="saved runs (pytest-benchmark JSON); with two, the first is old")
    parser.add_argument("--format", choices=formats.FORMATS, default="table",
                        help="table (default), md, csv or html")


def main(args: argparse.Namespace) -> int:
    frame = load_runs(args.runs)
    warnings = machine_warning(frame)
    if warnings and args.format in ("md", "html", "csv"):
        # The warning is inside the output too, but a redirected output hides it.
        print(f"gdbench compare: warning: {warnings[0]}", file=sys.stderr)
    print(render_compare(frame, args.format), end="")
    return 0
