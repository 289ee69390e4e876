#!/usr/bin/env bash
# The recipe of the built-in model, in two one-cycle stages of the same net:
#   stage 1: 45 epochs from scratch, peak lr 0.1                     -> RUN_DIR/stage1
#   stage 2: 48 more epochs from stage 1's best weights, peak lr 0.04 -> RUN_DIR/stage2 (the shipped model)
# A second, lower cycle fits a 180-minute session where one long schedule would not, and each stage
# resumes on its own. Safe to re-run: a stage with a checkpoint continues (a finished one only re-exports).
#   RUN_DIR=runs/builtin bash scripts/train_builtin.sh   (then copy RUN_DIR/stage2/model.{onnx,json})
# Long: 45 + 48 epochs x about 160 s (2 h + 2 h 5 min) on 2 AVX2 cores in fp32; run it in the
# background with nohup and a log.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${RUN_DIR:-runs/builtin}"
DATA="${FACIAL_EMOTION_SHARED:-../shared}/datasets/fer2013/fer2013.csv.gz"
bash scripts/install.sh train
common=(--data "$DATA" --arch vgg-s --batch-size 128 --weight-decay 5e-4 --label-smoothing 0.1 --ema 0.999 --quiet)

resume=()
[ -f "$RUN_DIR/stage1/last.pt" ] && resume=(--resume)
.venv/bin/facial-emotion train "${common[@]}" --epochs 45 --lr 0.1 --seed 0 --out "$RUN_DIR/stage1" "${resume[@]}"

resume=()
[ -f "$RUN_DIR/stage2/last.pt" ] && resume=(--resume)
exec .venv/bin/facial-emotion train "${common[@]}" --epochs 48 --lr 0.04 --seed 1 \
  --init-from "$RUN_DIR/stage1/best.pt" --out "$RUN_DIR/stage2" "${resume[@]}"
