"""gdbench.harness.machine: the fingerprint names a machine by what decides its speed, and
pin_threads really pins."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gdbench.harness import machine


def pytest_benchmark_info() -> dict[str, Any]:
    """machine_info as a gdbench run saves it: pytest-benchmark's fields, its py-cpuinfo
    record under "cpu", and gdbench's part under "gdbench"."""
    return {
        "node": "runner-17", "machine": "x86_64", "system": "Linux", "python_version": "3.11.7",
        "cpu": {"brand_raw": "AMD EPYC 7763 64-Core Processor", "family": 25, "model": 1,
                "stepping": 1, "count": 4, "arch": "X86_64", "hz_actual": [2445000000, 0]},
        "gdbench": {
            "cpu_model": "AMD EPYC 7763 64-Core Processor",
            "cpu_count": 4,
            "thread_env": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                           "OPENBLAS_NUM_THREADS": "1",
                           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false "
                                        "intra_op_parallelism_threads=1",
                           "OPENBLAS_CORETYPE": None, "CUDA_VISIBLE_DEVICES": None},
            "threads_pinned": 1,
            "cpu_affinity": [0],
            "blas": [{"user_api": "blas", "internal_api": "openblas", "prefix": "libopenblas",
                      "version": "0.3.31", "num_threads": 1, "architecture": "Zen"},
                     {"user_api": "openmp", "internal_api": "openmp", "prefix": "libgomp",
                      "version": None, "num_threads": 1, "architecture": None}],
            "versions": {"gdbench": "0.1.0", "numpy": "2.4.6", "torch": "2.13.0+cpu",
                         "jax": "0.10.2", "jaxlib": "0.10.2", "pandas": "3.1.1",
                         "pytest-benchmark": "5.3.1"},
            "gpu": None,
        },
    }


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(info: dict[str, Any]) -> None:
        target = info
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


def _blas(field: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(info: dict[str, Any]) -> None:
        info["gdbench"]["blas"][0][field] = value

    return change


SPEED_CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "CPU brand": _set("cpu", "brand_raw", value="Intel Xeon Platinum 8370C"),
    "CPU family": _set("cpu", "family", value=26),
    "CPU model": _set("cpu", "model", value=17),
    "core count": _set("gdbench", "cpu_count", value=8),
    "architecture": _set("machine", value="aarch64"),
    "GPU": _set("gdbench", "gpu", value="NVIDIA H100 80GB HBM3"),
    "pinned threads": _set("gdbench", "threads_pinned", value=2),
    "no pinning": _set("gdbench", "threads_pinned", value=None),
    # Spelled out, not read from machine.THREAD_VARS: a name dropped there is caught here.
    **{f"thread env {var}": _set("gdbench", "thread_env", var, value="2")
       for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS",
                   "OPENBLAS_CORETYPE", "CUDA_VISIBLE_DEVICES")},
    "thread env XLA flag": _set("gdbench", "thread_env", "XLA_FLAGS",
                                value="intra_op_parallelism_threads=1"),
    "BLAS library": _blas("internal_api", "mkl"),
    "BLAS version": _blas("version", "0.3.28"),
    **{f"{lib} version": _set("gdbench", "versions", lib, value="9.9.9")
       for lib in ("numpy", "torch", "jax", "jaxlib")},
}

SAME_MACHINE: dict[str, Callable[[dict[str, Any]], None]] = {
    "host name": _set("node", value="runner-42"),
    "CPU clock reading": _set("cpu", "hz_actual", value=[2450000000, 0]),
    "stepping": _set("cpu", "stepping", value=2),
    "affinity": _set("gdbench", "cpu_affinity", value=[1]),
    "pandas version": _set("gdbench", "versions", "pandas", value="9.9.9"),
    "gdbench version": _set("gdbench", "versions", "gdbench", value="0.2.0"),
    "OpenMP runtime loaded beside": _set("gdbench", "blas", 1, "version", value="4.5"),
    "BLAS thread count read": _blas("num_threads", "4"),
    "XLA_FLAGS set twice": _set("gdbench", "thread_env", "XLA_FLAGS", value=(
        "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1 "
        "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")),
    "the stored fingerprint": _set("gdbench", "fingerprint", value="something"),
}


