"""``skewwatch collector --webhook HOST:PORT --tls-cert --tls-key``, the real entry point as its own
process: the collector's API on HTTP and the injecting webhook on HTTPS, from one process, both
stopped by one SIGTERM."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from tests.webhook.support import make_cert, pod_review, vllm_pod


def _post_review(port: int, ca: Path) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=str(ca))
    body = json.dumps(pod_review(vllm_pod({"skewwatch.io/inject": "true"}))).encode()
    req = urllib.request.Request(
        f"https://localhost:{port}/mutate", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        answer: dict[str, object] = json.loads(r.read())
    return answer


def _answers(port: int, ca: Path) -> bool:
    try:
        return bool(_post_review(port, ca)["response"])
    except OSError:
        return False


def test_the_collector_serves_the_webhook_beside_its_api(tmp_path: Path, procs: Processes) -> None:
    cert, key = make_cert(tmp_path, "tls", "localhost")
    http, hook = free_port(), free_port()
    argv = skewwatch("collector", "--grpc", "127.0.0.1:0", "--http", f"127.0.0.1:{http}",
                     "--store", f"sqlite:///{tmp_path / 'store.db'}", "--webhook", f"127.0.0.1:{hook}",
                     "--tls-cert", str(cert), "--tls-key", str(key))  # fmt: skip
    proc = procs.start("collector", argv, {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"})
    wait_for("the collector's API", lambda: get_json(f"http://127.0.0.1:{http}/readyz") is not None, procs)
    wait_for("the webhook", lambda: _answers(hook, cert), procs)
    answer = _post_review(hook, cert)
    response = answer["response"]
    assert isinstance(response, dict) and response["allowed"] is True and response["patchType"] == "JSONPatch"
    procs.stop("collector")
    assert proc.returncode == 0, (tmp_path / "collector.log").read_text()[-2000:]
