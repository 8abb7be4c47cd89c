"""docs/fidelity.md's table of the harness's constants quotes each value the code uses:
the table says what was measured to set it, so a value changed in one place and not the
other would leave the docs defending a number the code no longer has."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "fidelity.md"
HEADING = "## Where the harness's constants come from"
MODULES = {"timing": "gdbench.harness.timing", "stats": "gdbench.judge.stats",
           "judge/retime": "gdbench.judge.retime", "judge/audit": "gdbench.judge.audit",
           "harness/standalone": "gdbench.harness.standalone"}
UNITS = {"ms": 1e-3, "s": 1.0, "%": 1e-2, "×": 1.0, "": 1.0}


def _rows() -> list[tuple[str, str, str]]:
    """(constants, module, value) of each row of the table that names constants."""
    text = DOC.read_text()
    table = text[text.index(HEADING):].split("\n\n")[2]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        found = re.fullmatch(r"((?:`[\w.]+`(?:, )?)+) \(([\w/]+)\)", cells[0])
        if found:
            rows.append((found.group(1), found.group(2), cells[1]))
    return rows


def _numbers(value: str) -> list[float]:
    """'5 ms' -> [0.005]; '1.5 s, 2 s' -> [1.5, 2.0]; '10%' -> [0.1]; '1.25–2.5×' ->
    [1.25, 2.5]."""
    found = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|%|×)?", value)
    unit = next((u for _, u in reversed(found) if u), "")
    return [float(x) * UNITS[u or unit] for x, u in found]


def _value(module: str, dotted: str) -> list[float]:
    obj: object = importlib.import_module(MODULES[module])
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return [float(x) for x in obj] if isinstance(obj, tuple) else [float(obj)]  # type: ignore[arg-type]


def test_the_table_names_the_constants_it_is_about() -> None:
    named = {name for names, _, _ in _rows() for name in re.findall(r"`([\w.]+)`", names)}
    assert {"ROUND_FLOOR_S", "SETTLED_TOLERANCE", "RUN.tolerance", "HARNESS_PAIRS",
            "CHECK_MIN_ROUNDS", "AUDIT.passes", "DOUBLING_RANGE"} <= named


@pytest.mark.parametrize(("names", "module", "value"), _rows())
def test_each_constant_in_the_docs_has_the_value_the_code_uses(names: str, module: str,
                                                               value: str) -> None:
    constants = re.findall(r"`([\w.]+)`", names)
    code = [x for name in constants for x in _value(module, name)]
    assert code == pytest.approx(_numbers(value)), f"{names} ({module}): docs say {value}"
