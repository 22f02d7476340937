#!/usr/bin/env bash
# The one prepared GPU check: training and evaluation throughput on one CUDA device.
#
#   bash benchmarks/gpu_check.sh DATA_CSV TOKENIZER_DIR OUTDIR
#
# Needs only a copy of the repository, the tokenizer directory and one AG News CSV (no network,
# package not installed). Steps, each under its own time limit; a failing step is logged and the
# next one still runs; the exit status is 1 if any step failed:
#   1. nvidia-smi and library versions
#   2. batch 128: baseline, dynamic, dynamic_bf16, project, trainer, trainer_nosync + evaluation
#      + a torch.profiler look at 5 project steps (GPU busy fraction, kernels/step, top host ops)
#   3. batch 32 (the paper profile's batch size): project, trainer, trainer_nosync
#   4. batch 128: project vs torch.compile (compile time is reported as warm-up)
# Writes OUTDIR/gpu_check.log, OUTDIR/<step>.json and OUTDIR/<step>.txt (summary tables).
# Measured: 4 min 51 s on one H100 (2026-11-26; step limits add up to 9 minutes at most).
# Dry run on a CPU (seconds to minutes, numbers meaningless):
#   BENCH_DEVICE=cpu BENCH_EXTRA="--quick --model-shape tiny-roberta --batch-size 4 --steps 2 --warmup 1" \
#   bash benchmarks/gpu_check.sh data/sample/test.csv local /tmp/gpu_check_dry
set -u

if [ $# -ne 3 ]; then
    echo "usage: bash benchmarks/gpu_check.sh DATA_CSV TOKENIZER_DIR OUTDIR" >&2
    exit 2
fi
DATA=$1
TOK=$2
OUT=$3
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$(command -v python3 || command -v python)}
DEVICE=${BENCH_DEVICE:-cuda}
EXTRA=${BENCH_EXTRA:-}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
FAILED=""

# step NAME LIMIT_SECONDS COMMAND...: run with a time limit, stdout to OUT/NAME.txt, stderr to the log
step() {
    local name=$1 limit=$2
    shift 2
    echo "=== $(date -u +%H:%M:%S) $name (limit ${limit}s): $*" | tee -a "$LOG"
    local start=$SECONDS
    timeout --kill-after=15 "$limit" "$@" >"$OUT/$name.txt" 2>>"$LOG"
    local rc=$?
    cat "$OUT/$name.txt" >>"$LOG"
    echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
    if [ $rc -ne 0 ]; then
        FAILED="$FAILED $name"
        echo "ERROR: step $name failed (exit $rc$([ $rc -eq 124 ] && echo ', time limit')); continuing" | tee -a "$LOG"
    fi
}

bench() {  # bench NAME LIMIT ARGS...: the benchmark with the common arguments (BENCH_EXTRA last: it overrides)
    local name=$1 limit=$2
    shift 2
    # shellcheck disable=SC2086
    step "$name" "$limit" "$PY" "$HERE/train_throughput.py" --data "$DATA" --tokenizer "$TOK" \
        --device "$DEVICE" --json "$OUT/$name.json" "$@" $EXTRA
}

step env 30 bash -c "nvidia-smi || echo 'nvidia-smi not available'; \"$PY\" -c 'import sys, torch, transformers, peft, accelerate; print(sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"transformers\", transformers.__version__, \"peft\", peft.__version__, \"accelerate\", accelerate.__version__, \"device\", torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"none\")'"
bench train_b128 200 --batch-size 128 --steps 150 --warmup 10 --eval --profile 5 \
    --configs baseline,dynamic,dynamic_bf16,project,trainer,trainer_nosync
bench train_b32 120 --batch-size 32 --steps 600 --warmup 20 --configs project,trainer,trainer_nosync
bench compile_b128 200 --batch-size 128 --steps 150 --warmup 10 --configs project,compile

echo
echo "================ summaries ================"
for name in train_b128 train_b32 compile_b128; do
    echo "---- $name"
    cat "$OUT/$name.txt" 2>/dev/null
done
if [ -n "$FAILED" ]; then
    echo "FAILED steps:$FAILED (details in $LOG)"
    exit 1
fi
echo "all steps passed; JSON and log in $OUT"
