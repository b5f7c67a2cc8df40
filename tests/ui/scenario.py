"""What the browser tests and their fixtures share: the drift scenario's names and values, and a
Scenario whose collector takes extra flags (``--api-tokens``) and whose API reads carry a token."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

from demo.harness import get_json, skewwatch, wait_for
from tests.support.scenario import Scenario

CHROMIUM = "/usr/bin/chromium"
# Headless, as root in a container (no sandbox), and no background connections: on a machine
# with a closed network Chromium's own connections are refused, many at a time. tests/bench's
# bench_ui launches it the same way.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NS_DRIFT, NS_OK, NS_HTML = "prod", "staging", "team-a"
PRIMARY = ["llama-5c7d9-prd01", "llama-5c7d9-prd02"]
ODD = "llama-5c7d9-prd03"
DRIFT_KEY = "runtime.max_model_len"
STAGING_POD = "llama-5c7d9-stg01"
HTML_POD = "llama-6f8e1-tma01"
# A value the browser would run if a page put it into innerHTML (CSP would stop the handler, but not
# the element: the test checks that no <img> is created at all).
HTML_PAYLOAD = "<img src=x onerror=alert(document.domain)>"
READ_TOKEN = "ui-test-read-token-7c1f2a9e5b"  # a test fixture's token, on loopback only
# The HTML pod's engine key (--api-key): the agent redacts it; the pages show only the digest.
ENGINE_KEY = "sk-uitest-9f3b2c7d1e5a4b6c8d0e"


class UiScenario(Scenario):
    """Scenario's collector with extra flags (``--api-tokens``) and API reads that carry a token."""

    def __init__(self, tmp: Path, token: str | None = None) -> None:
        super().__init__(tmp)
        self.token = token

    def start_collector(self, *extra: str) -> None:
        env = dict(self.env, SKEWWATCH_DRIFT_TICK="0.2", SKEWWATCH_OBSERVATION_EVAL_INTERVAL="0.5",
                   SKEWWATCH_BASELINE_STABLE="0")  # fmt: skip
        self.procs.start(
            "collector",
            skewwatch("collector", "--grpc", f"127.0.0.1:{self.grpc_port}",
                      "--http", f"127.0.0.1:{self.http_port}", "--store", f"sqlite:///{self.tmp}/store.db",
                      "--intents", str(self.intents), *extra),
            env,
        )  # fmt: skip
        wait_for("collector ready", lambda: get_json(f"{self.api}/readyz") is not None, self.procs)

    def stop_all(self) -> None:
        """Every process stopped, signalled all at once (one by one, each waits for its exit)."""
        for proc in self.procs.children.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        self.procs.stop_all()

    def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        req = urllib.request.Request(self.api + path, headers=headers)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def pod(self, namespace: str, name: str) -> Any:
        return self.get(f"/api/v1/pods/{namespace}/{name}")

    def open_findings(self, workload: str) -> list[dict[str, Any]]:
        return list(self.get(f"/api/v1/findings?workload={workload}&status=open")["findings"])

    def workloads(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/workloads")["workloads"])