@pytest.mark.parametrize("what", list(SPEED_CHANGES))
def test_a_change_that_decides_the_speed_changes_the_fingerprint(what: str) -> None:
    info = pytest_benchmark_info()
    changed = copy.deepcopy(info)
    SPEED_CHANGES[what](changed)
    assert changed != info
    assert machine.fingerprint(changed) != machine.fingerprint(info)


@pytest.mark.parametrize("what", list(SAME_MACHINE))
def test_what_does_not_decide_the_speed_leaves_the_fingerprint(what: str) -> None:
    info = pytest_benchmark_info()
    changed = copy.deepcopy(info)
    SAME_MACHINE[what](changed)
    assert changed != info
    assert machine.fingerprint(changed) == machine.fingerprint(info)


def test_the_fingerprint_is_short_hex_and_stable() -> None:
    fp = machine.fingerprint(pytest_benchmark_info())
    assert len(fp) == 12 and int(fp, 16) >= 0
    assert fp == machine.fingerprint(pytest_benchmark_info())


def test_pytest_benchmarks_cpu_record_comes_first() -> None:
    info = pytest_benchmark_info()
    info["gdbench"]["cpu_model"] = "what /proc/cpuinfo said"
    info["gdbench"]["cpu"] = {"brand_raw": "what /proc/cpuinfo said", "family": 6, "model": 85}
    assert machine.fingerprint(info) == machine.fingerprint(pytest_benchmark_info())


def test_without_pytest_benchmarks_record_gdbenchs_own_stands_in() -> None:
    info = pytest_benchmark_info()
    record = info.pop("cpu")
    info["gdbench"]["cpu"] = {k: record[k] for k in ("brand_raw", "family", "model", "stepping")}
    assert machine.fingerprint(info) == machine.fingerprint(pytest_benchmark_info())
    # An empty record from py-cpuinfo does not hide gdbench's.
    assert machine.fingerprint({**info, "cpu": {}}) == machine.fingerprint(info)
    # The oldest runs: a brand string only.
    del info["gdbench"]["cpu"]
    brand_only = machine.fingerprint(info)
    info["gdbench"]["cpu_model"] = "another CPU"
    assert machine.fingerprint(info) != brand_only


def test_describe_fingerprints_itself_as_a_saved_run_is_fingerprinted() -> None:
    """describe() has no py-cpuinfo record; its /proc/cpuinfo one gives the same id as
    the run's machine_info will, where the two agree on brand, family and model."""
    g = machine.describe(load_libraries=False)
    assert g["cpu_model"] == g["cpu"]["brand_raw"] == machine.cpu_model()
    assert g["cpu_count"] == os.cpu_count()
    assert set(g["thread_env"]) == set(machine.THREAD_VARS)
    saved = {**machine.platform_info(), "gdbench": g,
             "cpu": {**g["cpu"], "count": os.cpu_count(), "flags": ["avx2"]}}
    assert machine.fingerprint(saved) == g["fingerprint"]


def test_cpu_record_reads_the_first_processor(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD EPYC 9654 96-Core Processor\nstepping\t: 1\nmicrocode\t: 0xa\n\n"
        "processor\t: 1\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Other\n\n")
    assert machine.cpu_record(str(cpuinfo)) == {
        "brand_raw": "AMD EPYC 9654 96-Core Processor", "family": 25, "model": 17,
        "stepping": 1}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n")
    assert machine.cpu_record(str(arm))["brand_raw"]  # platform's name, never empty
    assert set(machine.cpu_record(str(tmp_path / "missing"))) == {"brand_raw"}


def test_label_names_cpu_cores_and_gpu() -> None:
    info = pytest_benchmark_info()
    assert machine.label(info) == "AMD EPYC 7763 64-Core Processor, 4 cores"
    info["gdbench"]["gpu"] = "NVIDIA H200"
    assert machine.label(info) == "AMD EPYC 7763 64-Core Processor, 4 cores, NVIDIA H200"
    plain = {"cpu": {"brand_raw": "Plain CPU", "count": 2}}
    assert machine.label(plain) == "Plain CPU, 2 cores"
    assert machine.label({}) == "unknown CPU, ? cores"


