"""What a training step cannot beat on this machine, and what each backend pays per step.

The limit. A step of batch B must do 4·B·d·k + 6·B·k FLOPs and must read its B rows of X
and Y, and read and write W and b, at least once. So no backend can take less than

    bound = max(FLOPs / GEMM rate, bytes / bandwidth)

with both rates measured in the same run by the roofline benchmarks. The GEMM rate is
the best GFLOP/s of the run's roofline loops (two NumPy GEMMs of one step's shapes, the
data already in cache): at small shapes NumPy's per-call cost hides the machine's rate,
which a fused loop does not pay, so the best rate seen at any shape is the one no step
can beat. The bandwidth is the faster of a one-thread and an all-CPU streaming copy of a
buffer as large as the workload's dataset (X and Y; at least 1 MiB), which sits where
the dataset sits: in cache for crops to medium, in DRAM for large and xl, whose
datasets (64 MiB, 1 GiB) are larger than a last-level cache. A streaming copy reads
contiguous memory; a step gathers random rows, which can only be slower, so the bound
stays a lower bound.
"% of limit" is bound / measured step time.

Fixed cost against throughput. Over the workloads of a run, a backend's step time is
fitted as ``step = α + FLOPs / β``: α (µs) is what a step costs however small (dispatch,
launches, Python), β (GFLOP/s) the rate it sustains on large steps. The fit weighs each
workload by its relative error, so the µs steps count as much as the ms ones, and its
95% interval comes from resampling each workload's rounds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from gdbench.harness import timing


def step_flops(batch_size: float, n_features: int, n_outputs: int) -> float:
    """FLOPs of one step: 4·B·d·k (two GEMMs) + 6·B·k (residual, scale, bias sum)."""
    return batch_size * (4.0 * n_features * n_outputs + 6.0 * n_outputs)


def step_bytes(batch_size: float, n_features: int, n_outputs: int, itemsize: int) -> float:
    """Bytes a step must move at least: its rows of X and Y read once, W and b read and
    written once."""
    rows = batch_size * (n_features + n_outputs)
    params = 2.0 * (n_outputs * n_features + n_outputs)
    return (rows + params) * itemsize


def bound_s(flops: float, nbytes: float, gemm_flops_per_s: float,
            bytes_per_s: float) -> float:
    """The least time a step can take: max(FLOPs / GEMM rate, bytes / bandwidth)."""
    return max(flops / gemm_flops_per_s, nbytes / bytes_per_s)


def bound_kind(flops: float, nbytes: float, gemm_flops_per_s: float,
               bytes_per_s: float) -> str:
    """Which ceiling binds: "compute" or "memory"."""
    return "compute" if flops / gemm_flops_per_s >= nbytes / bytes_per_s else "memory"


# --- the bandwidth measurement ---------------------------------------------------------------

def parallel_copy(source: np.ndarray, dest: np.ndarray,
                  pool: ThreadPoolExecutor, threads: int) -> Callable[[], None]:
    """A function that copies ``source`` into ``dest`` in ``threads`` contiguous chunks
    on ``pool`` (NumPy releases the GIL in copies)."""
    bounds = np.linspace(0, source.size, threads + 1).astype(int)
    chunks = [(source[a:b], dest[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]

    def copy() -> None:
        list(pool.map(lambda pair: np.copyto(pair[1], pair[0]), chunks))

    return copy


def copy_bandwidth(nbytes: int, threads: int, repeats: int = 5,
                   clock: timing.Clock = time.perf_counter) -> float:
    """Bytes per second of a streaming copy of an ``nbytes`` buffer (float32), split
    over ``threads`` threads; the best of ``repeats`` copies.

    A copy reads and writes every byte, so it moves 2·nbytes per call.
    """
    n = max(1, nbytes // 4)
    source = np.ones(n, np.float32)
    dest = np.empty_like(source)
    with ThreadPoolExecutor(threads) as pool:
        copy = parallel_copy(source, dest, pool, threads)
        best = min(timing.timed(copy, clock) for _ in range(repeats))
    return 2.0 * source.nbytes / best


# --- fixed cost against throughput -------------------------------------------------------------

@dataclass(frozen=True)
class Fit:
    """step = alpha_s + flops / beta, with 95% intervals (NaN when not resampled)."""

    alpha_s: float
    beta: float  # FLOP/s
    alpha_low: float = math.nan
    alpha_high: float = math.nan
    beta_low: float = math.nan
    beta_high: float = math.nan


def fit_alpha_beta(flops: Sequence[float], step_s: Sequence[float]) -> tuple[float, float]:
    """(α seconds, β FLOP/s) of ``step = α + flops / β``, least squares on relative error.

    Needs two or more distinct FLOP counts. β is infinite when the time does not grow
    with the FLOPs (a negative or zero slope: within noise, no throughput limit seen).
    """
    x = np.asarray(flops, float)
    y = np.asarray(step_s, float)
    if x.size < 2 or np.unique(x).size < 2:
        raise ValueError("the fit needs steps of two or more different sizes")
    w = 1.0 / y  # relative residuals: (y - fit) / y
    A = np.column_stack([np.ones_like(x), x]) * w[:, None]
    (alpha, slope), *_ = np.linalg.lstsq(A, y * w, rcond=None)
    return float(alpha), (1.0 / slope if slope > 0 else math.inf)


def fit_with_interval(flops: Sequence[float], rounds: Sequence[Sequence[float]], *,
                      resamples: int = 1000, seed: int = 0) -> Fit:
    """The fit of the workloads' median step times, and its 95% percentile interval from
    resampling each workload's rounds (seconds per step) with replacement."""
    samples = [np.asarray(r, float) for r in rounds]
    alpha, beta = fit_alpha_beta(flops, [float(np.median(s)) for s in samples])
    if min(s.size for s in samples) < 2:
        return Fit(alpha, beta)
    rng = np.random.default_rng(seed)
    alphas, inv_betas = np.empty(resamples), np.empty(resamples)
    for i in range(resamples):
        medians = [float(np.median(rng.choice(s, s.size))) for s in samples]
        a, b = fit_alpha_beta(flops, medians)
        alphas[i], inv_betas[i] = a, 1.0 / b
    a_low, a_high = np.quantile(alphas, [0.025, 0.975])
    ib_low, ib_high = np.quantile(inv_betas, [0.025, 0.975])
    return Fit(alpha, beta, float(a_low), float(a_high),
               1.0 / ib_high if ib_high > 0 else math.inf,
               1.0 / ib_low if ib_low > 0 else math.inf)
