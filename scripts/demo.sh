#!/usr/bin/env bash
# The main job: set up, then catch a dtype drift end to end (collector, stand-in vLLM, agent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m demo.run "$@"
