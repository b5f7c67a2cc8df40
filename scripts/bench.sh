#!/usr/bin/env bash
# Runs every benchmark under tests/bench; prints one JSON line per figure (not part of the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
SKEWWATCH_EXTRAS=dev,bench bash scripts/bootstrap.sh
exec .venv/bin/python -m tests.bench "$@"