def _fake_jax(monkeypatch: pytest.MonkeyPatch, backend: str, kind: str) -> None:
    """Fakes jax, loaded, with one device of ``backend`` whose device_kind is ``kind``, and
    hides torch: a jax-only process on the machine."""
    device = SimpleNamespace(platform=backend, device_kind=kind)
    monkeypatch.setitem(sys.modules, "jax", SimpleNamespace(
        default_backend=lambda: backend, devices=lambda: [device]))
    monkeypatch.delitem(sys.modules, "torch", raising=False)


def test_a_jax_only_run_on_a_gpu_names_the_gpu_and_gets_a_gpu_fingerprint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Fakes jax on a GPU box, with no torch in the process (a jax-only benchmark process).
    _fake_jax(monkeypatch, "gpu", "NVIDIA H100 80GB HBM3")
    on_gpu = machine.describe(load_libraries=False)
    assert on_gpu["jax_backend"] == "gpu" and on_gpu["jax_gpu"] == "NVIDIA H100 80GB HBM3"
    assert on_gpu["gpu"] == "NVIDIA H100 80GB HBM3"
    # The same process with jax on the CPU: no GPU, and another fingerprint.
    _fake_jax(monkeypatch, "cpu", "cpu")
    on_cpu = machine.describe(load_libraries=False)
    assert "gpu" not in on_cpu and "jax_gpu" not in on_cpu
    assert on_gpu["fingerprint"] != on_cpu["fingerprint"]
    # Saved as a run saves it, the GPU names the machine too.
    saved = {**machine.platform_info(), "gdbench": on_gpu}
    assert machine.fingerprint(saved) == on_gpu["fingerprint"]
    assert machine.label(saved).endswith(", NVIDIA H100 80GB HBM3")


def test_torchs_name_of_the_gpu_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fakes jax on a GPU, and torch's part of describe() naming the GPU its own way.
    _fake_jax(monkeypatch, "gpu", "H100 as jax names it")
    monkeypatch.setattr(machine, "_torch_info", lambda load: {"gpu": "NVIDIA H100 80GB HBM3"})
    info = machine.describe(load_libraries=False)
    assert info["gpu"] == "NVIDIA H100 80GB HBM3" and info["jax_gpu"] == "H100 as jax names it"


# --- threads -------------------------------------------------------------------------------

def test_thread_env_keeps_other_xla_flags_and_can_be_applied_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x intra_op_parallelism_threads=8")
    env = machine.thread_env(1)
    assert env["XLA_FLAGS"] == ("--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false "
                                "intra_op_parallelism_threads=1")
    assert env["GDBENCH_THREADS"] == "1"
    monkeypatch.setenv("XLA_FLAGS", env["XLA_FLAGS"])
    assert machine.thread_env(1) == env
    monkeypatch.delenv("XLA_FLAGS")
    four = machine.thread_env(4)
    assert four["XLA_FLAGS"] == "intra_op_parallelism_threads=4"
    assert {four[v] for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                              "GDBENCH_THREADS")} == {"4"}


