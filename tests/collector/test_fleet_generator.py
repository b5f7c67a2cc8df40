"""The fleet load generator of tests/bench/bench_fleet.py, tested against a real collector.

Fifty simulated agents in one worker process stream to a real collector (SQLite): Hello,
snapshot, heartbeats, a share of configuration changes, a rollout wave. Every snapshot sent must
be acknowledged, and the collector's ``/api/v1/pods`` must show every pod with the fingerprint of
the last snapshot its agent sent.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.bench.fleet import CollectorProcess, Fleet, FleetOptions

AGENTS = 50


def test_every_snapshot_the_fleet_sends_is_acknowledged_and_stored(tmp_path: Path) -> None:
    collector = CollectorProcess(f"sqlite:///{tmp_path}/store.db", tmp_path, AGENTS + 10)
    collector.start()
    try:
        opts = FleetOptions(agents=AGENTS, workers=1, workloads=5, heartbeat_s=0.5, connect_ramp_s=0.5)
        fleet = Fleet(opts, collector.target)
        try:
            fleet.wait("connect", lambda q: q["connected"] == AGENTS, timeout_s=30)
            fleet.command("phase", "steady")
            changed = sum(fleet.command("change", 0.3, 1.0))
            time.sleep(1.5)
            fleet.command("phase", "wave")
            fleet.command("wave", 0.5)
            q = fleet.wait(
                "wave",
                lambda q: q["acked"].get("wave/snapshot", 0) == AGENTS and q["pending_snapshots"] == 0,
                timeout_s=30,
            )
            q = fleet.collect()
        finally:
            fleet.stop()
        sent = {k: v for k, v in q["sent"].items() if k.endswith("/snapshot")}
        acked = {k: v for k, v in q["acked"].items() if k.endswith("/snapshot")}
        assert sent == acked
        assert sent["connect/snapshot"] == AGENTS and sent["wave/snapshot"] == AGENTS
        assert sent.get("steady/snapshot", 0) == changed > 0
        assert q["latency"]["steady/heartbeat"], "heartbeats were sent and acknowledged"
        assert q["failures"] == {} and q["refused"] == 0
        pods = {f"{p['namespace']}/{p['pod']}": p for p in collector.get("/api/v1/pods")["pods"]}
        assert set(pods) == set(q["pods"])
        for name, (sent_fp, acked_fp) in q["pods"].items():
            assert sent_fp == acked_fp == pods[name]["fingerprint"], name
            assert pods[name]["workload"].endswith("/Deployment/" + name.split("/")[1].rsplit("-", 2)[0])
        assert len({p["fingerprint"] for p in pods.values()}) >= opts.workloads
    finally:
        collector.stop()
