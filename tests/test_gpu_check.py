"""scripts/gpu-check.sh and its decisions (scripts/gpu_check.py): it proves that a GPU ran,
or ends with its "no GPU" verdict.

The script runs here, on a machine with no GPU, for real, with its heavy steps faked: its
PYTHON is a stand-in that records every command the script gives it and runs, with the
real Python, only the fast ones (the import check, the versions, the device probe, the
proof and the subset). A faked probe (devices.env written as a GPU machine's) and a
constructed run (copied where gdbench run would save it) stand in for a GPU where one is
needed. The decisions themselves are also checked directly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _benchjson import make_run, on_gpu

from gdbench.records.results import load_runs

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
GPU_BACKENDS = ["torch-cuda", "torch-compile-cuda", "torch-cuda-graph", "jax", "jax-scan"]


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _module()


# --- the decisions -------------------------------------------------------------------------

ALL_RUN: dict[str, str | None] = dict.fromkeys(["numpy", *GPU_BACKENDS])


def test_no_gpu_anywhere_is_no_gpu_and_no_problem() -> None:
    env, problems = gpu_check.decide(0, False, False, {**ALL_RUN, "torch-cuda": "no CUDA device"})
    assert env == {"GPU": "0", "TORCH_CUDA": "0", "JAX_GPU": "0", "NVIDIA_GPUS": "0",
                   "GPU_BACKENDS": " ".join(GPU_BACKENDS)}
    assert problems == []


def test_a_gpu_that_a_library_does_not_see_is_a_problem_not_a_skip() -> None:
    # nvidia-smi lists a GPU, but torch is a CPU build and jax has no CUDA plugin.
    status = {**ALL_RUN, **dict.fromkeys(GPU_BACKENDS[:3], "no CUDA device")}
    env, problems = gpu_check.decide(1, False, False, status)
    assert env["GPU"] == "1" and env["TORCH_CUDA"] == "0" and env["JAX_GPU"] == "0"
    assert problems == [
        "a GPU is here, but torch does not see it: the torch GPU backends would be skipped",
        "a GPU is here, but jax's default backend is not the GPU: jax and jax-scan would run "
        "on the CPU"]


def test_a_gpu_backend_that_cannot_run_on_a_gpu_machine_is_a_problem() -> None:
    status = {**ALL_RUN, "torch-compile-cuda": "Triton builds its launcher with a C compiler"}
    env, problems = gpu_check.decide(1, True, True, status)
    assert env["GPU"] == env["TORCH_CUDA"] == env["JAX_GPU"] == "1"
    assert problems == ["torch-compile-cuda cannot run here: Triton builds its launcher with "
                        "a C compiler"]
    assert gpu_check.decide(1, True, True, ALL_RUN)[1] == []


def _gpu_run(tmp_path: Path, backends: tuple[str, ...] = tuple(GPU_BACKENDS),
             yardsticks: bool = True, gpu_name: str | None = "NVIDIA H100 80GB HBM3",
             disagree: tuple[str, ...] = ()) -> Path:
    """A constructed run of a GPU machine: ``backends`` trained on the GPU (rows made from
    jax's), with the GPU's yardsticks for crops and small, the GPU named."""
    doc = make_run(workloads=("crops", "small"), backends=("numpy", "jax"), seed=1,
                   disagree=("jax",) if disagree else ())
    jax_rows = [b for b in doc["benchmarks"] if b["extra_info"]["backend"] == "jax"]
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["extra_info"]["backend"] != "jax"]
    for name in backends:
        for row in json.loads(json.dumps(jax_rows)):
            row["extra_info"]["backend"] = name
            row["name"] = row["name"].replace("-jax]", f"-{name}]")
            row["extra_info"]["agrees"] = name not in disagree
            doc["benchmarks"].append(row)
    doc = on_gpu(doc, backends, {"crops": (50.0, 900.0), "small": (400.0, 1500.0)}
                 if yardsticks else None)
    doc["machine_info"]["gdbench"]["gpu"] = gpu_name
    path = tmp_path / "gpu-run.json"
    path.write_text(json.dumps(doc))
    return path


def test_the_proof_holds_for_gpu_rows_of_every_backend(tmp_path: Path) -> None:
    path = _gpu_run(tmp_path)
    assert gpu_check.proof_problems(load_runs([path]), ["NVIDIA H100"], GPU_BACKENDS,
                                    yardsticks=True) == []
    assert gpu_check.proof([path], torch_gpu=True, jax_gpu=True) == 0


def test_the_proof_fails_a_run_without_gpu_rows_yardsticks_or_gpu_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A run where torch saw no GPU: its torch GPU backends were skipped (no rows), jax ran
    # on the CPU, no yardstick was measured, and the machine_info names no GPU.
    cpu_run = tmp_path / "cpu.json"
    cpu_run.write_text(json.dumps(make_run(workloads=("crops",), backends=("numpy", "jax"))))
    assert gpu_check.proof([cpu_run], torch_gpu=True, jax_gpu=True) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "PROOF FAILED: torch-cuda: no training row on the GPU (its rows ran: nowhere)",
        "PROOF FAILED: torch-compile-cuda: no training row on the GPU (its rows ran: nowhere)",
        "PROOF FAILED: torch-cuda-graph: no training row on the GPU (its rows ran: nowhere)",
        "PROOF FAILED: jax: no training row on the GPU (its rows ran: cpu)",
        "PROOF FAILED: jax-scan: no training row on the GPU (its rows ran: nowhere)",
        "PROOF FAILED: the run's machine_info names no GPU (its fingerprint is a CPU one)"]
    # GPU rows, but no yardstick: no limit, which the proof names.
    frame = load_runs([_gpu_run(tmp_path, yardsticks=False)])
    assert gpu_check.proof_problems(frame, ["GPU"], ["torch-cuda"], yardsticks=True) == [
        "torch-cuda: GPU rows without a limit (no GPU yardstick for crops, small)"]
    # A GPU row that disagrees with numpy proves nothing.
    frame = load_runs([_gpu_run(tmp_path, disagree=("jax-scan",))])
    assert gpu_check.proof_problems(frame, ["GPU"], ["jax", "jax-scan"], yardsticks=False) == [
        "jax-scan: 2 GPU row(s) do not agree with numpy"]
    assert gpu_check.proof([], True, True) == 1  # no run saved at all


def test_the_audit_subset_keeps_the_chosen_training_rows_and_every_roofline(
        tmp_path: Path) -> None:
    path = _gpu_run(tmp_path)
    dest = tmp_path / "subset.json"
    assert gpu_check.subset(path, dest, ["crops", "large"], ["torch-cuda", "jax"]) == 0
    kept = json.loads(dest.read_text())["benchmarks"]
    training = {(b["extra_info"]["workload"], b["extra_info"]["backend"])
                for b in kept if b["extra_info"]["kind"] == "training"}
    assert training == {("crops", "torch-cuda"), ("crops", "jax")}
    assert sum(b["extra_info"]["kind"] == "roofline" for b in kept) == 4  # CPU's and GPU's
    assert gpu_check.subset(path, dest, ["xl"], ["jax"]) == 1  # nothing to audit


# --- the script, run here with its heavy steps faked ------------------------------------------

STAND_IN = """#!/usr/bin/env bash
# The script's PYTHON: records each command; runs the fast ones with the real Python.
printf '%s\\n' "$*" >> "$FAKE_LOG"
if [ "$1" = -m ] && [ "$2" = gdbench ]; then
    if [ "$3" = run ] && [ -n "${FAKE_RUN:-}" ]; then
        out=""; prev=""
        for a in "$@"; do [ "$prev" = --out ] && out=$a; prev=$a; done
        mkdir -p "$out" && cp "$FAKE_RUN" "$out/"
    fi
    exit 0
fi
if [ "$1" = -m ] && [ "$2" = pytest ]; then exit 0; fi
if [ "${2:-}" = probe ] && [ -n "${FAKE_PROBE_HANGS:-}" ]; then sleep 30; fi
if [ "${2:-}" = probe ] && [ -n "${FAKE_DEVICES:-}" ]; then
    printf '%s' "$FAKE_DEVICES" > "$3"; echo "GPU: faked"; exit 0
fi
exec "$REAL_PYTHON" "$@"
"""

GPU_HERE = ("GPU=1\nTORCH_CUDA=1\nJAX_GPU=1\nNVIDIA_GPUS=1\n"
            "GPU_BACKENDS='torch-cuda torch-compile-cuda torch-cuda-graph jax jax-scan'\n")


def _script(tmp_path: Path, **env: str) -> tuple[int, str, list[str]]:
    """(exit status, output, the commands given to PYTHON) of gpu-check.sh run here."""
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("the script needs bash and timeout")
    stand_in = tmp_path / "python"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    log = tmp_path / "commands.log"
    full = {**os.environ, "PYTHON": str(stand_in), "REAL_PYTHON": sys.executable,
            "FAKE_LOG": str(log), **env}
    if "GDBENCH_GPU_CHECK_CPU_OK" not in env:
        full.pop("GDBENCH_GPU_CHECK_CPU_OK", None)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=full,
                          capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr, log.read_text().splitlines()


def _steps(commands: list[str]) -> list[str]:
    """Which heavy step each recorded command was, in order."""
    names = {"-m gdbench run": "run", "-m pytest": "tests", "-m gdbench verify": "verify",
             "-m gdbench audit": "audit"}
    return [name for c in commands for prefix, name in names.items() if c.startswith(prefix)]


@pytest.mark.parametrize("cpu_ok", ["", "1"])
def test_without_a_gpu_the_script_runs_the_cpu_steps_and_says_no_gpu(
        tmp_path: Path, cpu_ok: str) -> None:
    # The real probe, on this machine with no GPU; the steps it starts are recorded.
    code, out, commands = _script(tmp_path, **(
        {"GDBENCH_GPU_CHECK_CPU_OK": cpu_ok} if cpu_ok else {}))
    assert code == (0 if cpu_ok else 3), out
    assert "verdict: NO GPU: nothing here ran on a GPU" in out
    assert "would have needed a GPU:" in out
    assert ("  02-proof: training rows on the GPU for torch-cuda torch-compile-cuda "
            "torch-cuda-graph jax jax-scan, their limits from the GPU's yardsticks, the GPU "
            "in the fingerprint") in out
    assert "02-proof         needs a GPU: not run" in out
    assert _steps(commands) == ["run", "tests", "verify"]  # the timed run first
    run = next(c for c in commands if c.startswith("-m gdbench run"))
    assert " --workloads crops --out " in run  # the CPU times the smallest workload only
    tests = next(c for c in commands if c.startswith("-m pytest"))
    assert tests.startswith("-m pytest tests -k (cuda or jax or gpu) and not gpu_check ")
    assert not any("pip" in c.split() for c in commands)  # offline: nothing installed


def test_on_a_gpu_machine_a_run_without_gpu_rows_fails_the_check(tmp_path: Path) -> None:
    # Fakes a GPU machine's probe; the timed run "saves" a run of the CPU backends alone,
    # as a machine whose CUDA libraries are missing would.
    cpu_run = tmp_path / "cpu-run.json"
    cpu_run.write_text(json.dumps(make_run(workloads=("crops",), backends=("numpy", "jax"))))
    code, out, commands = _script(tmp_path, FAKE_DEVICES=GPU_HERE, FAKE_RUN=str(cpu_run))
    assert code == 1, out
    assert "PROOF FAILED: torch-cuda: no training row on the GPU" in out
    assert "verdict: GPU FOUND, CHECK FAILED" in out
    assert "02-proof         FAILED (exit 1)" in out


def test_on_a_gpu_machine_gpu_rows_of_every_backend_pass_the_check(tmp_path: Path) -> None:
    # Fakes a GPU machine's probe and a GPU run of every GPU backend (constructed rows).
    code, out, commands = _script(tmp_path, FAKE_DEVICES=GPU_HERE,
                                  FAKE_RUN=str(_gpu_run(tmp_path)))
    assert code == 0, out
    assert "verdict: GPU RAN: every step passed (exit 0)" in out
    assert "proof: torch-cuda, torch-compile-cuda, torch-cuda-graph, jax, jax-scan trained on " \
           "the GPU" in out
    assert _steps(commands) == ["run", "tests", "verify", "audit", "run"]  # xl: time was left
    run = next(c for c in commands if c.startswith("-m gdbench run"))
    assert " --workloads crops small medium large --out " in run
    audit = next(c for c in commands if c.startswith("-m gdbench audit"))
    assert audit.endswith("audit-run.json --seconds 0.3")
    subset = json.loads((tmp_path / "out" / "audit-run.json").read_text())
    audited = {(b["extra_info"]["workload"], b["extra_info"]["backend"])
               for b in subset["benchmarks"] if b["extra_info"]["kind"] == "training"}
    assert audited == {("crops", name) for name in GPU_BACKENDS}  # no large in this run


@pytest.mark.e2e
def test_a_probe_that_does_not_finish_is_no_verdict_of_no_gpu(tmp_path: Path) -> None:
    # Fakes a device probe that hangs (a CUDA start-up that never returns) past a budget
    # whose 10 s floor leaves no step after it.
    code, out, _ = _script(tmp_path, FAKE_PROBE_HANGS="1", GPU_CHECK_BUDGET_S="12",
                           GDBENCH_GPU_CHECK_CPU_OK="1")
    assert code == 1, out
    assert "00-devices       TIMEOUT" in out
    assert "verdict: UNKNOWN: the device probe (00-devices) did not finish" in out


def test_the_scripts_header_documents_its_exit_statuses() -> None:
    header = SCRIPT.read_text().split("\nset -u", 1)[0]
    for line in ("#   0  a GPU ran", "#   1  a GPU is here", "#   2  bad usage",
                 "#   3  no GPU", "GDBENCH_GPU_CHECK_CPU_OK=1"):
        assert line in header