PIN_SCRIPT = """
import json, os, sys
from gdbench.harness import machine
limiter = machine.pin_threads(1)
from threadpoolctl import threadpool_info
info = machine.describe(load_libraries=False)
print(json.dumps({
    "affinity": sorted(os.sched_getaffinity(0)),
    "blas": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"],
    "torch": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None,
    "env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "GDBENCH_THREADS")},
    "threads_pinned": info["threads_pinned"],
}))
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
def test_pin_threads_pins_the_process_to_one_cpu_and_its_blas_to_one_thread() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "GDBENCH_THREADS")}
    out = subprocess.run([sys.executable, "-c", PIN_SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    got = json.loads(out.stdout)
    first = min(os.sched_getaffinity(0))
    assert got["affinity"] == [first]
    assert got["blas"] and set(got["blas"]) == {1}
    assert got["torch"] in (None, 1)
    assert got["env"] == {"OMP_NUM_THREADS": "1", "GDBENCH_THREADS": "1"}
    assert got["threads_pinned"] == 1


def test_describe_without_libraries_imports_neither_torch_nor_jax() -> None:
    script = ("import json, sys\nfrom gdbench.harness import machine\n"
              "info = machine.describe(load_libraries=False)\n"
              "print(json.dumps([m in sys.modules for m in ('torch', 'jax')]))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout) == [False, False]


def test_describe_records_each_thread_variable_library_version_and_blas_field(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    info = machine.describe(load_libraries=False)
    assert info["thread_env"]["OPENBLAS_CORETYPE"] == "Haswell"
    assert list(info["thread_env"]) == ["OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                        "OPENBLAS_NUM_THREADS", "XLA_FLAGS",
                                        "OPENBLAS_CORETYPE", "CUDA_VISIBLE_DEVICES"]
    assert list(info["versions"]) == ["gdbench", "numpy", "torch", "jax", "jaxlib", "pandas",
                                      "pytest-benchmark"]
    import importlib.metadata

    assert info["versions"]["numpy"] == importlib.metadata.version("numpy")
    assert info["blas"] and all(list(b) == ["user_api", "internal_api", "prefix", "version",
                                            "num_threads", "architecture"]
                                for b in info["blas"])
    assert info["cpu"] == machine.cpu_record()


def test_a_library_that_is_not_installed_has_no_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "LIBRARIES", ("numpy", "no-such-package-gdbench"))
    import importlib.metadata

    assert machine._versions() == {"numpy": importlib.metadata.version("numpy"),
                                   "no-such-package-gdbench": None}


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="no /proc/cpuinfo here")
def test_the_cpu_record_is_read_from_proc_cpuinfo_by_default() -> None:
    assert machine.cpu_record() == machine.cpu_record("/proc/cpuinfo")
    assert "family" in machine.cpu_record()  # only the file has it


def _fake_torch(cuda: bool) -> SimpleNamespace:
    props = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=int(79.6 * 2**30))
    return SimpleNamespace(
        get_num_threads=lambda: 4, get_num_interop_threads=lambda: 2,
        cuda=SimpleNamespace(is_available=lambda: cuda,
                             get_device_properties=lambda i: props if i == 0 else None),
        version=SimpleNamespace(cuda="12.4"))


@pytest.mark.parametrize(("smi", "driver"), [
    ("550.54.15\n550.54.15\n", "550.54.15"), ("", None), (OSError, None)])
def test_torchs_gpu_is_recorded_with_its_memory_cuda_and_driver(
        monkeypatch: pytest.MonkeyPatch, smi: Any, driver: str | None) -> None:
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(cuda=True))
    asked: list[list[str]] = []

    def run(cmd: list[str], **kwargs: Any) -> SimpleNamespace:
        asked.append(cmd)
        assert kwargs == {"capture_output": True, "text": True, "timeout": 10, "check": False}
        if smi is OSError:
            raise OSError("no nvidia-smi")
        return SimpleNamespace(stdout=smi)

    monkeypatch.setattr(subprocess, "run", run)
    # Loaded already: recorded even when the caller loads no library itself.
    assert machine._torch_info(load_libraries=False) == {
        "torch_threads": 4, "torch_interop_threads": 2, "gpu": "NVIDIA H100 80GB HBM3",
        "gpu_memory_gib": 79.6, "cuda": "12.4", "gpu_driver": driver}
    assert asked == [["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]]


def test_torch_without_cuda_records_its_threads_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(cuda=False))
    assert machine._torch_info(load_libraries=True) == {"torch_threads": 4,
                                                        "torch_interop_threads": 2}
    monkeypatch.delitem(sys.modules, "torch")
    assert machine._torch_info(load_libraries=False) == {}  # not loaded, not loaded for it


def test_the_fingerprint_of_a_saved_machine_never_changes_between_versions() -> None:
    # Baselines are judged by it: a gdbench that computed another fingerprint for the same
    # machine_info would call every saved baseline another machine's.
    assert machine.fingerprint(pytest_benchmark_info()) == "f7ff1f8e0196"


def test_the_label_prefers_gdbenchs_own_record_and_the_platform_is_named() -> None:
    both = {"cpu": {"brand_raw": "py-cpuinfo's CPU", "count": 8},
            "gdbench": {"cpu_model": "gdbench's CPU", "cpu_count": 4}}
    assert machine.label(both) == "gdbench's CPU, 4 cores"
    info = machine.platform_info()
    assert list(info) == ["node", "machine", "system", "python_version"]
    import platform

    assert info["python_version"] == platform.python_version()
