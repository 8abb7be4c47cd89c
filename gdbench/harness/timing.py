"""The timing core shared by the suite (benches/) and ``gdbench audit``.

How many rounds to time, how many runs go into one round, the drift reference that each
round is paired with, and the checks that a timed call really is what it claims to be.
Every function takes its clock as an argument, so tests drive it with a fake timer.

Rounds: a run shorter than the round floor is repeated inside its round, so that a round
times the loop rather than the wake-up of idle threads, yet stays short next to the
machine's speed drifts, which last seconds, so that a reference round timed just before
it sees the same machine.

The drift reference runs on one thread: numpy's BLAS is limited to one thread while it
runs. A multi-threaded reference left OpenBLAS's workers spinning after it returned, and
they took the cores from the backend timed next.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Clock = Callable[[], float]

ROUND_FLOOR_S = 0.005
# A run shorter than WARM_UP_BELOW_S gets untimed calls, at least WARM_UP_S of them, between
# its reference round and its timed round (RoundPlan.warm_ups): the reference gathers from
# numpy's copy of the dataset and evicts the backend's own copy from the cache, and wakes
# numpy rather than the backend's runtime, which a short run would pay for.
WARM_UP_BELOW_S = 0.05
WARM_UP_S = 0.01
MAX_ROUNDS = 1000
QUICK_MAX_TIME_S = 1.5
DEFAULT_MAX_TIME_S = 2.0


@dataclass(frozen=True)
class RoundPlan:
    rounds: int
    iterations: int  # runs per timed round
    ref_iterations: int  # reference calls per paired reference round
    warm_ups: int = 0  # untimed runs after each reference round, before the timed one


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """Python's garbage collector off inside the block, as the suite times its rounds
    (--benchmark-disable-gc) and as ``timeit`` does: a collection's cost grows with every
    object in the process, so with it on a loop that makes garbage reads what the heap of
    the program around it costs."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def timed(fn: Callable[[], object], clock: Clock = time.perf_counter) -> float:
    """Seconds of one call of ``fn``."""
    start = clock()
    fn()
    return clock() - start


def fastest(fn: Callable[[], object], clock: Clock = time.perf_counter) -> float:
    """The fastest of three timed calls, after one untimed call (caches, lazy set-up)."""
    fn()
    return max(1e-9, min(timed(fn, clock) for _ in range(3)))


def plan_rounds(run: Callable[[], None], reference: Callable[[], None] | None, *,
                max_time_s: float, min_rounds: int, round_floor_s: float = ROUND_FLOOR_S,
                clock: Clock = time.perf_counter,
                probe: Callable[[], object] | None = None) -> RoundPlan:
    """Rounds that fit ``max_time_s`` (reference rounds, wake probes and warm-up calls
    included), at least ``min_rounds`` and at most MAX_ROUNDS, each at least
    ``round_floor_s`` long.

    With a reference, a run shorter than WARM_UP_BELOW_S is warmed up after each
    reference round by WARM_UP_S of untimed calls: the reference evicts the backend's copy
    of the data, and a per-step loop needs more than one call to recover; a run of 50 ms or
    more recovers within its own time."""
    once = fastest(run, clock)
    iterations = max(1, math.ceil(round_floor_s / once))
    round_s = once * iterations
    ref_iterations = 1
    warm_ups = 0
    if reference is not None:
        ref_once = fastest(reference, clock)
        ref_iterations = max(1, math.ceil(round_floor_s / ref_once))
        if once < WARM_UP_BELOW_S:
            warm_ups = max(1, math.ceil(WARM_UP_S / once))
        round_s += ref_once * ref_iterations + once * warm_ups
    if probe is not None:
        round_s += fastest(probe, clock)
    rounds = max(min_rounds, min(MAX_ROUNDS, int(max_time_s / round_s)))
    return RoundPlan(rounds, iterations, ref_iterations, warm_ups)


def repeat(fn: Callable[[], None], times: int) -> Callable[[], None]:
    """``fn`` called ``times`` times in a row (``fn`` itself when once)."""
    if times == 1:
        return fn

    def repeated() -> None:
        for _ in range(times):
            fn()

    return repeated


