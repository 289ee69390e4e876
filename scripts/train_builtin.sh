#!/usr/bin/env bash
# The built-in model: `facial-emotion train` with TrainConfig's defaults, which are its recipe
# (resnet-m, 3.6 M parameters, on 40x40 crops; one 140-epoch SGD Nesterov one-cycle, batch 256, peak
# lr 0.2, wd 5e-4, label smoothing 0.1, mixup 0.2, EMA 0.999; see src/facial_emotion/training/config.py),
# with the seed of the shipped run.
#   RUN_DIR=runs/builtin bash scripts/train_builtin.sh
# then copy RUN_DIR/model.{onnx,json} to src/facial_emotion/weights/emotion-fp32.{onnx,json} (the fp32
# model), make the default int8 file from it and calibrate both (README, "Train your own model"):
#   .venv/bin/facial-emotion quantize fp32 --data "$DATA" --out src/facial_emotion/weights/emotion.onnx
#   W=src/facial_emotion/weights; .venv/bin/facial-emotion calibrate fp32 --data "$DATA" --out $W/emotion-fp32.onnx
#   .venv/bin/facial-emotion calibrate default --data "$DATA" --out $W/emotion.onnx
# The shipped run trained on an NVIDIA H200 (--device auto picks a GPU where torch sees one) in 7 min,
# six candidates at once (scripts/gpu_candidates.sh). On 2 CPU cores with native bf16 (AVX512-BF16 or
# AMX) it runs at the img/s that benchmarks/train_speed.py reports for this recipe: about 4 h.
# Run it in the background with nohup and a log.
# Safe to re-run: an interrupted run resumes from its last checkpoint, a finished one only re-exports.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${RUN_DIR:-runs/builtin}"
DATA="${FACIAL_EMOTION_SHARED:-../shared}/datasets/fer2013/fer2013.csv.gz"
bash scripts/install.sh train
resume=()
[ -f "$RUN_DIR/last.pt" ] && resume=(--resume)
exec .venv/bin/facial-emotion train --data "$DATA" --seed 3 --quiet --out "$RUN_DIR" "${resume[@]}"
