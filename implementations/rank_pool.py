"""Rank processes for a data-parallel backend: started once, then told what to do.

The benchmark process never joins the process group. A :class:`Pool` starts ``world``
rank processes, each with its thread settings in its environment before anything is
imported, and keeps them for the life of the process: ``prepare`` loads a problem into
them, ``run`` sends each the same command and returns when every rank has answered. A
rank answers after its loop's last collective, so the answers are the barrier, and the
caller's clock (the suite's timer, in the benchmark process) times the whole loop across
ranks. Starting the ranks takes seconds (Python, then the library), paid once.

Faults end the run, and the pool with it, with one line naming the rank
(:class:`RankError`):

- a rank that raises answers with its error, which is reported at once;
- a rank that dies closes its connection, which is reported at once, with its exit code;
- a rank that hangs leaves its peers waiting in a collective until the process group's
  timeout (``timeout_s``); they answer with that error, and a rank that is still silent
  :data:`GRACE_S` later is named as hung.

Then every rank is stopped: asked by closing its connection, terminated, killed. A rank
also dies with the benchmark process (``PR_SET_PDEATHSIG`` on Linux; elsewhere when its
connection closes), so that no rank outlives it.

The rank side is :func:`rank_main`: once every rank has started, each builds the
backend's handler (which joins the process group; an object whose methods are the
commands) and answers each message ``(command, *args)`` with ``("ok", value)`` or
``("error", text, collective)``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import gdbench
from gdbench.data.errors import InputError

GRACE_S = 2.0  # after a collective error, how long the other ranks have to answer
START_S = 180.0  # how long ranks have to import their library and join the group
STOP_S = 5.0  # how long a rank has to exit once asked, before it is terminated, then killed
FAULTS = ("raise", "exit", "hang")  # what a test can make a rank do on its first run


class CollectiveError(RuntimeError):
    """A collective failed or timed out in this rank: raised by the backend around its
    collectives (gloo reports a timeout as a plain RuntimeError), so that the rank at
    fault is told apart from the peers left waiting on it."""


class RankError(InputError):
    """A rank raised, died or hung: the run is over and its pool is closed. An InputError
    so that the CLI reports it as the one line it is, like a divergence."""


@dataclass
class _Rank:
    rank: int
    proc: subprocess.Popen[bytes]
    conn: Connection
    stderr: Path

    def exit_code(self, timeout_s: float = STOP_S) -> int | None:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def last_error_line(self) -> str:
        try:
            lines = self.stderr.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""


@dataclass
class Faults:
    """What went wrong in one exchange with the ranks, by rank."""

    raised: dict[int, str] = field(default_factory=dict)  # its own error (not a collective's)
    collective: dict[int, str] = field(default_factory=dict)  # a collective failed or timed out
    died: dict[int, str] = field(default_factory=dict)  # how it ended
    silent: list[int] = field(default_factory=list)  # no answer at all

    def __bool__(self) -> bool:
        return bool(self.raised or self.collective or self.died or self.silent)

    @property
    def decided(self) -> bool:
        """A rank raised or died: the others are only waiting on it, no need to wait more."""
        return bool(self.raised or self.died)


def blame(faults: Faults, label: str, world: int, timeout_s: float, during: str) -> str:
    """One line naming the rank at fault: one that raised, else one that died, else one
    that stayed silent while its peers' collective timed out, else the first collective
    error."""
    who = f"{label}: rank {{}} of {world}"
    if faults.raised:
        rank, text = min(faults.raised.items())
        return f"{who.format(rank)} raised {during}: {text}"
    if faults.died:
        rank, how = min(faults.died.items())
        return f"{who.format(rank)} died {during} ({how})"
    if faults.silent:
        rank = faults.silent[0]
        if faults.collective:
            waiting = ", ".join(str(r) for r in sorted(faults.collective))
            return (f"{who.format(rank)} hung {during}: it did not answer while rank "
                    f"{waiting} waited in a collective for the process group's timeout "
                    f"of {timeout_s:g} s")
        return f"{who.format(rank)} did not answer {during}"
    rank, text = min(faults.collective.items())
    return f"{who.format(rank)}: a collective failed {during}: {text}"


def _how_it_ended(rank: _Rank) -> str:
    code = rank.exit_code()
    if code is None:
        how = "its connection closed"
    elif code < 0:
        how = f"killed by {signal.Signals(-code).name}"
    else:
        how = f"exit code {code}"
    last = rank.last_error_line()
    return f"{how}: {last}" if last else how


_LIVE: weakref.WeakSet[Pool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_LIVE):
        pool.close()


class Pool:
    """``world`` rank processes running ``entry`` ("module:function", see
    :func:`rank_main`) with ``threads`` threads each, in a process group whose
    collectives time out after ``timeout_s`` seconds. ``fault`` (tests only) makes one
    rank raise, exit or hang on its first run: (rank, kind)."""

    def __init__(self, label: str, entry: str, world: int, *, timeout_s: float,
                 threads: int = 1, args: Sequence[str] = (),
                 fault: tuple[int, str] | None = None) -> None:
        self.label, self.world, self.timeout_s = label, world, timeout_s
        self.closed = False
        self._dir = Path(tempfile.mkdtemp(prefix="gdbench-ranks-"))
        self._ranks: list[_Rank] = []
        _LIVE.add(self)
        try:
            for rank in range(world):
                self._ranks.append(self._start(rank, entry, threads, args, fault))
            # Two steps, so that the group's rendezvous starts when every rank has its
            # library loaded (which takes seconds) and only takes the group's timeout.
            self._gather(deadline=time.monotonic() + START_S, during="while starting")
            self.ask(("join",), during="while joining the process group")
        except BaseException:
            self.close()
            raise

    def _start(self, rank: int, entry: str, threads: int, args: Sequence[str],
               fault: tuple[int, str] | None) -> _Rank:
        ours, theirs = socket.socketpair()
        module, function = entry.split(":")
        code = f"import sys; from {module} import {function}; sys.exit({function}(sys.argv[1:]))"
        cmd = [sys.executable, "-c", code, "--rank", str(rank), "--world", str(self.world),
               "--fd", str(theirs.fileno()), "--parent", str(os.getpid()),
               "--store", str(self._dir / "store"), "--timeout", str(self.timeout_s), *args]
        if fault is not None and fault[0] == rank:
            cmd += ["--fault", fault[1]]
        stderr = self._dir / f"rank{rank}.err"
        with open(stderr, "wb") as err:
            proc = subprocess.Popen(cmd, env=rank_env(threads), stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err, pass_fds=(theirs.fileno(),))
        theirs.close()
        return _Rank(rank, proc, Connection(ours.detach()), stderr)

    def ask(self, message: tuple[Any, ...], during: str = "during a run") -> list[Any]:
        """Send every rank the same message; each rank's answer, once all have answered."""
        return self.ask_each([message] * self.world, during)

    def ask_each(self, messages: Sequence[tuple[Any, ...]],
                 during: str = "during a run") -> list[Any]:
        """Send rank r ``messages[r]``; each rank's answer, once all have answered.
        Raises RankError (and closes the pool) when a rank raised, died or hung."""
        if self.closed:
            raise RankError(f"{self.label}: its ranks were stopped by an earlier fault")
        faults = Faults()
        for rank, message in zip(self._ranks, messages, strict=True):
            try:
                rank.conn.send(message)
            except OSError:
                faults.died[rank.rank] = _how_it_ended(rank)
        if faults:
            self._fail(faults, during)
        return self._gather(None, during)

    def _gather(self, deadline: float | None, during: str) -> list[Any]:
        pending = {rank.conn: rank for rank in self._ranks}
        answers: list[Any] = [None] * self.world
        faults = Faults()
        settle_by: float | None = None
        while pending and not faults.decided:
            limits = [t for t in (deadline, settle_by) if t is not None]
            timeout = max(0.0, min(limits) - time.monotonic()) if limits else None
            ready: list[Any] = wait(list(pending), timeout)
            if not ready:
                break
            for conn in ready:
                rank = pending.pop(conn)
                try:
                    answer = rank.conn.recv()
                except (EOFError, OSError):
                    faults.died[rank.rank] = _how_it_ended(rank)
                    continue
                if answer[0] == "ok":
                    answers[rank.rank] = answer[1]
                else:
                    _, text, collective = answer
                    (faults.collective if collective else faults.raised)[rank.rank] = text
            if faults.collective and settle_by is None:
                settle_by = time.monotonic() + GRACE_S
        if faults or pending:
            faults.silent = sorted(rank.rank for rank in pending.values())
            self._fail(faults, during)
        return answers

    def _fail(self, faults: Faults, during: str) -> None:
        message = blame(faults, self.label, self.world, self.timeout_s, during)
        self.close(patient=False)
        raise RankError(message + "; its ranks were stopped")

    @property
    def pids(self) -> list[int]:
        return [rank.proc.pid for rank in self._ranks]

    def close(self, patient: bool = True) -> None:
        """Stop every rank: close its connection (an idle rank exits), then terminate
        and at last kill what is left, and wait for each. ``patient=False`` (after a
        fault, when a rank may be stuck) terminates at once."""
        if self.closed:
            return
        self.closed = True
        _LIVE.discard(self)
        for rank in self._ranks:
            rank.conn.close()
        deadline = time.monotonic() + (STOP_S if patient else 0.0)
        for rank in self._ranks:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rank.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for stop in (subprocess.Popen.terminate, subprocess.Popen.kill):
            for rank in self._ranks:
                if rank.proc.poll() is None:
                    stop(rank.proc)
            for rank in self._ranks:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    rank.proc.wait(timeout=STOP_S)
        shutil.rmtree(self._dir, ignore_errors=True)


