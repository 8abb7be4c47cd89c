"""What a training step cannot beat on this machine, and what each backend pays per step.

The limit. A step of batch B must do 4·B·d·k + 6·B·k FLOPs and must read its B rows of X
and Y, and read and write W and b, at least once. So no backend can take less than

    bound = max(FLOPs / compute roof, bytes / memory roof)

with both roofs measured in the same run by the roofline benchmarks (:func:`run_roofs`,
which the tables' limit and the roofline figure both use). The compute roof is the best
GFLOP/s of the run's roofline loops (two NumPy GEMMs of one step's shapes, the data
already in cache): at small shapes NumPy's per-call cost hides the machine's rate, which
a fused loop does not pay, so the best rate seen at any shape is the one no step can
beat. The memory roof comes from streaming copies: beside each workload the run copies
a buffer as large as its dataset (X and Y; at least 1 MiB), on one thread and on every
allowed CPU, and keeps the faster. A step's data sits at least as close to the core as
a larger buffer would, so it can move at least as fast as any copy of a buffer as large
or larger: a workload's memory roof is the fastest copy measured of a buffer at least as
large as its own. Buffers that stay in cache copy faster than those streamed from DRAM,
so a run usually has one memory roof for the workloads whose data stays in cache and one
for those whose data does not. A streaming copy reads contiguous memory; a step gathers
random rows, which can only be slower, so the bound stays a lower bound.
"% of limit" is bound / measured step time. In roofline terms (Williams, Waterman and
Patterson, 2009), a step of intensity I = FLOPs / bytes runs at most
min(compute roof, memory roof × I) FLOP/s.

A step bounds only by the yardsticks of its own device. The roofline rows above are the
CPU's; a row whose device is a GPU (``device != "cpu"``) is bounded by the GPU
yardsticks measured in the same run, rows with that device: ``torch.mm`` of each step's
shapes on the device (its compute roof) and a device-to-device copy as large as the
dataset (its memory roofs), chosen by the same rules. The CPU's GEMM rate and bandwidth
say nothing of a GPU step, so a run without GPU yardsticks gives its GPU rows no limit,
and :func:`limit_roofs` says why.

Fixed cost against throughput. Over the workloads of a run, a backend's step time is
fitted as ``step = α + FLOPs / β``: α (µs) is what a step costs however small (dispatch,
launches, Python), β (GFLOP/s) the rate it sustains on large steps. The fit weighs each
workload by its relative error, so the µs steps count as much as the ms ones, and its
95% interval comes from resampling each workload's rounds.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

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


# --- the roofs of a run -----------------------------------------------------------------------

CPU = "cpu"


def device_of(value: Any) -> str:
    """A row's device: its recorded ``device``, "cpu" when none is recorded (roofline and
    training rows of runs saved before rows named their device ran on the CPU)."""
    return value if isinstance(value, str) and value else CPU


@dataclass(frozen=True)
class Yardstick:
    """What the run measured beside one workload on one device: the rate of its roofline
    loop (two GEMMs of a step's shapes, FLOP/s: cached NumPy GEMMs on the CPU, torch.mm on
    a GPU) and of a copy as large as its dataset (bytes/s; NaN when not measured), with the
    copy's size (bytes; NaN when not recorded) and threads (0 when not recorded or on a
    GPU)."""

    workload: str
    gemm_flops_per_s: float
    copy_bytes_per_s: float
    copy_bytes: float = math.nan
    copy_threads: int = 0
    device: str = CPU

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Yardstick:
        """From a roofline row of a loaded run (``gflops``, ``bandwidth_gbs``,
        ``copy_bytes``, ``copy_threads``, ``device``; missing or bad values read as not
        measured, a missing device as the CPU)."""
        def number(key: str) -> float:
            try:
                value = float(record.get(key))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return math.nan
            return value if math.isfinite(value) and value > 0 else math.nan

        threads = number("copy_threads")
        return cls(str(record.get("workload")), number("gflops") * 1e9,
                   number("bandwidth_gbs") * 1e9, number("copy_bytes"),
                   0 if math.isnan(threads) else int(threads), device_of(record.get("device")))


@dataclass(frozen=True)
class MemoryRoof:
    """A diagonal roof: ``bytes_per_s`` × intensity, the copy of ``measured_by``; it
    bounds ``workloads``."""

    bytes_per_s: float
    measured_by: Yardstick
    workloads: tuple[str, ...]


@dataclass(frozen=True)
class Roofs:
    """The roofs of one run (one dtype): a flat compute roof (FLOP/s, the best roofline
    loop, ``compute_by``) and the memory roofs, fastest first."""

    compute_flops_per_s: float
    compute_by: Yardstick
    memory: tuple[MemoryRoof, ...]

    def memory_roof(self, workload: str) -> MemoryRoof | None:
        """The memory roof that bounds ``workload``; None when its copy was not measured."""
        return next((m for m in self.memory if workload in m.workloads), None)

    def bandwidth(self, workload: str) -> float:
        """Bytes/s of ``workload``'s memory roof; NaN when there is none."""
        roof = self.memory_roof(workload)
        return math.nan if roof is None else roof.bytes_per_s

    def attainable(self, workload: str, intensity: float) -> float:
        """FLOP/s under the roofs at ``intensity`` (FLOPs per byte):
        min(compute roof, memory roof × intensity); NaN without a memory roof."""
        return min(self.compute_flops_per_s, self.bandwidth(workload) * intensity)

    def bound_s(self, workload: str, flops: float, nbytes: float) -> float:
        """The least time (s) a step of ``workload`` doing ``flops`` FLOPs and moving
        ``nbytes`` bytes can take; NaN without a memory roof."""
        bandwidth = self.bandwidth(workload)
        if math.isnan(bandwidth):
            return math.nan
        return bound_s(flops, nbytes, self.compute_flops_per_s, bandwidth)

    def describe(self) -> list[str]:
        """One line per roof: its rate and what measured it."""
        by = self.compute_by
        if by.device == CPU:
            loop = f"the fastest roofline loop, two cached NumPy GEMMs of {by.workload}'s"
        else:
            loop = f"the fastest GPU yardstick, two torch.mm on {by.device} of {by.workload}'s"
        lines = [f"compute {self.compute_flops_per_s / 1e9:.3g} GFLOP/s: {loop} step shapes"]
        lines += [f"memory {m.bytes_per_s / 1e9:.3g} GB/s: {_copy_text(m.measured_by)}, for "
                  f"{', '.join(m.workloads)}" for m in self.memory]
        return lines


