"""Pod-template revisions diffed over real HTTP: a real collector (pods fed over gRPC, a baseline
recorded through the API) whose query API runs with the cluster watch's ``ClusterState`` (as
collector.main wires it), two stored revisions of ``ml/Deployment/llm`` that differ in image,
arguments and a redacted environment value, and the pod rolled from the first to the second.

``revisions=A,B`` takes ``rN``, ``revision:N``, a template hash (``hash:H``), ``current`` and
``last-good`` (the revision the baseline was recorded on); two plain integers stay snapshot ids.
The ``last_good`` mode carries the template diff; ``skewwatch diff`` and ``skewwatch revisions``
print it as a table and as the API's JSON; the evidence bundle holds it. One test feeds the
watch's own rendering (``collector.cluster.objects.derive``) of two real-shaped ReplicaSets
(tests/fixtures/kube/revisions.yaml), a secret literal rotated between them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from collector.api.app import create_app
from collector.cluster.objects import Derived, derive, slim
from collector.cluster.resources import KINDS
from collector.domain.cluster import CLUSTER_METHOD, CLUSTER_SOURCE, ClusterFacts, RevisionTemplate
from collector.service.cluster import ClusterState
from collector.service.queries import Queries
from skewwatch.core.facts import FactValue, Provenance, SourceState, SourceStatus
from skewwatch.redact import Redactor
from tests.support.cli import run
from tests.support.cli_state import pod, settle
from tests.support.collector import (
    BASE_FACTS,
    AgentStream,
    Running,
    hello_msg,
    make_snapshot,
    settings_for,
    snapshot_msg,
    started,
)
from tests.support.openapi import DOC, conforms

WORKLOAD = "ml/Deployment/llm"
TIMEOUT = aiohttp.ClientTimeout(total=10)
H1, H2, H3 = "5d8f9c7b6a", "7c9d8f6b5d", "6b7f5c9d84"
DIGEST_A = "redacted:sha256:0123456789abcdef"
DIGEST_B = "redacted:sha256:fedcba9876543210"
IMAGE_1 = "registry.example.com/vllm/vllm-openai:v0.6.3"
IMAGE_2 = "registry.example.com/vllm/vllm-openai:v0.6.4"
HASH_LABEL = "orchestration.labels.pod-template-hash"


def template(
    revision: str, template_hash: str, changes: Mapping[str, FactValue] | None = None
) -> RevisionTemplate:
    """One ReplicaSet's pod template as the watch stores it: the env secret already a digest."""
    facts: dict[str, FactValue] = {
        "orchestration.template.image": IMAGE_1,
        "orchestration.template.args": ["--model", "/models/llama", "--dtype", "bfloat16"],
        "orchestration.template.env.HF_TOKEN": DIGEST_A,
        "orchestration.template.env.VLLM_LOGGING_LEVEL": "INFO",
        "orchestration.template.resources.limits.nvidia.com/gpu": "1",
        **(changes or {}),
    }
    source = f"ReplicaSet/ml/llm-{template_hash}@10{revision}"
    return RevisionTemplate(
        workload=WORKLOAD,
        revision=revision,
        template_hash=template_hash,
        facts=facts,
        provenance={k: Provenance(CLUSTER_SOURCE, CLUSTER_METHOD, f"{source}: spec.template") for k in facts},
        created_at=1_790_000_000.0 + int(revision),
        source=source,
    )


R1 = template("1", H1)
R2 = template(
    "2",
    H2,
    {
        "orchestration.template.image": IMAGE_2,
        "orchestration.template.args": ["--model", "/models/llama", "--dtype", "float16"],
        "orchestration.template.env.HF_TOKEN": DIGEST_B,
        "orchestration.template.env.VLLM_ATTENTION_BACKEND": "FLASHINFER",
    },
)


def cluster_facts(current: str) -> ClusterFacts:
    facts: dict[str, FactValue] = {
        "orchestration.replicas.desired": 1,
        "orchestration.strategy": "RollingUpdate",
    }
    detail = "Deployment/ml/llm@4242: spec"
    return ClusterFacts(
        workload=WORKLOAD,
        facts=facts,
        provenance={k: Provenance(CLUSTER_SOURCE, CLUSTER_METHOD, detail) for k in facts},
        observed_at=1_790_000_100.0,
        revisions={H1: "1", H2: "2", H3: "3"},
        current_revision=current,
    )


@dataclass
class Rig:
    running: Running
    state: ClusterState
    url: str
    http: aiohttp.ClientSession


