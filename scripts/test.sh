#!/usr/bin/env bash
# The test command: set up, then generated-code freshness, lint, types, import layers and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "--- proto: generated code up to date"
PYTHON=.venv/bin/python bash scripts/gen-proto.sh --check
echo "--- ruff"
ruff check .
ruff format --check .
echo "--- mypy --strict"
mypy
echo "--- import layers (pyproject.toml [tool.importlinter])"
lint-imports --no-cache
echo "--- pytest"
exec python -m pytest "$@"
