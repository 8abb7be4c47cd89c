"""scripts/mutate.py, the mutation testing behind `make mutate`: its verdicts on a small
module and its tests (a real run, in a throwaway repository), the survivors file it saves
and reads back, and how it picks the tests that reach a mutated line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module() -> Any:
    name = "gdbench_scripts_mutate"
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "mutate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # where its dataclass looks up its annotations
    spec.loader.exec_module(module)
    return module


mutate = _module()

CALC = '''\
def add(a, b):
    return a + b


def sign(x):
    if x > 0:
        return 1
    return -1
'''
# sign is tested on one positive number only: the mutants of its comparison and of its
# negative branch survive.
WEAK = '''\
from calc import add, sign


def test_add():
    assert add(2, 3) == 5


def test_sign():
    assert sign(5) == 1
'''
STRONG = WEAK + '''

def test_sign_at_and_below_zero():
    assert sign(0) == -1 and sign(-3) == -1
'''


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "calc.py").write_text(CALC)
    (tmp_path / "tests" / "test_calc.py").write_text(WEAK)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.setattr(mutate, "ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_module_is_scored_then_its_survivors_rechecked(repo: Path, capsys) -> None:
    assert [m.added for m in mutate.every_mutant("calc.py", CALC)] == [
        "return a - b", "if x >= 0:", "if x > 1:", "return 2", "return +1", "return -2"]
    out = repo / "build" / "calc.txt"
    assert mutate.main(["calc.py", "tests/test_calc.py", "--jobs", "2", "--out", str(out)]) == 0
    verdicts = dict(line.split()[1:3] for line in capsys.readouterr().out.splitlines()
                    if line.startswith("mutant"))
    assert verdicts == {"1": "killed", "2": "SURVIVED", "3": "SURVIVED", "4": "killed",
                        "5": "SURVIVED", "6": "SURVIVED"}
    text = out.read_text()
    assert text.splitlines()[0] == "calc.py: 2 of 6 mutants caught (33.3%)"
    left = mutate.survivors(text)
    assert [m.id for m in left] == ["2", "3", "5", "6"]
    assert [m.added for m in left] == ["if x >= 0:", "if x > 1:", "return +1", "return -2"]
    assert (repo / "calc.py").read_text() == CALC  # the mutants ran in a copy

    # Tests aimed at the survivors: the recheck runs only them, and catches 3 of 4
    # (-1 and +1 differ; x > 1 still agrees with x > 0 on 0, -3 and 5).
    (repo / "tests" / "test_calc.py").write_text(STRONG)
    assert mutate.main([str(out), "tests/test_calc.py"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[1:3] for line in lines if line.startswith("mutant")) == [
        ["2", "killed"], ["3", "SURVIVED"], ["5", "killed"], ["6", "killed"]]
    assert lines[-1] == f"{out}: 3 of 4 mutants caught (75.0%)"
    # --mutants: only those named.
    assert mutate.main([str(out), "tests/test_calc.py", "--mutants", "3,5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("mutant")] in (
        ["3", "5"], ["5", "3"])


LEANING = '''\
from calc import add, sign

SEEN = {}


def test_add():
    SEEN["sum"] = add(2, 3)
    assert SEEN["sum"] == 5


def test_sign_after_test_add():
    assert SEEN["sum"] == 5 and sign(5) == 1
'''


def test_a_test_that_leans_on_another_catches_nothing_alone(repo: Path, capsys) -> None:
    """The only test that reaches sign fails when run without the test before it: what
    it seemed to catch is run again against every test, and the verdicts are WEAK's."""
    (repo / "tests" / "test_calc.py").write_text(LEANING)
    assert mutate.main(["calc.py", "tests/test_calc.py", "--jobs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ("mutate: tests/test_calc.py::test_sign_after_test_add fails alone on the "
            "unmutated code; the 5 mutants it caught run again against every test") in lines
    final = dict(line.split()[1:3] for line in lines if line.startswith("mutant"))
    assert final == {"1": "killed", "2": "SURVIVED", "3": "SURVIVED", "4": "killed",
                     "5": "SURVIVED", "6": "SURVIVED"}


def test_tests_that_fail_unmutated_stop_the_run(repo: Path) -> None:
    (repo / "tests" / "test_calc.py").write_text(WEAK + "\n\ndef test_bad():\n    assert 0\n")
    with pytest.raises(SystemExit, match="the tests fail before any mutation"):
        mutate.main(["calc.py", "tests/test_calc.py", "--jobs", "1"])


def test_a_missing_file_is_refused(repo: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        mutate.main(["nothing.py", "tests/test_calc.py"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "mutate: no file nothing.py\n"


def test_the_tests_that_reach_a_mutated_line() -> None:
    source = CALC + "\nLIMIT = sign(2)\n"
    by_line = {2: {"t::add"}, 6: {"t::sign", "t::both"}, 7: {"t::sign"}, 8: {"t::neg"}}
    order = ["t::add", "t::sign", "t::both", "t::neg", "t::other"]
    # The function around the line, every line of it, in the tests' order.
    assert mutate.reaching(source, 7, by_line, order) == ["t::sign", "t::both", "t::neg"]
    assert mutate.reaching(source, 2, by_line, order) == ["t::add"]
    # At module level, or in a function some line of which ran outside every test (at
    # import), or that every test ran, or none: every test decides (an empty list).
    assert mutate.reaching(source, 10, by_line, order) == []
    assert mutate.reaching(source, 7, {**by_line, 8: {"", "t::neg"}}, order) == []
    assert mutate.reaching(source, 2, {2: set(order)}, order) == []
    assert mutate.reaching(source, 2, {}, order) == []


def test_the_line_a_diff_changes_and_the_function_around_it() -> None:
    (first, *_) = mutate.every_mutant("calc.py", CALC)
    assert mutate.changed_line(first.diff) == 2
    assert [mutate.changed_line(m.diff) for m in mutate.every_mutant("calc.py", CALC)] == [
        2, 6, 6, 7, 8, 8]
    with pytest.raises(ValueError):
        mutate.changed_line("--- a\n+++ a\n@@ -1,1 +1,2 @@\n x\n+y\n")
    nested = "def outer():\n    def inner():\n        return 1\n    return inner\n"
    # The body only: a def line runs at import.
    assert mutate.function_lines(nested, 3) == range(3, 4)
    assert mutate.function_lines(nested, 2) == range(3, 4)
    assert mutate.function_lines(nested, 1) == range(2, 5)
    assert mutate.function_lines(nested, 4) == range(2, 5)
    assert mutate.function_lines("X = 1\n", 1) is None
