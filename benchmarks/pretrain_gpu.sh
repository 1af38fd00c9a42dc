#!/usr/bin/env bash
# The reference budget on one GPU, in one go: roberta-novels-small's recipe (README in ../shared/models/
# roberta-novels-small) with `robertaops pretrain`, then the held-out loss/accuracy and fill-mask examples beside
# the reference's, and the loss curve per token.
#   small preset (6 layers, hidden 384, 6 heads, FFN 1536, 514 positions, roberta-base vocabulary), 128-token
#   blocks, 6,921 steps x 256 blocks = 226.8 M block tokens, AdamW (0.9, 0.98), eps 1e-6, wd 0.01, peak LR 5e-4,
#   10 % warm-up then linear decay, clip 1.0, bf16 autocast, 15 % dynamic masking, 1 % of blocks held out.
# Usage (repo root): bash benchmarks/pretrain_gpu.sh            # full run, target < 8 minutes on an H100/H200
#                    STEPS=3 DEVICE=cpu BATCH=8 LOG_EVERY=1 CURVE_EVERY=1 bash benchmarks/pretrain_gpu.sh --max-eval-blocks 32
#                    (CPU smoke test of the same path)
set -euo pipefail
DATA=${ROBERTAOPS_DATA:-../shared/data}
OUT=${OUT:-runs/pretrain-gpu}
STEPS=${STEPS:-6921}
BATCH=${BATCH:-256}
DEVICE=${DEVICE:-cuda}
PY=${PY:-.venv/bin/python}
export ROBERTAOPS_DATA=$DATA
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
if [ "$DEVICE" = cpu ]; then PREC=--no-bf16; else PREC=--bf16; fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
start=$(date +%s)
$PY -m robertaops.cli pretrain "$DATA/pretrain-corpus" -o "$OUT" --preset small --tokenizer "$DATA/roberta-tokenizer" \
    --max-length 128 --batch-size "$BATCH" --grad-accum 1 --max-steps "$STEPS" --lr 5e-4 --warmup 0.1 \
    --weight-decay 0.01 --max-grad-norm 1.0 --device "$DEVICE" $PREC --log-every "${LOG_EVERY:-100}" \
    --save-every 0 --eval-batch-size 256 --cache-dir "${CACHE:-runs/cache}" --quiet "$@" | tail -n 1 | tee "$OUT.metrics.json"
echo "wall seconds (tokenization, training, evaluation, saving): $(( $(date +%s) - start ))"
$PY benchmarks/pretrain_curve.py "$OUT" --every "${CURVE_EVERY:-5}"
