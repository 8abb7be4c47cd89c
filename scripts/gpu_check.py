"""The decisions of scripts/gpu-check.sh, in Python so that the tests can make them too.

    python scripts/gpu_check.py probe ENV_FILE
        Which library sees a GPU here, and which GPU backends can run. Prints a summary,
        writes shell assignments to ENV_FILE (GPU, TORCH_CUDA, JAX_GPU, GPU_BACKENDS,
        NVIDIA_GPUS), and exits 1 when a GPU is here but torch or jax does not see it, or a
        GPU backend cannot run (it would be skipped, and skips are not failures).
    python scripts/gpu_check.py proof [--torch] [--jax] RUN.json...
        Whether the saved runs prove that the GPU ran: each GPU backend of the libraries
        named has training rows on the GPU that agree with numpy, with a limit from the
        GPU's own yardsticks (torch), and the machine's GPU is named. Exit 1 otherwise.
    python scripts/gpu_check.py subset RUN.json OUT.json --workloads W... --backends B...
        A copy of a run with only those training rows (and every roofline row), for an
        audit that covers chosen workloads without auditing every row.

Run with gdbench importable (the checkout on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The backends that train on a GPU, by the library that must see it. On a GPU machine every
# one of them must run: a skipped one proves nothing.
TORCH_GPU = ("torch-cuda", "torch-compile-cuda", "torch-cuda-graph")
JAX_GPU = ("jax", "jax-scan")


def nvidia_gpus() -> int:
    """GPUs that ``nvidia-smi -L`` lists (0 without nvidia-smi, or when it fails)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def torch_sees_gpu() -> tuple[bool, str]:
    """(torch sees a CUDA device, what it said)."""
    try:
        import torch
    except ImportError as exc:
        return False, f"torch is not importable ({exc})"
    if torch.cuda.is_available():
        return True, f"torch {torch.__version__} sees {torch.cuda.get_device_name(0)}"
    return False, (f"torch {torch.__version__} sees no CUDA device (built for CUDA "
                   f"{torch.version.cuda})")


def jax_sees_gpu() -> tuple[bool, str]:
    """(jax's default backend is the GPU, what it said)."""
    try:
        import jax
    except ImportError as exc:
        return False, f"jax is not importable ({exc})"
    try:
        backend = jax.default_backend()
        devices = jax.devices()
    except RuntimeError as exc:  # a broken CUDA plugin fails here
        return False, f"jax {jax.__version__} could not start a backend ({exc})"
    return backend == "gpu", f"jax {jax.__version__}: default backend {backend}, {devices}"


def decide(nvidia: int, torch_gpu: bool, jax_gpu: bool,
           status: dict[str, str | None]) -> tuple[dict[str, str], list[str]]:
    """(the shell assignments, the problems) from what was seen. A GPU is here when
    nvidia-smi lists one or a library sees one; then both libraries must see it and every
    GPU backend of the registry must be able to run."""
    gpu = nvidia > 0 or torch_gpu or jax_gpu
    backends = [n for n in (*TORCH_GPU, *JAX_GPU) if n in status]
    problems = []
    if gpu:
        if not torch_gpu:
            problems.append("a GPU is here, but torch does not see it: the torch GPU "
                            "backends would be skipped")
        if not jax_gpu:
            problems.append("a GPU is here, but jax's default backend is not the GPU: jax "
                            "and jax-scan would run on the CPU")
        expected = [*(TORCH_GPU if torch_gpu else ()), *(JAX_GPU if jax_gpu else ())]
        problems += [f"{name} cannot run here: {status[name]}" for name in backends
                     if name in expected and status[name]]
    env = {"GPU": str(int(gpu)), "TORCH_CUDA": str(int(torch_gpu)),
           "JAX_GPU": str(int(jax_gpu)), "NVIDIA_GPUS": str(nvidia),
           "GPU_BACKENDS": " ".join(backends)}
    return env, problems


