"""gdbench run's --executor options (commands/executors.py): which executor they make and
with what, and the one-line refusal of an option of another executor. The engines are
stand-ins here; the real ones run in test_cluster.py and test_slurm.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from gdbench.commands import executors
from gdbench.commands import run as run_command
from gdbench.commands.cli import main
from gdbench.data.errors import InputError
from gdbench.harness import cluster, dask_executor, slurm_executor


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_default_executor_is_this_machine() -> None:
    chosen = executors.from_args(_parse())
    assert isinstance(chosen, cluster.LocalMatrix) and chosen.where == cluster.HERE
    # A Namespace built by hand, without the executor options, runs here too.
    assert isinstance(executors.from_args(argparse.Namespace()), cluster.LocalMatrix)


def test_dask_connects_to_the_scheduler_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dask_executor, "connect", lambda address: ("connected", address))
    assert executors.from_args(_parse("--executor", "dask", "--scheduler", "tcp://h:8786")) \
        == ("connected", "tcp://h:8786")
    assert executors.from_args(_parse("--executor", "dask")) == ("connected", None)


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Path]]:
    made: list[tuple[Any, Path]] = []

    def engine(options: Any, folder: Path) -> str:
        made.append((options, folder))
        return "engine"

    monkeypatch.setattr(slurm_executor, "slurm_engine", engine)
    return made


def test_slurm_gets_every_option_and_a_folder_per_job(engines: list[tuple[Any, Path]]) -> None:
    chosen = executors.from_args(_parse(
        "--executor", "slurm", "--slurm-partition", "gpu", "--slurm-time", "1:30:00",
        "--slurm-gres", "gpu:1", "--slurm-account", "lab"))
    assert engines == [(slurm_executor.SlurmOptions("gpu", 90, "gpu:1", "lab"),
                        Path("results/slurm/%j"))]
    assert isinstance(chosen, slurm_executor.SlurmExecutor)
    assert chosen.engine == "engine" and chosen.where == "SLURM gpu"


def test_slurm_without_options_takes_the_default_partition_and_time(
        engines: list[tuple[Any, Path]]) -> None:
    chosen = executors.from_args(_parse("--executor", "slurm"))
    assert engines[0][0] == slurm_executor.SlurmOptions(
        None, slurm_executor.DEFAULT_TIME_MIN, None, None)
    assert chosen.where == "SLURM (the default partition)"


@pytest.mark.parametrize(("argv", "line"), [
    (["--scheduler", "tcp://h:1"], "--scheduler is an option of --executor dask"),
    (["--executor", "slurm", "--scheduler", "tcp://h:1"],
     "--scheduler is an option of --executor dask"),
    (["--slurm-partition", "p"], "--slurm-partition is an option of --executor slurm"),
    (["--executor", "dask", "--slurm-gres", "gpu:1"],
     "--slurm-gres is an option of --executor slurm"),
    (["--slurm-account", "a"], "--slurm-account is an option of --executor slurm"),
    (["--slurm-time", "10"], "--slurm-time is an option of --executor slurm"),
])
def test_an_option_of_another_executor_is_refused_by_name(argv: list[str], line: str) -> None:
    with pytest.raises(InputError) as refused:
        executors.from_args(_parse(*argv))
    assert str(refused.value) == line


def test_a_bad_slurm_time_is_argparses_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--slurm-time", "1h"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gdbench run: error: argument --slurm-time: not a SLURM time limit: '1h' "
                   "(minutes, H:MM:SS or D-HH:MM:SS) (see gdbench run --help)"]