def before_round(run: Callable[[], None], timed_reference: Callable[[], None],
                 plan: RoundPlan, probe: Callable[[], float] | None = None,
                 clock: Clock = time.perf_counter) -> tuple[float | None, float]:
    """What comes before every paired timed round, in the suite (benches/) and in the
    audit's pairing alike: the wake probe's reading (None without a probe), the reference
    round's seconds per call (``timed_reference`` makes ``plan.ref_iterations`` calls),
    then ``plan.warm_ups`` untimed runs to take back the cache (see plan_rounds)."""
    wake = probe() if probe is not None else None
    ref = timed(timed_reference, clock) / plan.ref_iterations
    for _ in range(plan.warm_ups):
        run()
    return wake, ref


def per_run_times(round_times: list[float], iterations: int) -> list[float]:
    """Each round's seconds divided by the runs in it: seconds per run."""
    return [t / iterations for t in round_times]


def time_rounds(run: Callable[[], None], plan: RoundPlan,
                clock: Clock = time.perf_counter) -> list[float]:
    """Seconds per run of each of ``plan.rounds`` rounds, after one warm-up round.

    The plain loop that ``gdbench audit`` times a backend with, alone in its process.
    """
    body = repeat(run, plan.iterations)
    body()  # warm-up, as the suite's warmup_rounds=1
    return per_run_times([timed(body, clock) for _ in range(plan.rounds)], plan.iterations)


def turns(fns: Sequence[Callable[[], None]], rounds: int, iterations: int = 1,
          clock: Clock = time.perf_counter, block: int = 1) -> list[list[float]]:
    """Seconds per run of each function, the functions taking turns (A B, A B, ...) so
    that a drift of the machine's speed hits them alike; each round is ``iterations``
    runs. With ``block`` > 1, each turn is ``block`` rounds of one function after an
    untimed call of it, so that no round is the first after a switch (a compiled program
    can run slower right after another ran); with 1, every function is called once,
    untimed, first. ``rounds`` counts turns: each function gets ``rounds * block``."""
    bodies = [repeat(fn, iterations) for fn in fns]
    if block == 1:
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, body, out in zip(fns, bodies, times, strict=True):
            if block > 1:
                fn()
            out.extend(timed(body, clock) / iterations for _ in range(block))
    return times


# --- the drift reference -------------------------------------------------------------------

def roofline_loop(X: np.ndarray, W: np.ndarray, batch_sizes: list[int]) -> tuple[
        Callable[[], None], float]:
    """A workload's roofline loop and its FLOPs per call.

    Per step of the plan it runs ``P = X_b @ W.T`` and ``dW = P.T @ X_b`` into
    preallocated outputs, with each step's real batch size, and nothing else: plain
    NumPy GEMMs of one step's shapes. No backend change can move it.
    """
    k, d = W.shape
    buffers = {r: (np.ascontiguousarray(X[:r]), np.empty((r, k), X.dtype),
                   np.empty((k, d), X.dtype)) for r in set(batch_sizes)}
    steps = [buffers[r] for r in batch_sizes]
    WT = W.T
    matmul = np.matmul

    def run() -> None:
        for Xb, P, dW in steps:
            matmul(Xb, WT, out=P)
            matmul(P.T, Xb, out=dW)

    return run, float(sum(4 * r * d * k for r in batch_sizes))


def reference_loop(X: np.ndarray, W: np.ndarray,
                   batches: list[np.ndarray]) -> Callable[[], None]:
    """The drift reference each timed round is paired with: per step of the plan, gather
    the step's rows of ``X`` (its own indices, into a preallocated buffer) and run the
    roofline loop's GEMM pair on them.

    The gather makes it feel what a neighbour does to the memory hierarchy, which a
    GEMM-only reference on cached operands does not. Plain NumPy of the workload's shapes
    and indices: no backend change can move it.
    """
    k, d = W.shape
    buffers = {r: (np.empty((r, d), X.dtype), np.empty((r, k), X.dtype),
                   np.empty((k, d), X.dtype)) for r in {len(idx) for idx in batches}}
    steps = [(np.asarray(idx), *buffers[len(idx)]) for idx in batches]
    WT = W.T
    take, matmul = np.take, np.matmul

    def run() -> None:
        for idx, Xb, P, dW in steps:
            take(X, idx, axis=0, out=Xb, mode="clip")
            matmul(Xb, WT, out=P)
            matmul(P.T, Xb, out=dW)

    return run


