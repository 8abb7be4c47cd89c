"""The timed suite: every backend's whole training loop, per workload, plus the roofline.

Only ``backend.run`` is timed, one call per round. ``prepare`` (conversion, transfer to
the device, compilation) happens before the benchmark, and compile seconds are recorded
on their own. ``run`` returns only after the device has finished (its ``sync`` is
recorded). After timing, the trained weights are checked against the NumPy reference: a
benchmark whose backend disagrees fails.

Paired reference rounds: on shared machines the speed drifts in episodes lasting seconds, so
each round of a training benchmark is preceded, untimed by pytest-benchmark, by one round of
the workload's reference loop (:func:`gdbench.harness.timing.reference_loop`: per step,
gather the step's rows and run the roofline's GEMM pair) on a single thread, and both times
are kept. Their per-round ratio (``norm_data``) cancels the drift that a reference measured
seconds earlier cannot; the regression gate compares it. The reference is single-threaded so
that it cannot perturb the backend under test: no pool of its own is left spinning when the
timed round starts.

Fidelity: ``gdbench run`` starts one pytest process per backend, so no other library's
threads share the machine with the backend being timed; ``gdbench audit`` checks that
each figure is within 10% of the same ``run`` timed alone in a fresh process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from gdbench.data.workloads import Problem
from gdbench.harness import gpu, memory, timing
from gdbench.implementations.base import prepare
from gdbench.judge import limits, target
from gdbench.judge.stats import neighbour_rounds


def _shape_info(problem: Problem) -> dict[str, Any]:
    ds, plan = problem.dataset, problem.plan
    return {
        "workload": problem.name,
        "n": ds.n_samples, "d": ds.n_features, "k": ds.n_outputs,
        "batch_size": plan.batch_size, "epochs": plan.epochs, "steps": len(plan),
        "dtype": str(problem.dtype),
        # What the workload is made of, so that a run can be made again from its file.
        **({"workload_def": problem.definition} if problem.definition else {}),
    }


def roofline_loop(problem: Problem) -> tuple[Callable[[], None], float]:
    """The workload's roofline loop (see :func:`gdbench.harness.timing.roofline_loop`)."""
    return timing.roofline_loop(problem.dataset.X, problem.W0, problem.plan.batch_sizes())


@dataclass
class Paired:
    """What each timed round was paired with, aligned with the benchmark's rounds."""

    ref: list[float] = field(default_factory=list)  # the drift reference's seconds per call
    wake: list[float] = field(default_factory=list)  # the wake probe's seconds per trip
    # CPU seconds other programs used on this process's CPUs while the round was timed,
    # and seconds stolen from them (timing.NeighbourMeter)
    busy: list[float] = field(default_factory=list)
    steal: list[float] = field(default_factory=list)


def _time(benchmark: Any, settings: Any, run: Callable[[], None],
          reference: Callable[[], None] | None = None,
          clock: timing.Clock = time.perf_counter,
          probe: Callable[[], float] | None = None,
          meter: timing.NeighbourMeter | None = None) -> Paired:
    """Time ``run`` and return what its rounds were paired with (empty without a
    reference). With --benchmark-disable, ``run`` is called once.

    A run shorter than the round floor is repeated inside its round, so that short runs
    measure the loop and not the wake-up of idle threads; pytest-benchmark then records
    per-run times and the repeat count as ``iterations``, as its own calibration would.
    Before each timed round, the wake probe (when given; see
    :func:`gdbench.harness.timing.wake_probe`) reads the machine's wake-up latency, then the
    reference round runs, repeated the same way; a short run is then called untimed
    (``plan.warm_ups`` times) to take back the cache and wake its own runtime. The
    ``meter``, when given, reads what the rest of the machine did during each timed round
    alone: it starts last before a round and stops first after it.
    """
    paired = Paired()
    if benchmark.disabled:
        benchmark.pedantic(run, rounds=1, iterations=1)
        return paired
    if reference is None:
        plan = settings.plan(run, None)
        benchmark.pedantic(run, rounds=plan.rounds, iterations=plan.iterations,
                           warmup_rounds=1)
        return paired
    plan = settings.plan(run, reference, probe)
    timed_reference = timing.repeat(reference, plan.ref_iterations)

    def stop_meter() -> None:
        if meter is not None and meter.running:
            busy, steal = meter.stop()
            paired.busy.append(busy)
            paired.steal.append(steal)

    def time_reference() -> None:  # pytest-benchmark calls it before every round
        stop_meter()  # the round before this one has ended
        wake, ref = timing.before_round(run, timed_reference, plan, probe, clock)
        if wake is not None:
            paired.wake.append(wake)
        paired.ref.append(ref)
        if meter is not None:
            meter.start()

    # pytest-benchmark refuses iterations > 1 with a setup function, so the round repeats
    # run itself; the per-round times are then divided as its iterations would be.
    benchmark.pedantic(timing.repeat(run, plan.iterations), setup=time_reference,
                       rounds=plan.rounds, iterations=1, warmup_rounds=1)
    stop_meter()
    if plan.iterations > 1:
        metadata = benchmark.stats
        metadata.stats.data[:] = timing.per_run_times(metadata.stats.data, plan.iterations)
        metadata.iterations = plan.iterations
    # drop the warm-up round's
    return Paired(paired.ref[-plan.rounds:], paired.wake[-plan.rounds:],
                  paired.busy[-plan.rounds:], paired.steal[-plan.rounds:])


