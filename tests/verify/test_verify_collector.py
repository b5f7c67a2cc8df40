"""``skewwatch verify`` against a real collector (in this process, on loopback; pods fed over gRPC as
an agent sends them): its verification route decides, the probe's result is stored through its
probes route, and the evidence bundle written is the collector's own."""

from __future__ import annotations

import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.probe.standin_server import MODEL, Behaviour
from tests.probe.standin_server import serve as serve_engine
from tests.support.cli import run
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

FACTS: dict[str, Any] = {**BASE_FACTS, **H100_FACTS}
OBS = {"requests_per_s": 4.0, "requests_running": 2.0, "generation_tokens_per_s": 900.0}
TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SKEWWATCH_COLLECTOR_URL", "SKEWWATCH_TOKEN", "SKEWWATCH_TOKEN_FILE", "SKEWWATCH_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Running, aiohttp.ClientSession]]:
    settings = settings_for(tmp_path, drift_tick_s=0.1, baseline_stable_s=0, shutdown_grace_s=0.5)
    async with (
        started(settings, tmp_path) as running,
        aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as http,
    ):
        yield running, http


async def settle(running: Running) -> None:
    assert running.collector.drift is not None
    await running.collector.drift.settled()


async def pod(running: Running, name: str = "llm-0") -> AgentStream:
    s = running.stream()
    await s.exchange(hello_msg(1, pod=name))
    await s.exchange(snapshot_msg(2, make_snapshot({**FACTS, "orchestration.pod": name})))
    await s.exchange(observations_msg(3, OBS))
    await settle(running)
    return s


async def has_route(http: aiohttp.ClientSession) -> bool:
    async with http.get("/api/v1/openapi.json") as r:
        doc = await r.json()
    return "/api/v1/workloads/{namespace}/{name}/verification" in doc["paths"]


def written(directory: Path) -> list[Path]:
    """The evidence bundles verify wrote under its default name."""
    return sorted(directory.glob("evidence-ml-llm-*.json"))


async def verify(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await run(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_served_workload_back_at_its_baseline_may_close(
    rig: tuple[Running, aiohttp.ClientSession], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running, http = rig
    if not await has_route(http):
        pytest.skip("this collector has no GET …/verification route yet (collector/api/probes.py)")
    await pod(running)
    async with http.post("/api/v1/baselines/ml/llm") as r:
        assert r.status == 201, await r.text()
    await settle(running)
    bundle = tmp_path / "post-fix.tar.gz"
    code, out, err = await verify(
        ["ml/llm", "--collector", running.http, "-o", "json", "--evidence-file", str(bundle)], capsys
    )
    doc = json.loads(out)
    assert code == 0, (doc["reasons"], err)
    assert doc["verdict"] == "closable" and doc["verification"]["may_close"] is True
    assert doc["verification"]["findings"]["open"] == 0
    assert doc["verification"]["baseline"]["origin"] == "manual"
    with tarfile.open(bundle, mode="r:gz") as tar:
        assert {"evidence.json", "evidence.md", "snapshots/llm-0.json"} <= set(tar.getnames())
        member = tar.extractfile("evidence.json")
        assert member is not None
        assert json.loads(member.read())["workload"]["workload"] == "ml/Deployment/llm"


async def test_an_open_finding_is_not_yet_with_the_collectors_reasons(
    rig: tuple[Running, aiohttp.ClientSession], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running, http = rig
    if not await has_route(http):
        pytest.skip("this collector has no GET …/verification route yet (collector/api/probes.py)")
    s = await pod(running)
    async with http.post("/api/v1/baselines/ml/llm") as r:
        assert r.status == 201, await r.text()
    float32 = {
        **FACTS,
        "orchestration.pod": "llm-0",
        "runtime.args.dtype": "float32",
        "runtime.dtype": "float32",
    }
    await s.exchange(snapshot_msg(4, make_snapshot(float32)))
    await s.exchange(observations_msg(5, OBS))
    await settle(running)
    code, out, err = await verify(["ml/llm", "--collector", running.http], capsys)
    assert code == 1, (out, err)
    async with http.get("/api/v1/workloads/ml/llm/verification") as r:
        answer = await r.json()
    assert answer["may_close"] is False and answer["reasons"]
    for reason in answer["reasons"]:  # every reason the collector gives, printed
        assert f"  - {reason}" in out
    assert "runtime.dtype" in out
    files = written(tmp_path)
    assert len(files) == 1
    bundle = json.loads(files[0].read_text())
    assert any(f["key"] == "runtime.dtype" for f in bundle["findings"])


async def test_the_probe_result_is_stored_and_shown_as_the_latest(
    rig: tuple[Running, aiohttp.ClientSession], capsys: pytest.CaptureFixture[str]
) -> None:
    running, http = rig
    if not await has_route(http):
        pytest.skip("this collector has no GET …/verification route yet (collector/api/probes.py)")
    await pod(running)  # no baseline: the collector refuses, the probe records its thresholds' result
    engine = Behaviour(first_token_delay=0.01, token_delay=0.002, tokens=4)
    with serve_engine(engine) as (endpoint, _):
        code, out, err = await verify(
            ["ml/llm", "--collector", running.http, "-o", "json", "--probe", "--endpoint", endpoint,
             "--model", MODEL, "--concurrency", "1", "--requests", "3", "--warmup", "0",
             "--max-ttft-ms", "2000"],
            capsys,
        )  # fmt: skip
    doc = json.loads(out)
    assert code == 1, (doc["reasons"], err)  # no baseline: not closable, whatever the probe says
    assert doc["probe"]["verdict"] == "pass"
    assert any(r.startswith("no baseline") for r in doc["reasons"]), doc["reasons"]
    latest = doc["verification"]["latest_probe"]
    assert latest is not None and latest["verdict"] == "pass" and doc["probe"]["stored"]["id"] == latest["id"]
    async with http.get("/api/v1/workloads/ml/llm/probes") as r:
        stored = await r.json()
    assert [p["id"] for p in stored["probes"]] == [latest["id"]]
