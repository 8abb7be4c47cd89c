"""The ``gdbench`` command: train | verify | run | compare | check | plot.

Every user error (bad file, bad value, unknown backend, divergence) ends as one line on
stderr and exit code 2; a disagreement in ``verify`` or a regression in ``check`` is exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from gdbench import implementations
from gdbench.commands.options import add_world_argument, positive_float, positive_int, world_env
from gdbench.data.datasets import Dataset, least_squares, load_dataset
from gdbench.data.errors import InputError
from gdbench.data.workloads import Problem, make_problem
from gdbench.implementations.base import RTOL, TrainResult, agreement, train_once
from gdbench.records import formats

EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that define a training problem (shared by train and verify)."""
    g = parser.add_argument_group("problem (defaults reproduce the tutorial)")
    g.add_argument("--data", default="crops", metavar="crops|PATH",
                   help="'crops' (the built-in 15-region table) or a CSV file (default: crops)")
    g.add_argument("--targets", nargs="+", metavar="COLUMN",
                   help="target columns of a CSV; the other numeric columns are the features "
                        "(default for crops: Mangoes Oranges)")
    g.add_argument("--batch-size", type=positive_int, default=3, help="rows per step (default: 3)")
    g.add_argument("--epochs", type=positive_int, default=50,
                   help="passes over the data (default: 50)")
    g.add_argument("--lr", type=positive_float, default=1e-6, help="learning rate (default: 1e-6)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the batch order and the initial weights (default: 0)")
    g.add_argument("--standardize", action="store_true",
                   help="scale features to zero mean and unit variance before training")
    g.add_argument("--drop-last", action="store_true", help="skip each epoch's ragged last batch")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="floating dtype of data and weights (default: float32)")


def problem_from_args(args: argparse.Namespace) -> Problem:
    dataset = load_dataset(args.data, args.targets, standardize=args.standardize, dtype=args.dtype)
    return make_problem(
        dataset.name, dataset, batch_size=args.batch_size, epochs=args.epochs, lr=args.lr,
        seed=args.seed, drop_last=args.drop_last,
    )


# --- train -----------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    problem = problem_from_args(args)
    with world_env(getattr(args, "world", None)):
        result, seconds, prepare_s = train_once(args.backend, problem)
    ds, plan = problem.dataset, problem.plan
    if args.json:
        print(json.dumps({
            "backend": result.backend,
            "data": args.data,
            "features": list(ds.feature_names),
            "targets": list(ds.target_names),
            "W": result.W.tolist(),
            "b": result.b.tolist(),
            "final_loss": result.final_loss,
            "steps": result.steps,
            "batch_size": plan.batch_size,
            "epochs": plan.epochs,
            "lr": problem.lr,
            "seed": plan.seed,
            "dtype": str(problem.dtype),
            "seconds": seconds,
            "prepare_seconds": prepare_s,
        }))
        return 0
    print(f"backend {result.backend}: {ds.name} ({ds.n_samples} rows, {ds.n_features} features "
          f"-> {ds.n_outputs} targets), batch {plan.batch_size}, {plan.epochs} epochs, "
          f"lr {problem.lr:g}, seed {plan.seed}, {problem.dtype}")
    print(f"trained {result.steps} steps in {seconds:.4f} s "
          f"({seconds / result.steps * 1e6:.2f} us/step; setup {prepare_s:.3f} s)")
    print(f"final loss (MSE over all rows): {result.final_loss:.6g}")
    print(_weights_table(ds, result))
    return 0


def _weights_table(ds: Dataset, result: TrainResult) -> str:
    """W as a table: one row per target, one column per feature, and the bias last."""
    table = pd.DataFrame(
        [[t, *(f"{w:.6g}" for w in result.W[i]), f"{result.b[i]:.6g}"]
         for i, t in enumerate(ds.target_names)],
        columns=["target", *ds.feature_names, "bias"],
    )
    return "weights (pred[target] = sum of weight x feature + bias):\n" + formats.plain(table)


# --- verify ----------------------------------------------------------------------------

def cmd_verify(args: argparse.Namespace) -> int:
    with world_env(getattr(args, "world", None)):
        return _verify(args)


