"""What the Kubernetes API says about a workload, as the drift engine and the queries see it. Pure.

The cluster watch (``collector.cluster``) reads what the pod cannot see — the workload's desired
and ready replicas, its autoscaler, the Services / Ingresses / routes in front of it, the
ConfigMaps its pods mount, and each revision of its pod template — and hands it to the service
as these records:

- :class:`ClusterFacts`: one workload's facts from the cluster, in the agent's fact model
  (dotted keys, category first, provenance source ``cluster`` and method ``k8s``, the detail
  naming the object's ``kind/namespace/name@resourceVersion`` and field), with the watch's
  status (``ok``, or ``unavailable``/``error`` with the message naming the kind that could not
  be read) and which revision each pod-template hash is;
- :class:`RevisionTemplate`: one revision of a workload's pod template rendered as facts
  (image, args, env redacted, resources, volumes, mounted ConfigMaps' digests), so that two
  revisions diff in the same format as two snapshots;
- :class:`PoolMembers`: an InferencePool's (or a KServe predictor's) selector, whose pods are
  compared as peers whatever workload owns them.

:func:`merge_cluster` joins a workload's cluster facts to each of its replicas: what the agent
read in the pod wins (it is the pod's own truth; the cluster's is the workload's template), and
``orchestration.revision`` is the revision of the pod's own template hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from collector.domain.model import Replica
from skewwatch.core.facts import FactValue, Provenance, SourceState, SourceStatus

CLUSTER_SOURCE = "cluster"  # the provenance source (and source-status name) of cluster facts
CLUSTER_METHOD = "k8s"
REVISION_KEY = "orchestration.revision"
# The agent's labels that name a pod's revision: the Deployment's ReplicaSet hash, the
# StatefulSet's / LeaderWorkerSet's ControllerRevision.
TEMPLATE_HASH_LABELS = (
    "orchestration.labels.pod-template-hash",
    "orchestration.labels.controller-revision-hash",
)


@dataclass(frozen=True)
class ClusterFacts:
    """One workload's facts from the Kubernetes API (``workload`` is ``namespace/kind/name``)."""

    workload: str
    facts: Mapping[str, FactValue] = field(default_factory=dict)
    provenance: Mapping[str, Provenance] = field(default_factory=dict)
    status: SourceStatus = field(default_factory=lambda: SourceStatus(CLUSTER_SOURCE, SourceState.OK))
    observed_at: float = 0.0
    # pod-template hash (or controller-revision hash) -> the revision it is ("3")
    revisions: Mapping[str, str] = field(default_factory=dict)
    current_revision: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "workload": self.workload,
            "status": self.status.as_dict(),
            "observed_at": self.observed_at,
            "current_revision": self.current_revision or None,
            "revisions": dict(sorted(self.revisions.items())),
            "facts": dict(sorted(self.facts.items())),
            "provenance": {k: p.as_dict() for k, p in sorted(self.provenance.items())},
        }


@dataclass(frozen=True)
class RevisionTemplate:
    """One revision of a workload's pod template, as facts (``orchestration.template.…`` keys and
    ``orchestration.configmap.<name>.digest``). ``revision`` is the controller's number ("3");
    ``template_hash`` the ReplicaSet's ``pod-template-hash`` or the ControllerRevision's hash."""

    workload: str
    revision: str
    template_hash: str
    facts: Mapping[str, FactValue]
    provenance: Mapping[str, Provenance] = field(default_factory=dict)
    created_at: float = 0.0  # the object's creationTimestamp (unix seconds)
    source: str = ""  # "ReplicaSet/ns/name@rv"


@dataclass(frozen=True)
class PoolMembers:
    """Pods that a serving layer assumes interchangeable: an InferencePool's ``selector``
    (matchLabels) in its namespace, or a KServe predictor's. ``pool`` is ``namespace/kind/name``."""

    pool: str
    namespace: str
    selector: Mapping[str, str]
    source: str = ""

    def selects(self, labels: Mapping[str, FactValue]) -> bool:
        """Do these pod labels (``orchestration.labels.<k>`` facts, key without the prefix) match?"""
        return bool(self.selector) and all(labels.get(k) == v for k, v in self.selector.items())


def revision_of(replica_facts: Mapping[str, FactValue], cluster: ClusterFacts) -> str | None:
    """The revision of the pod whose facts these are, from its template-hash label."""
    for label in TEMPLATE_HASH_LABELS:
        h = replica_facts.get(label)
        if isinstance(h, str) and h in cluster.revisions:
            return cluster.revisions[h]
    return None


def merge_cluster(replica: Replica, cluster: ClusterFacts | None) -> Replica:
    """The replica with its workload's cluster facts joined (the agent's own facts win), the
    cluster watch's status among its sources, and its own revision."""
    if cluster is None or not replica.facts:
        return replica
    facts: dict[str, FactValue] = dict(replica.facts)
    provenance: dict[str, Provenance] = dict(replica.provenance)
    for k, v in cluster.facts.items():
        if k not in facts:
            facts[k] = v
            if k in cluster.provenance:
                provenance[k] = cluster.provenance[k]
    rev = revision_of(replica.facts, cluster)
    if rev is not None and REVISION_KEY not in replica.facts:
        facts[REVISION_KEY] = rev
        provenance[REVISION_KEY] = Provenance(
            CLUSTER_SOURCE, CLUSTER_METHOD, f"{cluster.workload}: the revision of the pod's template hash"
        )
    sources = dict(replica.sources)
    sources[CLUSTER_SOURCE] = cluster.status
    return replace(replica, facts=facts, provenance=provenance, sources=sources)