def rank_env(threads: int) -> dict[str, str]:
    """A rank's environment: this process's, with ``threads`` threads for BLAS and
    OpenMP, gdbench importable as here, and gloo on the loopback interface (every rank
    is on this host)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(gdbench.__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    elif sys.platform == "darwin":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo0")
    return env


# --- the rank's side -------------------------------------------------------------------------

def rank_arguments(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gdbench rank")
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--parent", type=int, required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--fault", choices=FAULTS)
    args, extra = p.parse_known_args(argv)
    args.extra = extra
    return args


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this process when its parent dies, so no rank is orphaned."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _inject(kind: str) -> None:
    """The faults tests make a rank commit on its first run."""
    if kind == "raise":
        raise RuntimeError("a fault injected by a test")
    if kind == "exit":
        os._exit(3)
    while True:  # hang
        time.sleep(3600)


def rank_main(argv: Sequence[str], make_handler: Callable[[argparse.Namespace], Any],
              is_collective_error: Callable[[BaseException], bool]) -> int:
    """Serve one rank: say it has started, build its handler when told to join, then
    answer commands until the connection closes. Ctrl-C is left to the benchmark
    process, which stops the ranks."""
    args = rank_arguments(argv)
    _die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(args.fd)
    conn.send(("ok", "started"))  # the library is imported: the entry's module loaded it
    handler, fault = None, args.fault
    while True:
        try:
            command, *rest = conn.recv()
        except (EOFError, OSError):  # the benchmark process closed the pool, or died
            break
        try:
            if command == "join":  # build the handler: it joins the process group
                handler = make_handler(args)
                answer: tuple[Any, ...] = ("ok", "joined")
            else:
                if fault and command == "run":
                    kind, fault = fault, None
                    _inject(kind)
                answer = ("ok", getattr(handler, command)(*rest))
        except Exception as exc:
            collective = isinstance(exc, CollectiveError) or is_collective_error(exc)
            answer = ("error", _one_line(exc), collective)
        conn.send(answer)
    sys.stderr.flush()
    os._exit(0)  # skip the libraries' exit handlers: a peer may already be gone


def _one_line(exc: BaseException) -> str:
    """``Type: first line``; a collective's own message is kept, less a source location
    such as gloo's ``[.../unbound_buffer.cc:78]``."""
    lines = str(exc).strip().splitlines()
    text = re.sub(r"\[[^\]\s]*:\d+\]\s*", "", lines[0]) if lines else ""
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
