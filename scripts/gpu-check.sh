#!/usr/bin/env bash
# scripts/gpu-check.sh DIR: everything a GPU machine has to prove, in one command, with all
# output under DIR (made if missing). It proves that a GPU ran, or says that none did.
#
# Steps, most important first, each under a time limit, all within GPU_CHECK_BUDGET_S
# seconds (default 470, under 8 minutes), whatever the previous steps did:
#   00-devices  versions; does torch see a CUDA device, is jax's default backend the GPU,
#               can every GPU backend run (scripts/gpu_check.py probe). Before any timing.
#   01-run      the timed run of the GPU backends next to numpy (crops to large, 0.5 s of
#               rounds per benchmark). First, so that cold Inductor and Triton caches eat
#               into the later steps, not into it; and gdbench run keeps the processes
#               that finished if the budget cuts it short (a "-cut-short" run).
#   02-proof    the saved run has training rows on the GPU for every GPU backend, all
#               agreeing with numpy, each with a limit from the GPU's own yardsticks, and
#               names the GPU in its machine info (scripts/gpu_check.py proof).
#   03-tests    the tests of the CUDA and jax paths (pytest tests -k "cuda or jax or gpu",
#               agreement in both dtypes on ragged plans, compile, graphs, memory, the
#               stream idle after run); the suite's own benchmarks ran in 01-run.
#   04-verify   gdbench verify of the GPU backends on a ragged plan (crops in batches of 4;
#               every benchmark of 01-run already checked its agreement on its workload).
#   05-audit    gdbench audit of the GPU backends' rows of that run on crops and large: a
#               figure within 10% of the loop alone, run waiting for the device (timed, and
#               torch's CUDA stream idle when run returns).
#   06-run-xl   the xl workload (the one a GPU needs to be busy), only if 100 s are left.
# It runs offline: nothing is installed or downloaded. gdbench comes from this checkout
# on PYTHONPATH; torch (CUDA build), jax (CUDA plugin), numpy, pandas, matplotlib, pytest,
# pytest-benchmark and threadpoolctl must be installed already.
#
# Exit status:
#   0  a GPU ran: every step passed and the proof holds
#   1  a GPU is here, but a step failed or ran out of time, or a library does not see the
#      GPU, or a GPU backend cannot run (a skip proves nothing); or the device probe
#      itself did not finish
#   2  bad usage, or gdbench cannot be imported from this checkout
#   3  no GPU: neither nvidia-smi, torch nor jax sees one. Every step that can run on the
#      CPU ran (the GPU backends are skipped by gdbench with their reason); the summary
#      lists what would have needed the GPU. A GPU job must treat 3 as a failure.
# With GDBENCH_GPU_CHECK_CPU_OK=1 a machine without a GPU exits 0 instead of 3 when its
# CPU steps passed (1 when one failed): for testing this script where no GPU is.
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3),
# GPU_CHECK_BUDGET_S (default 470), GDBENCH_GPU_CHECK_CPU_OK (default 0).
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
CPU_OK=${GDBENCH_GPU_CHECK_CPU_OK:-0}
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
SUMMARY=()
NEEDED_GPU=()
FAILED=0
exec > >(tee -a "$OUT/gpu-check.log") 2>&1

say() { printf '\n=== %s\n' "$*"; }
note() { SUMMARY+=("$(printf '%-16s %s' "$1" "$2")"); }

