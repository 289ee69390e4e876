#!/usr/bin/env bash
# The built-in model, in two stages of `facial-emotion train`:
#  1. TrainConfig's defaults (src/facial_emotion/training/config.py): vgg-m, 2.6 M parameters, on 40x40
#     crops; one 120-epoch SGD Nesterov one-cycle, peak lr 0.1, wd 5e-4, label smoothing 0.1, EMA 0.999.
#     About 120 x 56 s (1 h 52 min) on 2 Xeon cores with AMX (bf16 autocast); without AMX it runs in
#     fp32, several times longer.
#  2. From stage 1's model file, 12 epochs of stochastic weight averaging (SWA): constant lr 0.01,
#     momentum 0.9, the weights averaged at the end of every epoch, BatchNorm re-estimated.
#     About 12 x 6.5 min in fp32 on 2 AMD EPYC cores.
#   RUN_DIR=runs/builtin bash scripts/train_builtin.sh   (then copy RUN_DIR/model.{onnx,json})
# Run it in the background with nohup and a log. Safe to re-run: an interrupted stage resumes from its
# last checkpoint, a finished stage 1 (RUN_DIR/stage1/model.onnx exists) is not trained again.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="${RUN_DIR:-runs/builtin}"
DATA="${FACIAL_EMOTION_SHARED:-../shared}/datasets/fer2013/fer2013.csv.gz"
bash scripts/install.sh train
train() {  # train OUT [OPTIONS]: resume OUT if it has a checkpoint
  local out="$1"
  shift
  local resume=()
  [ -f "$out/last.pt" ] && resume=(--resume)
  .venv/bin/facial-emotion train --data "$DATA" --quiet --out "$out" "${resume[@]}" "$@"
}
[ -f "$RUN_DIR/stage1/model.onnx" ] || train "$RUN_DIR/stage1"
train "$RUN_DIR" --init-from "$RUN_DIR/stage1/model.onnx" --schedule swa --lr 0.01 --momentum 0.9 --epochs 12
