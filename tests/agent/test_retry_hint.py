"""The agent honours a shedding collector's retry hint: a real collector whose write queue is
full refuses every message with RESOURCE_EXHAUSTED and ``retry-after-seconds``; a real agent
stream waits at least that long (plus a random share of it) before trying again."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import grpc

from agent.stream import AgentStream, LatestSnapshot, retry_hint
from collector.main import Collector
from skewwatch.core.identity import PodIdentity
from tests.support.collector import make_snapshot, settings_for


class _Refused(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, trailing: tuple[tuple[str, str], ...]) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), "refused")


def test_the_hint_is_read_only_from_resource_exhausted_and_bounded() -> None:
    hint = (("retry-after-seconds", "9"),)
    assert retry_hint(_Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, hint)) == 9.0
    assert retry_hint(_Refused(grpc.StatusCode.UNAVAILABLE, hint)) is None
    assert retry_hint(_Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, ())) is None
    for bad in ("soon", "-3", "0"):
        refused = _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, (("retry-after-seconds", bad),))
        assert retry_hint(refused) is None
    huge = (("retry-after-seconds", "1e12"),)
    assert retry_hint(_Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, huge)) == 3600.0


async def test_an_agent_shed_by_the_collector_waits_out_the_hint(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, shutdown_grace_s=0.2, retry_after_s=2)
    collector = Collector(settings)
    ports = await collector.start()
    assert collector.ingest is not None
    group = collector.ingest.recorder.group
    group.settings = replace(group.settings, max_pending=0)  # every message is shed
    latest = LatestSnapshot()
    await latest.publish(make_snapshot())
    identity = PodIdentity("ml", "llm-0", "node", "ml/Deployment/llm", "env", agent_id="a")
    stream = AgentStream(f"127.0.0.1:{ports.grpc}", lambda _: identity, latest, 1.0)
    task = asyncio.create_task(stream.run_forever())
    began = time.monotonic()
    try:
        await asyncio.sleep(3.5)  # the behaviour: attempts over 3.5 s
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await collector.stop()
    elapsed = time.monotonic() - began
    # Each Hello is shed. Honouring the 2 s hint the agent tries at 0 s and once more after
    # 2-4 s; its own rejected backoff alone (0.5-1 s, then 1-2 s) would have tried 3 times.
    assert 1 <= group.shed <= 2, (group.shed, elapsed)
    assert stream.reconnects == group.shed
