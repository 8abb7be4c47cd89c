"""Synthetic pytest-benchmark runs, shaped like gdbench's, with rounds we construct.

The imaginary machine drifts like the real 2-vCPU VM: its slowness is a per-run series of
episodes (full speed, or slowed by a factor of 1.2-1.8 for tens of rounds, plus a slow
wobble), so consecutive rounds are strongly correlated. The benchmarks run one after
another along that series. Each training round is paired with a reference round (the
workload's roofline loop) timed just before it, at the same moment of the drift; both get
independent lognormal jitter (3% by default). So a round is
``true time x drift_i x slowdown x jitter`` and its reference
``roofline time x drift_i x roofline_factor x jitter'``. Everything is seeded, so every
test is deterministic.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gdbench.data.workloads import WORKLOADS
from gdbench.harness import machine

# True µs per step on the imaginary test machine: overhead-bound crops, GEMM-bound medium.
STEP_US = {
    "crops": {"roofline": 1.5, "numpy": 6.0, "torch-cpu": 25.0, "torch-manual": 20.0,
              "jax": 12.0, "jax-scan": 0.8},
    "small": {"roofline": 3.0, "numpy": 10.0, "torch-cpu": 30.0, "torch-manual": 25.0,
              "jax": 15.0, "jax-scan": 4.0},
    "medium": {"roofline": 60.0, "numpy": 90.0, "torch-cpu": 80.0, "torch-manual": 78.0,
               "jax": 85.0, "jax-scan": 70.0},
}
BACKENDS = ("numpy", "torch-cpu", "jax", "jax-scan")


def machine_info(cpu: str = "Test CPU 9000", cores: int = 2, gdbench: bool = True) -> dict:
    """pytest-benchmark's machine_info, plus gdbench's part unless ``gdbench`` is False."""
    info: dict[str, Any] = {"node": "test", "machine": "x86_64", "system": "Linux",
                            "python_version": "3.11.7",
                            "cpu": {"brand_raw": cpu, "count": cores, "arch": "X86_64"}}
    if gdbench:
        info["gdbench"] = {"cpu_model": cpu, "cpu_count": cores, "blas": [],
                           "versions": {"numpy": "2.4.6", "torch": "2.13.0"}}
        info["gdbench"]["fingerprint"] = machine.fingerprint(info)
    return info


def drift_series(size: int, *, seed: int, slow_share: float = 0.3,
                 episode_rounds: float = 10.0, slowest: float = 1.8,
                 wobble: float = 0.02) -> np.ndarray:
    """The machine's slowness per round (1 = full speed), ``size`` rounds long.

    A two-state chain: slow episodes last ``episode_rounds`` rounds on average, each at its
    own factor drawn from [1.2, ``slowest``], and take ``slow_share`` of the time; on top
    of that a slow AR(1) wobble of about ``wobble`` (log scale, lag-1 correlation 0.9).
    ``slow_share=0`` is a calm machine (the wobble only).
    """
    rng = np.random.default_rng([seed, 7])  # not the stream of the jitter
    leave = 1.0 / max(episode_rounds, 1.0)
    enter = 1.0 if slow_share >= 1 else leave * slow_share / (1.0 - slow_share)
    slow = bool(rng.random() < slow_share)
    level = rng.uniform(1.2, slowest)
    phi = 0.9
    log_wobble = rng.normal(0.0, wobble)
    out = np.empty(size)
    for i in range(size):
        if rng.random() < (leave if slow else enter) and 0 < slow_share < 1:
            slow = not slow
            level = rng.uniform(1.2, slowest)
        log_wobble = phi * log_wobble + rng.normal(0.0, wobble * np.sqrt(1 - phi**2))
        out[i] = (level if slow else 1.0) * np.exp(log_wobble)
    return out


def _stats(data: np.ndarray, iterations: int, save_data: bool) -> dict[str, Any]:
    q1, median, q3 = np.quantile(data, [0.25, 0.5, 0.75])
    stats: dict[str, Any] = {
        "min": float(data.min()), "max": float(data.max()), "mean": float(data.mean()),
        "stddev": float(data.std(ddof=1)) if data.size > 1 else 0.0,
        "rounds": int(data.size), "median": float(median),
        "iqr": float(q3 - q1), "q1": float(q1), "q3": float(q3), "iqr_outliers": 0,
        "stddev_outliers": 0, "outliers": "0;0", "ld15iqr": float(data.min()),
        "hd15iqr": float(data.max()), "ops": float(1 / data.mean()),
        "total": float(data.sum() * iterations), "iterations": iterations,
    }
    if save_data:
        stats["data"] = [float(x) for x in data]
    return stats


def make_run(
    *,
    workloads: Sequence[str] = ("crops", "small"),
    backends: Sequence[str] = BACKENDS,
    factors: Mapping[str, float] | None = None,
    roofline_factor: float = 1.0,
    rounds: int = 20,
    sigma: float = 0.03,
    seed: int = 0,
    drift_seed: int | None = None,
    slow_share: float = 0.3,
    episode_rounds: float = 10.0,
    drift: Sequence[float] | None = None,
    paired: bool = True,
    save_data: bool = True,
    info: dict | None = None,
    dtype: str = "float32",
    disagree: Sequence[str] = (),
    commit: Mapping[str, Any] | None = None,
    bandwidths: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A run JSON: ``factors`` slows single backends (1.25 = 25% slower), and
    ``roofline_factor`` slows the roofline loop, both the roofline benchmark and the
    reference rounds (with every factor at 1.25 too: the machine got 25% slower).

    The drift (see :func:`drift_series`) comes from ``drift_seed`` (default: ``seed``),
    ``slow_share`` and ``episode_rounds``; ``slow_share=0`` is a calm machine. ``drift``
    gives the slowness per round instead, repeated over the whole run. ``paired``
    False leaves out ref_data / norm_data / norm_median / ref_s (a run from before paired
    timing); ``save_data`` False leaves out stats.data only, as the suite computes the
    paired fields itself. ``dtype`` other than float32 is recorded in extra_info and
    named in each benchmark's id. The backends in ``disagree`` record agrees False (max
    |W - W_numpy| 0.03). ``commit`` replaces commit_info. ``bandwidths`` gives a
    workload's copy bandwidth (GB/s; default BANDWIDTH_GBS); the copy's size is the
    suite's, the dataset's bytes and at least 1 MiB.
    """
    rng = np.random.default_rng(seed)
    factors = dict(factors or {})
    n_benchmarks = len(workloads) * (1 + len(backends))
    size = n_benchmarks * rounds
    slowness = np.resize(np.asarray(drift, dtype=float), size) if drift is not None else \
        drift_series(size, seed=seed if drift_seed is None else drift_seed,
                     slow_share=slow_share, episode_rounds=episode_rounds)
    moments = iter(np.split(slowness, n_benchmarks))  # the benchmarks run one after another
    benchmarks = []
    for workload in workloads:
        w = WORKLOADS[workload]
        problem_rows = {"crops": (15, 3, 2), "small": (1024, 16, 2), "medium": (16384, 128, 8)}
        n, d, k = problem_rows[workload]
        steps = w.epochs * -(-n // w.batch_size)
        flops = w.epochs * n * (4.0 * d * k + 6.0 * k)
        ref_round_s = STEP_US[workload]["roofline"] * steps * 1e-6 * roofline_factor
        for backend in ["roofline", *backends]:
            roofline = backend == "roofline"
            factor = roofline_factor if roofline else factors.get(backend, 1.0)
            round_s = STEP_US[workload][backend] * steps * 1e-6 * factor
            now = next(moments)
            data = round_s * now * rng.lognormal(0.0, sigma, rounds)
            ref = ref_round_s * now * rng.lognormal(0.0, sigma, rounds)
            median = float(np.median(data))
            pairs: dict[str, Any] = {}
            if paired and not roofline:
                norm = data / ref
                pairs = {"ref_data": [float(x) for x in ref],
                         "norm_data": [float(x) for x in norm],
                         "norm_median": float(np.median(norm)),
                         "ref_s": float(np.median(ref))}
            param = workload if roofline else f"{workload}-{backend}"
            if dtype != "float32":
                param += f"-{dtype}"
            name = f"bench_roofline[{param}]" if roofline else f"bench_training[{param}]"
            wrong = backend in disagree
            data_bytes = n * (d + k) * (8 if dtype == "float64" else 4)
            facts = _workload_facts(workload, steps, (bandwidths or {}).get(
                workload, BANDWIDTH_GBS), data_bytes) if roofline else _backend_facts(backend)
            benchmarks.append({
                "group": workload,
                "name": name,
                "fullname": f"benches/bench_training.py::{name}",
                "params": {"workload": workload} if roofline else
                {"workload": workload, "backend": backend},
                "param": param,
                "extra_info": {
                    "kind": "roofline" if roofline else "training",
                    "backend": backend, "device": "cpu", "workload": workload,
                    "n": n, "d": d, "k": k, "batch_size": w.batch_size, "epochs": w.epochs,
                    "steps": steps, "dtype": dtype, "flops": flops,
                    "step_us": median / steps * 1e6, "gflops": flops / median / 1e9,
                    "compile_s": 0.3 if backend.startswith("jax") else 0.0,
                    "final_loss": None if roofline else 0.0123,
                    "max_abs_diff_vs_numpy": None if roofline else
                    0.03 if wrong else 0.0 if backend == "numpy" else 2e-7,
                    "agrees": not wrong, "sync": "none", **pairs,
                    **facts,
                },
                "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5,
                            "max_time": 1.0, "min_time": 5e-06, "warmup": False},
                "stats": _stats(data, 1, save_data),
            })
    return {
        "machine_info": info if info is not None else machine_info(),
        "commit_info": dict(commit) if commit is not None else
        {"id": "0" * 40, "dirty": False, "project": "gdbench", "branch": "main"},
        "benchmarks": benchmarks,
        "datetime": "2026-01-02T03:04:05.000000+00:00",
        "version": "5.3.1",
    }


