"""The evidence bundle through a real collector: two pods fed over gRPC, a baseline, a dtype change
on one of them, an open finding and a restart; the bundle fetched over real HTTP as JSON, Markdown
and .tar.gz (checked against the served OpenAPI document), and through ``skewwatch evidence``."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import struct
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.cli import evidence as evidence_cli
from collector.cli.evidence import run_evidence
from collector.service import evidence as evidence_service
from collector.service.evidence import SCHEMA, build_tar, code_cell, render_markdown, text_cell
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.wire import timestamp
from tests.support.collector import (
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

TIMEOUT = aiohttp.ClientTimeout(total=10)
ROUTE = "/api/v1/workloads/{namespace}/{name}/evidence"
SECRET = "redacted:sha256:0123456789abcdef"
IMAGE = "registry.example.com/vllm/vllm-openai:v0.6.3"
DIGEST = "sha256:" + "ab" * 32
# One pod's facts as its agent sends them: the recording, on an H100, with the image and a
# secret variable the agent already redacted.
FACTS: dict[str, Any] = {
    **BASE_FACTS,
    **H100_FACTS,
    "orchestration.image": IMAGE,
    "orchestration.image_digest": DIGEST,
    "runtime.env.HF_TOKEN": SECRET,
    "runtime.env.HF_HOME": "/models|cache",  # a '|' the Markdown table must not split on
}
OBS = {"requests_per_s": 4.0, "generation_tokens_per_s": 900.0}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Running, aiohttp.ClientSession]]:
    settings = settings_for(tmp_path, drift_tick_s=0.1, baseline_stable_s=0, shutdown_grace_s=0.5)
    async with (
        started(settings, tmp_path) as running,
        aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as http,
    ):
        yield running, http


def parser() -> argparse.ArgumentParser:
    """The ``skewwatch`` parser with the evidence command, as collector.cli.register will add it."""
    p = argparse.ArgumentParser(prog="skewwatch")
    evidence_cli.register(p.add_subparsers(dest="command", required=True))
    return p


async def run_cli(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    # The client blocks (urllib); the collector under test shares this event loop.
    code: int = await asyncio.to_thread(run_evidence, args)
    return code


async def settle(running: Running) -> None:
    assert running.collector.drift is not None
    await running.collector.drift.settled()


async def pod(running: Running, name: str) -> AgentStream:
    s = running.stream()
    await s.exchange(hello_msg(1, pod=name))
    await s.exchange(snapshot_msg(2, make_snapshot({**FACTS, "orchestration.pod": name})))
    await s.exchange(observations_msg(3, OBS))
    return s


@pytest.fixture
async def incident(rig: tuple[Running, aiohttp.ClientSession]) -> tuple[Running, aiohttp.ClientSession]:
    """llm-0 and llm-1 on the recorded configuration, a baseline, then llm-1 restarted with
    ``--dtype float32``: one open baseline finding and one restart."""
    running, http = rig
    await pod(running, "llm-0")
    s1 = await pod(running, "llm-1")
    await settle(running)
    async with http.post("/api/v1/baselines/ml/llm") as r:
        assert r.status == 201, await r.text()
    restart = pb.Event(
        at=timestamp(time.time()), kind="restart", old_pid=41, new_pid=42, message="pid changed"
    )
    await s1.exchange(pb.AgentMessage(sequence=4, event=restart))
    float32 = {
        **FACTS,
        "orchestration.pod": "llm-1",
        "runtime.args.dtype": "float32",
        "runtime.dtype": "float32",
    }
    await s1.exchange(snapshot_msg(5, make_snapshot(float32)))
    await s1.exchange(observations_msg(6, OBS))
    await settle(running)
    return running, http


async def get(http: aiohttp.ClientSession, query: str = "", path: str = "ml/llm") -> tuple[int, str, bytes]:
    async with http.get(f"/api/v1/workloads/{path}/evidence{query}") as r:
        return r.status, r.headers.get("Content-Type", ""), await r.read()


def schema(status: int, media: str = "application/json") -> dict[str, Any]:
    s: dict[str, Any] = DOC["paths"][ROUTE]["get"]["responses"][str(status)]["content"][media]["schema"]
    return s


async def bundle(http: aiohttp.ClientSession) -> dict[str, Any]:
    status, ctype, body = await get(http)
    assert status == 200, body
    assert ctype == "application/json; charset=utf-8"
    doc: dict[str, Any] = json.loads(body)
    conforms(doc, schema(200))
    return doc


async def test_bundle_holds_every_section_the_playbook_asks_for(incident: Any) -> None:
    _, http = incident
    doc = await bundle(http)
    assert list(doc)[:3] == ["schema", "generated_at", "generated_at_unix"] and doc["schema"] == SCHEMA
    assert doc["generated_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(doc["generated_at_unix"]))
    w = doc["workload"]
    assert (w["workload"], w["namespace"], w["kind"], w["name"]) == (
        "ml/Deployment/llm",
        "ml",
        "Deployment",
        "llm",
    )
    assert w["replicas_live"] == 2 and w["pods_stored"] == 2 and w["state"] == "serving"
    pods = {p["pod"]: p for p in doc["pods"]}
    assert set(pods) == {"llm-0", "llm-1"} and all(p["live"] for p in pods.values())
    for p in pods.values():
        assert p["image"] == {
            "orchestration.image": IMAGE,
            "orchestration.image_digest": DIGEST,
            "tag": "v0.6.3",
            "reference_digest": None,
        }
        assert p["gpu"]["hardware.gpu.product"] == "h100-80gb"
        assert p["gpu"]["hardware.driver_version"] == "590.48.01"
        assert p["observations"]["generation_tokens_per_s"]["value"] == 900.0
    # Two configurations now, each with its arguments and environment as stored.
    configs = {c["fingerprint"]: c for c in doc["configurations"]}
    assert len(configs) == 2
    dtypes = sorted(c["args"]["runtime.args.dtype"] for c in configs.values())
    assert dtypes == ["float16", "float32"]
    assert all(c["env"]["runtime.env.HF_TOKEN"] == SECRET for c in configs.values())
    # The baseline applied, with its performance and the ratios of the current observations.
    base = doc["baseline"]
    assert base["origin"] == "manual" and sorted(base["pods"]) == ["llm-0", "llm-1"]
    assert base["performance"]["generation_tokens_per_s"] == 900.0
    assert base["ratios"]["generation_tokens_per_s"] == pytest.approx(1.0)
    # Open findings with their hints: the dtype change against the baseline.
    dtype = [f for f in doc["findings"] if f["key"] == "runtime.dtype"]
    assert len(dtype) == 1 and dtype[0]["status"] == "open" and dtype[0]["actual"] == "float32"
    assert "--dtype" in dtype[0]["hint"] and dtype[0]["pods"] == ["llm-1"]
    assert all(f["status"] != "resolved" for f in doc["findings"])
    # The restart the agent reported, named by pod.
    assert [(e["pod"], e["kind"], e["old_pid"], e["new_pid"]) for e in doc["restarts"]] == [
        ("llm-1", "restart", 41, 42)
    ]
    assert doc["intents"] == {"bound": [], "checks": []}


async def test_unchanged_since_last_good_says_when_last_good_was(rig: Any) -> None:
    running, http = rig
    await pod(running, "llm-0")
    await pod(running, "llm-1")
    await settle(running)
    doc = await bundle(http)
    d = doc["diff_last_good"]
    assert d["available"] and d["unchanged"] and d["changes"] == []
    assert "(the current configuration)" in d["why"]
    # When that configuration was: its stored snapshot's receipt, as the pod route shows it.
    rep = d["to"]["snapshot_id"]
    assert d["from"]["snapshot_id"] == rep
    pods = {p["snapshot_id"]: p["pod"] for p in doc["pods"]}
    async with http.get(f"/api/v1/pods/ml/{pods[rep]}") as r:
        received = (await r.json())["snapshot"]["received_at"]
    assert d["last_good_at_unix"] == received
    assert d["last_good_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(received))


async def test_diff_against_last_good_names_the_change_since_the_baseline(incident: Any) -> None:
    running, http = incident
    doc = await bundle(http)
    d = doc["diff_last_good"]
    # llm-0 (the baseline's configuration) differs from its only peer, so none of its stored rows
    # keeps both checks: the recorded baseline stands in, unchanged, and says when it was taken.
    assert d["from"]["baseline_id"] == doc["baseline"]["id"] and d["unchanged"]
    assert d["last_good_at_unix"] == doc["baseline"]["recorded_at"]
    # Both pods on float32 now: the diff against last-good names the dtype.
    s0 = running.stream()
    await s0.exchange(hello_msg(1, pod="llm-0"))
    float32 = {
        **FACTS,
        "orchestration.pod": "llm-0",
        "runtime.args.dtype": "float32",
        "runtime.dtype": "float32",
    }
    await s0.exchange(snapshot_msg(2, make_snapshot(float32)))
    await settle(running)
    d = (await bundle(http))["diff_last_good"]
    assert d["unchanged"] is False
    changed = {c["key"]: (c["before"], c["after"]) for c in d["changes"]}
    assert changed["runtime.dtype"] == ("float16", "float32")
    assert changed["runtime.args.dtype"] == ("float16", "float32")


async def test_markdown_renders_each_section_and_keeps_tables_whole(incident: Any) -> None:
    _, http = incident
    status, ctype, body = await get(http, "?format=markdown")
    assert status == 200 and ctype == "text/markdown; charset=utf-8"
    md = body.decode()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Workload",
        "## Pods",
        "## Configurations: arguments and environment (as stored, secrets redacted)",
        "## Key metrics and baseline ratios",
        "## Latest probe",
        "## Diff against last-good",
        "## Cluster facts (the Kubernetes API)",
        "## Pod-template diff: last-good revision to current",
        "## Open findings and mitigation hints",
        "## Restarts",
        "## Intents and baseline applied",
    ]
    assert "## Latest probe\n\nNo probe result is stored for this workload.\n" in md
    assert f'| `runtime.env.HF_TOKEN` | `"{SECRET}"` |' in md
    assert '`"/models\\|cache"`' in md  # escaped: the row keeps its two cells
    for table_row in (line for line in md.splitlines() if line.startswith("| `runtime.env.")):
        assert table_row.replace("\\|", "").count("|") == 3, table_row


def test_cells_cannot_break_a_table() -> None:
    assert code_cell("a|b\nc") == "`a\\|b\\nc`"
    assert code_cell("x`y") == "``x`y``" and code_cell("`") == "`` ` ``"
    assert code_cell(1) == "`1`" and code_cell(None) == "`null`" and code_cell("") == "(empty)"
    assert text_cell("fix *this*\n| now") == "fix \\*this\\* \\| now"
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": "2026-12-01T00:00:00Z",
        "workload": {"workload": "ml/Deployment/x|y"},
        "pods": [],
        "configurations": [],
        "baseline": None,
        "diff_last_good": {"available": False, "why": "no live\nreplica"},
        "findings": [],
        "restarts": [],
        "intents": {"bound": [], "checks": []},
    }
    md = render_markdown(doc)
    assert "| `workload` | `ml/Deployment/x\\|y` |" in md and "No diff: no live replica" in md


async def test_tar_holds_json_markdown_and_each_pods_snapshot(incident: Any) -> None:
    _, http = incident
    async with http.get("/api/v1/workloads/ml/llm/evidence?format=tar") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/gzip"
        disposition = r.headers["Content-Disposition"]
        raw = await r.read()
    assert disposition.startswith('attachment; filename="evidence-ml-llm-') and disposition.endswith(
        'Z.tar.gz"'
    )
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [
            "evidence.json",
            "evidence.md",
            "snapshots/llm-0.json",
            "snapshots/llm-1.json",
        ]
        doc = json.loads(tar.extractfile("evidence.json").read())  # type: ignore[union-attr]
        snap = json.loads(tar.extractfile("snapshots/llm-1.json").read())  # type: ignore[union-attr]
        md = tar.extractfile("evidence.md").read().decode()  # type: ignore[union-attr]
    assert {m.mtime for m in members.values()} == {int(doc["generated_at_unix"])}
    assert struct.unpack("<I", raw[4:8])[0] == int(doc["generated_at_unix"])  # the gzip header's MTIME
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(doc["generated_at_unix"]))
    assert disposition == f'attachment; filename="evidence-ml-llm-{stamp}.tar.gz"'
    assert md == render_markdown(doc)
    # The snapshot as GET /api/v1/pods/{namespace}/{pod} shows it: facts, provenance, observations.
    async with http.get("/api/v1/pods/ml/llm-1") as r:
        detail = await r.json()
    assert snap["facts"] == detail["facts"] and snap["provenance"] == detail["provenance"]
    assert snap["observations"] == detail["observations"] and snap["facts"]["runtime.dtype"] == "float32"


def secret_values(data: Any) -> list[Any]:
    """Every value stored under the secret's key anywhere in a JSON document (provenance aside)."""
    if isinstance(data, list):
        return [v for item in data for v in secret_values(item)]
    if not isinstance(data, dict):
        return []
    here = [v for k, v in data.items() if k == "runtime.env.HF_TOKEN" and not isinstance(v, dict)]
    return here + [v for k, v in data.items() if k != "provenance" for v in secret_values(v)]


