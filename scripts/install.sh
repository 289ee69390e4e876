#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install the package with the given extras.
# Idempotent: a second run only installs what changed.   usage: scripts/install.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
EXTRAS="${1:-}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
# torch first and pinned (constraints.txt), so nothing pulls a CUDA build.
case ",$EXTRAS," in
  *,train,*) "${PIP[@]}" install -c constraints.txt torch ;;
esac
"${PIP[@]}" install -c constraints.txt -e "$spec"
