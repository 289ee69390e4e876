#!/usr/bin/env bash
# The one command behind the README's benchmark table: makes sure facial-emotion's venv (.venv, with the
# train extra) and fer's venv (benchmarks/.peer-venv) are complete, skipping what already is, then runs
# every benchmark with the two systems interleaved. Prints the table; writes
# benchmarks/results/compare_fer.json and compare_fer.md. About 10-15 minutes on 2 quiet cores.
#
#     bash benchmarks/run_all.sh [compare_fer.py options, e.g. --quick, --dataset PATH]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export FACIAL_EMOTION_SHARED="${FACIAL_EMOTION_SHARED:-$(cd .. && pwd)/shared}"
VENV="${VENV:-.venv}"
SECONDS=0
if ! "$VENV/bin/python" -c "import facial_emotion, onnxruntime, torch" 2>/dev/null; then
    VENV="$VENV" bash scripts/install.sh train
fi
bash benchmarks/setup_peer.sh
"$VENV/bin/python" benchmarks/compare_fer.py "$@"
echo "run_all.sh: done in $((SECONDS / 60)) min $((SECONDS % 60)) s"
