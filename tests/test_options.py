"""The option types and the user's own problem shared by the commands (commands/options.py):
every value refused in the words the user reads, and the workload each problem makes."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from gdbench.commands import options
from gdbench.commands import run as run_command
from gdbench.data.errors import InputError
from gdbench.implementations.data_parallel import WORLD_ENV


@pytest.mark.parametrize(("text", "message"), [
    ("two", "expected a positive integer, got 'two'"), ("1.5", "expected a positive "
                                                        "integer, got '1.5'"),
    ("0", "must be a positive integer, got 0"), ("-3", "must be a positive integer, got -3")])
def test_a_positive_integer_is_refused_in_words(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        options.positive_int(text)
    assert str(refused.value) == message


def test_a_positive_integer_starts_at_one() -> None:
    assert options.positive_int("1") == 1 and options.positive_int("12") == 12


@pytest.mark.parametrize(("text", "message"), [
    ("fast", "expected a positive number, got 'fast'"),
    ("0", "must be a positive finite number, got 0"),
    ("-0.5", "must be a positive finite number, got -0.5"),
    ("nan", "must be a positive finite number, got nan"),
    ("inf", "must be a positive finite number, got inf")])
def test_a_positive_number_is_refused_in_words(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        options.positive_float(text)
    assert str(refused.value) == message


def test_a_positive_number_may_be_tiny() -> None:
    assert options.positive_float("1e-9") == 1e-9


@pytest.mark.parametrize("before", [None, "5"])
def test_the_world_is_set_inside_the_block_and_put_back_after(
        before: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if before is None:
        monkeypatch.delenv(WORLD_ENV, raising=False)
    else:
        monkeypatch.setenv(WORLD_ENV, before)
    with options.world_env(3):
        assert os.environ[WORLD_ENV] == "3"
    assert os.environ.get(WORLD_ENV) == before
    with pytest.raises(RuntimeError), options.world_env(4):
        raise RuntimeError  # put back on the way out of an error too
    assert os.environ.get(WORLD_ENV) == before
    with options.world_env(None):  # no world given: nothing set
        assert os.environ.get(WORLD_ENV) == before


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(("argv", "message"), [
    (["--lr", "0.1"], "--lr describes your own problem: give --shape N,D,K or --data PATH "
                      "with it"),
    (["--standardize"], "--standardize describes your own problem: give --shape N,D,K or "
                        "--data PATH with it"),
    (["--shape", "8,2,1", "--data", "x.csv", "--batch", "2"],
     "give --shape (synthetic data) or --data (a CSV file), not both"),
    (["--data", "x.csv"], "--batch B is needed with --shape or --data"),
    (["--shape", "8,2,1", "--batch", "2", "--standardize"],
     "--targets and --standardize go with --data, not --shape"),
    (["--shape", "8,2,1", "--batch", "2", "--targets", "y"],
     "--targets and --standardize go with --data, not --shape"),
    (["--shape", "8,2,1", "--batch", "2", "--seed", "-1"],
     "--shape: seed must be an integer of 0 or more, got -1"),
])
def test_the_users_problem_is_refused_in_one_line_naming_what_to_give(
        argv: list[str], message: str) -> None:
    with pytest.raises(InputError) as refused:
        options.own_workload(_args(*argv))
    assert str(refused.value) == message


def test_no_problem_of_ones_own_is_none() -> None:
    assert options.own_workload(_args()) is None
    assert options.own_workload(argparse.Namespace()) is None  # a command without them


def _csv(path: Path) -> Path:
    path.write_text("a,b,y\n1,2,3\n4,5,6\n7,8,9\n")
    return path


@pytest.mark.parametrize("standardize", [False, True])
def test_a_csv_problem_is_named_by_its_file_and_says_whether_it_is_standardized(
        tmp_path: Path, standardize: bool) -> None:
    data = _csv(tmp_path / "farm 2024(v2)_x.y-z.csv")
    argv = ["--data", str(data), "--targets", "y", "--batch", "2"]
    workload = options.own_workload(_args(*argv, *(["--standardize"] * standardize)))
    assert workload is not None
    assert workload.name == "farm-2024-v2-_x.y-z-b2-e1"  # every other character a dash
    args = _args(*argv, *(["--standardize"] * standardize))
    options.resolve_workloads(args)
    (name, text), = args.definitions
    raw = json.loads(text)
    assert name == workload.name and raw["standardize"] is standardize
    assert raw["targets"] == ["y"] and raw["batch_size"] == 2 and raw["epochs"] == 1


def test_a_missing_csv_is_named_by_the_option_that_gave_it(tmp_path: Path) -> None:
    bad = tmp_path / "missing.csv"
    with pytest.raises(InputError) as refused:
        options.own_workload(_args("--data", str(bad), "--batch", "2"))
    assert str(refused.value).startswith(f"--data: {bad}")
