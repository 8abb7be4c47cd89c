"""What machine a run came from: CPU, threads, BLAS, GPU and library versions.

:func:`describe` extends pytest-benchmark's ``machine_info``; :func:`fingerprint` names a
machine by what decides its speed, so runs from different machines are never compared
as if they were one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import sys
from typing import Any

THREAD_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS",
    "OPENBLAS_CORETYPE", "CUDA_VISIBLE_DEVICES",
)
# Only these versions change a run's speed enough to make it another machine.
SPEED_LIBRARIES = ("numpy", "torch", "jax", "jaxlib")
LIBRARIES = ("gdbench", "numpy", "torch", "jax", "jaxlib", "pandas", "pytest-benchmark")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _blas(load_libraries: bool) -> list[dict[str, Any]]:
    """The BLAS/OpenMP libraries loaded by numpy (and torch, when installed and loaded)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    import numpy  # noqa: F401  (loads its BLAS so threadpoolctl sees it)

    if load_libraries:
        with contextlib.suppress(ImportError):
            import torch  # noqa: F401
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture")
    return [{k: info.get(k) for k in keep} for info in threadpool_info()]


def _torch_info(load_libraries: bool) -> dict[str, Any]:
    if not load_libraries and "torch" not in sys.modules:
        return {}
    try:
        import torch
    except ImportError:
        return {}
    info: dict[str, Any] = {"torch_threads": torch.get_num_threads(),
                            "torch_interop_threads": torch.get_num_interop_threads()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
        try:
            import subprocess

            info["gpu_driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=False,
            ).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            info["gpu_driver"] = None
    return info


def thread_env(threads: int) -> dict[str, str]:
    """Environment that caps BLAS, OpenMP and XLA at ``threads`` threads.

    It must be in place before the libraries start their thread pools, so gdbench run
    puts it in the benchmark process's environment.
    """
    xla = f"intra_op_parallelism_threads={threads}"
    if threads == 1:
        xla = "--xla_cpu_multi_thread_eigen=false " + xla
    xla_flags = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), xla]))
    return {"GDBENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "XLA_FLAGS": xla_flags}


def pin_threads(threads: int) -> Any:
    """Pin this process to its first ``threads`` CPUs and cap every thread pool there.

    Pinning the CPUs as well as the pool sizes keeps every thread (XLA starts some of its
    own whatever the flags say) on the same cores, so a noisy neighbour on another core
    cannot slow one benchmark and spare the next. Returns the threadpoolctl limiter.
    """
    os.environ.update(thread_env(threads))
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cpus)
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(threads)
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(threads)
    return limiter


def describe(load_libraries: bool = True) -> dict[str, Any]:
    """The gdbench part of machine_info: CPU, cores, threads, BLAS, GPU, versions.

    With ``load_libraries=False`` it imports neither torch nor jax (their versions still
    come from the package metadata): a benchmark process that times one backend must not
    start another library's thread pools beside it.
    """
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "thread_env": {v: os.environ.get(v) for v in THREAD_VARS},
        "threads_pinned": int(os.environ["GDBENCH_THREADS"]) if os.environ.get(
            "GDBENCH_THREADS") else None,
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(
            os, "sched_getaffinity") else None,
        "blas": _blas(load_libraries),
        "versions": _versions(),
    }
    info.update(_torch_info(load_libraries))
    if load_libraries or "jax" in sys.modules:
        try:
            import jax

            info["jax_backend"] = jax.default_backend()
            info["jax_devices"] = [str(d) for d in jax.devices()]
        except ImportError:
            pass
    info["fingerprint"] = fingerprint({"gdbench": info, **platform_info()})
    return info


def platform_info() -> dict[str, Any]:
    return {"node": platform.node(), "machine": platform.machine(), "system": platform.system(),
            "python_version": platform.python_version()}


def fingerprint(machine_info: dict[str, Any]) -> str:
    """A short stable id of the hardware and software that decide the speed of a run.

    Built from the CPU model, core count, GPU, pinned thread count, BLAS and library
    versions, never from the host name, so two identical CI runners share a fingerprint
    and a changed BLAS or thread pinning does not. Takes pytest-benchmark's machine_info
    with gdbench's part under "gdbench".
    """
    g = machine_info.get("gdbench", {})
    key = "|".join(str(x) for x in (
        g.get("cpu_model") or machine_info.get("cpu", {}).get("brand_raw"),
        g.get("cpu_count"),
        machine_info.get("machine"),
        g.get("gpu"),
        g.get("threads_pinned"),
        sorted((b.get("internal_api") or "", b.get("version") or "") for b in g.get("blas", [])),
        sorted((k, v) for k, v in (g.get("versions") or {}).items() if k in SPEED_LIBRARIES),
    ))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def label(machine_info: dict[str, Any]) -> str:
    """A human label: 'CPU model, N cores[, GPU]'."""
    g = machine_info.get("gdbench", {})
    cpu = g.get("cpu_model") or machine_info.get("cpu", {}).get("brand_raw") or "unknown CPU"
    cores = g.get("cpu_count") or machine_info.get("cpu", {}).get("count") or "?"
    parts = [cpu, f"{cores} cores"]
    if g.get("gpu"):
        parts.append(g["gpu"])
    return ", ".join(parts)