def numpy_blas() -> Any:
    """threadpoolctl's controller of the BLAS that numpy uses, and no other library's."""
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    ours = [c for c in blas.lib_controllers
            if "torch" not in c.filepath and "jax" not in c.filepath]
    blas.lib_controllers = ours
    return blas


@contextlib.contextmanager
def one_blas_thread(blas: Any) -> Iterator[None]:
    """numpy's BLAS limited to one thread inside the block (entering costs microseconds:
    keep it outside timed code)."""
    with blas.limit(limits=1):
        yield


def single_threaded(fn: Callable[[], None], blas: Any | None = None) -> Callable[[], None]:
    """``fn`` with numpy's BLAS on one thread while it runs, so that it wakes no pool."""
    blas = numpy_blas() if blas is None else blas

    def run() -> None:
        with one_blas_thread(blas):
            fn()

    return run


# --- the machine's wake-ups ------------------------------------------------------------------
#
# Loops on both cores can switch between two speeds while every per-CPU measure stays put:
# what moves is how fast the host wakes a thread on the other CPU, which a ping-pong
# between two threads pinned apart reads (docs/fidelity.md, "The wake probe"). The drift
# reference cannot see it, as it runs on one thread; this probe can, and the gate and the
# audit leave out rounds taken while it read slow, as they do for the reference.

WAKE_PINGS = 32  # round trips per probe; the median of them is the probe's reading


def wake_probe(cpus: Sequence[int] | None = None, pings: int = WAKE_PINGS,
               clock: Clock = time.perf_counter) -> Callable[[], float] | None:
    """A probe of how fast the machine wakes a thread on another CPU: each call plays
    ``pings`` round trips between the calling thread, pinned to the first of ``cpus``, and
    a partner thread pinned to the second, and returns the median seconds per round trip.
    None when the process may run on one CPU only (``--threads 1``): nothing to wake then.

    The calling thread's CPU affinity is restored before the call returns.
    """
    allowed = sorted(os.sched_getaffinity(0)) if cpus is None else sorted(cpus)
    if len(allowed) < 2:
        return None
    here, there = allowed[0], allowed[1]

    def probe() -> float:
        ping, pong, ready = threading.Event(), threading.Event(), threading.Event()

        def partner() -> None:
            os.sched_setaffinity(0, {there})
            ready.set()
            for _ in range(pings):
                if not ping.wait(timeout=1.0):  # the caller stopped early
                    return
                ping.clear()
                pong.set()

        restore = os.sched_getaffinity(0)
        thread = threading.Thread(target=partner, name="gdbench-wake-probe", daemon=True)
        thread.start()
        trips = []
        try:
            os.sched_setaffinity(0, {here})
            ready.wait()
            for _ in range(pings):
                start = clock()
                ping.set()
                pong.wait()
                pong.clear()
                trips.append(clock() - start)
        finally:
            os.sched_setaffinity(0, restore)
            thread.join()
        return statistics.median(trips)

    return probe


# --- what a timed call leaves behind -------------------------------------------------------

def busy_after(window_s: float = 0.05, *, wall: Clock = time.perf_counter,
               cpu: Clock = time.process_time,
               sleep: Callable[[float], None] = time.sleep) -> float:
    """Cores this process keeps busy while its main thread sleeps ``window_s`` seconds.

    Called right after a timed call returns: a library whose worker threads spin-wait
    (OpenBLAS, OpenMP) reads near 1 core per spinning thread; a quiet one reads near 0.
    """
    c0, t0 = cpu(), wall()
    sleep(window_s)
    elapsed = wall() - t0
    return max(0.0, (cpu() - c0) / elapsed) if elapsed > 0 else 0.0


