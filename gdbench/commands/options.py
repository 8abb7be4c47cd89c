"""argparse value types shared by the gdbench commands."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
from collections.abc import Iterator

from gdbench.data.errors import InputError
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
