#!/usr/bin/env bash
# The main job: install the package (inference only) and analyse photos with the built-in model.
#   usage: scripts/demo.sh [IMAGES...]      (default: the sample photos in ../shared/media)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
shared="${FACIAL_EMOTION_SHARED:-../shared}"
if [ "$#" -eq 0 ]; then
  if [ ! -d "$shared/media" ]; then
    echo "no images given and $shared/media not found: scripts/demo.sh PHOTO..." >&2
    exit 2
  fi
  set -- "$shared/media"
fi
mkdir -p demo-output
.venv/bin/facial-emotion analyze "$@" --annotate demo-output --csv demo-output/faces.csv
echo "annotated copies and faces.csv are in demo-output/"