def _record_timing(benchmark: Any, request: pytest.FixtureRequest, flops: float,
                   paired: Paired) -> None:
    """Add step_us, GFLOP/s (from the median round), the paired ratios, each round's
    wake probe reading and what the neighbours did during each round to extra_info."""
    info = benchmark.extra_info
    if benchmark.disabled or benchmark.stats is None:
        request.node.user_properties.append(("progress", "ran once (timing disabled)"))
        return
    stats = benchmark.stats.stats
    median = float(stats.median)
    info["step_us"] = median / info["steps"] * 1e6
    info["gflops"] = flops / median / 1e9
    line = (f"{info['step_us']:.3f} us/step, {info['gflops']:.3g} GFLOP/s, "
            f"{stats.rounds} rounds; IQR/median {float(stats.iqr) / median:.1%}")
    if paired.ref:
        ref = np.asarray(paired.ref)
        norm = np.asarray(stats.data) / ref
        q1, norm_median, q3 = np.percentile(norm, [25, 50, 75])
        info.update(ref_data=ref.tolist(), norm_data=norm.tolist(),
                    norm_median=float(norm_median), ref_s=float(np.median(ref)))
        line += f" raw, {(q3 - q1) / norm_median:.1%} paired"
    if paired.wake:
        info["wake_data"] = list(paired.wake)
    if paired.busy:
        line += _record_neighbours(info, paired, stats.data, benchmark.stats.iterations)
    request.node.user_properties.append(("progress", line))


def _record_neighbours(info: dict[str, Any], paired: Paired, data: Any,
                       iterations: int) -> str:
    """Save each round's neighbour readings (``busy_data``, ``steal_data``: seconds) and
    their load over the whole benchmark (``neighbour_cores``, ``steal_cores``: seconds per
    second of timed rounds); return what the progress line adds ("" for none seen)."""
    timed_s = float(np.sum(data)) * iterations
    info.update(busy_data=list(paired.busy), steal_data=list(paired.steal),
                neighbour_cores=sum(paired.busy) / timed_s,
                steal_cores=sum(paired.steal) / timed_s)
    seen = neighbour_rounds(np.add(paired.busy, paired.steal),
                            np.asarray(data, dtype=float) * iterations)
    if not seen.any():
        return ""
    return (f"; a neighbour on its CPUs in {seen.mean():.0%} of its rounds "
            f"({info['neighbour_cores']:.2f} cores, {info['steal_cores']:.2f} stolen)")


def bench_training(benchmark: Any, request: pytest.FixtureRequest, workload_name: str,
                   backend_name: str, problems: Any, settings: Any,
                   backend_status: dict[str, str | None], blas: Any) -> None:
    why = backend_status[backend_name]
    if why:
        pytest.skip(f"{backend_name}: {why}")
    problem, _ = problems.get(workload_name)
    prepared = prepare(backend_name, problem)
    backend = prepared.backend

    benchmark.group = workload_name
    benchmark.extra_info.update(
        kind="training", backend=backend_name, device=backend.device, sync=backend.sync,
        flops=problem.flops, compile_s=prepared.compile_s,
        **_shape_info(problem),
    )
    # The drift reference runs on one thread, so that it leaves no pool spinning.
    reference = timing.single_threaded(timing.reference_loop(
        problem.dataset.X, problem.W0, problem.plan.batches()), blas)
    paired = _time(benchmark, settings, prepared.run, reference,
                   probe=timing.wake_probe(), meter=timing.NeighbourMeter())
    result = prepared.result()
    max_diff, agrees = problems.agreement(workload_name, result)
    benchmark.extra_info.update(final_loss=result.final_loss, max_abs_diff_vs_numpy=max_diff,
                                agrees=agrees)
    _record_timing(benchmark, request, problem.flops, paired)
    benchmark.extra_info["prepare_s"] = prepared.prepare_s
    if settings.memory and not benchmark.disabled:  # after timing, never in it
        benchmark.extra_info.update(memory.measure(prepared, len(problem.plan)).record())
    if hasattr(backend, "run_compute_only"):
        benchmark.extra_info.update(_collective_cost(prepared, settings, len(problem.plan),
                                                     timed=not benchmark.disabled))
    assert agrees, (
        f"{backend_name} on {workload_name} disagrees with numpy: max |diff| = {max_diff:.3g}"
    )


# Rounds of each loop in one turn of the collective's measurement (after an untimed call).
COLLECTIVE_BLOCK = 5


