"""The timed suite: every backend's whole training loop, per workload, plus the roofline.

Only ``backend.run`` is timed. ``prepare`` (conversion, transfer to the device,
compilation) happens before the benchmark, and compile seconds are recorded on their
own. ``run`` returns only after the device has finished (its ``sync`` is recorded).
After timing, the trained weights are checked against the NumPy reference: a benchmark
whose backend disagrees fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import implementations
from data.workloads import Problem


def _shape_info(problem: Problem) -> dict[str, Any]:
    ds, plan = problem.dataset, problem.plan
    return {
        "workload": problem.name,
        "n": ds.n_samples, "d": ds.n_features, "k": ds.n_outputs,
        "batch_size": plan.batch_size, "epochs": plan.epochs, "steps": len(plan),
        "dtype": str(problem.dtype),
    }


def _time(benchmark: Any, settings: Any, run: Callable[[], None]) -> None:
    """Time ``run`` with explicit warm-up; with --benchmark-disable, call it once."""
    if benchmark.disabled:
        benchmark.pedantic(run, rounds=1, iterations=1)
        return
    rounds, iterations = settings.calibrate(run)
    benchmark.pedantic(run, rounds=rounds, iterations=iterations, warmup_rounds=1)


def _record_timing(benchmark: Any, request: pytest.FixtureRequest, flops: float) -> None:
    """Add step_us and GFLOP/s from the median round to extra_info (when timing is on)."""
    info = benchmark.extra_info
    if benchmark.disabled or benchmark.stats is None:
        request.node.user_properties.append(("progress", "ran once (timing disabled)"))
        return
    stats = benchmark.stats.stats
    median = float(stats.median)
    info["step_us"] = median / info["steps"] * 1e6
    info["gflops"] = flops / median / 1e9
    spread = float(stats.iqr) / median if median else float("nan")
    request.node.user_properties.append((
        "progress",
        f"{info['step_us']:.3f} us/step, {info['gflops']:.3g} GFLOP/s "
        f"(IQR {spread:.1%} of median, {stats.rounds} rounds x {benchmark.stats.iterations})",
    ))


def bench_training(benchmark: Any, request: pytest.FixtureRequest, workload_name: str,
                   backend_name: str, problems: Any, settings: Any,
                   backend_status: dict[str, str | None]) -> None:
    why = backend_status[backend_name]
    if why:
        pytest.skip(f"{backend_name}: {why}")
    problem, _ = problems.get(workload_name)
    backend = implementations.get(backend_name)
    state = backend.prepare(problem.dataset, problem.plan, problem.W0, problem.b0, problem.lr)

    benchmark.group = workload_name
    benchmark.extra_info.update(
        kind="training", backend=backend_name, device=backend.device, sync=backend.sync,
        flops=problem.flops, compile_s=float(getattr(state, "compile_s", 0.0)),
        **_shape_info(problem),
    )
    _time(benchmark, settings, lambda: backend.run(state))
    result = backend.result(state)
    max_diff, agrees = problems.agreement(workload_name, result)
    benchmark.extra_info.update(final_loss=result.final_loss, max_abs_diff_vs_numpy=max_diff,
                                agrees=agrees)
    _record_timing(benchmark, request, problem.flops)
    assert agrees, (
        f"{backend_name} on {workload_name} disagrees with numpy: max |diff| = {max_diff:.3g}"
    )


def bench_roofline(benchmark: Any, request: pytest.FixtureRequest, workload_name: str,
                   problems: Any, settings: Any) -> None:
    """The machine's own ceiling: a plain NumPy matmul pair of one step's GEMM shapes.

    Per step it runs ``P = X_b @ W.T`` and ``dW = P.T @ X_b`` with preallocated outputs,
    once per step of the plan, and nothing else. No backend change can move it, which
    makes it the reference the regression gate divides by.
    """
    problem, _ = problems.get(workload_name)
    X, W = problem.dataset.X, problem.W0
    d, k = problem.dataset.n_features, problem.dataset.n_outputs
    sizes = problem.plan.batch_sizes()
    buffers = {r: (np.ascontiguousarray(X[:r]), np.empty((r, k), X.dtype),
                   np.empty((k, d), X.dtype)) for r in set(sizes)}
    steps = [buffers[r] for r in sizes]
    WT = W.T
    matmul = np.matmul

    def run() -> None:
        for Xb, P, dW in steps:
            matmul(Xb, WT, out=P)
            matmul(P.T, Xb, out=dW)

    flops = float(sum(4 * r * d * k for r in sizes))
    benchmark.group = workload_name
    benchmark.extra_info.update(
        kind="roofline", backend="roofline", device="cpu", sync="none", flops=flops,
        compile_s=0.0, final_loss=None, max_abs_diff_vs_numpy=None, agrees=True,
        **_shape_info(problem),
    )
    _time(benchmark, settings, run)
    _record_timing(benchmark, request, flops)
    assert np.isfinite(steps[-1][2]).all()
