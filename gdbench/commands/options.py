"""argparse value types shared by the gdbench commands."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gdbench.data.errors import InputError
from gdbench.data.workloads import WORKLOADS, Workload, define, get_workload, parse_shape, to_json
from gdbench.implementations.data_parallel import WORLD_ENV
from gdbench.judge.regress import parse_threshold


def positive_int(text: str) -> int:
    """An integer above zero, else argparse's one-line error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number above zero (so not nan or inf), else argparse's one-line error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def threshold(text: str) -> float:
    """A regression threshold ('10%' or '0.1'), else argparse's one-line error."""
    try:
        return parse_threshold(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_world_argument(parser: argparse.ArgumentParser) -> None:
    """--world N: the workers of the data-parallel backends."""
    parser.add_argument("--world", type=positive_int, metavar="N",
                        help="workers of the data-parallel backends: torch-ddp's ranks (one "
                             "thread each) and jax-sharded's devices (default: 2, or "
                             f"{WORLD_ENV})")


@contextlib.contextmanager
def world_env(world: int | None) -> Iterator[None]:
    """``world`` (when given) as GDBENCH_WORLD inside the block, put back after it: the
    data-parallel backends, their rank processes and every benchmark process the block
    starts read it from there."""
    if not world:
        yield
        return
    before = os.environ.get(WORLD_ENV)
    os.environ[WORLD_ENV] = str(world)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(WORLD_ENV, None)
        else:
            os.environ[WORLD_ENV] = before


def _shape(text: str) -> tuple[int, int, int]:
    try:
        return parse_shape(text, "expected")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("expected: ")) from None


def add_own_problem(parser: argparse.ArgumentParser) -> None:
    """--shape or --data, --batch, --epochs ...: the user's own problem (gdbench run, ab)."""
    g = parser.add_argument_group(
        "your own problem (timed instead of the default workloads, or beside --workloads)")
    g.add_argument("--shape", type=_shape, metavar="N,D,K",
                   help="synthetic, seeded data: N rows, D features, K outputs")
    g.add_argument("--data", metavar="PATH",
                   help="a CSV file, read as gdbench train reads it: the features are the "
                        "numeric columns that are not targets")
    g.add_argument("--targets", nargs="+", metavar="COLUMN", help="the CSV's target columns")
    g.add_argument("--batch", "--batch-size", dest="batch", type=positive_int, metavar="B",
                   help="rows per step (needed with --shape or --data)")
    g.add_argument("--epochs", type=positive_int, metavar="E", help="passes over the data "
                   "(default: 1)")
    g.add_argument("--lr", type=positive_float, help="learning rate (default: 0.05)")
    g.add_argument("--seed", type=int, help="seed of the data, the batch order and the "
                                            "initial weights (default: 0)")
    g.add_argument("--standardize", action="store_true",
                   help="scale the CSV's features to zero mean and unit variance")


def own_workload(args: argparse.Namespace) -> Workload | None:
    """The workload that --shape or --data describe (None without either), checked as any
    definition is; named by its shape or file, batch and epochs."""
    own = {key: getattr(args, key, None) for key in
           ("shape", "data", "targets", "batch", "epochs", "lr", "seed")}
    if own["shape"] is None and own["data"] is None:
        given = [f"--{k}" for k, v in own.items() if v is not None]
        given += ["--standardize"] if getattr(args, "standardize", False) else []
        if given:
            raise InputError(f"{given[0]} describes your own problem: give --shape N,D,K or "
                             "--data PATH with it")
        return None
    if own["shape"] is not None and own["data"] is not None:
        raise InputError("give --shape (synthetic data) or --data (a CSV file), not both")
    if own["batch"] is None:
        raise InputError("--batch B is needed with --shape or --data")
    if own["shape"] is not None and (own["targets"] or getattr(args, "standardize", False)):
        raise InputError("--targets and --standardize go with --data, not --shape")
    epochs = own["epochs"] or 1
    raw: dict[str, Any] = {"batch_size": own["batch"], "epochs": epochs}
    raw.update({k: own[k] for k in ("lr", "seed") if own[k] is not None})
    if own["shape"] is not None:
        raw["shape"] = list(own["shape"])
        stem = "x".join(str(x) for x in own["shape"])
    else:
        raw.update(data=own["data"], standardize=bool(getattr(args, "standardize", False)))
        if own["targets"]:
            raw["targets"] = list(own["targets"])
        stem = "".join(c if c.isalnum() or c in "._-" else "-"
                       for c in Path(str(own["data"])).stem)
    where = "--shape" if own["shape"] is not None else "--data"
    return define(f"{stem or 'data'}-b{own['batch']}-e{epochs}", raw, where)


def resolve_workloads(args: argparse.Namespace) -> None:
    """Check every workload named, and put the user's own (--shape or --data, and those
    declared in pyproject.toml) in ``args``: their names in ``args.workloads`` and their
    definitions in ``args.definitions``, which every job passes to its suite."""
    names = list(args.workloads or [])
    users = [get_workload(name) for name in names if name not in WORKLOADS]
    own = own_workload(args)
    if own is not None:
        users.append(own)
        names.append(own.name)
    args.workloads = names or None
    args.definitions = tuple((w.name, to_json(w)) for w in users)
