#!/usr/bin/env bash
# Train the candidates of scripts/candidates.json on a lent GPU machine in one call, as the shipped
# models were trained (README, "Train your own model"). Two halves:
#
#   bash scripts/gpu_candidates.sh pack     # here: FER-2013 Training + PublicTest -> gpu/ (48 MiB, in
#                                           # .gitignore; the device tool carries at most 64 MiB in all)
#   bash scripts/gpu_candidates.sh run      # there (device tool, carry ["gpu"]): all candidates at once,
#                                           # stopped at DEADLINE s, best weights packed into $OUT
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
  ;;
run)
  export PYTHONUNBUFFERED=1
  OUT="${OUT:-runs/gpu-out}"
  mkdir -p /tmp/d "$OUT"
  cp gpu/fer2013new.csv /tmp/d/  # beside the faces: --labels ferplus8 reads the votes from there
  python3 scripts/pack_faces.py unpack gpu/fer2013.xz --out /tmp/d/fer2013.npz
  python3 scripts/train_candidates.py --data /tmp/d/fer2013.npz --plan "${PLAN:-scripts/candidates.json}" \
    --runs /tmp/runs --parallel "${PARALLEL:-6}" --device cuda --deadline-s "${DEADLINE:-530}" \
    --pack-to "$OUT" 2>&1 | tee "$OUT/log.txt"
  ;;
*)
  echo "usage: $0 pack|run" >&2
  exit 2
  ;;
esac
