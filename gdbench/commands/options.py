"""argparse value types shared by the gdbench commands."""

from __future__ import annotations

import argparse
import math

from gdbench.data.errors import InputError
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
