"""Write docs/cli.md, every gdbench command's --help (gdbench.commands.cli.help_reference).

Run it after changing an option or its help: tests/test_cli_reference.py fails until the
page matches what the commands print.
"""

from __future__ import annotations

from pathlib import Path

from gdbench.commands.cli import help_reference
from gdbench.records.results import write_atomic

if __name__ == "__main__":
    page = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    write_atomic(page, help_reference())
    print(f"wrote {page}")