async def serve(running: Running, queries: Queries) -> tuple[web.AppRunner, str]:
    """The collector's API app over ``queries`` on a free loopback port."""
    app = create_app(running.collector.pods, queries=queries)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = settings_for(tmp_path, drift_tick_s=0.1, baseline_stable_s=0, shutdown_grace_s=0.5)
    async with started(settings, tmp_path) as running:
        c = running.collector
        assert c.drift is not None
        state = ClusterState(c.store, c.drift.schedule, keep=20)
        runner, url = await serve(running, Queries(c.store, c.drift, cluster=state))
        try:
            async with aiohttp.ClientSession(base_url=url, timeout=TIMEOUT) as http:
                yield Rig(running, state, url, http)
        finally:
            await runner.cleanup()


async def get(http: aiohttp.ClientSession, path: str, status: int = 200) -> Any:
    async with http.get(path) as r:
        body = await r.json()
        assert r.status == status, body
        return body


def pod_facts(template_hash: str, image: str) -> dict[str, Any]:
    return {**BASE_FACTS, HASH_LABEL: template_hash, "orchestration.image": image}


async def rolled_out(rig: Rig) -> AgentStream:
    """Revision 1 live with a baseline recorded on it; then revision 2 rolled out to the pod."""
    await rig.state.update("ml", [cluster_facts("1")], revisions=[R1])
    stream = await pod(rig.running, "llm-0", facts=pod_facts(H1, IMAGE_1))
    await settle(rig.running)
    async with rig.http.post("/api/v1/baselines/ml/llm") as r:
        assert r.status == 201, await r.text()
    await rig.state.update("ml", [cluster_facts("2")], revisions=[R1, R2])
    await stream.exchange(
        snapshot_msg(3, make_snapshot({**pod_facts(H2, IMAGE_2), "orchestration.pod": "llm-0"}))
    )
    await settle(rig.running)
    return stream


def by_key(diff: dict[str, Any]) -> dict[str, tuple[str, Any, Any]]:
    return {c["key"]: (c["change"], c["before"], c["after"]) for c in diff["changes"]}


R1_TO_R2 = {
    "orchestration.template.args": (
        "changed",
        ["--model", "/models/llama", "--dtype", "bfloat16"],
        ["--model", "/models/llama", "--dtype", "float16"],
    ),
    # the secret was rotated: both sides are the digests the watch stored, never the value
    "orchestration.template.env.HF_TOKEN": ("changed", DIGEST_A, DIGEST_B),
    "orchestration.template.env.VLLM_ATTENTION_BACKEND": ("added", None, "FLASHINFER"),
    "orchestration.template.image": ("changed", IMAGE_1, IMAGE_2),
}


async def test_two_stored_revisions_diff_their_templates(rig: Rig) -> None:
    await rolled_out(rig)
    for pair in ("r1,r2", "revision:1,revision:2", f"{H1},{H2}", f"hash:{H1},current"):
        body = await get(rig.http, f"/api/v1/diff?workload=ml/llm&revisions={pair}")
        conforms(body, DOC["components"]["schemas"]["Diff"])
        assert body["mode"] == "revisions" and by_key(body) == R1_TO_R2, pair
        assert [c["category"] for c in body["changes"]] == ["orchestration"] * 4
        assert body["from"] == {
            "label": f"revision r1 ({H1})",
            "revision": "1",
            "template_hash": H1,
            "source": R1.source,
            "created_at": R1.created_at,
            "current": False,
        }
        assert (body["to"]["revision"], body["to"]["template_hash"], body["to"]["current"]) == ("2", H2, True)


async def test_an_unchanged_secret_digest_is_no_change(rig: Rig) -> None:
    await rolled_out(rig)
    r3 = template("3", H3, {**R2.facts, "orchestration.template.image": IMAGE_1})
    await rig.state.update("ml", [cluster_facts("2")], revisions=[R1, R2, r3])
    body = await get(rig.http, "/api/v1/diff?workload=ml/llm&revisions=r2,r3")
    assert by_key(body) == {"orchestration.template.image": ("changed", IMAGE_2, IMAGE_1)}


async def test_last_good_is_the_revision_the_baseline_was_recorded_on(rig: Rig) -> None:
    await rolled_out(rig)
    body = await get(rig.http, "/api/v1/diff?workload=ml/llm&revisions=last-good,current")
    assert by_key(body) == R1_TO_R2
    assert body["from"]["template_hash"] == H1 and "baseline 1 (manual" in body["from"]["why"]
    assert "(pod llm-0)" in body["from"]["why"]
    listed = await get(rig.http, "/api/v1/workloads/ml/llm/revisions")
    conforms(listed, DOC["components"]["schemas"]["RevisionList"])
    assert [(r["revision"], r["current"]) for r in listed["revisions"]] == [("2", True), ("1", False)]
    assert listed["last_good"]["revision"] == "1" and listed["current_revision"] == "2"


