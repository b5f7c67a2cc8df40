"""Every dashboard panel's query against a real Prometheus scraping a real collector: a collector
process on loopback fed a drift scenario over gRPC (recorded agent snapshots), Prometheus scraping
its /metrics every second; each query, variables substituted, must parse and return data."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import grpc
import pytest

from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from tests.deploy.dashboards import Query, dashboards, queries
from tests.support.prometheus import NAMESPACE, WORKLOAD, drift_scenario, query, start_prometheus, target_up

pytestmark = pytest.mark.e2e

# Panels a short scenario can never give data: they must still parse.
NO_DATA_IN_A_SHORT_SCENARIO = {
    # The counter has no series until the first StoreError, which a healthy collector process
    # never raises (tests/collector/test_telemetry.py counts one with an in-process failing store).
    ("skewwatch-fleet.json", "Store errors", "A"),
    # Likewise until the first shed message (tests/collector/test_telemetry.py sheds one).
    ("skewwatch-fleet.json", "Ingest group commit", "C"),
    # The injection gauges need a Kubernetes API to list pods from, which this collector process
    # has none of (tests/collector/test_telemetry.py exports both against a fake one).
    ("skewwatch-fleet.json", "Missed injections", "A"),
    ("skewwatch-fleet.json", "Missed injections", "B"),
    # No namespace is watched without a Kubernetes API (tests/collector/test_telemetry.py
    # exports the kinds' states against a fake one); the availability gauge (A) says 0 here.
    ("skewwatch-fleet.json", "Cluster watch", "B"),
    # No series until the first refusal: this collector runs without tokens and the scenario
    # stays within every limit (tests/collector/test_api_auth.py and the ingest TLS/token tests
    # count refusals against collectors that ask for credentials).
    ("skewwatch-fleet.json", "Refused: credentials and limits", "A"),
    ("skewwatch-fleet.json", "Refused: credentials and limits", "B"),
}
VARIABLES = {
    "namespace": NAMESPACE,
    "workload": WORKLOAD,
    "observation": ".+",
    "tolerance": "0.2",
    "__rate_interval": "1m",
}


def substitute(expr: str) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: VARIABLES[m.group(1) or m.group(2)], expr)


async def test_every_panel_query_returns_data_from_a_real_prometheus(
    tmp_path: Path, procs: Processes
) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "SKEWWATCH_DRIFT_TICK": "0.1"}
    procs.start(
        "collector",
        skewwatch("collector", "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}",
                  "--store", f"sqlite:///{tmp_path / 'collector.db'}", "--baseline-stable-seconds", "0"),
        env,
    )  # fmt: skip
    http = f"http://127.0.0.1:{http_port}"
    wait_for("the collector's /healthz", lambda: get_json(f"{http}/healthz") is not None, procs)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        streams = await drift_scenario(channel, http)
        prom = start_prometheus(procs, tmp_path, [f"127.0.0.1:{http_port}"])
        wait_for("the collector scraped", lambda: target_up(prom), procs)
        # rate()/increase() over 1m need two samples of each counter: a few scrapes at 1 s.
        wait_for(
            "samples of the scenario",
            lambda: (
                len(query(prom, "count_over_time(skewwatch_findings_opened_total[1m])")["data"]["result"]) > 0
                and min(
                    float(r["value"][1])
                    for r in query(prom, "count_over_time(skewwatch_findings_resolved_total[1m])")["data"][
                        "result"
                    ]
                )
                >= 3
            ),
            procs,
        )
        await asyncio.sleep(1)  # one more scrape after the wait
        all_queries: list[Query] = [q for name, d in dashboards().items() for q in queries(name, d)]
        assert len(all_queries) > 20
        empty, failed = [], []
        for q in all_queries:
            expr = substitute(q.expr)
            out = query(prom, expr)
            if out.get("status") != "success":
                failed.append((q, expr, out.get("error")))
            elif (
                not out["data"]["result"] and (q.dashboard, q.panel, q.ref) not in NO_DATA_IN_A_SHORT_SCENARIO
            ):
                empty.append((q, expr))
        assert failed == [] and empty == [], (failed, empty)
        assert streams  # the agents stayed connected throughout
    finally:
        await channel.close()
