#!/usr/bin/env bash
# The built-in model: `facial-emotion train` with TrainConfig's defaults, which are its recipe
# (vgg-m, 2.6 M parameters, on 40x40 crops; one 240-epoch SGD Nesterov one-cycle, peak lr 0.1,
# wd 5e-4, label smoothing 0.1, mixup 0.2, EMA 0.999; see src/facial_emotion/training/config.py).
#   RUN_DIR=runs/builtin bash scripts/train_builtin.sh
# then copy RUN_DIR/model.{onnx,json} to src/facial_emotion/weights/emotion-fp32.{onnx,json} (the fp32
# model) and make the default int8 file from it (docs/training.md, "The shipped file"):
#   .venv/bin/facial-emotion quantize fp32 --data "$DATA" --out src/facial_emotion/weights/emotion.onnx
# About 240 x 56 s (3 h 45 min) on 2 AMD EPYC cores with AVX512-BF16 or 2 Xeon cores with AMX (bf16
# autocast); on CPUs without native bf16 it runs in fp32 and takes two to seven times longer.
# Run it in the background with nohup and a log.
# Safe to re-run: an interrupted run resumes from its last checkpoint, a finished one only re-exports.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${RUN_DIR:-runs/builtin}"
DATA="${FACIAL_EMOTION_SHARED:-../shared}/datasets/fer2013/fer2013.csv.gz"
bash scripts/install.sh train
resume=()
[ -f "$RUN_DIR/last.pt" ] && resume=(--resume)
exec .venv/bin/facial-emotion train --data "$DATA" --quiet --out "$RUN_DIR" "${resume[@]}"
