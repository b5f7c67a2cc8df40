"""Secrets of real manifests never leave the pod: through a real agent and collector, end to end.

Each real manifest whose container carries a secret (an ``HF_TOKEN`` from a ``secretKeyRef``, a
token in a ConfigMap) is run as a real process the way the kubelet would start it (helpers shared
with tests/agent/test_process_manifests.py: the secret becomes a token-shaped placeholder). A real
agent attached by ``--pid`` streams to a real collector; the secret must then appear nowhere the
collector stores or serves (SQLite database and WAL, every API route) and in no log, while the
redacted digest does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from demo.harness import Processes, free_port, get_json, wait_for
from tests.support.fake_processes import SECRET_FROM_REF, install_fake_engines
from tests.support.manifests import EXPECTED, manifest_command, read_engine

pytestmark = pytest.mark.e2e

# manifest -> (env name carrying the secret, its raw value in the process)
CASES = {
    "production-stack__vllm-gpu-deployment.yaml": ("HUGGING_FACE_HUB_TOKEN", SECRET_FROM_REF),
    "production-stack__vllm-disagg-prefill-deploy.yaml": ("HF_TOKEN", SECRET_FROM_REF),
    # A token written into a ConfigMap in clear, reaching TGI through envFrom.
    "opea-genaiinfra__tgi-nv.yaml": ("HF_TOKEN", "insert-your-huggingface-token-here"),
}


@pytest.mark.parametrize("manifest", sorted(CASES))
def test_manifest_secret_is_redacted_in_store_api_and_logs(
    manifest: str, real_fixtures: Path, tmp_path: Path
) -> None:
    env_name, secret = CASES[manifest]
    argv, env = manifest_command(real_fixtures / "manifests" / manifest)
    assert env.get(env_name) == secret, "the manifest no longer carries the secret this test expects"
    bindir, lib = install_fake_engines(tmp_path / "engines")
    procs = Processes(tmp_path)
    ours = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
    try:
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        engine_env = dict(env) | {"PATH": f"{bindir}:/usr/bin:/bin", "PYTHONPATH": str(lib)}
        launched = procs.start("engine", argv, engine_env)
        engine = EXPECTED[manifest][1]["runtime.engine"]
        found = asyncio.run(read_engine(launched.pid, engine))
        assert found.process is not None and found.process.engine == engine
        grpc_port, http_port = free_port(), free_port()
        api = f"http://127.0.0.1:{http_port}"
        procs.start(
            "collector",
            [sys.executable, "-m", "skewwatch.cli", "collector", "--grpc", f"127.0.0.1:{grpc_port}",
             "--http", f"127.0.0.1:{http_port}", "--store", f"sqlite:///{tmp_path}/store.db"],
            ours,
        )  # fmt: skip
        wait_for("collector ready", lambda: get_json(f"{api}/readyz") is not None, procs)
        procs.start(
            "agent",
            [sys.executable, "-m", "skewwatch.cli", "--log-level", "DEBUG", "agent",
             "--collector", f"127.0.0.1:{grpc_port}", "--pid", str(found.process.pid), "--interval", "0.5"],
            # These engines serve no metrics: do not wait for them before the first snapshot.
            ours | {"POD_NAMESPACE": "ml", "POD_NAME": "llm-7d9f8b6c5-x2x9z", "SKEWWATCH_SETTLE": "0"},
        )  # fmt: skip
        pod_url = f"{api}/api/v1/pods/ml/llm-7d9f8b6c5-x2x9z"
        key = f"runtime.env.{env_name}"
        wait_for(f"{key} at the collector", lambda: key in get_json(pod_url)["facts"], procs, 60)
        pod = get_json(pod_url)
        assert str(pod["facts"][key]).startswith("redacted:sha256:")
        served = [
            pod,
            get_json(f"{pod_url}/history?facts=true"),
            get_json(f"{api}/api/v1/pods"),
            get_json(f"{api}/api/v1/workloads"),
            get_json(f"{api}/api/v1/findings"),
        ]
        assert secret not in json.dumps(served)
    finally:
        procs.stop_all()
    for path in tmp_path.iterdir():  # store.db, its -wal, agent.log, collector.log
        if path.is_file() and path.name != "engine.log":
            assert secret.encode() not in path.read_bytes(), f"raw secret in {path.name}"
