#!/usr/bin/env bash
# Second GPU check: the paper recipe's real training path (Trainer, CLI) on one CUDA device, plus
# per-step throughput at the paper profile's batch size, eager vs torch.compile.
#
#   bash benchmarks/gpu_training_check.sh DATA_DIR TOKENIZER_DIR OUTDIR
#
# DATA_DIR holds train.csv/test.csv (AG News layout); roberta-base is randomly initialised (exact for
# speed; no weights or network needed), so the accuracy it prints means nothing. About 4 minutes.
set -u
DATA=$1 TOK=$2 OUT=$3
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 LORA_AGNEWS_PROGRESS=0
export LORA_AGNEWS_RESULTS=/tmp/lora_res LORA_AGNEWS_CACHE=/tmp/lora_cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/env.txt"
timeout 90 "$PY" benchmarks/train_throughput.py --data "$DATA/test.csv" --tokenizer "$TOK" --device cuda \
    --batch-size 256 --steps 60 --warmup 5 --configs project,compile --json "$OUT/b256.json" >"$OUT/b256.txt" 2>&1
echo "b256 exit $?"; tail -25 "$OUT/b256.txt"
for mode in eager compile; do
    extra=""; [ $mode = compile ] && extra="-p compile true"
    # shellcheck disable=SC2086
    timeout 85 "$PY" -m lora_agnews train --profile paper -p init random -p tokenizer "$TOK" -p data "$DATA" \
        -p epochs 3 $extra --out /tmp/run_$mode >"$OUT/train_$mode.log" 2>&1
    echo "train $mode exit $?"; grep -E "lora_agnews\]|Error|error" "$OUT/train_$mode.log" | tail -6
    "$PY" - "$mode" <<'PY'
import json, sys
m = json.load(open(f"/tmp/run_{sys.argv[1]}/metrics.json"))
n = m["split_sizes"]["train"] * m["config"]["epochs"]
print(f"{sys.argv[1]}: train_seconds {m['train_seconds']:.1f} for {n} examples incl. evals/checkpoints "
      f"({n / m['train_seconds']:.0f} ex/s end to end); test eval {m['eval_seconds']:.2f} s for {m['n_eval']} "
      f"examples; precision {m['precision']}; batch {m['config']['batch_size']}")
PY
done