# step NAME CAP_S COMMAND...: run COMMAND with its output in $OUT/NAME.log (and here),
# under min(CAP_S, time left), and record its exit code. 124: out of time (a failure,
# unless OPTIONAL=1). SIGTERM first: gdbench run saves the processes that finished;
# SIGKILL 20 s later.
step() {
    local name=$1 cap=$2
    shift 2
    local left=$((DEADLINE - $(date +%s)))
    local limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 10 ]; then
        say "$name: not run, the ${BUDGET_S} s budget is spent"
        note "$name" "NOT RUN (budget spent)"
        FAILED=1
        return
    fi
    say "$name (limit ${limit} s): $*"
    local t0 rc
    t0=$(date +%s)
    timeout --kill-after=20 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    local took=$(($(date +%s) - t0)) verdict
    case $rc in
        0) verdict="ok" ;;
        124|137) verdict="TIMEOUT after ${took} s (limit ${limit} s)"
                 if [ "${OPTIONAL:-0}" = 1 ]; then verdict="$verdict, optional"; else FAILED=1; fi ;;
        *) verdict="FAILED (exit $rc)"; FAILED=1 ;;
    esac
    SUMMARY+=("$(printf '%-16s %-28s %4d s' "$name" "$verdict" "$took")")
}

# --- gdbench from this checkout, nothing installed -----------------------------------------
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
where=$("$PYTHON" -c "import gdbench.implementations, os; print(os.path.dirname(os.path.dirname(gdbench.__file__)))" 2>&1)
if [ "$where" != "$ROOT" ]; then
    echo "gdbench cannot be imported from $ROOT with $PYTHON: $where"
    exit 2
fi
GDBENCH=("$PYTHON" -m gdbench)
CHECK=("$PYTHON" "$ROOT/scripts/gpu_check.py")
# Several processes share the GPU (gdbench's own, which lists the backends, beside each
# benchmark process; torch and jax in one test process): none may take 75% of it for jax.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# --- 00: versions, and what sees the GPU -----------------------------------------------------
info() {
    echo "checkout: $ROOT ($(git rev-parse --short HEAD 2>/dev/null || echo 'no git')," \
         "$(git status --porcelain 2>/dev/null | grep -qv '^??' && echo dirty || echo clean))"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)   host: $(hostname)   cpus: $(nproc)"
    if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; else echo "nvidia-smi: not on PATH"; fi
    "$PYTHON" -c 'import platform, importlib.metadata as m
print("python", platform.python_version())
for name in ("numpy", "torch", "jax", "jaxlib", "pandas", "pytest", "pytest-benchmark"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "NOT INSTALLED")'
    "$PYTHON" "$ROOT/scripts/gpu_check.py" probe "$OUT/devices.env"
}
export -f info
export PYTHON ROOT OUT
step 00-devices 60 bash -c info
GPU=0 TORCH_CUDA=0 JAX_GPU=0 GPU_BACKENDS="torch-cuda torch-compile-cuda torch-cuda-graph jax jax-scan"
PROBED=0
if [ -f "$OUT/devices.env" ]; then
    # shellcheck disable=SC1091
    . "$OUT/devices.env"
    PROBED=1
fi
read -r -a BACKENDS <<< "$GPU_BACKENDS"
if [ "$GPU" = 1 ]; then
    say "a GPU is here (torch sees it: $TORCH_CUDA, jax runs on it: $JAX_GPU): proving it ran"
else
    say "NO GPU here: running what the CPU can; the GPU backends will be skipped"
    NEEDED_GPU+=("01-run, 03-tests, 04-verify, 05-audit: the GPU backends' part (${BACKENDS[*]}; jax and jax-scan ran on the CPU)")
fi

# --- 01: the timed run, first ------------------------------------------------------------------
ROUNDS=(-- --benchmark-max-time=0.5)
if [ "$GPU" = 1 ]; then
    WORKLOADS=(crops small medium large)
else
    WORKLOADS=(crops)  # the CPU backends alone, on the smallest workload: the steps, not figures
fi
step 01-run 200 "${GDBENCH[@]}" run --backends numpy "${BACKENDS[@]}" \
    --workloads "${WORKLOADS[@]}" --out "$OUT/runs" "${ROUNDS[@]}"
