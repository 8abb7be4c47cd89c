#!/usr/bin/env bash
# scripts/gpu-check.sh DIR: everything a GPU machine has to prove, in one command, with all
# output under DIR (made if missing): versions and device, the CUDA tests, gdbench verify
# (crops, a ragged plan, float64), gdbench audit of the GPU backends on crops, and the
# timed run of the GPU backends next to numpy and jax. Made for a machine with no network
# that already has torch (CUDA build), jax (CUDA plugin), numpy, pandas, matplotlib,
# pytest and pytest-benchmark: gdbench comes from this checkout (pip install --no-deps -e .
# when that works, else the bare checkout on PYTHONPATH).
#
# Every step runs, whatever the previous ones did, under a time limit: the whole script
# stays within GPU_CHECK_BUDGET_S seconds (default 470, under 8 minutes). The timed run
# comes last and takes what is left, in two parts (crops to large, then xl) so that a run
# cut short by the budget loses only xl. The summary lists each step's exit code; the
# script exits 1 if any step failed or ran out of time. Backends that cannot run here (no
# CUDA device) are skipped with their reason by gdbench itself, which is not a failure; on
# a machine without CUDA the timed run is restricted to crops, with the reason printed.
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3),
# GPU_CHECK_BUDGET_S (default 470).
set -u

if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: $0 DIR   (every log, run and summary goes under DIR)" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
elif [ "${PYTHON#*/}" != "$PYTHON" ] && [ "${PYTHON#/}" = "$PYTHON" ]; then
    PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")  # relative: make absolute
fi
cd "$ROOT" || exit 2
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
SUMMARY=()
FAILED=0
exec > >(tee -a "$OUT/gpu-check.log") 2>&1

say() { printf '\n=== %s\n' "$*"; }

# step NAME CAP_S COMMAND...: run COMMAND with its output in $OUT/NAME.log (and here),
# under min(CAP_S, time left), and record its exit code. 124: out of time.
step() {
    local name=$1 cap=$2
    shift 2
    local left=$((DEADLINE - $(date +%s)))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 10 ]; then
        say "$name: not run, the ${BUDGET_S} s budget is spent"
        SUMMARY+=("$(printf '%-16s %s' "$name" "NOT RUN (budget spent)")")
        FAILED=1
        return
    fi
    say "$name (limit ${limit} s): $*"
    local t0 rc
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    local took=$(($(date +%s) - t0)) verdict
    case $rc in
        0) verdict="ok" ;;
        124|137) verdict="TIMEOUT after ${took} s (limit ${limit} s)"; FAILED=1 ;;
        *) verdict="FAILED (exit $rc)"; FAILED=1 ;;
    esac
    SUMMARY+=("$(printf '%-16s %-28s %4d s' "$name" "$verdict" "$took")")
}

# --- gdbench from this checkout ---------------------------------------------------------------
# Imported from / so that the checkout in the current directory does not count.
importable() { (cd / && "$PYTHON" -c "import gdbench.implementations" 2>/dev/null); }
GDBENCH=("$PYTHON" -c "import sys; from gdbench.commands.cli import main; sys.exit(main())")
if ! importable; then
    say "gdbench is not installed: pip install --no-deps --no-build-isolation -e ."
    "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1
    if ! importable; then
        echo "pip install failed (see install.log): using the bare checkout on PYTHONPATH"
        export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
importable || { echo "gdbench cannot be imported from $ROOT with $PYTHON"; exit 2; }

# --- versions and device ----------------------------------------------------------------------
info() {
    echo "checkout: $ROOT ($(git rev-parse --short HEAD 2>/dev/null || echo 'no git')," \
         "$(git status --porcelain 2>/dev/null | grep -qv '^??' && echo dirty || echo clean))"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)   host: $(hostname)   cpus: $(nproc)"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi
    else
        echo "nvidia-smi: not on PATH"
    fi
    "$PYTHON" - <<'EOF'
import importlib
import platform