async def test_last_good_diff_carries_the_template_diff(rig: Rig) -> None:
    await rolled_out(rig)
    body = await get(rig.http, "/api/v1/diff?workload=ml/llm&last_good")
    conforms(body, DOC["components"]["schemas"]["Diff"])
    assert body["template_why"] is None
    template_diff = body["template"]
    assert template_diff["mode"] == "revisions" and by_key(template_diff) == R1_TO_R2
    assert (template_diff["from"]["revision"], template_diff["to"]["revision"]) == ("1", "2")
    # the replica's own diff is unchanged in meaning: snapshot (or baseline) against current
    assert "orchestration.image" in by_key(body)


async def test_without_a_baseline_there_is_no_last_good_revision(rig: Rig) -> None:
    await rig.state.update("ml", [cluster_facts("2")], revisions=[R1, R2])
    await pod(rig.running, "llm-0", facts=pod_facts(H2, IMAGE_2))
    await settle(rig.running)
    body = await get(rig.http, "/api/v1/diff?workload=ml/llm&revisions=last-good,current", 404)
    assert body["error"]["message"] == (
        f"no last-good revision: record a baseline ('skewwatch baseline record {WORKLOAD}')"
    )
    last_good = await get(rig.http, "/api/v1/diff?workload=ml/llm&last_good")
    assert last_good["template"] is None and last_good["template_why"].startswith("no last-good revision")


async def test_an_unknown_revision_is_404_naming_what_is_stored(rig: Rig) -> None:
    await rolled_out(rig)
    body = await get(rig.http, "/api/v1/diff?workload=ml/llm&revisions=r9,current", 404)
    assert body["error"] == {
        "code": "not_found",
        "message": f"revision r9 of {WORKLOAD} is not stored; stored: r2 ({H2}) current, r1 ({H1})",
    }
    body = await get(rig.http, "/api/v1/diff?workload=ml/llm&revisions=current,deadbeef", 404)
    assert "revision hash:deadbeef of" in body["error"]["message"]
    # a plain integer beside a revision is neither form; bad names are 400
    for bad in ("1,r2", "r1,a/b", "r1,,"):
        body = await get(rig.http, f"/api/v1/diff?workload=ml/llm&revisions={bad}", 400)
        assert "query parameter 'revisions'" in body["error"]["message"]


async def test_plain_integers_stay_snapshot_ids(rig: Rig) -> None:
    await rolled_out(rig)
    history = await get(rig.http, "/api/v1/pods/ml/llm-0/history")
    newer, older = (s["id"] for s in history["snapshots"][:2])
    body = await get(rig.http, f"/api/v1/diff?workload=ml/llm&revisions={older},{newer}")
    assert (body["from"]["snapshot_id"], body["to"]["snapshot_id"]) == (older, newer)
    assert by_key(body)["orchestration.image"] == ("changed", IMAGE_1, IMAGE_2)


