#!/usr/bin/env bash
# Install everything (package + train/serve/scale/video/dev extras, Debian's Chromium for the browser tests),
# then lint, type-check and run every test.   usage: scripts/test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh "train,serve,scale,video,dev"
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing Debian's chromium for the browser tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "WARNING: could not install chromium; browser tests will be skipped" >&2
fi
export FACIAL_EMOTION_SHARED="${FACIAL_EMOTION_SHARED:-$(cd .. && pwd)/shared}"
[ -d "$FACIAL_EMOTION_SHARED" ] || echo "WARNING: $FACIAL_EMOTION_SHARED not found: tests on real data will be SKIPPED" >&2
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/mypy src
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