# --- the neighbours --------------------------------------------------------------------------
#
# A thread pool that loses a core to another program slows by several times while the
# single-threaded drift reference hardly moves, so the reference cannot see such a
# neighbour. The kernel's CPU accounting can: the time the CPUs this process may run on
# were busy, less this process's own CPU time, is what the rest of the machine used on
# them; and on a VM, steal is the time the hypervisor gave those CPUs to other guests.

def _busy_and_steal(cpus: Sequence[int] | None) -> tuple[float, float]:
    """Seconds the given CPUs (default: all) have been busy, and stolen, since boot."""
    import psutil

    per_cpu = psutil.cpu_times(percpu=True)
    chosen = per_cpu if cpus is None else [per_cpu[c] for c in cpus if c < len(per_cpu)]
    busy = steal = 0.0
    for t in chosen:
        # guest time is counted in user already; idle and iowait are not busy.
        busy += sum(getattr(t, name, 0.0) for name in
                    ("user", "nice", "system", "irq", "softirq"))
        steal += getattr(t, "steal", 0.0)
    return busy, steal


def allowed_cpus() -> list[int] | None:
    """The CPUs this process may run on, None where the system cannot say (macOS)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def own_cpu_seconds(children: Sequence[Any] | None = None) -> float:
    """CPU seconds of this process and of the processes it started (a data-parallel
    backend's ranks, live or reaped): the benchmark's own use of the machine, which is
    no neighbour's. ``children``: the live ones as psutil processes (default: listed now,
    which reads /proc and costs a millisecond or so)."""
    import psutil

    spent = time.process_time()
    reaped = os.times()
    spent += reaped.children_user + reaped.children_system
    for child in psutil.Process().children(recursive=True) if children is None else children:
        try:
            t = child.cpu_times()
        except psutil.Error:  # it ended between the listing and the reading
            continue
        spent += t.user + t.system
    return spent


class NeighbourMeter:
    """What the rest of the machine did on this process's CPUs between ``start`` and
    ``stop``: the CPU seconds other programs used there, and the seconds stolen from them.

    ``machine`` reads (busy, steal) seconds since boot of those CPUs, ``own`` the CPU
    seconds of this process and its children (:func:`own_cpu_seconds`, over the children
    alive at ``start``); both are arguments so that tests can fake them. The machine is
    read inside this process's own reading, so that what the readings themselves cost is
    counted as this process's, never as a neighbour's (read the other way round, a round
    of 5 ms read a tenth of a core of "neighbour" on a quiet machine). The kernel counts
    the machine's time in ticks (10 ms), this process's exactly, so one short round's
    reading is coarse: judge a neighbour over many rounds
    (:func:`gdbench.judge.stats.neighbour_rounds`).
    """

    def __init__(self, machine: Callable[[], tuple[float, float]] | None = None,
                 own: Clock | None = None) -> None:
        cpus = allowed_cpus()
        self._machine = machine or (lambda: _busy_and_steal(cpus))
        self._given_own = own
        self._children: list[Any] = []
        self._start: tuple[float, float, float] | None = None

    def _own(self) -> float:
        if self._given_own is not None:
            return self._given_own()
        return own_cpu_seconds(self._children)

    @property
    def running(self) -> bool:
        return self._start is not None

    def start(self) -> None:
        if self._given_own is None:  # listed once, outside the readings
            import psutil

            self._children = psutil.Process().children(recursive=True)
        own = self._own()
        busy, steal = self._machine()
        self._start = (busy, steal, own)

    def stop(self) -> tuple[float, float]:
        """(CPU seconds others used, seconds stolen) since ``start``."""
        if self._start is None:
            raise RuntimeError("NeighbourMeter.stop before start")
        busy, steal = self._machine()
        own = self._own()
        busy0, steal0, own0 = self._start
        self._start = None
        return (busy - busy0) - (own - own0), steal - steal0
