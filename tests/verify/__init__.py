"""Tests of ``skewwatch verify``, and their stand-in collector.

The stand-in serves, over real HTTP on a free loopback port, exactly the routes verify calls and in
the collector's shapes: ``GET …/verification`` (the contract's document, which the test sets),
``POST …/probes`` (201 ``{"probe": {...}}``; the next verification's ``latest_probe`` is it, as the
collector's is), ``GET …/evidence?format=json|markdown|tar`` (a small bundle in each format), the
API's ``{"error": {"code", "message"}}`` with 404 for an unknown workload and 401 for a missing or
wrong bearer token. It runs on its own event loop in a thread, so the blocking client (urllib) and
a probe's own ``asyncio.run`` run beside it, and a ``skewwatch`` process can reach it too.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.threaded import serve_in_thread

WORKLOAD = "ml/Deployment/llm"
RECORDED_AT = 1796119200.0


def verification_doc(
    *,
    may_close: bool = True,
    reasons: list[str] | None = None,
    open_findings: list[dict[str, Any]] | None = None,
    baseline: bool = True,
    performance: list[dict[str, Any]] | None = None,
    latest_probe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A verification answer of the route's contract."""
    items = open_findings or []
    return {
        "workload": WORKLOAD,
        "may_close": may_close,
        "reasons": reasons or [],
        "findings": {"open": len(items), "pending": 0, "items": items},
        "baseline": {"id": 3, "recorded_at": RECORDED_AT, "origin": "manual"} if baseline else None,
        "performance": performance
        if performance is not None
        else [
            perf("generation_tokens_per_s", 900.0, 880.0, within=True),
            perf("e2e_latency_p99_s", 2.0, 2.1, within=True),
        ],
        "latest_probe": latest_probe,
    }


def perf(
    metric: str,
    baseline: float,
    current: float,
    *,
    within: bool | None,
    comparable: bool = True,
    why: str = "",
) -> dict[str, Any]:
    return {
        "metric": metric,
        "baseline": baseline,
        "current": current,
        "ratio": round(current / baseline, 4),
        "tolerance": {"max_decrease": 0.1, "max_increase": None},
        "comparable": comparable,
        "within": within if comparable else None,
        "why": why,
    }


def baseline_detail(requests_per_s: float, **performance: float) -> dict[str, Any]:
    """A baseline as ``GET /api/v1/baselines/{ns}/{name}`` shows it: performance at a load."""
    return {
        "id": 3,
        "workload": WORKLOAD,
        "origin": "manual",
        "recorded_at": RECORDED_AT,
        "performance": performance,
        "load": {"requests_per_s": requests_per_s},
        "samples": 10,
    }


def finding(id_: int, key: str, severity: str = "high") -> dict[str, Any]:
    return {"id": id_, "key": key, "severity": severity, "reference": "baseline", "status": "open"}


@dataclass
class Seen:
    """What the stand-in was asked: ``(method, path with query, Authorization header)``."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)

    def paths(self, method: str = "GET") -> list[str]:
        return [p for m, p, _ in self.requests if m == method]


class StandinCollector:
    def __init__(
        self,
        answer: Any,
        token: str | None = None,
        probes_status: int = 201,
        baseline: dict[str, Any] | None = None,
    ) -> None:
        self.answer = answer
        self.baseline = baseline
        self.token = token
        self.probes_status = probes_status
        self.seen = Seen()
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        base = "/api/v1/workloads/{namespace}/{name}"
        app.router.add_get(base + "/verification", self.verification)
        app.router.add_post(base + "/probes", self.probes)
        app.router.add_get(base + "/evidence", self.evidence)
        app.router.add_get("/api/v1/baselines/{namespace}/{name}", self.baselines)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        with self._lock:
            self.seen.requests.append((request.method, request.path_qs, auth))
        if self.token is not None and auth != f"Bearer {self.token}":
            return _error(401, "unauthenticated", "a bearer token of role read is needed")
        if (request.match_info.get("namespace"), request.match_info.get("name")) != ("ml", "llm"):
            ns, name = request.match_info.get("namespace"), request.match_info.get("name")
            return _error(404, "not_found", f"workload {ns}/{name} is not known")
        response: web.StreamResponse = await handler(request)
        return response

    async def verification(self, request: web.Request) -> web.Response:
        answer = self.answer
        with self._lock:
            stored = self.seen.probes[-1] if self.seen.probes else None
        if isinstance(answer, dict) and stored is not None:
            answer = {**answer, "latest_probe": stored}
        return web.json_response(answer)

    async def probes(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.probes_status != 201:
            return _error(self.probes_status, "forbidden", "this route needs a token of role admin")
        with self._lock:
            record = {
                "id": len(self.seen.probes) + 1,
                "workload": WORKLOAD,
                "recorded_at": RECORDED_AT + 60,
                "verdict": body["verdict"],
                # As the collector summarises a result: the verdict, headline numbers per level.
                "summary": {
                    "verdict": body["verdict"],
                    "levels": [
                        {
                            "concurrency": lv["concurrency"],
                            "output_tokens_per_s": lv["output_tokens_per_s"],
                            "ttft_ms_p95": lv["ttft_ms"]["p95"],
                            "e2e_ms_p99": lv["e2e_ms"]["p99"],
                        }
                        for lv in body["levels"]
                    ],
                    "failed": [t["flag"] for t in body["thresholds"] if not t["passed"]],
                },
                "document": body,
            }
            self.seen.probes.append(record)
        return web.json_response({"probe": record}, status=201)

    async def baselines(self, request: web.Request) -> web.Response:
        if self.baseline is None:
            return _error(404, "not_found", f"workload {WORKLOAD} has no baseline")
        return web.json_response({"workload": WORKLOAD, "baseline": self.baseline, "history": []})

    async def evidence(self, request: web.Request) -> web.Response:
        fmt = request.query.get("format", "json")
        doc = {"schema": "skewwatch.evidence/v1", "workload": {"workload": WORKLOAD}, "findings": []}
        if fmt == "json":
            return web.json_response(doc)
        if fmt == "markdown":
            return web.Response(text=f"# Evidence: `{WORKLOAD}`\n", content_type="text/markdown")
        if fmt == "tar":
            return web.Response(body=_tar(doc), content_type="application/gzip")
        return _error(400, "bad_request", f"format must be json, markdown or tar, got {fmt!r}")


def _tar(doc: dict[str, Any]) -> bytes:
    data = json.dumps(doc).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("evidence.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@contextmanager
def serve(standin: StandinCollector) -> Iterator[str]:
    """The stand-in on 127.0.0.1, a free port, its own loop in a thread; yields its base URL."""
    with serve_in_thread(standin.app(), "verify-standin-collector") as url:
        yield url