# Constructed ceilings and targets of the roofline rows: GB/s of the copy, and the steps
# to the shared target (None: the plan never reaches it).
BANDWIDTH_GBS = 20.0
TARGET_STEPS = {"crops": None, "small": 128, "medium": None}


def _workload_facts(workload: str, steps: int, bandwidth_gbs: float,
                    data_bytes: int) -> dict[str, Any]:
    return {"bandwidth_gbs": bandwidth_gbs, "copy_bytes": max(1 << 20, data_bytes),
            "copy_threads": 1, "target_loss": 0.0101,
            "target_steps": TARGET_STEPS[workload], "target_plan_steps": steps,
            "loss_curve_steps": [0, steps], "loss_curve": [1.0, 0.0102]}


def _backend_facts(backend: str) -> dict[str, Any]:
    """prepare seconds (jax compiles: 0.3 s of its 0.35) and the memory of one run."""
    jax = backend.startswith("jax")
    return {"prepare_s": 0.35 if jax else 0.001,
            "memory_method": "jax-device" if jax else "tracemalloc",
            "memory_peak_bytes": None if jax else 2048.0,
            "memory_allocations_per_step": None, "memory_allocated_bytes_per_step": None}


def save_run(path: Path, doc: dict[str, Any]) -> Path:
    """A run JSON (``doc``, as make_run gives it, edited or not) saved at ``path``;
    returns the path."""
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def write_run(path: Path, **kwargs: Any) -> Path:
    """make_run(**kwargs) saved as JSON at ``path``; returns the path."""
    return save_run(path, make_run(**kwargs))


