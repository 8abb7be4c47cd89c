"""One self-contained HTML page of every training benchmark over many runs.

    gdbench history results/runs/*.json --baseline results/baseline/cpu-quick.json \
        -o history.html

For each training benchmark (workload x backend) the page plots, against each run's date
(pytest-benchmark's "datetime"), the gate's metric: the median of the benchmark's rounds,
each over its paired reference round (norm_data; ×ref), with the 95% percentile
bootstrap interval of that median (gdbench.judge.stats: the gate's resamples and seed). A run
saved before paired timing falls back on its median over the same run's roofline median
(unpaired: the machine's drift can move it by tens of percent); its points are hollow
and the page names those runs.

Each run is judged as `gdbench check` would judge it: with --baseline, against the
baseline; without, against the previous run on the same machine (fingerprint). A point
the gate flags as a regression is ringed in red (a red X: its weights disagree with
numpy). Hovering a point shows its date, commit (short id, dirty, branch), machine and
verdict; each benchmark's table lists the same. Runs from different machines (different
fingerprints) are separate series, never joined by a line. The page opens with the gate's
table of the latest run against the baseline (without --baseline, against the previous
run on its machine).

The page has no script and loads nothing (matplotlib's SVG is inlined), so a CI artifact
opens offline. It is written atomically. Exit codes: 0 written, 2 bad input (a missing or
malformed run, a run without a training benchmark or a datetime, an output path that is
a directory).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gdbench.commands import options
from gdbench.data.errors import InputError
from gdbench.judge import regress
from gdbench.records.results import (
    write_atomic,
)
from gdbench.report.history import build_history, render_page


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN.json",
                        help="saved runs (pytest-benchmark JSON), in any order: they are "
                             "sorted by their datetime")
    parser.add_argument("--baseline", metavar="BASE.json",
                        help="judge every run against this baseline (default: against the "
                             "previous run on the same machine)")
    parser.add_argument("--threshold", type=options.threshold, default=regress.DEFAULT_THRESHOLD,
                        metavar="PCT",
                        help="the slowdown the gate flags: '15%%' or '0.15' (default: "
                             f"{regress.DEFAULT_THRESHOLD.replace('%', '%%')})")
    parser.add_argument("-o", "--output", required=True, metavar="PAGE.html",
                        help="the HTML page to write (atomically)")


def main(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.is_dir():
        raise InputError(f"{out}: is a directory; give the page's file name, such as "
                         f"{out / 'history.html'}")
    threshold = args.threshold
    if isinstance(threshold, str):  # a Namespace built by hand, not by the parser
        threshold = regress.parse_threshold(threshold)
    history = build_history(args.runs, args.baseline, threshold)
    page = render_page(history)
    try:
        write_atomic(out, page)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the page ({exc.strerror or exc})") from None
    n_flagged = int((history.points["flag"] != "").sum())
    n_runs, n_benchmarks = len(history.runs), history.points["name"].nunique()
    print(f"wrote {out}: {n_runs} run{'s' * (n_runs != 1)}, {n_benchmarks} "
          f"benchmark{'s' * (n_benchmarks != 1)}, {n_flagged} flagged "
          f"point{'s' * (n_flagged != 1)}")
    return 0
