"""A real Prometheus for the deploy tests, and a drift scenario that gives its panels data.

``start_prometheus`` runs ``/usr/bin/prometheus`` (Debian's ``prometheus`` package; .ci/run
installs it) on a free loopback port with its own config and TSDB directory, scraping the given
targets every second. ``drift_scenario`` feeds a running collector over real gRPC with the recorded
agent snapshots (tests/fixtures/snapshots, through tests/support/collector.py): three H100
replicas with observations, a baseline, a GPU-class drift that opens and resolves, then a dtype
drift that stays open, so every gauge and counter the dashboards read has series.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from demo.harness import Processes, free_port, get_json, wait_for
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.wire import snapshot_to_proto
from tests.support.collector import (
    A100_40GB_FACTS,
    BASE_FACTS,
    H100_FACTS,
    AgentStream,
    hello_msg,
    make_snapshot,
    observations_msg,
)

OBS = {"generation_tokens_per_s": 100.0, "requests_per_s": 2.0, "e2e_latency_seconds_count": 50.0,
       "requests_running": 4.0}  # fmt: skip
NAMESPACE = "ml"
WORKLOAD = "ml/Deployment/llm"


def promtool() -> str:
    """The promtool binary; fails (not skips) where it is missing: .ci/run installs it."""
    found = shutil.which("promtool")
    assert found, "promtool not found: install Debian's prometheus package (.ci/run does)"
    return found


def start_prometheus(procs: Processes, workdir: Path, targets: list[str]) -> str:
    """A real Prometheus scraping ``targets`` (host:port, /metrics) every 1 s; returns its base URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: install Debian's prometheus package (.ci/run does)"
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "skewwatch",
                        "metrics_path": "/metrics",
                        "static_configs": [{"targets": targets}],
                    }
                ],
            }
        )
    )
    (workdir / "tsdb").mkdir(exist_ok=True)
    procs.start(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        env={"PATH": "/usr/bin:/bin"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_for("prometheus ready", lambda: _ready(url), procs, timeout_s=60)
    return url


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as r:
        return bool(r.status == 200)


def query(url: str, expr: str, at: float | None = None) -> dict[str, Any]:
    """``/api/v1/query`` of ``expr``: the decoded response (status success or error, with its data)."""
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    req = f"{url}/api/v1/query?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            out: dict[str, Any] = json.load(r)
    except urllib.error.HTTPError as e:  # 400 for a query that does not parse: the body says why
        out = json.load(e)
    return out


def target_up(url: str) -> bool:
    targets = get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
    return bool(targets) and all(t["health"] == "up" for t in targets)


def _snap(facts: dict[str, Any]) -> pb.AgentMessage:
    return pb.AgentMessage(snapshot=snapshot_to_proto(make_snapshot(facts)))


async def _pod(channel: grpc.aio.Channel, name: str, facts: dict[str, Any]) -> AgentStream:
    s = AgentStream(channel)
    await s.exchange(hello_msg(1, pod=name))
    msg = _snap({**facts, "orchestration.pod": name})
    msg.sequence = 2
    await s.exchange(msg)
    for seq in (3, 4, 5):
        await s.exchange(observations_msg(seq, OBS))
    return s


async def send_snapshot(stream: AgentStream, seq: int, facts: dict[str, Any]) -> None:
    msg = _snap(facts)
    msg.sequence = seq
    await stream.exchange(msg)


def scrape(http: str) -> str:
    """The collector's ``GET /metrics`` text."""
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as r:
        return str(r.read().decode())


def open_keys(text: str) -> set[str]:
    """The ``key`` labels of skewwatch_findings_open series at 1 in a /metrics text."""
    return {
        m.group(1)
        for m in re.finditer(r'^skewwatch_findings_open\{[^}]*key="([^"]+)"[^}]*\} 1(?:\.0)?$', text, re.M)
    }


def record_baseline(http: str, workload: str) -> None:
    req = urllib.request.Request(f"{http}/api/v1/baselines/{workload}", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201


async def _until(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if await asyncio.to_thread(check):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.2)  # poll interval: the collector offers no event for an evaluation


async def drift_scenario(channel: grpc.aio.Channel, http: str) -> list[AgentStream]:
    """Three H100 replicas of ml/Deployment/llm with observations, a baseline, llm-2 on an A100 (a
    finding that opens) and back (it resolves), then llm-1 restarted with ``--dtype float32`` and
    half the tokens/s (a finding left open). Waits on the collector's /metrics after each step;
    returns the streams, still open (agents connected)."""
    h100 = {**BASE_FACTS, **H100_FACTS}
    streams = [await _pod(channel, f"llm-{i}", h100) for i in range(3)]
    await _until("three replicas", lambda: 'workload="ml/Deployment/llm"} 3' in scrape(http))
    await asyncio.to_thread(record_baseline, http, "ml/llm")
    await send_snapshot(streams[2], 6, {**BASE_FACTS, **A100_40GB_FACTS, "orchestration.pod": "llm-2"})
    await _until("the GPU-class finding open", lambda: "hardware.gpu.product" in open_keys(scrape(http)))
    await send_snapshot(streams[2], 7, {**h100, "orchestration.pod": "llm-2"})
    await _until(
        "the GPU-class finding resolved", lambda: "skewwatch_findings_resolved_total{" in scrape(http)
    )
    dtype = {
        **h100,
        "orchestration.pod": "llm-1",
        "runtime.args.dtype": "float32",
        "runtime.dtype": "float32",
    }
    await send_snapshot(streams[1], 6, dtype)
    for seq in (7, 8, 9):
        await streams[1].exchange(observations_msg(seq, {**OBS, "generation_tokens_per_s": 50.0}))
    await _until("the dtype finding open", lambda: "runtime.dtype" in open_keys(scrape(http)))
    return streams
