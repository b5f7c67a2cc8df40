"""The Kubernetes kinds the cluster watch lists and watches, as data: group, version, plural and
whether a cluster may lack it (a CRD). ``deploy/base``'s ClusterRole grants ``list`` and ``watch``
on exactly these (a test holds the two together); Secrets are never among them.

``versions`` lists the API versions tried in order: the first the server serves is used (a CRD
that moved from ``v1alpha2`` to ``v1``, Gateway API Inference Extension's two groups).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str  # "Deployment"
    group: str  # "" for the core group
    versions: tuple[str, ...]  # tried in order
    plural: str  # "deployments"
    optional: bool = False  # a CRD: absent from a cluster is normal, reported unavailable
    # Alternative (group, versions) pairs for a kind that changed group (InferencePool).
    also: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def path(self, group: str, version: str, namespace: str) -> str:
        """The namespaced collection URL path: ``/apis/apps/v1/namespaces/ns/deployments``."""
        base = "/api/v1" if not group else f"/apis/{group}/{version}"
        return f"{base}/namespaces/{namespace}/{self.plural}"

    def candidates(self) -> tuple[tuple[str, str], ...]:
        """Every (group, version) to try, in order."""
        out = [(self.group, v) for v in self.versions]
        for g, vs in self.also:
            out.extend((g, v) for v in vs)
        return tuple(out)


KINDS: tuple[Kind, ...] = (
    Kind("Deployment", "apps", ("v1",), "deployments"),
    Kind("ReplicaSet", "apps", ("v1",), "replicasets"),
    Kind("StatefulSet", "apps", ("v1",), "statefulsets"),
    Kind("ControllerRevision", "apps", ("v1",), "controllerrevisions"),
    Kind("LeaderWorkerSet", "leaderworkerset.x-k8s.io", ("v1",), "leaderworkersets", optional=True),
    Kind("HorizontalPodAutoscaler", "autoscaling", ("v2",), "horizontalpodautoscalers"),
    Kind("ScaledObject", "keda.sh", ("v1alpha1",), "scaledobjects", optional=True),
    Kind("Service", "", ("v1",), "services"),
    Kind("ConfigMap", "", ("v1",), "configmaps"),
    Kind("Ingress", "networking.k8s.io", ("v1",), "ingresses"),
    Kind("HTTPRoute", "gateway.networking.k8s.io", ("v1", "v1beta1"), "httproutes", optional=True),
    Kind(
        "InferencePool",
        "inference.networking.k8s.io",
        ("v1",),
        "inferencepools",
        optional=True,
        also=(("inference.networking.x-k8s.io", ("v1alpha2",)),),
    ),
    Kind("VirtualService", "networking.istio.io", ("v1", "v1beta1"), "virtualservices", optional=True),
    Kind("DestinationRule", "networking.istio.io", ("v1", "v1beta1"), "destinationrules", optional=True),
    Kind("InferenceService", "serving.kserve.io", ("v1beta1",), "inferenceservices", optional=True),
    Kind(
        "LLMInferenceService",
        "serving.kserve.io",
        ("v1alpha2", "v1alpha1"),
        "llminferenceservices",
        optional=True,
    ),
)

BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