async def test_secrets_stay_redacted_in_every_format(incident: Any) -> None:
    _, http = incident
    documents = [await bundle(http)]
    _, _, md = await get(http, "?format=markdown")
    async with http.get("/api/v1/workloads/ml/llm/evidence?format=tar") as r:
        with tarfile.open(fileobj=io.BytesIO(await r.read()), mode="r:gz") as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    documents += [json.loads(files[n]) for n in files if n.endswith(".json")]
    for doc in documents:
        values = secret_values(doc)
        assert values and set(values) == {SECRET}, values
    for text in (md.decode(), files["evidence.md"].decode()):
        rows = [line for line in text.splitlines() if "HF_TOKEN" in line]
        assert rows and all(SECRET in row for row in rows), rows


async def test_unknown_workload_is_404_and_bad_format_400(rig: Any) -> None:
    running, http = rig
    await pod(running, "llm-0")
    await settle(running)
    status, _, body = await get(http, path="ml/nope")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    conforms(json.loads(body), schema(404))
    async with http.get("/api/v1/workloads/ml/nope") as r:
        assert r.status == 404  # as the workload route answers
    status, _, body = await get(http, "?format=pdf")
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "bad_request" and "'format'" in error["message"]
    status, _, body = await get(http, "?format=pdf", path="ml/nope")
    assert status == 400  # the format is checked first
    status, _, body = await get(http, "?kind=StatefulSet")
    assert status == 404
    status, _, _ = await get(http, "?kind=Deployment")
    assert status == 200


