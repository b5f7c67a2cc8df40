"""Noise, measured: findings per real change and false findings, with real processes.

A real collector and 8 stand-in vLLM replicas of one workload, each with a real agent, under a
load that wanders ±30 % around 4 requests/s (a sine, so every phase sees it move across the
baseline's band). After a warm-up the baseline is recorded, then:

1. one configuration change on 3 of the 8 replicas (``--dtype float32``): the findings opened
   for it, against one root cause — the goal is 1;
2. 20 restarts of unchanged replicas with unchanged arguments: configuration history rows and
   findings they open — the goal is 0 of each, not even pending ones;
3. a quiet spell of wandering load: findings opened — the goal is 0.

Each figure is printed against the count of what was done in the same run (root causes,
restarts), so the ratio reads as "per change" / "per restart".
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from demo.harness import get_json
from demo.standin_vllm import LOAD_SECONDS_ENV, LOAD_WANDER_ENV
from tests.bench.common import Figure
from tests.support.scenario import PORTS_POLICY, Scenario

NS, WL = "bench", "bench/llama"
REPLICAS = 8
CHANGED = 3
RESTARTS = 20


def _pods() -> list[str]:
    return [f"llama-7d9f8b6c5-{i:05d}" for i in range(REPLICAS)]


def _findings(sc: Scenario) -> list[dict[str, Any]]:
    data = get_json(f"{sc.api}/api/v1/findings?workload={WL}&limit=1000")
    return list(data["findings"])


def _rows(sc: Scenario, pod: str) -> int:
    return len(get_json(f"{sc.api}/api/v1/pods/{NS}/{pod}/history?limit=1000")["snapshots"])


def _ready(sc: Scenario, pod: str) -> bool:
    p = sc.pod(NS, pod)
    return bool(
        p and "runtime.num_gpu_blocks" in p["facts"] and (p.get("engine") or {}).get("state") == "running"
    )


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        sc = Scenario(Path(tmp))
        try:
            return _run(sc)
        finally:
            sc.procs.stop_all()


def _run(sc: Scenario) -> list[Figure]:
    (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
    sc.env[LOAD_WANDER_ENV] = "0.3"
    sc.env[LOAD_SECONDS_ENV] = "1.0"
    sc.start_collector()
    pods = _pods()
    for pod in pods:
        sc.start_replica(pod, NS)
    for pod in pods:
        sc.wait(f"{pod} collected", lambda pod=pod: _ready(sc, pod), timeout_s=60)  # type: ignore[misc]
    time.sleep(15)  # windows for the performance baseline
    sc.cli("baseline", WL, "--record")
    time.sleep(5)
    before = {f["id"] for f in _findings(sc)}

    # 1. One real change on 3 of 8 replicas.
    for pod in pods[:CHANGED]:
        sc.restart_replica(pod, NS, dtype="float32")

    def changed() -> bool:
        return all(
            (sc.pod(NS, p) or {}).get("facts", {}).get("runtime.dtype") == "float32" for p in pods[:CHANGED]
        )

    sc.wait("the change seen", changed, timeout_s=60)
    time.sleep(10)
    change = [f for f in _findings(sc) if f["id"] not in before]
    after_change = {f["id"] for f in _findings(sc)}

    # 2. Restarts with unchanged arguments, on the unchanged replicas.
    steady = pods[CHANGED:]
    rows_before = {p: _rows(sc, p) for p in steady}
    rng = random.Random(11)  # which replica restarts: simulation, not crypto
    for i in range(RESTARTS):
        pod = rng.choice(steady)
        events = len(get_json(f"{sc.api}/api/v1/pods/{NS}/{pod}/history?limit=1000")["events"])
        sc.restart_replica(pod, NS)
        sc.wait(
            f"restart {i + 1}",
            lambda pod=pod, events=events: (
                len(  # type: ignore[misc]
                    get_json(f"{sc.api}/api/v1/pods/{NS}/{pod}/history?limit=1000")["events"]
                )
                > events
                and _ready(sc, pod)
            ),
            timeout_s=60,
        )
    time.sleep(5)
    restart_rows = sum(_rows(sc, p) - rows_before[p] for p in steady)
    restart_findings = [f for f in _findings(sc) if f["id"] not in after_change]
    after_restarts = {f["id"] for f in _findings(sc)}

    # 3. Wandering load, nothing else.
    time.sleep(30)
    load_findings = [f for f in _findings(sc) if f["id"] not in after_restarts]

    per_restart = "restarts with unchanged args"
    return [
        Figure("noise_findings_for_one_change", len(change), "findings", "root causes introduced", 1),
        Figure("noise_history_rows_from_restarts", restart_rows, "rows", per_restart, RESTARTS),
        Figure("noise_findings_from_restarts", len(restart_findings), "findings", per_restart, RESTARTS),
        Figure(
            "noise_findings_from_wandering_load", len(load_findings), "findings", "seconds of ±30% load", 30
        ),
    ]


if __name__ == "__main__":
    import json

    for fig in run():
        print(json.dumps(fig.as_dict()))
