"""How the suite measures a data-parallel backend's collective: the loop with and without
it timed in turns of blocks, and the difference of their medians. A fake clock (advanced by the
fake backend's calls) and fake settings stand in for time and pytest-benchmark's flags;
--world reaches the backends through GDBENCH_WORLD and is put back afterwards."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest

from gdbench.benches.bench_training import _collective_cost
from gdbench.commands.cli import build_parser
from gdbench.commands.options import world_env
from gdbench.harness import timing
from gdbench.implementations.data_parallel import WORLD_ENV


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now


def test_turns_alternate_the_functions_after_one_untimed_call_each() -> None:
    clock = Clock()

    def call(name: str, seconds: float) -> Any:
        def fn() -> None:
            clock.calls.append(name)
            clock.now += seconds
        return fn

    a, b = timing.turns([call("A", 2.0), call("B", 0.5)], rounds=3, iterations=2, clock=clock)
    assert clock.calls == ["A", "B"] + ["A", "A", "B", "B"] * 3
    assert a == [2.0] * 3 and b == [0.5] * 3  # seconds per run, not per round


def fake_data_parallel(clock: Clock, run_s: list[float], alone_s: list[float]) -> Any:
    """A prepared data-parallel backend whose runs take the given seconds, in turn."""
    runs, alones = iter(run_s), iter(alone_s)

    def run() -> None:
        clock.now += next(runs)

    def run_compute_only(state: Any) -> None:
        clock.now += next(alones)

    backend = SimpleNamespace(world=2, single_process="torch-cpu",
                              run_compute_only=run_compute_only)
    return SimpleNamespace(backend=backend, state=None, run=run)


def test_turns_in_blocks_call_each_function_untimed_before_its_block() -> None:
    clock = Clock()

    def call(name: str, seconds: float) -> Any:
        def fn() -> None:
            clock.calls.append(name)
            clock.now += seconds
        return fn

    a, b = timing.turns([call("A", 2.0), call("B", 0.5)], rounds=2, iterations=1,
                        clock=clock, block=3)
    assert clock.calls == (["A"] * 4 + ["B"] * 4) * 2  # one untimed call, three timed
    assert a == [2.0] * 6 and b == [0.5] * 6


def test_the_collective_is_the_difference_of_the_medians_per_step() -> None:
    clock = Clock()
    # Two turns of a block of five after an untimed call each (the 9 s calls): a run right
    # after a switch would be slow, so it is never timed.
    full = [9.0, 0.010, 0.012, 0.020, 0.011, 0.010, 9.0, 0.012, 0.011, 0.013, 0.010, 0.012]
    alone = [9.0, 0.004, 0.005, 0.004, 0.004, 0.006, 9.0, 0.004, 0.005, 0.004, 0.004, 0.004]
    prepared = fake_data_parallel(clock, full, alone)
    settings = SimpleNamespace(min_rounds=3, plan=lambda run, ref: timing.RoundPlan(4, 1, 1))
    info = _collective_cost(prepared, settings, steps=100, clock=clock)
    assert info["world"] == 2 and info["single_process"] == "torch-cpu"
    assert info["compute_only_data"] == pytest.approx([x for x in alone if x < 1])
    assert info["compute_only_step_us"] == pytest.approx(0.004 / 100 * 1e6)
    # Medians 0.0115 and 0.004: the difference, per step.
    assert info["collective_step_us"] == pytest.approx(0.0075 / 100 * 1e6)
    assert info["collective_full_step_us"] == pytest.approx(0.0115 / 100 * 1e6)


def test_untimed_it_runs_the_compute_only_loop_once_and_records_no_figure() -> None:
    clock = Clock()
    prepared = fake_data_parallel(clock, [], [0.001])
    info = _collective_cost(prepared, SimpleNamespace(), steps=10, timed=False, clock=clock)
    assert info == {"world": 2, "single_process": "torch-cpu"}
    assert clock.now == pytest.approx(0.001)


def test_world_env_sets_gdbench_world_inside_the_block_and_puts_it_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORLD_ENV, "5")
    with world_env(3):
        assert os.environ[WORLD_ENV] == "3"
    assert os.environ[WORLD_ENV] == "5"
    monkeypatch.delenv(WORLD_ENV)
    with world_env(4):
        assert os.environ[WORLD_ENV] == "4"
    assert WORLD_ENV not in os.environ
    with world_env(None):
        assert WORLD_ENV not in os.environ


@pytest.mark.parametrize("command", ["train", "verify", "run", "audit"])
def test_world_is_an_option_of_the_commands_that_train(command: str) -> None:
    parser = build_parser()
    assert parser.parse_args([command, "--world", "3"]).world == 3
    assert parser.parse_args([command]).world is None
    with pytest.raises(SystemExit) as info:
        parser.parse_args([command, "--world", "0"])
    assert info.value.code == 2