async def test_cli_writes_each_format(
    incident: Any, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    running, _ = incident
    base = ["evidence", "ml/llm", "--collector", running.http]
    assert await run_cli(base) == 0
    doc = json.loads(capsysbinary.readouterr().out)
    assert doc["schema"] == SCHEMA and next(iter(doc)) == "schema"
    out = tmp_path / "bundle.md"
    assert await run_cli([*base, "-o", "markdown", "--output-file", str(out)]) == 0
    assert out.read_text().startswith("# Evidence: `ml/Deployment/llm`")
    tgz = tmp_path / "bundle.tar.gz"
    assert await run_cli(["evidence", "ml/Deployment/llm", "-o", "tar", "--output-file", str(tgz),
                          "--collector", running.http]) == 0  # fmt: skip
    with tarfile.open(tgz, mode="r:gz") as tar:
        assert "snapshots/llm-0.json" in tar.getnames()
    capsysbinary.readouterr()
    assert await run_cli(["evidence", "ml/nope", "--collector", running.http]) == 1
    err = capsysbinary.readouterr().err.decode()
    assert err.startswith("skewwatch evidence: error: ") and "not known" in err and "HTTP 404" in err


def test_cli_refuses_tar_to_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    args = parser().parse_args(["evidence", "ml/llm", "-o", "tar", "--collector", "http://127.0.0.1:9"])
    assert run_evidence(args) == 2
    assert "--output-file" in capsys.readouterr().err


def test_tar_is_deterministic_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    doc: dict[str, Any] = {"schema": SCHEMA, "generated_at_unix": 1796119200.5}
    snaps: list[tuple[str, dict[str, Any]]] = [
        ("llm-0", {"facts": {"k": "v" * 500}}),
        ("../etc/passwd", {"facts": {}}),
        ("big", {"x": "y" * 5000}),
    ]
    assert build_tar(doc, "# md\n", snaps) == build_tar(doc, "# md\n", snaps)
    monkeypatch.setattr(evidence_service, "MAX_TAR_BYTES", 2000)
    with tarfile.open(fileobj=io.BytesIO(build_tar(doc, "# md\n", snaps)), mode="r:gz") as tar:
        names = tar.getnames()
        omitted = tar.extractfile("snapshots/OMITTED.txt").read().decode()  # type: ignore[union-attr]
        assert all(m.mtime == 1796119200 and m.uid == 0 and m.mode == 0o644 for m in tar.getmembers())
    # A pod name cannot reach outside snapshots/; what is over the bound is named, not silently lost.
    assert names == ["evidence.json", "evidence.md", "snapshots/llm-0.json", "snapshots/.._etc_passwd.json",
                     "snapshots/OMITTED.txt"]  # fmt: skip
    assert "big" in omitted and "2000 bytes" in omitted