def _verify(args: argparse.Namespace) -> int:
    problem = problem_from_args(args)
    names = args.backends or implementations.names()
    status = implementations.available()
    for name in names:
        if name not in status:
            raise InputError(f"unknown backend {name!r}; the known backends are: "
                             f"{', '.join(status)}")
    W_ls, b_ls = least_squares(problem.dataset)
    reference, *_ = train_once(implementations.REFERENCE, problem)
    dtype = str(problem.dtype)
    rows: list[dict[str, Any]] = []
    failed = False
    for name in names:
        if status[name]:
            rows.append({"backend": name, "note": f"skipped: {status[name]}"})
            continue
        result, *_ = train_once(name, problem)
        dW, db, ok = agreement(result, reference, dtype)
        dist = float(np.sqrt(np.sum((result.W - W_ls) ** 2) + np.sum((result.b - b_ls) ** 2)))
        failed |= not ok
        rows.append({"backend": name, "final_loss": result.final_loss, "dW": dW, "db": db,
                     "dist_ls": dist, "agree": "yes" if ok else "NO"})
    ds, plan = problem.dataset, problem.plan
    print(f"{ds.name}: {ds.n_samples} x {ds.n_features} -> {ds.n_outputs}, batch "
          f"{plan.batch_size}, {plan.epochs} epochs ({len(plan)} steps), lr {problem.lr:g}, "
          f"{dtype}; agree means max(|dW|, |db|) <= {RTOL[dtype]:g} x max(1, |W_numpy|, |b_numpy|)")
    print(_verify_table(rows))
    return 1 if failed else 0


def _verify_table(rows: list[dict[str, Any]]) -> str:
    """One row per backend; a skipped backend shows its reason in the final-loss column."""
    cells = []
    for r in rows:
        if "note" in r:
            cells.append([r["backend"], r["note"], "", "", "", "-"])
        else:
            cells.append([r["backend"], f"{r['final_loss']:.6g}", f"{r['dW']:.3g}",
                          f"{r['db']:.3g}", f"{r['dist_ls']:.4g}", r["agree"]])
    header = ["backend", "final loss", "max|W-W_numpy|", "max|b-b_numpy|", "dist to lstsq",
              "agree"]
    return formats.plain(pd.DataFrame(cells, columns=header))


# --- the parser ------------------------------------------------------------------------

# Subcommands that live in their own modules: name -> (module, help). Each module offers
# add_arguments(parser) and main(args) -> exit code.
_MODULE_COMMANDS = {
    "run": ("gdbench.commands.run",
            "run the benchmark suite (here, or on a cluster: --executor), save the "
            "run JSON and print the table"),
    "compare": ("gdbench.commands.compare",
                "tables from saved runs (one run, or two side by side)"),
    "check": ("gdbench.commands.check", "the CI regression gate: compare a run with a baseline"),
    "ab": ("gdbench.commands.ab",
           "the CI gate on hosted runners: time two git revisions in turns, here "
           "(never on a cluster)"),
    "plot": ("gdbench.commands.plot", "scaling, speed-up and convergence figures from a saved run"),
    "audit": ("gdbench.commands.audit",
              "prove each figure of a run is its backend's loop alone (interference, sync, "
              "noise); always here, never on a cluster"),
    "history": ("gdbench.commands.history", "one HTML page of every benchmark over many runs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gdbench",
        description="Train one linear-regression model (pred = X @ W.T + b, MSE, mini-batch "
                    "gradient descent) the same way in several backends, check that they "
                    "agree, and time them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    train = sub.add_parser("train", help="train once with one backend and print the weights",
                           description="Train once and print the final loss and the weights, "
                                       "named by feature and target. With no options it "
                                       "reproduces the tutorial: crops, batch 3, 50 epochs, "
                                       "lr 1e-6, shuffled.")
    train.add_argument("--backend", default="numpy",
                       help=f"one of: {', '.join(implementations.names())} (default: numpy)")
    add_problem_arguments(train)
    add_world_argument(train)
    train.add_argument("--json", action="store_true", help="print one JSON object instead")
    train.set_defaults(func=cmd_train)

    verify = sub.add_parser("verify", help="train every available backend and check agreement",
                            description="Train every available backend on one problem and "
                                        "compare its weights with the NumPy reference and the "
                                        "least-squares optimum. Exit 1 if any disagrees.")
    verify.add_argument("--backends", nargs="+", metavar="NAME",
                        help="only these backends (default: all)")
    add_problem_arguments(verify)
    add_world_argument(verify)
    verify.set_defaults(func=cmd_verify)

    for name, (module_name, help_text) in _MODULE_COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(func=module.main)
    return parser


REFERENCE_COLUMNS = "100"  # the width docs/cli.md is wrapped at, whatever the terminal's


def help_reference() -> str:
    """docs/cli.md: every command's ``--help``, as argparse prints it at a fixed width
    (``python scripts/cli_reference.py`` writes it; a test keeps it current)."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = REFERENCE_COLUMNS
    try:
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        pages = [("gdbench", parser.format_help())]
        pages += [(f"gdbench {name}", cmd.format_help()) for name, cmd in sub.choices.items()]
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    version = ".".join(map(str, sys.version_info[:2]))
    head = ("# gdbench's commands\n\nEvery command's `--help`, as it prints it (argparse of "
            f"Python {version}, {REFERENCE_COLUMNS} columns). Written by "
            "`python scripts/cli_reference.py`; `tests/test_cli_reference.py` fails when it "
            "is out of date.\n")
    return head + "".join(f"\n## {title}\n\n```text\n{text.rstrip()}\n```\n"
                          for title, text in pages)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"gdbench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"gdbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
