"""The identity an agent says Hello with: downward API first, the resolved workload once known."""

from __future__ import annotations

from pathlib import Path

from agent.runtime import Agent
from agent.settings import AgentSettings
from agent.sources.base import AgentPaths
from skewwatch.core.facts import Snapshot, make_fact
from skewwatch.core.fingerprint import fingerprint_facts

ENV = {"POD_NAMESPACE": "team-a", "POD_NAME": "llama-7d9f8b6c5-x2x9z", "NODE_NAME": "gpu-1"}


def _agent(tmp_path: Path) -> Agent:
    paths = AgentPaths(procfs=tmp_path / "proc", podinfo=tmp_path / "podinfo")
    return Agent(AgentSettings(collector="127.0.0.1:1"), ENV, paths=paths, sources=[])


def _snapshot(workload: str, method: str) -> Snapshot:
    facts = [make_fact("orchestration.workload", workload, "pod", method)]
    return Snapshot({f.key: f for f in facts}, {}, fingerprint_facts(facts), 0.0)


def test_hello_before_any_collection_uses_the_pod_name(tmp_path: Path) -> None:
    ident = _agent(tmp_path).identity()
    assert (ident.namespace, ident.pod, ident.node) == ("team-a", "llama-7d9f8b6c5-x2x9z", "gpu-1")
    assert ident.workload == "team-a/Deployment/llama"
    assert ident.agent_id == "team-a/llama-7d9f8b6c5-x2x9z"


def test_workload_resolved_through_the_kubernetes_api_wins(tmp_path: Path) -> None:
    ident = _agent(tmp_path).identity(_snapshot("team-a/LeaderWorkerSet/llama-405b", "k8s"))
    assert (ident.workload, ident.workload_source) == ("team-a/LeaderWorkerSet/llama-405b", "k8s")


def test_identity_changes_when_the_resolved_workload_does(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    before = agent.identity(_snapshot("team-a/Deployment/llama", "k8s"))
    after = agent.identity(_snapshot("team-a/Deployment/llama-v2", "k8s"))
    assert before != after