def _collective_cost(prepared: Any, settings: Any, steps: int, timed: bool = True,
                     clock: timing.Clock = time.perf_counter) -> dict[str, Any]:
    """A data-parallel backend's world size, its single-process counterpart, and what its
    collective costs per step: after the benchmark, ``run`` and ``run_compute_only`` (the
    same loop on the same workers, without the collective) timed in turns of
    COLLECTIVE_BLOCK rounds each, each turn after an untimed call (a compiled program can
    run several times slower right after another one ran), about the benchmark's budget
    in all; ``collective_step_us`` is the difference of their medians. Untimed
    (--benchmark-disable), each runs once."""
    backend, state = prepared.backend, prepared.state
    info: dict[str, Any] = {"world": backend.world, "single_process": backend.single_process}

    def compute_only() -> None:
        backend.run_compute_only(state)

    if not timed:
        compute_only()
        return info
    plan = settings.plan(prepared.run, None)
    rounds = max(settings.min_rounds, plan.rounds // 2)
    turns = max(2, -(-rounds // COLLECTIVE_BLOCK))
    with timing.collector_off():  # as the benchmark's own rounds
        full, alone = timing.turns([prepared.run, compute_only], turns, plan.iterations,
                                   clock, block=COLLECTIVE_BLOCK)
    info.update(compute_only_data=alone,
                compute_only_step_us=float(np.median(alone)) / steps * 1e6,
                collective_full_step_us=float(np.median(full)) / steps * 1e6,
                collective_step_us=float(np.median(full) - np.median(alone)) / steps * 1e6)
    return info


# A buffer this small sits in L2; copying less measures thread start-up, not bandwidth.
MIN_COPY_BYTES = 1 << 20


def copy_bandwidth(problem: Problem) -> tuple[float, int, int]:
    """(bytes/s, bytes, threads) of a streaming copy as large as the workload's dataset:
    the memory side of the workload's limit (see :mod:`gdbench.judge.limits`). The faster of
    one thread and every allowed CPU: which wins depends on where the buffer sits."""
    nbytes = max(MIN_COPY_BYTES, problem.dataset.X.nbytes + problem.dataset.Y.nbytes)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    rate, threads = max((limits.copy_bandwidth(nbytes, t), t) for t in sorted({1, cpus}))
    return rate, nbytes, threads


def bench_roofline(benchmark: Any, request: pytest.FixtureRequest, workload_name: str,
                   problems: Any, settings: Any) -> None:
    """The roofline loop on its own: the machine's GEMM rate at one step's shapes, and,
    measured before it (untimed), the bandwidth of a copy the size of the dataset: the
    two ceilings of the workload's limit, measured in the same run. After timing it, it
    records the workload's shared target loss (:mod:`gdbench.judge.target`), the steps the
    float64 reference takes to reach it (trained on past the plan, up to the stated cap) and
    its loss at each checkpoint of the plan, which every backend's time to target is read
    against."""
    problem, _ = problems.get(workload_name)
    run, flops = roofline_loop(problem)
    benchmark.group = workload_name
    bandwidth, copy_bytes, copy_threads = copy_bandwidth(problem)
    benchmark.extra_info.update(
        kind="roofline", backend="roofline", device="cpu", sync="none", flops=flops,
        compile_s=0.0, final_loss=None, max_abs_diff_vs_numpy=None, agrees=True,
        bandwidth_gbs=bandwidth / 1e9, copy_bytes=copy_bytes, copy_threads=copy_threads,
        **_shape_info(problem),
    )
    _time(benchmark, settings, run)
    _record_timing(benchmark, request, flops, Paired())
    curve = target.checkpoint_losses(problem)  # untimed, and after the timing
    goal = target.shared_target(problem, curve=curve)
    benchmark.extra_info.update(
        **goal.record(), loss_curve_steps=curve[0], loss_curve=curve[1])


def bench_gpu_roofline(benchmark: Any, request: pytest.FixtureRequest, workload_name: str,
                       problems: Any, settings: Any) -> None:
    """The GPU's yardsticks beside one workload, the limit of its GPU rows
    (:mod:`gdbench.harness.gpu`): the roofline loop as torch.mm on the device, timed like
    the CPU's, and, measured before it (untimed), a device-to-device copy as large as the
    dataset. Saved as a roofline row of device ``cuda`` (backend ``roofline-cuda``);
    gdbench run times it in a process of its own when a selected backend runs on a GPU."""
    why = gpu.unavailable()
    if why:
        pytest.skip(f"GPU yardsticks: {why}")
    problem, _ = problems.get(workload_name)
    run, flops = gpu.roofline_loop(problem.dataset.X, problem.W0, problem.plan.batch_sizes())
    copy_bytes = max(MIN_COPY_BYTES, problem.dataset.X.nbytes + problem.dataset.Y.nbytes)
    bandwidth = gpu.copy_bandwidth(copy_bytes)
    benchmark.group = workload_name
    benchmark.extra_info.update(
        kind="roofline", backend=f"roofline-{gpu.DEVICE}", device=gpu.DEVICE,
        sync="torch.cuda.synchronize", flops=flops, compile_s=0.0, final_loss=None,
        max_abs_diff_vs_numpy=None, agrees=True, bandwidth_gbs=bandwidth / 1e9,
        copy_bytes=copy_bytes, copy_threads=0, **_shape_info(problem),
    )
    _time(benchmark, settings, run)
    _record_timing(benchmark, request, flops, Paired())
