"""The rank pool's verdicts and environment, without starting a rank: which rank a fault
is blamed on, and what a rank's process is given. (Ranks that really raise, die or hang
are in tests/test_torch_ddp.py.)"""

from __future__ import annotations

import os
import sys

import pytest

import gdbench
from gdbench.implementations.rank_pool import Faults, blame, rank_env


def _blame(**faults: object) -> str:
    return blame(Faults(**faults), "torch-ddp", 2, 30.0, "during a run")  # type: ignore[arg-type]


def test_a_rank_that_raised_is_blamed_before_the_peers_it_left_waiting() -> None:
    line = _blame(raised={1: "RuntimeError: boom"},
                  collective={0: "DistBackendError: Connection closed by peer"})
    assert line == "torch-ddp: rank 1 of 2 raised during a run: RuntimeError: boom"


def test_a_rank_that_died_is_blamed_before_the_peer_whose_collective_failed() -> None:
    line = _blame(died={1: "exit code 3"}, collective={0: "DistBackendError: closed"})
    assert line == "torch-ddp: rank 1 of 2 died during a run (exit code 3)"


def test_a_silent_rank_is_named_hung_with_the_group_timeout() -> None:
    line = _blame(collective={0: "DistBackendError: timed out"}, silent=[1])
    assert line == ("torch-ddp: rank 1 of 2 hung during a run: it did not answer while rank 0 "
                    "waited in a collective for the process group's timeout of 30 s")


def test_ranks_that_never_answered_are_named_without_a_collective_to_blame() -> None:
    assert _blame(silent=[0, 1]) == "torch-ddp: rank 0 of 2 did not answer during a run"


def test_collective_errors_alone_name_the_first_rank_and_the_error() -> None:
    line = _blame(collective={1: "DistBackendError: b", 0: "DistBackendError: a"})
    assert line == "torch-ddp: rank 0 of 2: a collective failed during a run: DistBackendError: a"


def test_faults_are_decided_once_a_rank_raised_or_died() -> None:
    assert not Faults()
    assert Faults(collective={0: "x"}) and not Faults(collective={0: "x"}).decided
    assert Faults(raised={0: "x"}).decided and Faults(died={1: "x"}).decided


def test_a_rank_gets_its_threads_gdbench_on_its_path_and_gloo_on_loopback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    env = rank_env(3)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    root = os.path.dirname(os.path.dirname(os.path.abspath(gdbench.__file__)))
    assert env["PYTHONPATH"].split(os.pathsep) == [root, "/elsewhere"]
    if sys.platform.startswith("linux"):
        assert env["GLOO_SOCKET_IFNAME"] == "lo"
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth7")  # the user's choice is kept
    assert rank_env(1)["GLOO_SOCKET_IFNAME"] == "eth7"
