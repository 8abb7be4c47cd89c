"""Render titled tables of strings as plain text, markdown, or HTML, and frames as CSV.

Shared by ``gdbench compare`` (tables.py) and ``gdbench check`` (regress.py); it knows
nothing about benchmarks. A table is a DataFrame of already-formatted cells.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

FORMATS = ("table", "md", "csv", "html")


@dataclass
class Section:
    """One titled table, with notes printed before it (warnings, legends) and footnotes
    after it (what a mark in its cells means)."""

    title: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)


def render(sections: Sequence[Section], fmt: str, warnings: Sequence[str] = ()) -> str:
    """Sections as one document in ``table``, ``md`` or ``html``; warnings go first, loudly."""
    if fmt == "md":
        parts = [f"> **⚠ {w}**" for w in warnings]
        for s in sections:
            parts.append(f"### {s.title}")
            parts.extend(s.notes)
            parts.append(markdown(s.table))
            parts.extend(s.footnotes)
        return "\n\n".join(parts) + "\n"
    if fmt == "html":
        parts = [f'<p style="color:#b00"><strong>⚠ {html.escape(w)}</strong></p>'
                 for w in warnings]
        for s in sections:
            parts.append(f"<h3>{html.escape(s.title)}</h3>")
            parts.extend(f"<p>{html.escape(n)}</p>" for n in s.notes)
            parts.append(s.table.to_html(index=False, escape=True, border=0))
            parts.extend(f"<p>{html.escape(n)}</p>" for n in s.footnotes)
        return "\n".join(parts) + "\n"
    if fmt == "table":
        parts = [f"!! WARNING: {w}" for w in warnings]
        for s in sections:
            block = [s.title, "=" * len(s.title), *s.notes, plain(s.table), *s.footnotes]
            parts.append("\n".join(block))
        return "\n\n".join(parts) + "\n"
    raise ValueError(f"unknown format {fmt!r}; expected one of table, md, html")


def _cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [str(c) for c in table.columns]
    rows = [["" if _blank(v) else str(v) for v in row] for row in table.itertuples(index=False)]
    return header, rows


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


_NUMBER = re.compile(r"^[\[(+\-×]?\d")


def _numeric(rows: list[list[str]], j: int) -> bool:
    """Right-align a column whose every filled cell starts like a number."""
    cells = [r[j] for r in rows if r[j]]
    return bool(cells) and all(_NUMBER.match(c) for c in cells)


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table; numbers right-aligned, text left-aligned."""
    header, rows = _cells(table)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---:" if _numeric(rows, j) else ":---" for j in range(len(header))]
    return "\n".join([line(header), "|" + "|".join(align) + "|", *(line(r) for r in rows)])


def plain(table: pd.DataFrame) -> str:
    """Fixed-width text columns; numbers right-aligned, text left-aligned."""
    header, rows = _cells(table)
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    right = [_numeric(rows, j) for j in range(len(header))]
    out = []
    for r in [header, *rows]:
        out.append("  ".join(c.rjust(w) if rj else c.ljust(w)
                             for c, w, rj in zip(r, widths, right, strict=True)).rstrip())
    return "\n".join(out)


def csv(frame: pd.DataFrame) -> str:
    """A frame of raw values as CSV (no index), for spreadsheets and scripts."""
    return str(frame.to_csv(index=False, float_format="%.6g"))


# --- number formats ----------------------------------------------------------------------

def number(value: float) -> str:
    """About three significant digits, trailing zeros kept: 0.0180, 3.00, 12.3, 456, 4,560."""
    if _blank(value):
        return ""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def us(value: float) -> str:
    """µs per step, as :func:`number`."""
    return number(value)


def times(value: float) -> str:
    """A speed-up or ratio: ×1.25."""
    return "" if _blank(value) else f"×{number(value)}"


def percent(value: float) -> str:
    return "" if _blank(value) else f"{value:.0f}%" if value >= 10 else f"{value:.2g}%"


def plus_minus(spread: float) -> str:
    """An interval's reach either side of its figure, relative to it: 0.021 -> ±2.1%,
    0.0043 -> ±0.43%, 0.25 -> ±25%; "" without an interval."""
    if _blank(spread):
        return ""
    pct = 100 * spread
    return f"±{pct:.0f}%" if pct >= 10 else f"±{pct:.2g}%"


def with_interval(text: str, spread: float) -> str:
    """A formatted figure followed by its :func:`plus_minus` (the figure alone without
    an interval or a figure): ``99.3 ±2.1%``."""
    pm = plus_minus(spread)
    return f"{text} {pm}" if text and pm else text


def signed_percent(ratio: float) -> str:
    """A ratio as a change: 1.253 -> +25.3%, 0.8 -> -20.0%."""
    return "" if _blank(ratio) else f"{(ratio - 1) * 100:+.1f}%"
