"""The suite's pytest plugin (benches/plugin.py): its options parse wherever pytest starts.

The subprocess tests load the plugin with ``-p gdbench.benches.plugin`` and switch off
the entry points (PYTEST_DISABLE_PLUGIN_AUTOLOAD), so they test this tree's plugin whether
or not the installed gdbench registers its pytest11 entry point yet. They only collect,
or run a user's own trivial test: nothing is timed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gdbench.benches import plugin

ROOT = Path(__file__).resolve().parents[1]


class _Group:
    """pytest's option group, adding each option to a real argparse parser."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(exit_on_error=False)
        self.options: list[Any] = []

    def addoption(self, *names: str, **kwargs: Any) -> None:
        self.parser.add_argument(*names, **kwargs)
        self.options.append(SimpleNamespace(names=lambda names=names: list(names)))


def _parser(taken: tuple[str, ...] = ()) -> Any:
    """A pytest parser as the plugin uses it; ``taken``: another plugin's options."""
    other = _Group()
    for name in taken:
        other.addoption(name, action="store_true", dest=f"other_{name.strip('-')}")
    groups: dict[tuple[str, str], _Group] = {}
    parser = SimpleNamespace(getgroup=lambda *name: groups.setdefault(name, _Group()),
                             _groups=[other], _anonymous=None, groups=groups)
    return parser


def test_every_option_has_a_prefixed_spelling_and_keeps_its_old_one() -> None:
    parser = _parser()
    plugin.pytest_addoption(parser)
    group = parser.groups[plugin.GROUP].parser
    old = vars(group.parse_args(["--quick", "--backends", "numpy", "jax", "--threads", "1"]))
    new = vars(group.parse_args(["--gdbench-quick", "--gdbench-backends", "numpy", "jax",
                                 "--gdbench-threads", "1"]))
    assert old == new
    assert old["quick"] is True and old["backends"] == ["numpy", "jax"] and old["threads"] == 1
    assert plugin.registered(SimpleNamespace(_groups=list(parser.groups.values())))


def test_an_old_spelling_another_plugin_took_is_left_to_it() -> None:
    parser = _parser(taken=("--quick", "--threads"))
    plugin.pytest_addoption(parser)  # no argparse conflict
    group = parser.groups[plugin.GROUP].parser
    assert vars(group.parse_args(["--gdbench-quick"]))["quick"] is True
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        group.parse_args(["--quick"])  # ours has no --quick: the other plugin's it is
    assert vars(group.parse_args(["--backends", "numpy"]))["backends"] == ["numpy"]


def _pytest(*args: str, cwd: Path, plugin_loaded: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    loaded = ["-p", "gdbench.benches.plugin"] if plugin_loaded else []
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "pytest_benchmark.plugin",
                           *loaded, "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_options_parse_from_the_repository_root() -> None:
    """From the root, with no folder named, pytest reads the suite's conftest too late for
    its options; the plugin registers them first."""
    args = ("--collect-only", "-q", "-o", "testpaths=benches", "--quick", "--backends", "numpy",
            "jax", "--workloads", "crops")
    without = _pytest(*args, cwd=ROOT, plugin_loaded=False)
    assert without.returncode != 0 and "unrecognized arguments" in without.stderr
    done = _pytest(*args, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bench_training[crops-numpy]" in done.stdout
    assert "bench_training[crops-jax]" in done.stdout
    assert "crops-torch" not in done.stdout and "small" not in done.stdout


def test_the_suite_collects_with_the_plugin_and_its_conftest_both_loaded() -> None:
    """benches/ named on the command line: the conftest sees the plugin's options and does
    not register them twice; the prefixed spellings select as the old ones do."""
    done = _pytest(str(ROOT / "benches"), "--collect-only", "-q", "--gdbench-backends",
                   "numpy", "--gdbench-workloads", "small", "--gdbench-roofline", "without",
                   cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bench_training[small-numpy]" in done.stdout and "roofline" not in done.stdout
    conftest_only = _pytest(str(ROOT / "benches"), "--collect-only", "-q", "--backends",
                            "numpy", "--workloads", "small", cwd=ROOT, plugin_loaded=False)
    assert conftest_only.returncode == 0, conftest_only.stdout + conftest_only.stderr
    assert "bench_training[small-numpy]" in conftest_only.stdout


def test_the_options_do_not_get_in_the_way_of_a_users_own_tests(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(
        "def test_mine(pytestconfig):\n"
        "    assert pytestconfig.getoption('quick') is True\n"
        "    assert pytestconfig.getoption('backends') == ['numpy']\n")
    done = _pytest("test_mine.py", "-q", "--quick", "--backends", "numpy", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
