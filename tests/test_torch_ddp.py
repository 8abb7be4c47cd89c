"""torch-ddp's ranks: started once and kept, the same weights on every rank, the loop
without its collective, and faults. A rank that raises, exits or hangs ends the run with
one line naming it, and no rank process outlives its pool or the process that started
it. Real ranks (gloo on the CPU, world 2), small problems; the faults are the pool's test
hook (``fault=(rank, kind)``), which makes that rank raise, exit or hang on its first run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gdbench.data.datasets import load_dataset
from gdbench.data.workloads import Problem, make_problem
from gdbench.implementations import rank_pool
from gdbench.implementations.base import agreement, prepare, train_once

torch_ddp = pytest.importorskip("gdbench.implementations.torch_ddp")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the orphan checks read /proc")


def crops(batch_size: int = 3, epochs: int = 5, dtype: str = "float32") -> Problem:
    return make_problem("crops", load_dataset("crops", dtype=dtype), batch_size=batch_size,
                        epochs=epochs, lr=1e-6)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ranks_of(parent: int) -> list[int]:
    """The live rank processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"rank_main" in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def gone(pids: list[int], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_ranks_start_once_and_serve_every_later_prepare() -> None:
    first = prepare("torch-ddp", crops())
    second = prepare("torch-ddp", crops(batch_size=7))
    assert first.state.pool is second.state.pool  # one pool per process and settings
    pids = first.state.pool.pids
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    assert set(pids) <= set(ranks_of(os.getpid()))
    first.run()
    second.run()
    assert first.result().steps == 25 and second.result().steps == 15


def test_the_world_comes_from_gdbench_world(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDBENCH_WORLD", "3")
    backend = torch_ddp.cpu()
    assert backend.world == 3
    problem = crops(batch_size=7, dtype="float64")  # 7 = 3 + 2 + 2 rows; the tail's 1 + 0 + 0
    prepared = prepare(backend, problem)
    assert len(prepared.state.pool.pids) == 3
    prepared.run()
    reference, *_ = train_once("numpy", problem)
    assert agreement(prepared.result(), reference, "float64")[2]


def test_the_loop_without_its_collective_leaves_the_trained_weights_alone() -> None:
    problem = crops()
    prepared = prepare("torch-ddp", problem)
    prepared.run()
    trained = prepared.result()
    prepared.backend.run_compute_only(prepared.state)  # type: ignore[attr-defined]
    again = prepared.result()
    np.testing.assert_array_equal(trained.W, again.W)
    reference, *_ = train_once("numpy", problem)
    assert agreement(again, reference, "float32")[2]


def test_result_before_run_is_refused() -> None:
    prepared = prepare("torch-ddp", crops())
    with pytest.raises(AssertionError, match="run"):
        prepared.result()


FAULTS = {
    "raise": "torch-ddp: rank 1 of 2 raised during a run: RuntimeError: a fault injected by "
             "a test; its ranks were stopped",
    "exit": "torch-ddp: rank 1 of 2 died during a run (exit code 3); its ranks were stopped",
    "hang": "torch-ddp: rank 1 of 2 hung during a run: it did not answer while rank 0 waited "
            "in a collective for the process group's timeout of 2 s; its ranks were stopped",
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_a_rank_that_raises_exits_or_hangs_ends_the_run_with_one_line_and_no_orphan(
        kind: str) -> None:
    backend = torch_ddp.TorchDDP("cpu", 2, timeout_s=2.0, fault=(1, kind))
    prepared = prepare(backend, crops())
    pool = prepared.state.pool
    pids = pool.pids
    start = time.monotonic()
    with pytest.raises(rank_pool.RankError) as info:
        prepared.run()
    # The raise and the exit are seen at once; the hang after the group's timeout (2 s)
    # and the grace given to the other ranks' answers (2 s). Generous, on a shared CPU.
    assert time.monotonic() - start < (2.0 + rank_pool.GRACE_S + 10 if kind == "hang" else 10)
    assert str(info.value) == FAULTS[kind]
    assert "\n" not in str(info.value)
    assert pool.closed
    assert gone(pids)
    assert not set(pids) & set(ranks_of(os.getpid()))
    with pytest.raises(rank_pool.RankError, match="stopped by an earlier fault"):
        prepared.run()  # the pool is closed for good


def test_a_fault_in_the_cli_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    # The CLI has no fault hook: a rank killed from outside while the run waits on it.
    script = textwrap.dedent("""
        import os, signal, sys, threading
        from gdbench.commands import cli
        from gdbench.implementations import torch_ddp

        pool = torch_ddp._pool("cpu", 2, 1, torch_ddp.TIMEOUT_S)
        victim = pool.pids[1]
        real_ask = pool.ask

        def ask(message, during="during a run"):
            if message[0] == "run":
                threading.Timer(0.2, os.kill, (victim, signal.SIGKILL)).start()
            return real_ask(message, during)

        pool.ask = ask
        sys.exit(cli.main(["train", "--backend", "torch-ddp", "--epochs", "2000"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("gdbench train: error: torch-ddp: rank 1 of 2 died during a run "
                           "(killed by SIGKILL); its ranks were stopped\n")


def test_the_ranks_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, sys, time
        from gdbench.implementations.base import prepare
        from gdbench.data.workloads import WORKLOADS
        prepared = prepare("torch-ddp", WORKLOADS["crops"].build())
        print(" ".join(str(p) for p in prepared.state.pool.pids), flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        os.kill(proc.pid, signal.SIGKILL)  # no atexit, no finally: the kernel's notice only
        proc.wait(timeout=10)
        assert gone(pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_no_rank_outlives_its_pool() -> None:
    # Last in this file: every pool this process started, closed as at its exit.
    assert rank_pool._LIVE  # the cached pool of the tests above
    pids = [pid for pool in list(rank_pool._LIVE) for pid in pool.pids]
    rank_pool._close_all()
    assert not rank_pool._LIVE
    assert gone(pids)
    assert ranks_of(os.getpid()) == []
