#!/usr/bin/env bash
# Creates the peer's own virtual environment, benchmarks/.peer-venv, with the PyPI `fer` package and
# only what the parts of it the benchmark uses import. Idempotent: does nothing when the venv is
# already complete for these exact pins (a stamp file records them).
#
#     bash benchmarks/setup_peer.sh     # PEER_VENV=DIR to put it elsewhere, PEER_PYTHON=EXE to pick python
#
# Why not `pip install fer`: fer declares facenet-pytorch (which pins an old torch, and any unpinned
# torch is a multi-GB CUDA build), moviepy, ffmpeg-python, pandas, matplotlib and opencv-contrib-python.
# The benchmark only imports fer.fer (the FER class: Haar detector + bundled classifier), whose
# imports are cv2, numpy, pkg_resources, requests, tensorflow (tf.lite / keras) and PIL (fer.utils).
# fer.classes (the Video helper: moviepy, pandas) and the MTCNN path (facenet-pytorch, torch) are
# never imported. So: fer with --no-deps, then exactly those.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PEER_VENV:-$HERE/.peer-venv}"
PYTHON="${PEER_PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

FER="fer==25.10.3"
DEPS=(
    "tensorflow-cpu==2.20.0"        # fer 25.10 era; tf.lite.Interpreter still present (deprecated)
    "opencv-python-headless==4.14.0.94"  # < 5: the 5.x wheels dropped cv2.data.haarcascades
    "setuptools<81"                 # fer.fer imports pkg_resources
    "requests"                      # imported at module level by fer.fer and fer.utils
    "Pillow"                        # fer.utils
)
PINS="$FER ${DEPS[*]}"
STAMP="$VENV/.peer-complete"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$PINS" && -x "$VENV/bin/python" ]]; then
    echo "peer venv $VENV is complete ($PINS)"
    exit 0
fi

echo "creating the peer venv $VENV ($PYTHON): $PINS"
rm -f "$STAMP"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip_install() {
    # pip's own output, less its notes on this machine's local index folders and its (expected)
    # complaint that fer's declared dependencies are missing: they are left out on purpose.
    "$VENV/bin/python" -m pip --disable-pip-version-check -q install "$@" 2>&1 |
        { grep -v -e "^WARNING: Location 'file:" -e "^fer .* requires " -e "resolver does not" || true; }
}
# No torch may come in by any route: fer's own dependencies are skipped with --no-deps, and the
# rest are checked below.
pip_install --no-deps "$FER"
pip_install "${DEPS[@]}"

has_torch="import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
if "$VENV/bin/python" -c "$has_torch"; then
    echo "error: torch ended up in the peer venv $VENV; remove it (rm -r $VENV)" >&2
    exit 1
fi
"$VENV/bin/python" - <<'EOF'
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import cv2
import tensorflow as tf

import fer
import fer.fer  # noqa: F401  the module the benchmark uses

assert os.path.isfile(cv2.data.haarcascades + "haarcascade_frontalface_default.xml"), "no Haar cascades"
print(f"peer venv ok: fer {fer.__version__}, tensorflow {tf.__version__}, opencv {cv2.__version__}")
EOF
echo "$PINS" >"$STAMP"