def probe(env_file: Path) -> int:
    from gdbench import implementations

    nvidia = nvidia_gpus()
    torch_gpu, torch_said = torch_sees_gpu()
    jax_gpu, jax_said = jax_sees_gpu()
    status = implementations.available()
    print(f"nvidia-smi lists {nvidia} GPU{'s' * (nvidia != 1)}")
    print(torch_said)
    print(jax_said)
    for name, why in status.items():
        print(f"backend {name:20s} {'available' if why is None else 'unavailable: ' + why}")
    env, problems = decide(nvidia, torch_gpu, jax_gpu, status)
    env_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    for line in problems:
        print(f"PROBLEM: {line}")
    print("GPU: " + ("yes" if env["GPU"] == "1" else "none here"))
    return 1 if problems else 0


def proof_problems(frame: Any, gpu_names: Sequence[Any], backends: Sequence[str],
                   yardsticks: bool) -> list[str]:
    """What the runs in ``frame`` (gdbench.records.results.load_runs), whose machine_info
    names the GPUs ``gpu_names``, lack to prove that ``backends`` ran on a GPU; with
    ``yardsticks``, each GPU row must also have a limit from the GPU's own yardsticks.
    Empty when the proof holds."""
    from gdbench.report.tables import summary

    s = summary(frame)
    train = s[s["kind"] == "training"]
    problems = []
    for name in backends:
        rows = train[train["backend"] == name]
        on_gpu = rows[rows["device"] == "cuda"]
        if on_gpu.empty:
            where = ", ".join(sorted(set(rows["device"].dropna()))) or "nowhere"
            problems.append(f"{name}: no training row on the GPU (its rows ran: {where})")
            continue
        wrong = on_gpu[on_gpu["agrees"] != True]  # noqa: E712 (None counts as not agreeing)
        if not wrong.empty:
            problems.append(f"{name}: {len(wrong)} GPU row(s) do not agree with numpy")
        if yardsticks and on_gpu["limit_us"].isna().any():
            problems.append(f"{name}: GPU rows without a limit (no GPU yardstick for "
                            f"{', '.join(on_gpu.loc[on_gpu['limit_us'].isna(), 'workload'])})")
    if not any(isinstance(name, str) and name for name in gpu_names):
        problems.append("the run's machine_info names no GPU (its fingerprint is a CPU one)")
    return problems


def proof(paths: Sequence[Path], torch_gpu: bool, jax_gpu: bool) -> int:
    from gdbench.records.results import load_runs, read_run

    backends = [*(TORCH_GPU if torch_gpu else ()), *(JAX_GPU if jax_gpu else ())]
    if not paths:
        print("PROOF FAILED: no saved run")
        return 1
    frame = load_runs(list(paths))
    gpu_names = [(read_run(p).get("machine_info") or {}).get("gdbench", {}).get("gpu")
                 for p in paths]
    problems = proof_problems(frame, gpu_names, backends, yardsticks=torch_gpu)
    for line in problems:
        print(f"PROOF FAILED: {line}")
    if not problems:
        print(f"proof: {', '.join(backends)} trained on the GPU, agreeing with numpy"
              + (", each row with a limit from the GPU's yardsticks" if torch_gpu else ""))
    return 1 if problems else 0


def subset(source: Path, dest: Path, workloads: Sequence[str], backends: Sequence[str]) -> int:
    doc = json.loads(source.read_text())
    doc["benchmarks"] = [
        b for b in doc["benchmarks"] if (b.get("extra_info") or {}).get("kind") != "training"
        or (b["extra_info"].get("workload") in workloads
            and b["extra_info"].get("backend") in backends)]
    kept = sum((b.get("extra_info") or {}).get("kind") == "training" for b in doc["benchmarks"])
    dest.write_text(json.dumps(doc, indent=1))
    print(f"{dest}: {kept} training rows ({', '.join(workloads)} x {', '.join(backends)})")
    return 0 if kept else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe")
    p.add_argument("env_file", type=Path)
    p = sub.add_parser("proof")
    p.add_argument("--torch", action="store_true", help="torch sees the GPU")
    p.add_argument("--jax", action="store_true", help="jax runs on the GPU")
    p.add_argument("runs", nargs="*", type=Path)
    p = sub.add_parser("subset")
    p.add_argument("source", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--workloads", nargs="+", required=True)
    p.add_argument("--backends", nargs="+", required=True)
    args = parser.parse_args(argv)
    if args.command == "probe":
        return probe(args.env_file)
    if args.command == "proof":
        return proof(args.runs, args.torch, args.jax)
    return subset(args.source, args.dest, args.workloads, args.backends)


if __name__ == "__main__":
    sys.exit(main())
