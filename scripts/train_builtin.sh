#!/usr/bin/env bash
# The recipe of the built-in model. Safe to re-run: continues the run in RUN_DIR if it has a checkpoint.
#   RUN_DIR=runs/builtin bash scripts/train_builtin.sh        (then: facial-emotion export / evaluate)
# Long: 45 epochs x about 160 s (1 h 57 min) on 2 AVX2 cores in fp32; run it in the background with nohup and a log.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${RUN_DIR:-runs/builtin}"
DATA="${FACIAL_EMOTION_SHARED:-../shared}/datasets/fer2013/fer2013.csv.gz"
bash scripts/install.sh train
resume=()
[ -f "$RUN_DIR/last.pt" ] && resume=(--resume)
exec .venv/bin/facial-emotion train --data "$DATA" --arch vgg-s --epochs 45 --batch-size 128 --lr 0.1 \
  --weight-decay 5e-4 --label-smoothing 0.1 --ema 0.999 --seed 0 --quiet \
  --out "$RUN_DIR" "${resume[@]}"
