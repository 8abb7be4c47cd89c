"""What machine a run came from: CPU, threads, BLAS, GPU and library versions.

:func:`describe` extends pytest-benchmark's ``machine_info``; :func:`fingerprint` names a
machine by what decides its speed, so runs from different machines are never compared
as if they were one. The CPU is pytest-benchmark's own record (py-cpuinfo's, under
``machine_info["cpu"]``); :func:`describe` keeps a smaller one read from /proc/cpuinfo
for info saved without it.
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


# /proc/cpuinfo's names for the py-cpuinfo fields that the fingerprint uses.
_PROC_FIELDS = {"model name": "brand_raw", "cpu family": "family", "model": "model",
                "stepping": "stepping"}


def cpu_record(path: str = "/proc/cpuinfo") -> dict[str, Any]:
    """The first CPU's brand_raw, family, model and stepping, named as py-cpuinfo names
    them, read from ``path``; only brand_raw (from platform) where the file is missing."""
    record: dict[str, Any] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first processor's block
                key, _, value = line.partition(":")
                field = _PROC_FIELDS.get(key.strip())
                if field:
                    value = value.strip()
                    record[field] = int(value) if value.isdigit() else value
    except OSError:
        pass
    if not record.get("brand_raw"):
        record["brand_raw"] = platform.processor() or platform.machine()
    return record


def cpu_model() -> str:
    """The CPU's brand string, e.g. 'AMD EPYC 7763 64-Core Processor'."""
    return str(cpu_record()["brand_raw"])


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
    puts it in the benchmark process's environment. The user's other XLA_FLAGS are kept;
    those it sets replace any earlier value, so applying it twice changes nothing.
    """
    ours = [f"intra_op_parallelism_threads={threads}"]
    if threads == 1:
        ours.insert(0, "--xla_cpu_multi_thread_eigen=false")
    names = {flag.split("=")[0] for flag in ours}
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.split("=")[0] not in names]
    xla_flags = " ".join(kept + ours)
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
    cpu = cpu_record()
    info: dict[str, Any] = {
        "cpu_model": cpu["brand_raw"],
        "cpu": cpu,  # the fallback for machine_info without pytest-benchmark's "cpu"
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
    jax_info = _jax_info(load_libraries)
    if not info.get("gpu") and jax_info.get("jax_gpu"):
        info["gpu"] = jax_info["jax_gpu"]  # a run without torch's CUDA still names its GPU
    info.update(jax_info)
    info["fingerprint"] = fingerprint({"gdbench": info, **platform_info()})
    return info


def _jax_info(load_libraries: bool) -> dict[str, Any]:
    """jax's default backend and devices, and, when that backend is a GPU, the GPU's name
    (``jax_gpu``, the device kind: "NVIDIA H100 80GB HBM3")."""
    if not load_libraries and "jax" not in sys.modules:
        return {}
    try:
        import jax
    except ImportError:
        return {}
    devices = jax.devices()
    info: dict[str, Any] = {"jax_backend": jax.default_backend(),
                            "jax_devices": [str(d) for d in devices]}
    if info["jax_backend"] == "gpu" and devices:
        info["jax_gpu"] = str(getattr(devices[0], "device_kind", "") or devices[0])
    return info


def platform_info() -> dict[str, Any]:
    return {"node": platform.node(), "machine": platform.machine(), "system": platform.system(),
            "python_version": platform.python_version()}


def _cpu(machine_info: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's CPU record when the run has one, else gdbench's own."""
    cpu = machine_info.get("cpu")
    if isinstance(cpu, dict) and cpu.get("brand_raw"):
        return cpu
    own = machine_info.get("gdbench", {}).get("cpu")
    return own if isinstance(own, dict) else {}


def _flags(value: Any) -> str | None:
    """An environment value with repeated words once (XLA_FLAGS set twice is set once)."""
    return None if value is None else " ".join(dict.fromkeys(str(value).split()))


def fingerprint(machine_info: dict[str, Any]) -> str:
    """A short stable id of the hardware and software that decide the speed of a run.

    Built from the CPU (brand, family and model), core count, architecture, GPU (named by
    torch, or by jax when jax runs on it), pinned thread count and thread environment
    variables, BLAS (internal_api and version) and
    the versions of :data:`SPEED_LIBRARIES`, never from the host name, so two identical
    CI runners share a fingerprint, and a changed CPU, BLAS or thread setting makes
    another. Takes pytest-benchmark's machine_info with gdbench's part under "gdbench".
    """
    g = machine_info.get("gdbench", {})
    cpu = _cpu(machine_info)
    blas = [b for b in g.get("blas") or [] if b.get("user_api", "blas") == "blas"]
    key = "|".join(str(x) for x in (
        cpu.get("brand_raw") or g.get("cpu_model"),
        cpu.get("family"),
        cpu.get("model"),
        g.get("cpu_count") or cpu.get("count"),
        machine_info.get("machine"),
        g.get("gpu"),
        g.get("threads_pinned"),
        sorted((k, _flags(v)) for k, v in (g.get("thread_env") or {}).items()
               if v is not None),
        sorted((b.get("internal_api") or "", b.get("version") or "") for b in blas),
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
