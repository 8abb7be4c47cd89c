"""The CI regression gate: compare a run with a committed baseline.

Why paired: a shared machine's speed drifts in episodes lasting seconds, consecutive
rounds correlated, so a reference measured seconds earlier (the roofline benchmark, timed
a few benchmarks before) does not cancel it; one measured in the adjacent moment does
(docs/fidelity.md). So the suite times each round of a training benchmark right after a
reference round: the workload's reference loop (per step, a plain NumPy gather of the step's
rows and the matmul pair of its shapes; see timing.reference_loop), which no change to a
backend can move. Each round's time over its own reference's is its normalised time
(``norm_data`` in the run's extra_info).

Metric: the change is median(new run's normalised times) / median(baseline's) (1.25 =
25% slower), with a 95% percentile bootstrap interval resampling the rounds of both
samples (seeded, so the verdict is reproducible).

Settled rounds: a host neighbour can slow this machine for seconds to minutes, and not
uniformly (a gather-heavy loop far more than the reference), which the paired ratio does
not cancel. So only rounds whose own reference time lies within 10% of the reference's
quiet level (the 10th percentile of that benchmark's reference times in both runs) are
compared, in both runs alike (stats.settled_pair). A slower backend never moves its
reference, so a real regression is kept whole. When either run has fewer than 5 settled
rounds (the machine was slower for all of it: a uniform slowdown, or a baseline from a
faster day), every round is compared, and the note says so.

Fallbacks, when either run lacks the paired rounds (a run from before paired timing; the
suite writes them with or without --benchmark-save-data): (a) the unpaired roofline
normalisation, (median / roofline median in the new run) over the same in the baseline,
bootstrapping all four samples' rounds; the note says "unpaired roofline", and machine
drift can move it; (b) when, besides, a run has no timed rounds saved (no
--benchmark-save-data): the medians alone decide, and the note says so. Without a
roofline the raw times are compared. Roofline rows are shown as the machine's speed (raw
new/baseline time) and never fail.

Verdicts: "regression" when the change exceeds 1 + threshold and the interval lies above
1 (exit 1); "improvement" when it is below 1 / (1 + threshold) and the interval lies
below 1; "not significant" when it is beyond the threshold but the interval contains 1.
"disagrees with numpy" when the new run recorded that the backend's weights did not
match the NumPy reference (extra_info agrees false): a wrong result fails the gate (exit
1) whatever its speed, and a benchmark new in the run too. Benchmarks missing from
either run are listed, not failed.

The report names each run's commit, and whether it had uncommitted changes (dirty), from
pytest-benchmark's commit_info: a baseline recorded from a dirty tree is not the code of
its commit.

--threshold takes a percentage ("15%") or a fraction below 1 ("0.15"); a bare number of
1 or more ("15") is refused as ambiguous. A baseline from another machine (another
fingerprint) is a warning, or an error with --strict-machine.

--confirm RUN2.json: a second run made after a first failure; a regression then fails
the gate only if it shows in both runs. The machine's speed also drifts between runs,
which no in-run reference cancels: a real regression reproduces, noise rarely lands on
the same benchmark twice.

Exit codes: 0 pass, 1 regression, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

from gdbench.commands import options
from gdbench.data.errors import InputError
from gdbench.judge.regress import (
    DEFAULT_THRESHOLD,
    build_report,
    other_collector,
    other_machine,
    parse_threshold,
)
from gdbench.records.results import (
    load_run,
    write_atomic,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN.json", help="the new run (pytest-benchmark JSON)")
    parser.add_argument("--baseline", required=True, metavar="BASE.json",
                        help="the committed baseline run to compare with")
    parser.add_argument("--threshold", type=options.threshold, default=DEFAULT_THRESHOLD,
                        metavar="PCT",
                        help="the slowdown that fails the gate: '15%%' or '0.15' (default: "
                             f"{DEFAULT_THRESHOLD.replace('%', '%%')})")
    parser.add_argument("--report", metavar="PATH",
                        help="also write the markdown report to PATH (atomically)")
    parser.add_argument("--confirm", metavar="RUN2.json",
                        help="a second new run: a regression fails the gate only if it "
                             "shows in both runs (what CI does after a first failure)")
    parser.add_argument("--strict-machine", action="store_true",
                        help="refuse a baseline recorded on another machine (exit 2) "
                             "instead of warning")
    parser.add_argument("--format", choices=["md", "table"], default="md",
                        help="what to print (default: md); --report is always markdown")


def main(args: argparse.Namespace) -> int:
    threshold = args.threshold
    if isinstance(threshold, str):  # a Namespace built by hand, not by the parser
        threshold = parse_threshold(threshold)
    base = load_run(args.baseline)
    new = load_run(args.run)
    confirmation = load_run(args.confirm) if getattr(args, "confirm", None) else None
    machines = other_machine(base, new)
    if machines and args.strict_machine:
        raise InputError(f"{machines}; --strict-machine forbids comparing them")
    warnings = []
    if machines:
        warnings.append(f"{machines}; the reference normalisation cancels most, not all, "
                        "of that")
    if gc := other_collector(base, new):
        warnings.append(gc)
    for line in warnings:
        print(f"gdbench check: warning: {line}", file=sys.stderr)
    warning = "; ".join(warnings) or None
    text, code = build_report(base, new, threshold, args.format, warning, confirmation)
    if args.report:
        report = text if args.format == "md" else build_report(
            base, new, threshold, "md", warning, confirmation)[0]
        try:
            write_atomic(args.report, report)
        except OSError as exc:  # a folder in the way, no permission
            raise InputError(f"{args.report}: cannot write the report "
                             f"({exc.strerror or exc})") from None
    print(text, end="")
    return code
