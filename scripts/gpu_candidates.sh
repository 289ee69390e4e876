#!/usr/bin/env bash
# Train the candidates of a plan (PLAN, default scripts/candidates.json: how the shipped models were
# trained; scripts/candidates-round2.json: the levers measured next) on a lent GPU machine in one
# call (README, "Train your own model"). Steps:
#
#   bash scripts/gpu_candidates.sh pack     # here: FER-2013 Training + PublicTest -> gpu/ (48 MiB, in
#                                           # .gitignore); TEACHER=1 adds the built-in ensemble's
#                                           # ten-crop probabilities on the training faces, a --teacher
#                                           # for a student of the ensemble (no plan uses it now; 9 min)
#   bash scripts/gpu_candidates.sh lighten  # here: remove the emotion*.onnx weights (34 MB, committed)
#                                           # from the working tree: the device tool carries at most
#                                           # 64 MiB in all, and the training there does not read them
#   bash scripts/gpu_candidates.sh run      # there (device tool, carry ["gpu"]): all candidates at once,
#                                           # stopped at DEADLINE s, best weights packed into $OUT
#   bash scripts/gpu_candidates.sh restore  # here, right after the call: the weights back from git
#
# Then here: python scripts/train_candidates.py unpack OUT/candidates-*.pt --runs runs/gpu and
# `facial-emotion export runs/gpu/NAME/best.pt --out NAME.onnx` for each. On the H200 all six
# candidates of candidates.json finished in 520 s (about 3.5 s per epoch each, six at once).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
pack)
  SHARED="${FACIAL_EMOTION_SHARED:-../shared}"
  mkdir -p gpu
  cp "$SHARED/datasets/fer2013/fer2013new.csv" gpu/
  .venv/bin/python scripts/pack_faces.py pack --data "$SHARED/datasets/fer2013/fer2013.csv.gz" \
    --splits Training,PublicTest --out gpu/fer2013.xz
  [ "${TEACHER:-0}" = 1 ] || exit 0
  # the teacher: about 9 minutes on 2 cores; the file holds the faces' SHA-256, so it teaches only these faces
  .venv/bin/python -c 'import sys; from pathlib import Path
from facial_emotion.training.distill import write_teacher_probabilities as w
w(sys.argv[1], sys.argv[2], Path(sys.argv[3]))' src/facial_emotion/weights/emotion-ensemble.onnx \
    "$SHARED/datasets/fer2013/fer2013.csv.gz" gpu/ensemble-teacher.npz
  ;;
lighten)
  # only committed, unchanged weights are removed: `restore` brings them back from git, nothing is lost
  if [ -n "$(git status --porcelain -- src/facial_emotion/weights)" ]; then
    echo "src/facial_emotion/weights has uncommitted or untracked files: commit or move them first" >&2
    exit 2
  fi
  git ls-files -z 'src/facial_emotion/weights/emotion*.onnx' | xargs -0 rm -f
  ;;
restore)
  git checkout HEAD -- src/facial_emotion/weights
  ;;
run)
  export PYTHONUNBUFFERED=1
  OUT="${OUT:-runs/gpu-out}"
  mkdir -p /tmp/d "$OUT"
  cp gpu/fer2013new.csv /tmp/d/  # beside the faces: --labels ferplus8 reads the votes from there
  python3 scripts/pack_faces.py unpack gpu/fer2013.xz --out /tmp/d/fer2013.npz
  # DEVICE=cpu EPOCHS=1: the same call as a smoke run on this machine
  python3 scripts/train_candidates.py --data /tmp/d/fer2013.npz --plan "${PLAN:-scripts/candidates.json}" \
    --runs /tmp/runs --parallel "${PARALLEL:-6}" --device "${DEVICE:-cuda}" --deadline-s "${DEADLINE:-530}" \
    ${EPOCHS:+--epochs "$EPOCHS"} --pack-to "$OUT" 2>&1 | tee "$OUT/log.txt"
  ;;
*)
  echo "usage: $0 pack|lighten|run|restore" >&2
  exit 2
  ;;
esac
