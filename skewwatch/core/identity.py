"""Who a pod is: the one identity type the agent says in its Hello and the collector keys on. Pure.

The agent's pod source reads it (downward API, pod name, Kubernetes API), the agent's stream
sends it (``skewwatch.wire`` maps it to and from ``Hello``), and the collector stores it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, order=True)
class PodKey:
    namespace: str
    pod: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}"


@dataclass(frozen=True)
class PodIdentity:
    """A pod/replica as its agent names it. ``workload`` is ``namespace/Kind/name`` ("" unknown);
    ``workload_source`` says how it was found (env, labels, pod-name, hostname, k8s)."""

    namespace: str
    pod: str
    node: str = ""  # "" when unknown
    workload: str = ""
    workload_source: str = ""
    agent_id: str = ""
    agent_version: str = ""

    @property
    def key(self) -> PodKey:
        return PodKey(self.namespace, self.pod)

    def with_workload(self, workload: str, source: str) -> PodIdentity:
        return replace(self, workload=workload, workload_source=source)

    def spoken_by(self, agent_id: str, agent_version: str) -> PodIdentity:
        """This identity as an agent says it: its id (default ``namespace/pod``) and version."""
        return replace(self, agent_id=agent_id or f"{self.namespace}/{self.pod}", agent_version=agent_version)
