#!/usr/bin/env bash
# The GPU checks of issues 4 and 7 in one call on a lent GPU machine (device time is scarce: one start, one command):
#   1. pretraining at roberta-novels-small's full budget (benchmarks/pretrain_gpu.sh), curve and fill-mask after;
#   2. the reference recipe's first 700 steps, transformers and ours side by side (benchmarks/pretrain_early.py);
#   3. the GPU comparison against transformers (benchmarks/gpu.py), in whatever time is left.
# The machine's own python3 (torch, transformers, tokenizers, rich) runs the code from src/; the few packages it
# lacks for the CLI (typer's current version and pydantic) travel as wheels in .whl/. The data must be inside the
# checkout to travel: copy ../shared/data/{pretrain-corpus,roberta-tokenizer} and the reference's pretrain_log.json
# to shared/ (git-ignored) first. Logs go to $OUT (the device tool's result folder; default runs/device).
# Usage (device): bash benchmarks/device_run.sh      (PRETRAIN_ARGS="--seed 1": extra pretrain flags;
#                                                    NO_GPU_BENCH=1: pretraining only)
#        (CPU smoke of the same path): SMOKE=1 PY=.venv/bin/python ROBERTAOPS_DATA=../shared/data bash benchmarks/device_run.sh
set -uo pipefail
start=$(date +%s)
LIMIT=${LIMIT:-560}  # seconds for the whole script: the device call's own limit is 600
RESULTS=${OUT:-runs/device}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 ROBERTAOPS_DATA=${ROBERTAOPS_DATA:-shared/data}
mkdir -p "$RESULTS"
if [ -d .whl ] && [ -z "${SMOKE:-}" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  $PY -c "import torch, transformers, tokenizers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, 'cuda', torch.cuda.is_available())"
  nproc; } 2>&1 | tee "$RESULTS/machine.txt"

if [ -n "${SMOKE:-}" ]; then
    PRETRAIN_ENV="STEPS=3 DEVICE=cpu BATCH=8 LOG_EVERY=1 CURVE_EVERY=1"; PRETRAIN_ARGS="--max-eval-blocks 32"
    GPU_ARGS="--device cpu --layers 2 --n 64 --long-n 8 --budgets 2048,4096"
    EARLY_ARGS="--device cpu --layers 1 --batch 4 --steps 2 --every 1"
else
    PRETRAIN_ENV=""; PRETRAIN_ARGS=${PRETRAIN_ARGS:-}; GPU_ARGS=""
    EARLY_ARGS="--layers 6 --batch 256 --steps 700 --every 50"
fi
env $PRETRAIN_ENV PY="$PY" OUT=runs/pretrain-gpu CACHE=runs/cache-device timeout 370 \
    bash benchmarks/pretrain_gpu.sh $PRETRAIN_ARGS 2>&1 | tee "$RESULTS/pretrain.log"
cp runs/pretrain-gpu/log.jsonl runs/pretrain-gpu/metrics.json "$RESULTS/" 2>/dev/null
timeout 120 $PY benchmarks/pretrain_early.py $EARLY_ARGS 2>&1 | grep -v Warning | tee "$RESULTS/pretrain_early.log"

left=$(( LIMIT - ($(date +%s) - start) ))
echo "gpu.py gets ${left} s"
[ "$left" -gt 30 ] && [ -z "${NO_GPU_BENCH:-}" ] && timeout "$left" $PY benchmarks/gpu.py $GPU_ARGS --json "$RESULTS/gpu.json" 2>&1 \
    | grep -v "Writing model shards" | tee "$RESULTS/gpu.log"
echo "device_run total $(( $(date +%s) - start )) s"
