"""ModelSpec fields the cluster answers: scaling bounds against the autoscaler's (the live-replica count
only without one), the scaling strategy against whether anything scales the workload, the request
timeout and protocol against what stands in front of the pods. Pure engine; the replicas are the
recorded vLLM snapshot with the workload's cluster facts joined as the service joins them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest

from collector.domain.cluster import merge_cluster
from collector.domain.model import Replica
from collector.drift.engine import Evaluation, WorkloadInput, evaluate
from collector.drift.playbook import PLAYBOOK, cluster_object, hint_for, play_for
from collector.intent.evaluate import Check
from collector.intent.model import ModelSpec, parse_documents
from skewwatch.core.facts import FactValue, Provenance
from tests.collector.test_cluster_evaluation import HPA, INGRESS, SERVICE, WL, autoscaled, cluster_facts
from tests.support.collector import RECORDED

SCALED_OBJECT = "ScaledObject/ml/llm"


def replicas(n: int, cluster: Mapping[str, tuple[FactValue, str, str]] | None) -> list[Replica]:
    """``n`` pods of the recorded snapshot, with these cluster facts joined (None: no cluster watch)."""
    cf = cluster_facts(WL, cluster) if cluster is not None else None
    out = []
    for i in range(n):
        facts: dict[str, FactValue] = {k: f.value for k, f in RECORDED.facts.items()}
        facts["orchestration.pod"] = f"llm-{i}"
        r = Replica(
            f"llm-{i}",
            facts,
            {k: f.provenance for k, f in RECORDED.facts.items()},
            dict(RECORDED.sources),
            RECORDED.fingerprint.overall,
            last_seen=100.0,
        )
        out.append(merge_cluster(r, cf))
    return out


def modelspec(operations: dict[str, Any]) -> ModelSpec:
    """A ModelSpec binding to the recording by its served model name, with these operations."""
    import json

    doc = {
        "apiVersion": "piqc.ai/v1alpha1",
        "kind": "ModelSpec",
        "metadata": {"name": "llm"},
        "spec": {
            "identity": {
                "model": {"id": "llama-3-8b", "family": "llama", "task": "chat", "framework": "vllm"}
            },
            "runtime": {"accelerator": {"vendor": "nvidia", "type": "h100-80gb", "count": 1}},
            "operations": operations,
        },
    }
    (spec,) = parse_documents(json.dumps(doc), "llm.modelspec.json")
    assert isinstance(spec, ModelSpec)
    return spec


def run(
    operations: dict[str, Any], n: int, cluster: Mapping[str, tuple[FactValue, str, str]] | None
) -> Evaluation:
    return evaluate(WorkloadInput(WL, replicas(n, cluster), [modelspec(operations)]))


def check(ev: Evaluation, field: str) -> Check:
    (c,) = [c for c in ev.checks if c.field == field]
    return c


def without(facts: Mapping[str, Any], *prefixes: str) -> dict[str, Any]:
    return {k: v for k, v in facts.items() if not k.startswith(prefixes)}


def test_max_replicas_is_checked_against_the_autoscalers_bound_and_the_hint_names_it() -> None:
    ev = run({"scaling": {"minReplicas": 2, "maxReplicas": 8}}, 2, autoscaled(max_replicas=4))
    (d,) = ev.drifts
    assert (d.key, d.expected, d.actual, d.category) == (
        "orchestration.autoscaling.max",
        8,
        4,
        "orchestration",
    )
    assert sorted(d.pods) == ["llm-0", "llm-1"]
    assert "spec.operations.scaling.maxReplicas" in d.source
    assert (
        d.hint
        == "the HorizontalPodAutoscaler ml/llm allows maxReplicas 4, the ModelSpec 8: align spec.maxReplicas"
    )
    assert d.evidence["by_pod"]["llm-0"]["detail"] == f"{HPA}@4711: spec.maxReplicas"
    assert check(ev, "spec.operations.scaling.minReplicas").status == "ok"
    assert check(ev, "spec.operations.scaling.maxReplicas").target == "orchestration.autoscaling.max"


def test_an_autoscaler_with_the_intents_bounds_holds_whatever_the_live_count() -> None:
    # One live replica of an HPA 2..8 (scaling up): the autoscaler's bounds are the intent's.
    ev = run({"scaling": {"minReplicas": 2, "maxReplicas": 8}}, 1, autoscaled(max_replicas=8))
    assert ev.drifts == []
    assert {check(ev, f"spec.operations.scaling.{f}").status for f in ("minReplicas", "maxReplicas")} == {
        "ok"
    }


@pytest.mark.parametrize("cluster", ["no watch", "no autoscaler"])
def test_without_autoscaler_facts_the_live_replica_count_is_checked(cluster: str) -> None:
    facts = None if cluster == "no watch" else {
        **without(autoscaled(), "orchestration.autoscaling."),
        "orchestration.autoscaling.kind": ("none", "Deployment/ml/llm", "no autoscaler targets it"),
    }  # fmt: skip
    ops = {"scaling": {"minReplicas": 2, "maxReplicas": 3}}
    ev = run(ops, 1, facts)
    (d,) = ev.drifts
    assert (d.key, d.expected, d.actual) == ("orchestration.replicas", 2, 1)
    assert d.message.startswith(
        "orchestration.replicas = 1 for the workload (1 live replicas) — "
        "intent: expected at least 2 live replicas (ModelSpec/llm"
    )
    c = check(ev, "spec.operations.scaling.minReplicas")
    assert (c.status, c.target, c.detail) == ("drift", "replicas", "1 live replicas")
    assert run(ops, 2, facts).drifts == []
    assert [x.key for x in run(ops, 4, facts).drifts] == ["orchestration.replicas"]


@pytest.mark.parametrize(
    ("strategy", "kind", "status"),
    [
        ("reactive", "HorizontalPodAutoscaler", "ok"),
        ("reactive", "InferenceService", "ok"),
        ("reactive", "none", "drift"),
        ("manual", "none", "ok"),
        ("manual", "ScaledObject", "drift"),
        ("predictive", "ScaledObject", "documentary"),
        ("predictive", "none", "documentary"),
    ],
)
def test_the_scaling_strategy_expects_an_autoscaler_or_none(strategy: str, kind: str, status: str) -> None:
    obj = {"HorizontalPodAutoscaler": HPA, "ScaledObject": SCALED_OBJECT}.get(kind, "Deployment/ml/llm")
    facts = {"orchestration.autoscaling.kind": (kind, obj, "scaleTargetRef")}
    ev = run({"scaling": {"strategy": strategy}}, 2, facts)
    assert check(ev, "spec.operations.scaling.strategy").status == status
    if status == "drift":
        (d,) = ev.drifts
        assert d.key == "orchestration.autoscaling.kind" and d.actual == kind
        want = "an autoscaler" if strategy == "reactive" else "no autoscaler"
        assert f"expected {want} (strategy {strategy})" in d.message
        if kind == "ScaledObject":
            assert d.hint.startswith(
                "the workload's autoscaler is ScaledObject (ScaledObject ml/llm: scaleTargetRef); "
                "the ModelSpec expects manual"
            )
    else:
        assert ev.drifts == []


def test_the_strategy_is_unverifiable_without_the_cluster_watch() -> None:
    ev = run({"scaling": {"strategy": "reactive"}}, 2, None)
    assert ev.drifts == [] and check(ev, "spec.operations.scaling.strategy").status == "unverifiable"


def test_the_request_timeout_is_the_ingress_when_the_engine_reports_none() -> None:
    ev = run({"serving": {"timeoutSeconds": 300}}, 2, autoscaled(timeout_s=60.0))
    (d,) = ev.drifts
    assert (d.key, d.expected, d.actual, d.severity) == ("serving.timeout_seconds", 300, 60.0, "medium")
    assert d.hint.startswith(
        "the Ingress ml/llm sets metadata.annotations[nginx.ingress.kubernetes.io/proxy-read-timeout] 60 s; "
        "the ModelSpec expects 300 s"
    )
    assert d.evidence["by_pod"]["llm-1"]["detail"].startswith(f"{INGRESS}@")
    assert run({"serving": {"timeoutSeconds": 300}}, 2, autoscaled(timeout_s=300.0)).drifts == []
    unknown = run({"serving": {"timeoutSeconds": 300}}, 2, None)
    assert check(unknown, "spec.operations.serving.timeoutSeconds").status == "unverifiable"


def test_the_port_is_the_engines_and_the_services_target_port_need_not_be_it() -> None:
    # The recorded engine listens on 8000; the Service forwards 80 -> 8080 (a sidecar proxy).
    facts = {**autoscaled(), "serving.service.port": (8080, SERVICE, "spec.ports[http].targetPort")}
    ev = run({"serving": {"port": 8000}}, 2, facts)
    assert ev.drifts == [] and check(ev, "spec.operations.serving.port").status == "ok"
    (d,) = run({"serving": {"port": 8080}}, 2, facts).drifts
    assert (d.key, d.actual) == ("serving.port", 8000)


@pytest.mark.parametrize(
    ("intent", "service", "status"),
    [
        ("http", "http", "ok"),
        ("http", "h2c", "ok"),
        ("http", "grpc", "drift"),
        ("grpc", "grpc", "ok"),
        ("grpc", "http", "drift"),
        ("grpc", "h2c", "unverifiable"),  # HTTP/2 cleartext carries gRPC and plain HTTP/2 alike
    ],
)
def test_the_protocol_is_the_services(intent: str, service: str, status: str) -> None:
    facts = {**autoscaled(), "serving.service.protocol": (service, SERVICE, "spec.ports[http].appProtocol")}
    ev = run({"serving": {"protocol": intent}}, 2, facts)
    assert check(ev, "spec.operations.serving.protocol").status == status
    if status == "drift":
        (d,) = ev.drifts
        assert d.key == "serving.service.protocol" and d.severity == "high"
        assert d.hint.startswith(
            f"the Service ml/llm declares spec.ports[http].appProtocol {service}; "
            f"the ModelSpec expects {intent}"
        )


def test_cluster_hints_name_only_what_a_finding_and_its_provenance_give() -> None:
    # A placeholder hint_for does not fill would reach users as "{flag}" or "{name}".
    allowed = {"object", "field", "actual", "expected", "reference"}
    for play in PLAYBOOK:
        used = set(re.findall(r"\{(\w+)\}", play.cluster_hint))
        assert used <= allowed, (play.pattern, used - allowed)
    with_cluster_hint = {p.pattern for p in PLAYBOOK if p.cluster_hint}
    keys = (
        "orchestration.autoscaling.max",
        "serving.timeout_seconds",
        "serving.service.protocol",
        "orchestration.configmap.model-config.digest",
        "orchestration.node_selector.nvidia.com/gpu.product",
        # the keys the cluster watch emits for the pod template's placement (collector/cluster)
        "orchestration.template.node_selector.nvidia.com/gpu.product",
        "orchestration.template.affinity.gpu",
        "orchestration.template.tolerations",
    )
    for key in keys:
        assert play_for(key).pattern in with_cluster_hint, key
    # A template's GPU placement is as serious as the pod's own: another GPU class can follow.
    assert play_for("orchestration.template.node_selector.nvidia.com/gpu.product").severity == "high"
    assert play_for("orchestration.template.affinity.gpu").severity == "high"
    assert play_for("orchestration.node_selector").severity == "high"  # the agent's map of its Pod


def test_a_value_from_the_engine_keeps_the_engine_hint() -> None:
    # The engine reports its own request timeout: no object to name, the plain hint stands.
    prov = Provenance("process", "arg", "--timeout")
    assert cluster_object([prov]) is None
    play = play_for("serving.timeout_seconds")
    assert hint_for(play, "serving.timeout_seconds", "--timeout") == play.hint
    obj = cluster_object(
        [prov, Provenance("cluster", "k8s", "HTTPRoute/ml/llm@9: spec.rules[0].timeouts.request")]
    )
    assert obj is not None and (str(obj), obj.field) == ("HTTPRoute ml/llm", "spec.rules[0].timeouts.request")
