#!/usr/bin/env bash
# The main job: install the package (inference only) and analyse photos with the built-in model.
#   usage: scripts/demo.sh [IMAGES...]      (default: the sample photos in ../shared/media)
# Paths are read from where you run it; the results go to demo-output/ in the project, emptied first
# so that it holds this run's copies only.
set -euo pipefail
inputs=()
for arg in "$@"; do  # before the cd below: a relative path names a file where the user is
  case "$arg" in
    /*) inputs+=("$arg") ;;
    *) inputs+=("$PWD/$arg") ;;
  esac
done
cd "$(dirname "$0")/.."
bash scripts/install.sh
shared="${FACIAL_EMOTION_SHARED:-../shared}"
if [ "${#inputs[@]}" -eq 0 ]; then
  if [ ! -d "$shared/media" ]; then
    echo "no images given and $shared/media not found: scripts/demo.sh PHOTO..." >&2
    exit 2
  fi
  inputs=("$shared/media")
fi
rm -rf demo-output
mkdir -p demo-output
.venv/bin/facial-emotion analyze "${inputs[@]}" --annotate demo-output --csv demo-output/faces.csv
echo "annotated copies and faces.csv are in $PWD/demo-output/"