RUNS=()
for f in "$OUT"/runs/*.json; do [ -f "$f" ] && RUNS+=("$f"); done

# --- 02: the proof that the GPU ran ----------------------------------------------------------
if [ "$GPU" = 1 ]; then
    flags=()
    [ "$TORCH_CUDA" = 1 ] && flags+=(--torch)
    [ "$JAX_GPU" = 1 ] && flags+=(--jax)
    step 02-proof 30 "${CHECK[@]}" proof ${flags[@]+"${flags[@]}"} ${RUNS[@]+"${RUNS[@]}"}
else
    note 02-proof "needs a GPU: not run"
    NEEDED_GPU+=("02-proof: training rows on the GPU for ${BACKENDS[*]}, their limits from the GPU's yardsticks, the GPU in the fingerprint")
fi

# --- 03: the tests of the CUDA and jax paths ---------------------------------------------------
# (Not this script's own test, tests/test_gpu_check.py, which fakes what it checks.)
step 03-tests 120 "$PYTHON" -m pytest tests -k "(cuda or jax or gpu) and not gpu_check" \
    --benchmark-disable -p no:cacheprovider -q -rs --junitxml="$OUT/tests.xml"

# --- 04: agreement with numpy on a ragged plan, through the CLI --------------------------------
step 04-verify 45 "${GDBENCH[@]}" verify --backends numpy "${BACKENDS[@]}" \
    --batch-size 4  # 15 rows: 3 batches of 4, then a ragged 3

# --- 05: the audit of the GPU rows on crops and large --------------------------------------------
# On crops the GPU finishes right after the last launch, so a missing wait cannot show in
# the timings there; large gives the device work of its own (and the audit also asks
# torch's CUDA stream whether anything is still queued when run returns).
AUDITED=()
if [ "${#RUNS[@]}" -gt 0 ] && "${CHECK[@]}" subset "${RUNS[0]}" "$OUT/audit-run.json" \
        --workloads crops large --backends "${BACKENDS[@]}" > "$OUT/audit-subset.log" 2>&1; then
    AUDITED=("$OUT/audit-run.json")
fi
if [ "${#AUDITED[@]}" -gt 0 ]; then
    step 05-audit 90 "${GDBENCH[@]}" audit --run "${AUDITED[0]}" --seconds 0.3
else
    say "05-audit: not run, the timed run saved no row of ${BACKENDS[*]} on crops or large"
    if [ "$GPU" = 1 ]; then
        note 05-audit "NOT RUN (no GPU rows to audit)"
        FAILED=1
    else
        note 05-audit "needs a GPU: not run"
    fi
fi

# --- 06: xl, if there is time left -------------------------------------------------------------
if [ "$GPU" = 1 ] && [ $((DEADLINE - $(date +%s))) -ge 100 ]; then
    OPTIONAL=1 step 06-run-xl 300 "${GDBENCH[@]}" run --backends numpy "${BACKENDS[@]}" \
        --workloads xl --out "$OUT/runs-xl" "${ROUNDS[@]}"
elif [ "$GPU" = 1 ]; then
    note 06-run-xl "skipped: under 100 s left (optional)"
else
    note 06-run-xl "needs a GPU: not run"
fi

# --- summary and verdict ---------------------------------------------------------------------
if [ "$PROBED" = 0 ]; then
    verdict="UNKNOWN: the device probe (00-devices) did not finish, so no GPU was looked for"
    code=1
elif [ "$GPU" = 1 ]; then
    if [ "$FAILED" = 0 ]; then verdict="GPU RAN: every step passed"; code=0
    else verdict="GPU FOUND, CHECK FAILED: see the steps above"; code=1; fi
else
    verdict="NO GPU: nothing here ran on a GPU"
    if [ "$CPU_OK" = 1 ]; then code=$FAILED; else code=3; fi
fi
{
    echo "gpu-check: $(( $(date +%s) - START )) s of a ${BUDGET_S} s budget"
    printf '%s\n' "${SUMMARY[@]}"
    if [ "${#NEEDED_GPU[@]}" -gt 0 ]; then
        echo "would have needed a GPU:"
        printf '  %s\n' "${NEEDED_GPU[@]}"
    fi
    echo "verdict: $verdict (exit $code)"
    echo "logs, runs and this summary: $OUT"
} | tee "$OUT/summary.txt"
exit "$code"
