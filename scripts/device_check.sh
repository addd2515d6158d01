#!/usr/bin/env bash
# The pretraining checks that need a GPU, as one prepared run for a borrowed CUDA machine (~6 min on one
# H200): the speed benchmark (our bf16 step vs the Harmony repo's loop structure at ViT-S/16, then ViT-S/16
# and ViT-B/16 images/s and MFU), and a short `torchrun` pretraining run (bf16 autocast, fused AdamW, NCCL
# process group, checkpoint, EMA export) on synthetic captions.  Small result files land in $OUT.
#
# Such machines usually carry torch, timm and tensorboard but not open_clip; bring its wheels along:
#   .venv/bin/pip download --no-deps -d .device-wheels -c constraints.txt open_clip_torch ftfy wcwidth
#   echo /.device-wheels/ >> .git/info/exclude
# and run `bash scripts/device_check.sh` there with `.device-wheels` carried.  The same script runs on a
# CPU for a dry run: ARCH=vit_tiny_patch16_224 BATCH=8 MAX_STEPS=4 N=64 SPEED_ARGS="--config smoke".
set -euo pipefail

OUT=${OUT:-/tmp/device-check}
SCRATCH=${SCRATCH:-$(mktemp -d)}  # data and checkpoints: too many files to send back
PY=${PYTHON:-python3}
ARCH=${ARCH:-vit_small_patch16_224}
BATCH=${BATCH:-64}         # the README recipe's ViT-S/16 batch per GPU
MAX_STEPS=${MAX_STEPS:-40}
N=${N:-1024}               # synthetic image-caption pairs (16 steps per epoch at batch 64)
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$PY" -c "import open_clip" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-index .device-wheels/*.whl
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no GPU"; \
  "$PY" -c "import torch, timm, open_clip; print(torch.__version__, timm.__version__, open_clip.__version__)"; } \
    | tee "$OUT/versions.txt"

# shellcheck disable=SC2086  # SPEED_ARGS is a list of options
"$PY" benchmarks/speed/pretrain.py --steps "${STEPS:-10}" ${SPEED_ARGS:-} 2>&1 | tee "$OUT/speed.txt"

"$PY" -m harmony_bench data synth --kind captions --out "$SCRATCH/captions" --n "$N" --size 256
"$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m harmony_bench pretrain --method harmony \
    --arch "$ARCH" --data "cc3m:$SCRATCH/captions/pairs" --batch-size "$BATCH" --max-steps "$MAX_STEPS" \
    --set log.every_steps=10 --output "$SCRATCH/run" 2>&1 | tail -n 40 | tee "$OUT/pretrain.txt"
cp "$SCRATCH/run/log.jsonl" "$OUT/pretrain-log.jsonl"
ls "$SCRATCH/run/export" | tee -a "$OUT/pretrain.txt"
