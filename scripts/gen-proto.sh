#!/usr/bin/env bash
# Regenerates the Python code of the wire contract from proto/skewwatch/v1/*.proto.
# With --check, regenerates into a temporary copy and fails when the checked-in code differs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
out=.
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
"$PY" -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  proto/skewwatch/v1/*.proto
if [ "${1:-}" = "--check" ]; then
  for f in "$out"/proto/skewwatch/v1/*; do
    name=${f#"$out"/}
    if ! cmp -s "$f" "$name"; then
      echo "generated code is stale: $name differs from 'scripts/gen-proto.sh' output; run it and commit" >&2
      exit 1
    fi
  done
  echo "generated proto code is up to date"
fi
