"""Collector state for the command-line tests, built through the real gRPC ingest: pods of a
workload (``pod``), the drift engine settled (``settle``), and the three replicas of ``ml/llm``
with one on float32 (``drifted``) that the CLI tests and the docs' examples query."""

from __future__ import annotations

from typing import Any

from tests.support.collector import BASE_FACTS, AgentStream, Running, hello_msg, make_snapshot, snapshot_msg

FLOAT32 = {"runtime.args.dtype": "float32", "runtime.dtype": "float32"}


async def pod(
    running: Running, name: str, namespace: str = "ml", facts: dict[str, Any] | None = None
) -> AgentStream:
    """A pod's agent says hello and sends one snapshot: ``BASE_FACTS`` with its identity and
    ``facts`` over them. The stream stays open for later messages."""
    s = running.stream()
    await s.exchange(hello_msg(1, namespace=namespace, pod=name))
    fs = {**BASE_FACTS, "orchestration.pod": name, "orchestration.namespace": namespace, **(facts or {})}
    await s.exchange(snapshot_msg(2, make_snapshot(fs)))
    return s


async def settle(running: Running) -> None:
    """Wait until the drift engine has evaluated everything received so far."""
    assert running.collector.drift is not None
    await running.collector.drift.settled()


async def drifted(running: Running) -> None:
    """Three replicas of ml/llm, one on float32: a peers finding on runtime.dtype."""
    for i in range(2):
        await pod(running, f"llm-{i}")
    await pod(running, "llm-2", facts=FLOAT32)
    await settle(running)
