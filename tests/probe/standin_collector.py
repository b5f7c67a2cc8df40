"""A stand-in collector HTTP API for the probe's tests: the two routes the probe calls.

``GET /api/v1/baselines/{namespace}/{name}`` answers what a real collector answered (the tests
record the answers from one, :func:`record_answers`), else the real collector's 404 body;
``POST /api/v1/workloads/{namespace}/{name}/probes`` keeps the body and headers it received and
answers 201 ``{"probe": {"id", "workload"}}`` (the route's documented answer), or the status the
test sets. With ``token`` set both need ``Authorization: Bearer TOKEN`` (401 with the API's error
body otherwise); ``delay_s`` holds every answer back, for the client's timeout. It runs on its
own loop in a thread, on a free port, beside the probe's own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.collector import (
    BASE_FACTS,
    hello_msg,
    make_snapshot,
    observations_msg,
    settings_for,
    snapshot_msg,
    started,
)
from tests.support.threaded import serve_in_thread


@dataclass
class Received:
    """One POST the stand-in received."""

    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def doc(self) -> Any:
        return json.loads(self.raw)


@dataclass
class StandinCollector:
    answers: Mapping[str, dict[str, Any]]  # "namespace/name" -> the GET answer
    not_found: dict[str, Any]
    token: str | None = None
    delay_s: float = 0.0
    post_status: int = 201
    gets: list[str] = field(default_factory=list)
    posts: list[Received] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/baselines/{namespace}/{name}", self.get_baseline)
        app.router.add_post("/api/v1/workloads/{namespace}/{name}/probes", self.post_probe)
        return app

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            body = {"error": {"code": "unauthenticated", "message": "a bearer token is required"}}
            return web.json_response(
                body, status=401, headers={"WWW-Authenticate": 'Bearer realm="skewwatch"'}
            )
        return None

    async def get_baseline(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        self.gets.append(request.path)
        refused = self._refused(request)
        if refused is not None:
            return refused
        key = f"{request.match_info['namespace']}/{request.match_info['name']}"
        if key not in self.answers:
            body = json.loads(json.dumps(self.not_found).replace("ml/absent", key))
            return web.json_response(body, status=404)
        return web.json_response(self.answers[key])

    async def post_probe(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        self.posts.append(Received(request.path, dict(request.headers), await request.read()))
        refused = self._refused(request)
        if refused is not None:
            return refused
        if self.post_status != 201:
            body = {"error": {"code": "internal", "message": "the store is not writable"}}
            return web.json_response(body, status=self.post_status)
        workload = f"{request.match_info['namespace']}/Deployment/{request.match_info['name']}"
        return web.json_response({"probe": {"id": len(self.posts), "workload": workload}}, status=201)


@contextmanager
def serve_collector(standin: StandinCollector) -> Iterator[str]:
    """The stand-in on 127.0.0.1, a free port, its own loop in a thread; yields its base URL."""
    with serve_in_thread(standin.app(), "probe-standin-collector") as url:
        yield url


def window(requests_per_s: float, running: float, perf: Mapping[str, float]) -> dict[str, float]:
    """One observation window as the agent sends it (with request counts enough to be recorded)."""
    return {
        "requests_per_s": requests_per_s,
        "requests_running": running,
        "ttft_seconds_count": 50,
        "e2e_latency_seconds_count": 50,
        **perf,
    }


async def _record(workloads: Mapping[str, dict[str, float]], tmp: Path) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    async with started(settings_for(tmp, baseline_stable_s=0), tmp) as running:
        for name, obs in workloads.items():
            s = running.stream()
            await s.exchange(hello_msg(1, namespace="ml", pod=f"{name}-0", workload=f"ml/Deployment/{name}"))
            await s.exchange(snapshot_msg(2, make_snapshot({**BASE_FACTS, "orchestration.pod": f"{name}-0"})))
            for seq in range(3, 8):
                await s.exchange(observations_msg(seq, obs))
        async with aiohttp.ClientSession(running.http, timeout=aiohttp.ClientTimeout(total=10)) as http:
            for name in workloads:
                async with http.post(f"/api/v1/baselines/ml/{name}") as r:
                    assert r.status == 201, await r.text()
                async with http.get(f"/api/v1/baselines/ml/{name}") as r:
                    assert r.status == 200, await r.text()
                    answers[f"ml/{name}"] = await r.json()
            async with http.get("/api/v1/baselines/ml/absent") as r:
                assert r.status == 404
                answers["404"] = await r.json()
    return answers


def record_answers(workloads: Mapping[str, dict[str, float]]) -> dict[str, Any]:
    """A real collector's GET answers for baselines recorded from these observation windows
    (``name`` -> one window, sent five times as ``ml/Deployment/NAME``), and its 404 under "404"."""
    with tempfile.TemporaryDirectory(prefix="probe-baseline-") as tmp:
        return asyncio.run(_record(workloads, Path(tmp)))