def run_args(argv: Sequence[str]) -> argparse.Namespace:
    """``gdbench run``'s options parsed from ``argv``, as its parser gives them to the
    command (for the tests that call run_suite and the launcher directly)."""
    from gdbench.commands import run as run_command

    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def counted_names(path: Path) -> Counter[str]:
    """How many times each benchmark name is in the saved run at ``path``."""
    return Counter(b["name"] for b in json.loads(path.read_text())["benchmarks"])


def run_cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``gdbench argv...`` in this process; argparse's
    own errors (SystemExit) count as exit codes too."""
    from gdbench.commands import cli

    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code) if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def bad_run_files(tmp_path: Path) -> dict[str, Path]:
    """One broken file per kind of bad input, keyed by what is wrong with it."""
    good = json.dumps(make_run(workloads=("crops",), rounds=5))
    cases = {
        "missing": None,
        "empty": "",
        "truncated": good[: len(good) // 2],
        "not JSON": "workload,backend\ncrops,numpy\n",
        "not a run": json.dumps({"results": [1, 2, 3]}),
        "a JSON list": json.dumps([{"name": "x"}]),
        "no benchmarks": json.dumps({**json.loads(good), "benchmarks": []}),
        "no stats": json.dumps({**json.loads(good), "benchmarks": [{"name": "x"}]}),
    }
    paths = {}
    for what, text in cases.items():
        path = tmp_path / f"{what.replace(' ', '_')}.json"
        if text is not None:
            path.write_text(text, encoding="utf-8")
        paths[what] = path
    return paths


def on_gpu(doc: dict[str, Any], backends: Sequence[str],
           yardsticks: Mapping[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """``doc`` as a GPU machine would have saved it: the training rows of ``backends``
    ran on the GPU (device "cuda", as jax's rows on a GPU, or torch-cuda's), and
    ``yardsticks`` gives, per workload, the GPU's yardstick row (GFLOP/s of torch.mm at the
    step's shapes, GB/s of a device-to-device copy), timed as the CPU's roofline row of the
    workload and GFLOP/s over it faster. Without yardsticks the run has none (a run where
    torch did not see the GPU)."""
    out = json.loads(json.dumps(doc))
    for bench in out["benchmarks"]:
        if bench["extra_info"]["backend"] in backends:
            bench["extra_info"]["device"] = "cuda"
    for workload, (gflops, gbs) in (yardsticks or {}).items():
        cpu = next(b for b in out["benchmarks"] if b["extra_info"]["kind"] == "roofline"
                   and b["extra_info"]["workload"] == workload)
        gpu = json.loads(json.dumps(cpu))
        speed = gflops / cpu["extra_info"]["gflops"]  # the GPU's loop is this much faster
        gpu["stats"] = _stats(np.asarray(cpu["stats"]["data"]) / speed, 1, True)
        gpu["name"] = gpu["param"] = f"bench_gpu_roofline[{workload}]"
        gpu["fullname"] = f"benches/bench_training.py::{gpu['name']}"
        info = gpu["extra_info"]
        for key in ("target_loss", "target_steps", "target_plan_steps", "loss_curve_steps",
                    "loss_curve"):
            info.pop(key)
        info.update(backend="roofline-cuda", device="cuda", bandwidth_gbs=gbs, copy_threads=0,
                    gflops=gflops, step_us=info["step_us"] / speed)
        out["benchmarks"].append(gpu)
    return out
