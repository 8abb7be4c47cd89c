"""The timed suite's command-line options, as a pytest plugin.

An installed gdbench registers this module through a ``pytest11`` entry point (named
``gdbench``; ``-p no:gdbench`` turns it off), so that its options parse wherever pytest
starts: from a checkout's root (``pytest --benchmark-only --quick --backends numpy jax``),
from an install, beside a user's own tests. Before, they lived in the suite's conftest,
which pytest reads early only when it is given the suite's folder.

Every option has a spelling prefixed ``--gdbench-``, which no other plugin's can clash
with, and keeps its old one (``--quick``, ``--backends`` ...) unless another plugin
registered that first. The suite's conftest registers them itself when this plugin is not
loaded (an install from before the entry point, or ``-p no:gdbench``).

This module imports nothing but pytest: it is loaded in every pytest session of an
environment where gdbench is installed. The suite's conftest checks the values.
"""

from __future__ import annotations

from typing import Any

import pytest

PREFIX = "--gdbench-"
GROUP = ("gdbench", "gdbench benchmark suite")

# (name, argparse keywords): the option is --gdbench-<name>, also --<name>.
OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("backends", dict(nargs="+", metavar="NAME", default=None,
                      help="backends to run (default: every backend but the data-parallel "
                           "ones; gdbench run --help and the README list them)")),
    ("workloads", dict(nargs="+", metavar="NAME", default=None,
                       help="workloads to run, of crops, small, medium, large, xl and any "
                            "given with --workload-def (default: crops small medium large; "
                            "with --quick: crops small medium)")),
    ("quick", dict(action="store_true",
                   help="the CI profile: the crops, small and medium workloads, 1.5 s of "
                        "rounds per benchmark (default: crops to large, 2 s)")),
    ("dtype", dict(choices=["float32", "float64"], default="float32",
                   help="dtype of data and weights (default: float32)")),
    ("threads", dict(type=int, default=None, metavar="N",
                     help="pin the run to N CPUs and cap BLAS, OpenMP, torch and XLA at N "
                          "threads (default: the libraries' own)")),
    ("progress", dict(action="store_true",
                      help="print one line per finished benchmark (gdbench run sets this)")),
    ("roofline", dict(choices=["with", "without", "only", "gpu"], default="with",
                      help="whether to time each workload's roofline loop: with the training "
                           "benchmarks (default; with the GPU's yardsticks too, torch.mm and "
                           "a device copy on CUDA, unless --isolated), without them, or only "
                           "them; gpu: only the GPU's yardsticks (gdbench run times them in a "
                           "process of their own)")),
    ("memory", dict(choices=["auto", "on", "off"], default="auto",
                    help="after timing, instrument one more run of each backend for its peak "
                         "memory and allocations per step (gdbench.harness.memory): auto "
                         "measures it except with --quick, whose CI runs gate speed only "
                         "(the profilers start in seconds)")),
    ("isolated", dict(action="store_true",
                      help="this process times one backend (gdbench run starts one per "
                           "backend): record machine_info without importing the other "
                           "backends' libraries")),
    ("workload-def", dict(action="append", default=None, metavar="NAME=JSON",
                          dest="workload_defs",
                          help="a workload of the user's, to time by NAME with --workloads: "
                               "its definition as JSON, the keys of a table "
                               "[tool.gdbench.workloads.NAME] in pyproject.toml (gdbench run "
                               "passes the user's this way); repeat for more")),
]


def taken(parser: Any) -> set[str]:
    """The option strings registered with pytest's ``parser`` so far."""
    groups = [*getattr(parser, "_groups", []), getattr(parser, "_anonymous", None)]
    return {name for group in groups for option in getattr(group, "options", [])
            for name in option.names()}


def registered(parser: Any) -> bool:
    """Whether the suite's options are registered already (by this plugin)."""
    return f"{PREFIX}quick" in taken(parser)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register every option as --gdbench-NAME, and as --NAME unless that is taken."""
    group = parser.getgroup(*GROUP)
    busy = taken(parser)
    for name, kwargs in OPTIONS:
        spellings = [f"{PREFIX}{name}"]
        if f"--{name}" not in busy:
            spellings.append(f"--{name}")
        group.addoption(*spellings, **{"dest": name.replace("-", "_"), **kwargs})
