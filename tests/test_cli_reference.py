"""docs/cli.md holds every command's --help as the commands print it: the reference a user
reads without installing gdbench, and the record of every option's wording and default.
A change to an option shows here until the page is written again."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from gdbench.commands.cli import build_parser, help_reference

PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def _written_with() -> str:
    found = re.search(r"argparse of Python (\d+\.\d+)", PAGE.read_text())
    assert found, "docs/cli.md does not say which Python wrote it"
    return found.group(1)


@pytest.mark.skipif(_written_with() != ".".join(map(str, sys.version_info[:2])),
                    reason="docs/cli.md was written with another Python, whose argparse "
                           "formats help differently")
def test_the_reference_page_is_what_the_commands_print() -> None:
    assert PAGE.read_text() == help_reference(), (
        "docs/cli.md is out of date: run `python scripts/cli_reference.py`")


def test_the_page_has_every_command_and_leaves_the_terminal_width_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "42")
    page = help_reference()
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    assert [line[3:] for line in page.splitlines() if line.startswith("## ")] == [
        "gdbench", *(f"gdbench {name}" for name in sub.choices)]
    assert "usage: gdbench ab [-h]" in page
    assert os.environ["COLUMNS"] == "42"
    monkeypatch.delenv("COLUMNS")
    help_reference()
    assert "COLUMNS" not in os.environ
