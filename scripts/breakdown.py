"""Where a step's time goes: gather, GEMMs, update and the rest, per backend.

    python scripts/breakdown.py [WORKLOAD] [--threads N]

numpy: each phase of its step is timed on its own, over the workload's real batches,
with the same preallocated buffers as the backend. torch-cpu and torch-manual: the
per-op self time of torch.profiler over one run, grouped into phases. jax-scan cannot
be split from outside its fused loop; it is timed as a whole, with the same scan doing
only the gathers, to show their share. All of it is outside any benchmark: a tool for
reading the suite's figures, not a source of them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np


def _per_step(fn: Callable[[], None], steps: int, repeats: int = 7) -> float:
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return best / steps * 1e6


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def numpy_phases(problem) -> dict[str, float]:  # type: ignore[no-untyped-def]
    X, Y = problem.dataset.X, problem.dataset.Y
    W, b = problem.W0.copy(), problem.b0.copy()
    batches = [idx for idx in problem.plan if len(idx) == problem.plan.batch_size]
    B, (k, d) = problem.plan.batch_size, W.shape
    Xb, Yb, P = np.empty((B, d), X.dtype), np.empty((B, k), X.dtype), np.empty((B, k), X.dtype)
    dW, db = np.empty((k, d), X.dtype), np.empty(k, X.dtype)
    lr = X.dtype.type(problem.lr)
    n = len(batches)

    def gather() -> None:
        for idx in batches:
            np.take(X, idx, axis=0, out=Xb, mode="clip")
            np.take(Y, idx, axis=0, out=Yb, mode="clip")

    def forward() -> None:
        for _ in batches:
            np.matmul(Xb, W.T, out=P)

    def residual() -> None:
        for _ in batches:
            np.add(P, b, out=P)
            np.subtract(P, Yb, out=P)
            np.multiply(P, 0.5, out=P)

    def grad_gemm() -> None:
        for _ in batches:
            np.matmul(P.T, Xb, out=dW)

    def update() -> None:
        for _ in batches:
            P.sum(axis=0, out=db)
            np.multiply(dW, lr, out=dW)
            np.multiply(db, lr, out=db)
            np.subtract(W, dW, out=W)
            np.subtract(b, db, out=b)

    return {name: _per_step(fn, n) for name, fn in [
        ("gather X_b, Y_b", gather), ("forward GEMM", forward), ("residual", residual),
        ("gradient GEMM", grad_gemm), ("db and update", update)]}


# aten::index is advanced indexing (X[idx]): a gather too, however slow, never "other ops".
PHASES = {"index_select": "gather X_b, Y_b", "index": "gather X_b, Y_b",
          "addmm": "forward GEMM", "mm": "GEMMs",
          "mse_loss": "loss and its gradient", "mse_loss_backward": "loss and its gradient",
          "sub_": "update", "mul_": "residual and scale", "sum": "db"}


def torch_phases(name: str, problem) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from torch.profiler import ProfilerActivity, profile

    from gdbench.implementations.base import prepare

    prepared = prepare(name, problem)
    prepared.run()
    with contextlib.redirect_stdout(io.StringIO()), profile(
            activities=[ProfilerActivity.CPU]) as prof:
        prepared.run()
    steps = len(problem.plan)
    out: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        op = e.key.removeprefix("aten::")
        out[PHASES.get(op, "other ops (dispatch, autograd)")] += e.self_cpu_time_total / steps
    wall = _per_step(prepared.run, steps, repeats=3)
    out["(wall, unprofiled)"] = wall
    return dict(out)


def jax_scan(problem) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import jax

    from gdbench.implementations.base import prepare

    prepared = prepare("jax-scan", problem)
    whole = _per_step(prepared.run, len(problem.plan))
    full, _ = problem.plan.as_arrays()
    X, Y = jax.device_put(problem.dataset.X), jax.device_put(problem.dataset.Y)
    idx = jax.device_put(full.reshape(-1, full.shape[-1]))

    def gathers(X: jax.Array, Y: jax.Array, idx: jax.Array) -> jax.Array:
        def body(acc: jax.Array, i: jax.Array) -> tuple[jax.Array, None]:
            return acc + X[i].sum() + Y[i].sum(), None
        return jax.lax.scan(body, X.dtype.type(0), idx)[0]

    compiled = jax.jit(gathers).lower(X, Y, idx).compile()
    gather = _per_step(lambda: compiled(X, Y, idx).block_until_ready(), len(idx))
    return {"(whole step, fused)": whole, "gathers alone (summed)": gather}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", nargs="?", default="large")
    p.add_argument("--threads", type=int)
    args = p.parse_args()
    if args.threads:
        from gdbench.harness import machine

        os.environ.update(machine.thread_env(args.threads))
        machine.pin_threads(args.threads)
    from gdbench.data.workloads import get_workload

    problem = get_workload(args.workload).build()
    print(f"{args.workload}: µs per step by phase")
    sections = [("numpy", lambda: numpy_phases(problem))]
    sections += [(n, lambda n=n: torch_phases(n, problem)) for n in ("torch-cpu", "torch-manual")]
    sections.append(("jax-scan", lambda: jax_scan(problem)))
    for name, fn in sections:
        try:
            phases = fn()
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        total = sum(v for k, v in phases.items() if not k.startswith("(") and "alone" not in k)
        print(f"\n{name}")
        for phase, us in phases.items():
            share = "" if phase.startswith("(") or "alone" in phase else f"  {us / total:5.0%}"
            print(f"  {phase:<34} {us:10.1f}{share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