async def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await run(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_cli_diff_revisions_table_json_and_exit_code(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    await rolled_out(rig)
    base = ["--collector", rig.url]
    code, out, _ = await cli(["diff", "ml/llm", "--revisions", "last-good", "current", *base], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{WORKLOAD}: revision r1 ({H1}) -> revision r2 ({H2}), current: 4 difference(s)"
    assert lines[1].startswith("    (revision r1") and "baseline 1" in lines[1]
    assert lines[2].split() == ["CATEGORY", "KEY", "CHANGE", "BEFORE", "→", "AFTER"]
    rows = {line.split()[1]: line for line in lines[3:]}
    assert rows["orchestration.template.image"].split()[2:] == [
        "changed",
        f'"{IMAGE_1}"',
        "→",
        f'"{IMAGE_2}"',
    ]
    assert rows["orchestration.template.env.HF_TOKEN"].split()[2:] == [
        "changed",
        f'"{DIGEST_A}"',
        "→",
        f'"{DIGEST_B}"',
    ]
    assert rows["orchestration.template.env.VLLM_ATTENTION_BACKEND"].split()[2:] == [
        "added",
        "(absent)",
        "→",
        '"FLASHINFER"',
    ]
    code, out, _ = await cli(
        ["diff", "llm", "-n", "ml", "--revisions", "r1", "r2", "-o", "json", *base], capsys
    )
    api = await get(rig.http, "/api/v1/diff?workload=ml/llm&revisions=r1,r2")
    printed = json.loads(out)
    assert code == 0 and by_key(printed) == by_key(api) and printed["from"]["created_at_rfc3339"]
    code, _, _ = await cli(["diff", "ml/llm", "--revisions", "r2", "current", "--exit-code", *base], capsys)
    assert code == 0  # r2 is current: nothing differs
    code, _, _ = await cli(["diff", "ml/llm", "--revisions", "r1", "r2", "--exit-code", *base], capsys)
    assert code == 1
    code, _, err = await cli(["diff", "ml/llm", "--revisions", "r7", "current", *base], capsys)
    stored = f"stored: r2 ({H2}) current, r1 ({H1})"
    assert (code, err) == (
        1,
        f"skewwatch diff: error: revision r7 of {WORKLOAD} is not stored; {stored} (HTTP 404)\n",
    )


async def test_cli_last_good_shows_the_template_diff(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    await rolled_out(rig)
    code, out, _ = await cli(["diff", "ml/llm", "--last-good", "--collector", rig.url], capsys)
    assert code == 0
    part = out[out.index("pod template: ") :].splitlines()
    assert part[0] == f"pod template: revision r1 ({H1}) -> revision r2 ({H2}), current: 4 difference(s)"
    assert any(line.split()[:2] == ["orchestration", "orchestration.template.image"] for line in part)


async def test_cli_revisions_lists_them(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    await rolled_out(rig)
    code, out, _ = await cli(["revisions", "ml/llm", "--collector", rig.url], capsys)
    assert code == 0
    header, newest, oldest, note = out.splitlines()
    assert header.split() == [
        "REVISION",
        "TEMPLATE",
        "HASH",
        "CURRENT",
        "LAST",
        "GOOD",
        "AGE",
        "LAST",
        "SEEN",
    ]
    assert newest.split()[:3] == ["r2", H2, "yes"]
    assert oldest.split()[:3] == ["r1", H1, "yes"]  # not current: the yes is LAST GOOD's
    assert note.startswith("last-good: revision r1")
    code, out, _ = await cli(["revisions", "llm", "-n", "ml", "-o", "wide", "--collector", rig.url], capsys)
    assert code == 0 and R2.source in out
    code, out, _ = await cli(["revisions", "ml/llm", "-o", "json", "--collector", rig.url], capsys)
    listed = json.loads(out)
    assert [r["template_hash"] for r in listed["revisions"]] == [H2, H1]
    assert listed["revisions"][0]["first_seen_rfc3339"].endswith("Z")
    code, _, err = await cli(["revisions", "ml/llm", "-n", "other", "--collector", rig.url], capsys)
    assert code == 2 and "not in namespace other" in err


async def test_evidence_holds_cluster_facts_revisions_and_the_template_diff(rig: Rig) -> None:
    await rolled_out(rig)
    doc = await get(rig.http, "/api/v1/workloads/ml/llm/evidence")
    schema = DOC["paths"]["/api/v1/workloads/{namespace}/{name}/evidence"]["get"]["responses"]["200"]
    conforms(doc, schema["content"]["application/json"]["schema"])
    cluster = doc["cluster"]
    assert cluster["available"] is True
    assert cluster["cluster_facts"]["facts"]["orchestration.strategy"] == "RollingUpdate"
    assert (
        cluster["cluster_facts"]["provenance"]["orchestration.strategy"]["detail"]
        == "Deployment/ml/llm@4242: spec"
    )
    assert [r["revision"] for r in cluster["revisions"]] == ["2", "1"]
    t = doc["template_diff"]
    assert t["available"] is True and t["unchanged"] is False
    assert {c["key"]: (c["change"], c["before"], c["after"]) for c in t["changes"]} == R1_TO_R2
    assert "baseline 1" in t["why"]
    async with rig.http.get("/api/v1/workloads/ml/llm/evidence?format=markdown") as r:
        md = await r.text()
    assert "## Pod-template diff: last-good revision to current" in md
    secret = "`orchestration.template.env.HF_TOKEN`"
    assert f'| orchestration | {secret} | changed | `"{DIGEST_A}"` | `"{DIGEST_B}"` |' in md
    assert f"| `1` | `{H1}` |  |" in md and f"| `2` | `{H2}` | yes |" in md  # the revisions table
    assert '| `orchestration.strategy` | `"RollingUpdate"` | `Deployment/ml/llm@4242: spec` |' in md


async def test_evidence_without_revisions_says_why(rig: Rig) -> None:
    await pod(rig.running, "llm-0", facts=pod_facts(H1, IMAGE_1))
    await settle(rig.running)
    doc = await get(rig.http, "/api/v1/workloads/ml/llm/evidence")
    assert doc["template_diff"]["available"] is False
    assert doc["template_diff"]["why"] == (
        f"no pod-template revision of {WORKLOAD} is stored (the cluster watch has not seen it)"
    )
    assert (
        doc["cluster"]["available"] is False
        and doc["cluster"]["message"] == "the cluster watch has not run yet"
    )
    async with rig.http.get("/api/v1/workloads/ml/llm/evidence?format=markdown") as r:
        md = await r.text()
    assert "No template diff: no pod-template revision of" in md
    assert "No cluster facts: the cluster watch has not run yet" in md


async def test_concurrent_revision_queries_answer_alike(rig: Rig) -> None:
    await rolled_out(rig)
    paths = ["/api/v1/diff?workload=ml/llm&revisions=r1,r2"] * 4 + ["/api/v1/workloads/ml/llm/revisions"] * 4
    bodies = await asyncio.gather(*(get(rig.http, p) for p in paths))
    assert all(b == bodies[0] for b in bodies[:4]) and all(b == bodies[4] for b in bodies[4:])


KUBE = Path(__file__).resolve().parents[1] / "fixtures" / "kube"
ROLLOUT = "llm/Deployment/llama-rollout"
ROTATED = "hf_RotatedTokenZyxwvutsrqponmlk98"


def watched(docs: list[dict[str, Any]]) -> Derived:
    """What the watch derives from these objects of namespace llm, every kind listed fine."""
    objects: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        kept = slim(str(doc.get("kind")), doc)
        if kept is not None:
            objects.setdefault(str(doc["kind"]), {})[doc["metadata"]["name"]] = kept
    kinds = {k.name: SourceStatus("cluster", SourceState.OK) for k in KINDS}
    return derive("llm", objects, kinds, Redactor("test-salt"), time.time())


async def test_the_watchs_rendering_of_two_replicasets_diffs_image_args_and_a_rotated_secret(
    rig: Rig,
) -> None:
    docs = [d for d in yaml.safe_load_all((KUBE / "revisions.yaml").read_text()) if isinstance(d, dict)]
    docs = copy.deepcopy(docs)
    newer = next(
        d for d in docs if d["kind"] == "ReplicaSet" and d["metadata"]["name"] == "llama-rollout-7b5c4d9f8"
    )
    [container] = newer["spec"]["template"]["spec"]["containers"]
    old_token = next(e["value"] for e in container["env"] if e["name"] == "HF_TOKEN")
    next(e for e in container["env"] if e["name"] == "HF_TOKEN")["value"] = ROTATED
    d = watched(docs)
    await rig.state.update("llm", d.facts, d.pools, d.revisions)
    s = rig.running.stream()
    name = "llama-rollout-7b5c4d9f8-x2x9z"
    await s.exchange(hello_msg(1, namespace="llm", pod=name, workload=ROLLOUT))
    facts = {
        **BASE_FACTS,
        "orchestration.namespace": "llm",
        "orchestration.pod": name,
        "orchestration.workload": ROLLOUT,
        HASH_LABEL: "7b5c4d9f8",
    }
    await s.exchange(snapshot_msg(2, make_snapshot(facts)))
    async with rig.http.get("/api/v1/diff?workload=llm/llama-rollout&revisions=r1,current") as r:
        raw = await r.text()
        assert r.status == 200, raw
    body = json.loads(raw)
    changed = {c["key"].rsplit(".", 1)[-1] if ".env." in c["key"] else c["key"]: c for c in body["changes"]}
    assert set(changed) == {
        "orchestration.template.vllm.image",
        "orchestration.template.vllm.args",
        "HF_TOKEN",
    }
    assert changed["orchestration.template.vllm.image"]["before"] == "vllm/vllm-openai:v0.6.2"
    assert changed["orchestration.template.vllm.image"]["after"] == "vllm/vllm-openai:v0.6.3"
    token = changed["HF_TOKEN"]
    assert token["change"] == "changed" and token["before"] != token["after"]
    assert str(token["before"]).startswith("redacted:sha256:") and str(token["after"]).startswith(
        "redacted:sha256:"
    )
    assert (body["from"]["revision"], body["to"]["revision"], body["to"]["current"]) == ("1", "2", True)
    # never in clear: not in the answer, not in the store's file
    assert old_token not in raw and ROTATED not in raw
    stored = b"".join(p.read_bytes() for p in rig.running.db.parent.glob(rig.running.db.name + "*"))
    assert b"workload_revisions" in stored and b"llama-rollout-6d8f9b7c4d" in stored  # the file was read
    assert old_token.encode() not in stored and ROTATED.encode() not in stored