def _copy_text(y: Yardstick) -> str:
    """What measured a copy bandwidth: 'a streaming copy of 8.5 MiB on 1 thread
    (medium's roofline)', 'a device-to-device copy of 8.5 MiB on cuda (medium's GPU
    yardstick)'."""
    size = "" if math.isnan(y.copy_bytes) else f" of {y.copy_bytes / 2**20:.3g} MiB"
    if y.device != CPU:
        return f"a device-to-device copy{size} on {y.device} ({y.workload}'s GPU yardstick)"
    threads = f" on {y.copy_threads} thread{'s' * (y.copy_threads != 1)}" \
        if y.copy_threads else ""
    return f"a streaming copy{size}{threads} ({y.workload}'s roofline)"


def _size(y: Yardstick) -> float:
    return -math.inf if math.isnan(y.copy_bytes) else y.copy_bytes


def run_roofs(records: Iterable[Mapping[str, Any]], device: str = CPU) -> Roofs | None:
    """The roofs of a run on ``device``, from its roofline rows of one dtype (see
    :meth:`Yardstick.from_record`): only the rows measured on that device count. None when
    no roofline loop was timed there.

    Compute roof: the best GEMM rate of any roofline loop. Memory roof of a workload: the
    fastest copy of a buffer at least as large as its own (its own when sizes are not
    recorded); workloads bounded by the same copy share one roof.
    """
    sticks = [y for y in map(Yardstick.from_record, records) if y.device == device]
    timed = [y for y in sticks if not math.isnan(y.gemm_flops_per_s)]
    if not timed:
        return None
    best = max(timed, key=lambda y: y.gemm_flops_per_s)
    copied = [y for y in sticks if not math.isnan(y.copy_bytes_per_s)]
    bounded_by: dict[int, list[str]] = {}  # index of the copy in `copied` -> workloads
    for i, y in enumerate(copied):
        # NaN sizes compare False: a copy of unknown size bounds its own workload only.
        larger = [j for j, c in enumerate(copied) if j == i or c.copy_bytes >= y.copy_bytes]
        # A tie goes to the larger buffer, so that equal rates make one roof.
        fastest = max(larger, key=lambda j: (copied[j].copy_bytes_per_s, _size(copied[j])))
        bounded_by.setdefault(fastest, []).append(y.workload)
    memory = sorted((MemoryRoof(copied[j].copy_bytes_per_s, copied[j],
                                tuple(dict.fromkeys(ws)))
                     for j, ws in bounded_by.items()), key=lambda m: -m.bytes_per_s)
    return Roofs(best.gemm_flops_per_s, best, tuple(memory))


NO_CPU_ROOFLINE = "no roofline loop in this run"
NO_GPU_YARDSTICK = (
    "no {device} yardstick in this run (gdbench run measures one, torch.mm of each step's "
    "shapes and a device-to-device copy as large as the dataset, when torch sees the "
    "device); the CPU's roofs do not bound a {device} step")


def limit_roofs(records: Iterable[Mapping[str, Any]],
                device: str) -> tuple[Roofs | None, str]:
    """The roofs that bound a step on ``device`` (:func:`run_roofs` of that device's
    yardsticks), or None and why there are none. A GPU row never falls back on the CPU's
    roofs: it gets no limit, and the reason names the missing yardstick."""
    roofs = run_roofs(records, device)
    if roofs is not None:
        return roofs, ""
    return None, NO_CPU_ROOFLINE if device == CPU else NO_GPU_YARDSTICK.format(device=device)


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
