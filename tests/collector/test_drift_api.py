"""The drift engine through a real collector: ingest → evaluation → findings, baselines, intents
and diff over real HTTP, every response checked against the served OpenAPI document."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.collector import (
    A100_40GB_FACTS,
    BASE_FACTS,
    H100_FACTS,
    AgentStream,
    Running,
    hello_msg,
    make_snapshot,
    observations_msg,
    settings_for,
    snapshot_msg,
    started,
)
from tests.support.openapi import DOC, conforms

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "intents"
TIMEOUT = aiohttp.ClientTimeout(total=10)
WORKLOAD = "ml/Deployment/llm"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Running, aiohttp.ClientSession, Path]]:
    intents = tmp_path / "intents"
    intents.mkdir()
    settings = settings_for(tmp_path, intents=intents, drift_tick_s=0.1, baseline_stable_s=0.2,
                            shutdown_grace_s=0.5)  # fmt: skip
    async with (
        started(settings, tmp_path) as running,
        aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as http,
    ):
        yield running, http, intents


def schema_for(path: str, method: str, status: int) -> dict[str, Any]:
    op = DOC["paths"][path][method]["responses"][str(status)]
    schema: dict[str, Any] = op["content"]["application/json"]["schema"]
    return schema


async def call(http: aiohttp.ClientSession, method: str, url: str, doc_path: str, status: int = 200,
               data: Any = None) -> Any:  # fmt: skip
    async with http.request(method, url, data=data) as r:
        body = await r.json()
        assert r.status == status, body
    conforms(body, schema_for(doc_path, method.lower(), status))
    return body


async def pod(
    running: Running, name: str, facts: dict[str, Any], obs: dict[str, float] | None = None
) -> AgentStream:
    s = running.stream()
    await s.exchange(hello_msg(1, pod=name))
    await s.exchange(snapshot_msg(2, make_snapshot({**facts, "orchestration.pod": name})))
    if obs:
        await s.exchange(observations_msg(3, obs))
    return s


async def settle(running: Running) -> None:
    """Wait until every evaluation scheduled so far has run (a write schedules its own before the ack)."""
    assert running.collector.drift is not None
    await running.collector.drift.settled()


async def test_replica_drift_opens_a_peers_finding_and_resolves_when_fixed(rig: Any) -> None:
    running, http, _ = rig
    h100 = {**BASE_FACTS, **H100_FACTS}
    streams = [await pod(running, f"llm-{i}", h100) for i in range(3)]
    await settle(running)
    # llm-2 rescheduled onto an A100 node: NVML reports another GPU class (and its name, memory…).
    bad = {**BASE_FACTS, **A100_40GB_FACTS, "orchestration.pod": "llm-2"}
    await streams[2].exchange(snapshot_msg(3, make_snapshot(bad)))
    await settle(running)
    body = await call(http, "GET", "/api/v1/findings?status=open&reference=peers", "/api/v1/findings")
    # One cause, one finding: the GPU class, with what it fixes (name, architecture, memory,
    # compute capability) as its consequences, linked by the inputs the agent names.
    by_key = {x["key"]: x for x in body["findings"]}
    assert set(by_key) == {"hardware.gpu.product"}, sorted(by_key)
    f = by_key["hardware.gpu.product"]
    consequences = {c["key"] for c in f["related"]}
    assert {"hardware.gpu.name", "hardware.gpu.architecture", "hardware.gpu.memory_bytes"} <= consequences, f
    assert f["key"] == "hardware.gpu.product" and f["pods"] == ["llm-2"] and f["category"] == "hardware"
    assert f["message"].startswith("hardware.gpu.product differs on 1 of 3 replicas: a100-40gb on llm-2")
    assert f["references"] == ["peers"]
    assert f["hint"] and f["evidence"]["llm-2"]["source"] == "nvml"
    await streams[2].exchange(snapshot_msg(4, make_snapshot({**h100, "orchestration.pod": "llm-2"})))
    await settle(running)
    detail = await call(http, "GET", f"/api/v1/findings/{f['id']}", "/api/v1/findings/{id}")
    assert detail["status"] == "resolved" and detail["resolved_at"] >= detail["first_seen"]
    assert [e["event"] for e in detail["history"]] == ["opened", "resolved"]
    assert (await call(http, "GET", "/api/v1/findings?status=open", "/api/v1/findings"))["findings"] == []


async def test_baseline_on_demand_then_dtype_drift_is_one_finding_not_one_per_snapshot(rig: Any) -> None:
    running, http, _ = rig
    s = await pod(running, "llm-0", BASE_FACTS)
    await settle(running)
    rec = await call(http, "POST", "/api/v1/baselines/ml/llm", "/api/v1/baselines/{namespace}/{name}", 201)
    assert rec["baseline"]["origin"] == "manual" and rec["baseline"]["facts"]["runtime.dtype"] == "float16"
    for seq in range(3, 7):
        # Restarts with --dtype float32; vLLM's KV-cache profile differs a little each time.
        float32 = {**BASE_FACTS, "runtime.args.dtype": "float32", "runtime.dtype": "float32"}
        await s.exchange(snapshot_msg(seq, make_snapshot({**float32, "runtime.num_gpu_blocks": 3640 + seq})))
        await settle(running)
    body = await call(
        http, "GET", "/api/v1/findings?workload=ml/llm&reference=baseline&status=open", "/api/v1/findings"
    )
    dtype = [f for f in body["findings"] if f["key"] == "runtime.dtype"]
    assert len(dtype) == 1 and dtype[0]["expected"] == "float16" and dtype[0]["actual"] == "float32"
    assert dtype[0]["seen"] >= 4 and dtype[0]["severity"] == "high" and "--dtype" in dtype[0]["hint"]
    diff = await call(http, "GET", "/api/v1/diff?workload=ml/llm&baseline", "/api/v1/diff")
    assert {c["key"] for c in diff["changes"]} == {
        "runtime.args.dtype",
        "runtime.dtype",
        "runtime.num_gpu_blocks",
    }
    # last-good: the newest configuration without the open drifts — the one before dtype changed.
    last = await call(http, "GET", "/api/v1/diff?workload=ml/llm&last_good", "/api/v1/diff")
    assert {c["key"] for c in last["changes"]} == {
        "runtime.args.dtype",
        "runtime.dtype",
        "runtime.num_gpu_blocks",
    }
    wl = await call(http, "GET", "/api/v1/workloads/ml/llm", "/api/v1/workloads/{namespace}/{name}")
    assert wl["baseline"]["id"] == rec["baseline"]["id"] and wl["facts"]["runtime.dtype"] == "float32"
    listing = await call(http, "GET", "/api/v1/workloads", "/api/v1/workloads")
    assert listing["workloads"][0]["open_findings"]["high"] >= 1


async def test_baseline_is_promoted_automatically_when_stable(rig: Any) -> None:
    running, http, _ = rig
    await pod(running, "llm-0", BASE_FACTS, {"requests_per_s": 4.0, "generation_tokens_per_s": 900.0})
    await settle(running)
    for _ in range(50):
        body = await call(http, "GET", "/api/v1/baselines", "/api/v1/baselines")
        if body["baselines"]:
            break
        await asyncio.sleep(0.1)  # poll interval: promotion waits on baseline_stable_s, no event to await
    (b,) = body["baselines"]
    assert b["origin"] == "auto" and b["workload"] == WORKLOAD
    assert b["performance"]["generation_tokens_per_s"] == 900.0 and b["load"]["requests_per_s"] == 4.0


async def test_intents_through_the_api_bind_and_check(rig: Any) -> None:
    running, http, _ = rig
    await pod(
        running,
        "llm-0",
        {**BASE_FACTS, "runtime.served_model_name": "llama-3-8b", "runtime.max_model_len": 4096},
    )
    text = (FIXTURES / "03-batching.modelspec.yaml").read_text().replace("8192", "2048")
    created = await call(http, "POST", "/api/v1/intents", "/api/v1/intents", 201, data=text)
    assert created["created"][0]["name"] == "llama-batching"
    await call(http, "POST", "/api/v1/intents", "/api/v1/intents", 409, data=text)
    await settle(running)
    body = await call(http, "GET", "/api/v1/findings?reference=intent&status=open", "/api/v1/findings")
    keys = {f["key"]: f for f in body["findings"]}
    assert (
        keys["runtime.max_model_len"]["expected"] == 2048 and keys["runtime.max_model_len"]["actual"] == 4096
    )
    assert (
        "ModelSpec/llama-batching spec.runtime.batch.maxSequenceLengthTokens"
        in keys["runtime.max_model_len"]["source"]
    )
    diff = await call(http, "GET", "/api/v1/diff?workload=ml/llm&intent", "/api/v1/diff")
    assert any(c["key"] == "runtime.max_model_len" for c in diff["changes"])
    fixed = text.replace("2048", "4096")
    await call(
        http,
        "PUT",
        "/api/v1/intents/ModelSpec/llama-batching",
        "/api/v1/intents/{kind}/{name}",
        200,
        data=fixed,
    )
    await settle(running)
    body = await call(http, "GET", "/api/v1/findings?reference=intent&status=open", "/api/v1/findings")
    assert "runtime.max_model_len" not in {f["key"] for f in body["findings"]}
    await call(http, "DELETE", "/api/v1/intents/ModelSpec/llama-batching", "/api/v1/intents/{kind}/{name}")
    await call(
        http, "DELETE", "/api/v1/intents/ModelSpec/llama-batching", "/api/v1/intents/{kind}/{name}", 404
    )


async def test_bad_intent_body_is_400_with_line_and_field(rig: Any) -> None:
    _, http, _ = rig
    text = (FIXTURES / "bad" / "unknown-field.yaml").read_text()
    body = await call(http, "POST", "/api/v1/intents", "/api/v1/intents", 400, data=text)
    (issue,) = body["error"]["issues"]
    assert issue["line"] == 12 and issue["path"] == "spec.runtime.batch.maxBatchSise"
    assert (await call(http, "GET", "/api/v1/intents", "/api/v1/intents"))["intents"] == []


async def test_intents_directory_is_reloaded_and_a_bad_file_is_reported(rig: Any) -> None:
    _running, http, intents = rig
    (intents / "spec.yaml").write_text((FIXTURES / "00-minimal.modelspec.yaml").read_text())
    for _ in range(50):
        body = await call(http, "GET", "/api/v1/intents", "/api/v1/intents")
        if body["intents"]:
            break
        await asyncio.sleep(0.05)  # poll interval: the directory watcher has no event to await
    assert [(i["name"], i["origin"]) for i in body["intents"]] == [("llama-3-8b-minimal", "directory")]
    (intents / "spec.yaml").write_text("apiVersion: piqc.ai/v1alpha1\nkind: ModelSpec\nmetadata: {}\n")
    for _ in range(50):
        body = await call(http, "GET", "/api/v1/intents", "/api/v1/intents")
        if body["errors"]:
            break
        await asyncio.sleep(0.05)  # poll interval: the directory watcher has no event to await
    found = {(e["file"], e["line"], e["path"]) for e in body["errors"]}
    assert ("spec.yaml", 3, "metadata") in found and ("spec.yaml", 1, "") in found  # name and spec missing
    assert [i["name"] for i in body["intents"]] == ["llama-3-8b-minimal"]  # the last good version stays
    await call(
        http, "DELETE", "/api/v1/intents/ModelSpec/llama-3-8b-minimal", "/api/v1/intents/{kind}/{name}", 409
    )


@pytest.mark.parametrize(
    ("url", "status", "doc_path"),
    [
        ("/api/v1/findings?status=bogus", 400, "/api/v1/findings"),
        ("/api/v1/findings?severity=urgent", 400, "/api/v1/findings"),
        ("/api/v1/findings?limit=0", 400, "/api/v1/findings"),
        ("/api/v1/findings?workload=nope", 400, "/api/v1/findings"),
        ("/api/v1/findings?workload=ml/none", 404, "/api/v1/findings"),
        ("/api/v1/findings/abc", 400, "/api/v1/findings/{id}"),
        ("/api/v1/findings/999", 404, "/api/v1/findings/{id}"),
        ("/api/v1/diff?workload=ml/llm", 400, "/api/v1/diff"),
        ("/api/v1/diff?workload=ml/llm&baseline&intent", 400, "/api/v1/diff"),
        ("/api/v1/diff?workload=ml/llm&baseline", 404, "/api/v1/diff"),
        ("/api/v1/diff?workload=ml/llm&pods=llm-0", 400, "/api/v1/diff"),
        ("/api/v1/diff?workload=ml/llm&revisions=1,x", 400, "/api/v1/diff"),
        ("/api/v1/workloads/ml/none", 404, "/api/v1/workloads/{namespace}/{name}"),
        ("/api/v1/intents/Gadget/x", 400, "/api/v1/intents/{kind}/{name}"),
    ],
)
async def test_bad_parameters_are_typed_errors(rig: Any, url: str, status: int, doc_path: str) -> None:
    running, http, _ = rig
    await pod(running, "llm-0", BASE_FACTS)
    body = await call(http, "GET", url, doc_path, status)
    assert body["error"]["message"]


async def test_diff_between_pods_and_revisions(rig: Any) -> None:
    running, http, _ = rig
    s0 = await pod(running, "llm-0", BASE_FACTS)
    await pod(running, "llm-1", {**BASE_FACTS, "runtime.max_model_len": 4096})
    body = await call(http, "GET", "/api/v1/diff?workload=ml/llm&pods=llm-0,llm-1", "/api/v1/diff")
    assert [(c["key"], c["before"], c["after"]) for c in body["changes"]] == [
        ("runtime.max_model_len", 2048, 4096)
    ]
    await s0.exchange(snapshot_msg(3, make_snapshot({**BASE_FACTS, "runtime.dtype": "bfloat16"})))
    hist = (await (await http.get("/api/v1/pods/ml/llm-0/history")).json())["snapshots"]
    a, b = hist[1]["id"], hist[0]["id"]
    body = await call(http, "GET", f"/api/v1/diff?workload=ml/llm&revisions={a},{b}", "/api/v1/diff")
    assert [c["key"] for c in body["changes"]] == ["runtime.dtype"]


async def test_last_good_survives_an_intent_violation_that_persisted_all_along(rig: Any) -> None:
    running, http, _ = rig
    facts = {**BASE_FACTS, "runtime.served_model_name": "llama-3-8b", "runtime.max_model_len": 4096}
    text = (FIXTURES / "03-batching.modelspec.yaml").read_text().replace("8192", "2048")
    await call(http, "POST", "/api/v1/intents", "/api/v1/intents", 201, data=text)
    s = await pod(running, "llm-0", facts)  # breaks the intent from its first snapshot on
    await settle(running)
    await call(http, "POST", "/api/v1/baselines/ml/llm", "/api/v1/baselines/{namespace}/{name}", 201)
    await s.exchange(snapshot_msg(3, make_snapshot({**facts, "runtime.dtype": "float32"})))
    await settle(running)
    last = await call(http, "GET", "/api/v1/diff?workload=ml/llm&last_good", "/api/v1/diff")
    assert [c["key"] for c in last["changes"]] == ["runtime.dtype"]
    assert last["from"]["snapshot_id"] is not None and "matches baseline" in last["from"]["why"]
    assert "1 newer stored configuration(s) broke a check" in last["from"]["why"]