print(f"python {platform.python_version()} ({platform.python_implementation()})")
for name in ("numpy", "torch", "jax", "jaxlib", "gdbench"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as exc:  # a missing library is reported, not fatal
        print(f"{name}: not importable ({type(exc).__name__}: {exc})")
try:
    import torch

    print(f"torch.version.cuda {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"torch cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, "
                  f"capability {p.major}.{p.minor}")
    else:
        print("torch: no CUDA device")
except Exception as exc:
    print(f"torch: {exc}")
try:
    import jax

    print(f"jax backend {jax.default_backend()}, devices {jax.devices()}")
except Exception as exc:
    print(f"jax: {exc}")
from gdbench import implementations

for name, why in implementations.available().items():
    print(f"backend {name:20s} {'available' if why is None else 'unavailable: ' + why}")
EOF
}
export -f info
export PYTHON ROOT
step 00-info 60 bash -c info

if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
then HAS_CUDA=1; else HAS_CUDA=0; fi

# --- the CUDA tests ---------------------------------------------------------------------------
# torch and jax share these processes: jax must not take 75% of the GPU for itself.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
step 01-tests 180 "$PYTHON" -m pytest tests benches -k cuda --benchmark-disable \
    -p no:cacheprovider -q -rs --junitxml="$OUT/tests.xml"

# --- agreement with numpy ---------------------------------------------------------------------
GPU_BACKENDS=(torch-cuda torch-compile-cuda torch-cuda-graph jax jax-scan)
step 02-verify-crops 90 "${GDBENCH[@]}" verify --backends numpy "${GPU_BACKENDS[@]}"
step 03-verify-ragged 90 "${GDBENCH[@]}" verify --backends numpy "${GPU_BACKENDS[@]}" \
    --batch-size 4  # 15 rows: 3 batches of 4, then a ragged 3
step 04-verify-float64 90 "${GDBENCH[@]}" verify --backends numpy "${GPU_BACKENDS[@]}" \
    --dtype float64
unset XLA_PYTHON_CLIENT_PREALLOCATE

# --- is each figure the backend's loop alone, and does run wait for the device? ----------------
if "${GDBENCH[@]}" audit --help >/dev/null 2>&1; then
    step 05-audit 120 "${GDBENCH[@]}" audit --backends torch-cuda torch-cuda-graph \
        torch-compile-cuda numpy --workloads crops --out "$OUT/audit"
else
    say "05-audit: not run, this gdbench has no audit command"
    SUMMARY+=("$(printf '%-16s %s' 05-audit "NOT RUN (no gdbench audit)")")
fi

# --- the timed run --------------------------------------------------------------------------
RUN_BACKENDS=(torch-cuda jax jax-scan numpy torch-cuda-graph torch-compile-cuda)
# 1 s of rounds per benchmark instead of 2 s: a GPU box is not a shared 2-core VM, and the
# budget is tight (xl alone builds a 1 GB dataset in each of the six processes).
ROUNDS=(-- --benchmark-max-time=1)
if [ "$HAS_CUDA" = 1 ]; then
    step 06-run 600 "${GDBENCH[@]}" run --backends "${RUN_BACKENDS[@]}" \
        --workloads crops small medium large --out "$OUT/runs" "${ROUNDS[@]}"
    step 07-run-xl 600 "${GDBENCH[@]}" run --backends "${RUN_BACKENDS[@]}" \
        --workloads xl --out "$OUT/runs" "${ROUNDS[@]}"
else
    say "no CUDA device: the timed run is restricted to crops (the GPU backends are listed" \
        "as skipped; small to xl would time only the CPU backends, slowly)"
    step 06-run 600 "${GDBENCH[@]}" run --backends "${RUN_BACKENDS[@]}" --workloads crops \
        --out "$OUT/runs" "${ROUNDS[@]}"
fi

# --- summary --------------------------------------------------------------------------------
{
    echo "gpu-check: $(( $(date +%s) - START )) s of a ${BUDGET_S} s budget;" \
         "CUDA device: $([ "$HAS_CUDA" = 1 ] && echo yes || echo 'no (GPU backends skipped)')"
    printf '%s\n' "${SUMMARY[@]}"
    echo "logs, runs and this summary: $OUT"
} | tee "$OUT/summary.txt"
exit "$FAILED"
