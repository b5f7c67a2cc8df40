#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs skewwatch with its dev tools, once per pyproject change.
# SKEWWATCH_EXTRAS names the extras to install (default: dev; the benchmarks add bench).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "skewwatch needs Python >= 3.11; $PY is $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11+" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extras=${SKEWWATCH_EXTRAS:-dev}
stamp=.venv/.skewwatch-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi
