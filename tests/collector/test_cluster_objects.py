"""collector.cluster.objects: Kubernetes objects → per-workload cluster facts, revisions, pools.

Fed the real manifests (``../shared/fixtures/real/manifests``, skipped when absent) and our own
fixtures (``tests/fixtures/kube``); expected values are read from the manifests themselves.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.cluster.objects import Derived, derive, slim
from collector.cluster.objects_common import MAX_FACTS_PER_WORKLOAD, MAX_TEXT
from collector.cluster.resources import KINDS
from collector.domain.cluster import CLUSTER_METHOD, CLUSTER_SOURCE, ClusterFacts, RevisionTemplate
from skewwatch.core.facts import SourceState, SourceStatus, validate_key, validate_value
from skewwatch.redact import Redactor

KUBE = Path(__file__).resolve().parents[1] / "fixtures" / "kube"
SALT = "test-salt"
REDACTOR = Redactor(SALT)
NOW = 1_800_000_000.0
KIND_NAMES = tuple(k.name for k in KINDS)

Objects = dict[str, dict[str, dict[str, Any]]]


# --- helpers -------------------------------------------------------------------------------------


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def kept(docs: list[dict[str, Any]]) -> Objects:
    """The objects as the watch keeps them: slim(kind, obj) per kind and name."""
    out: Objects = {}
    for doc in docs:
        s = slim(str(doc.get("kind")), doc)
        if s is not None:
            out.setdefault(str(doc["kind"]), {})[doc["metadata"]["name"]] = s
    return out


def all_ok(**not_ok: SourceState) -> dict[str, SourceStatus]:
    return {
        k: SourceStatus(
            "cluster", not_ok.get(k, SourceState.OK), "" if k not in not_ok else f"{k} not served"
        )
        for k in KIND_NAMES
    }


def run(objects: Objects, namespace: str = "llm", **not_ok: SourceState) -> Derived:
    return derive(namespace, objects, all_ok(**not_ok), REDACTOR, NOW)


def by_id(d: Derived) -> dict[str, ClusterFacts]:
    return {cf.workload: cf for cf in d.facts}


def strs(value: object) -> list[str]:
    """A list-of-strings fact value."""
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), value
    return [str(v) for v in value]


def slimmed(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    s = slim(kind, obj)
    assert s is not None, (kind, obj)
    return s


def fixture(name: str) -> list[dict[str, Any]]:
    return documents(KUBE / name)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def engine_container(pod_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's inference container, as a reader picks it: the one asking for GPUs."""
    containers = pod_spec["containers"]
    return next(
        (c for c in containers if "nvidia.com/gpu" in json.dumps(c.get("resources", {}))), containers[0]
    )


def replica_set_of(deployment: dict[str, Any], template_hash: str, revision: str) -> dict[str, Any]:
    """The ReplicaSet the Deployment controller makes of a Deployment (labels, owner, revision)."""
    rs = copy.deepcopy(deployment)
    rs["kind"] = "ReplicaSet"
    name = deployment["metadata"]["name"]
    rs["metadata"] = {
        "name": f"{name}-{template_hash}",
        "namespace": deployment["metadata"].get("namespace", "default"),
        "resourceVersion": "9",
        "labels": {
            **deployment["spec"]["template"]["metadata"].get("labels", {}),
            "pod-template-hash": template_hash,
        },
        "annotations": {"deployment.kubernetes.io/revision": revision},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "controller": True}
        ],
    }
    rs["spec"]["template"]["metadata"].setdefault("labels", {})["pod-template-hash"] = template_hash
    return rs


# --- real manifests ------------------------------------------------------------------------------


def real_manifests(real_fixtures: Path) -> Iterator[Path]:
    for path in sorted((real_fixtures / "manifests").iterdir()):
        if path.suffix == ".yaml":  # the .tpl is a Helm template, not YAML
            yield path


@pytest.fixture
def manifests(real_fixtures: Path) -> list[Path]:
    paths = list(real_manifests(real_fixtures))
    if not paths:
        pytest.skip(f"no real manifests under {real_fixtures / 'manifests'}")
    return paths


def test_every_real_deployment_gets_its_replicas_resources_and_configmaps(manifests: list[Path]) -> None:
    checked = 0
    for path in manifests:
        docs = documents(path)
        objects = kept(docs)
        configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
        for dep in (d for d in docs if d["kind"] == "Deployment"):
            ns = dep["metadata"].get("namespace", "default")
            d = run(objects, namespace=ns)
            cf = by_id(d)[f"{ns}/Deployment/{dep['metadata']['name']}"]
            assert cf.status.state == SourceState.OK, (path.name, cf.status)
            assert cf.facts["orchestration.replicas.desired"] == dep["spec"].get("replicas", 1)
            spec = dep["spec"]["template"]["spec"]
            engine = engine_container(spec)
            for part, amounts in engine.get("resources", {}).items():
                for res, qty in amounts.items():
                    assert cf.facts[f"orchestration.template.resources.{part}.{res}"] == str(qty), path.name
            for label, value in spec.get("nodeSelector", {}).items():
                assert cf.facts[f"orchestration.template.node_selector.{label}"] == value
            text = json.dumps(spec)
            for ref in _configmap_names(spec):
                value = cf.facts[f"orchestration.configmap.{ref}.digest"]
                assert (value == "absent") == (ref not in configmaps), (path.name, ref, value)
                assert ref in text
            for key, prov in cf.provenance.items():
                assert (prov.source, prov.method) == (CLUSTER_SOURCE, CLUSTER_METHOD), key
            checked += 1
    assert checked >= 4  # vLLM (two), SGLang, TGI, the disaggregated prefill


def _configmap_names(spec: Mapping[str, Any]) -> set[str]:
    names = {v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
    for c in spec.get("containers", []):
        names |= {e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e}
    return names


def test_real_service_is_joined_to_the_deployment_its_selector_matches(manifests: list[Path]) -> None:
    joined = 0
    for path in manifests:
        docs = documents(path)
        d = run(kept(docs), namespace="default")
        for svc in (x for x in docs if x["kind"] == "Service"):
            selector = svc["spec"]["selector"]
            for dep in (x for x in docs if x["kind"] == "Deployment"):
                labels = dep["spec"]["template"]["metadata"]["labels"]
                cf = by_id(d)[f"default/Deployment/{dep['metadata']['name']}"]
                if all(labels.get(k) == v for k, v in selector.items()):
                    assert cf.facts["serving.service.name"] == f"Service/default/{svc['metadata']['name']}"
                    assert cf.facts["serving.service.port"] == svc["spec"]["ports"][0]["port"]
                    assert cf.facts["serving.service.target_port"] == svc["spec"]["ports"][0]["targetPort"]
                    joined += 1
                else:
                    assert (
                        cf.facts.get("serving.service.name") != f"Service/default/{svc['metadata']['name']}"
                    )
    assert joined >= 2  # TGI's Service, the prefill's headless Service


def test_real_llminferenceservice_is_a_workload_and_the_runtime_is_not(manifests: list[Path]) -> None:
    seen = 0
    for path in manifests:
        docs = documents(path)
        for llm in (x for x in docs if x["kind"] == "LLMInferenceService"):
            d = run(kept(docs), namespace="default")
            cf = by_id(d)[f"default/LLMInferenceService/{llm['metadata']['name']}"]
            assert cf.facts["orchestration.replicas.desired"] == llm["spec"]["replicas"]
            engine = engine_container(llm["spec"]["template"])
            for part, amounts in engine["resources"].items():
                for res, qty in amounts.items():
                    assert cf.facts[f"orchestration.template.resources.{part}.{res}"] == str(qty)
            seen += 1
        if any(x["kind"] == "ClusterServingRuntime" for x in docs):
            assert run(kept(docs), namespace="default").facts == []
            assert all(slim("ClusterServingRuntime", x) is None for x in docs)
    assert seen == 1


def test_real_templates_as_revisions_name_secret_refs_and_redact_literals(manifests: list[Path]) -> None:
    for path in manifests:
        docs = documents(path)
        for dep in (x for x in docs if x["kind"] == "Deployment"):
            ns = dep["metadata"].get("namespace", "default")
            objects = kept([*docs, replica_set_of(dep, "5f7d8c9b6", "1")])
            (rev,) = [
                r
                for r in run(objects, namespace=ns).revisions
                if r.workload.endswith("/" + dep["metadata"]["name"])
            ]
            assert rev.revision == "1" and rev.template_hash == "5f7d8c9b6"
            for c in dep["spec"]["template"]["spec"]["containers"]:
                prefix = f"orchestration.template.{c['name']}"
                assert rev.facts[f"{prefix}.image"] == c["image"]
                if "args" in c:
                    assert rev.facts[f"{prefix}.args"] == REDACTOR.argv([str(a) for a in c["args"]])
                for e in c.get("env", []):
                    value = rev.facts[f"{prefix}.env.{e['name']}"]
                    if "secretKeyRef" in e.get("valueFrom", {}):
                        ref = e["valueFrom"]["secretKeyRef"]
                        assert value == f"secretKeyRef:{ref['name']}/{ref['key']}"
                    elif "value" in e:
                        assert value == REDACTOR.value(e["name"], str(e["value"]))
            for v in dep["spec"]["template"]["spec"].get("volumes", []):
                value = rev.facts[f"orchestration.template.volumes.{v['name']}"]
                assert str(value).split(":")[0] in v


def test_real_configmap_content_never_reaches_the_output(manifests: list[Path]) -> None:
    for path in manifests:
        docs = documents(path)
        elsewhere = json.dumps([d for d in docs if d["kind"] != "ConfigMap"])
        # Values that only the ConfigMap holds (a port number also in the Deployment does not count).
        values = [
            v
            for d in docs
            if d["kind"] == "ConfigMap"
            for v in d.get("data", {}).values()
            if len(str(v)) >= 4 and str(v) not in elsewhere
        ]
        if not values:
            continue
        out = repr(run(kept(docs), namespace="default")) + repr(kept(docs))
        for v in values:
            assert str(v) not in out, (path.name, v)


# --- our fixtures: the serving stack --------------------------------------------------------------


@pytest.fixture
def stack() -> list[dict[str, Any]]:
    return fixture("stack.yaml")


def test_ingress_to_service_to_deployment_with_nginx_annotations(stack: list[dict[str, Any]]) -> None:
    # Only the Ingress in front: the other routes' kinds unread.
    d = run(kept(stack), HTTPRoute=SourceState.UNAVAILABLE, VirtualService=SourceState.UNAVAILABLE)
    cf = by_id(d)["llm/Deployment/vllm-llama"]
    ing = find(stack, "Ingress", "llama-public")
    rule = ing["spec"]["rules"][0]
    annotations = ing["metadata"]["annotations"]
    assert f"Ingress/llm/llama-public {rule['host']}{rule['http']['paths'][0]['path']}" in strs(
        cf.facts["serving.route"]
    )
    # The traefik Ingress routes there too, but its nginx-looking annotation is not nginx's.
    assert any(r.startswith("Ingress/llm/llama-internal ") for r in strs(cf.facts["serving.route"]))
    assert cf.facts["serving.timeout_seconds"] == float(
        annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]
    )
    assert cf.facts["serving.send_timeout_seconds"] == float(
        annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]
    )
    assert (
        cf.facts["serving.max_body_bytes"]
        == int(annotations["nginx.ingress.kubernetes.io/proxy-body-size"][:-1]) * 2**20
    )
    assert cf.facts["serving.streaming"] is (
        annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    )
    assert (
        cf.facts["serving.retries"]
        == int(annotations["nginx.ingress.kubernetes.io/proxy-next-upstream-tries"]) - 1
    )
    assert cf.provenance["serving.timeout_seconds"].detail == (
        "Ingress/llm/llama-public@40200: metadata.annotations[nginx.ingress.kubernetes.io/proxy-read-timeout]"
    )


def test_httproute_to_inferencepool_to_the_pods_labels(stack: list[dict[str, Any]]) -> None:
    d = run(kept(stack))
    cf = by_id(d)["llm/Deployment/vllm-llama"]
    route = find(stack, "HTTPRoute", "llama-route")
    rule = route["spec"]["rules"][0]
    assert rule["backendRefs"][0]["kind"] == "InferencePool"
    assert "HTTPRoute/llm/llama-route" in strs(cf.facts["serving.route"])
    assert cf.facts["serving.inference_pool"] == f"InferencePool/llm/{rule['backendRefs'][0]['name']}"
    assert cf.facts["serving.backend_timeout_seconds"] == 120.0  # backendRequest: 2m
    pool = find(stack, "InferencePool", "llama-pool")
    members = {p.pool: p for p in d.pools}
    assert members["llm/InferencePool/llama-pool"].selector == pool["spec"]["selector"]["matchLabels"]
    old = find(stack, "InferencePool", "qwen-pool")
    assert members["llm/InferencePool/qwen-pool"].selector == old["spec"]["selector"]  # v1alpha2: a plain map
    qwen = by_id(d)["llm/Deployment/sglang-qwen"]
    assert qwen.facts["serving.inference_pool"] == "InferencePool/llm/qwen-pool"
    assert cf.facts["serving.inference_pool_ports"] == [p["number"] for p in pool["spec"]["targetPorts"]]
    assert qwen.facts["serving.inference_pool_ports"] == [old["spec"]["targetPortNumber"]]


def test_the_tightest_timeout_and_retry_of_all_routes_wins(stack: list[dict[str, Any]]) -> None:
    cf = by_id(run(kept(stack)))["llm/Deployment/vllm-llama"]
    vs = find(stack, "VirtualService", "llama-mesh")["spec"]["http"][0]
    route = find(stack, "HTTPRoute", "llama-route")["spec"]["rules"][0]
    # Ingress 600 s, HTTPRoute 300 s, VirtualService 120 s.
    assert cf.facts["serving.timeout_seconds"] == float(vs["timeout"].rstrip("s"))
    assert cf.provenance["serving.timeout_seconds"].detail.startswith("VirtualService/llm/llama-mesh@40500: ")
    assert cf.facts["serving.retries"] == min(route["retry"]["attempts"], vs["retries"]["attempts"])
    assert cf.facts["serving.retry_per_try_timeout_seconds"] == float(
        vs["retries"]["perTryTimeout"].rstrip("s")
    )
    assert cf.facts["serving.route"] == sorted(strs(cf.facts["serving.route"]))
    assert "VirtualService/llm/llama-mesh" in strs(cf.facts["serving.route"])


def test_a_backend_in_another_namespace_is_not_joined(stack: list[dict[str, Any]]) -> None:
    cf = by_id(run(kept(stack)))["llm/Deployment/sglang-qwen"]
    rules = find(stack, "HTTPRoute", "qwen-route")["spec"]["rules"]
    assert rules[1]["backendRefs"][0]["namespace"] == "other-team"
    assert cf.facts["serving.timeout_seconds"] == 90.0  # rule 0's 1m30s, not rule 1's 1s
    assert cf.facts["serving.route"] == "HTTPRoute/llm/qwen-route"


def test_service_port_and_protocol_prefer_the_cluster_ip_service(stack: list[dict[str, Any]]) -> None:
    d = by_id(run(kept(stack)))
    svc = find(stack, "Service", "vllm-llama")["spec"]["ports"][0]
    cf = d["llm/Deployment/vllm-llama"]
    assert cf.facts["serving.service.name"] == "Service/llm/vllm-llama"  # not the headless one
    assert cf.facts["serving.service.port"] == svc["port"]
    assert cf.facts["serving.service.target_port"] == svc["targetPort"]
    assert svc["appProtocol"] == "kubernetes.io/h2c" and cf.facts["serving.service.protocol"] == "h2c"
    qwen = d["llm/Deployment/sglang-qwen"]
    assert qwen.facts["serving.service.protocol"] == "grpc"  # from the port name grpc-engine
    assert qwen.provenance["serving.service.protocol"].detail.endswith("spec.ports[grpc-engine].name")


def test_destination_rule_traffic_policy_as_mesh_facts(stack: list[dict[str, Any]]) -> None:
    cf = by_id(run(kept(stack)))["llm/Deployment/vllm-llama"]
    policy = find(stack, "DestinationRule", "llama-dr")["spec"]["trafficPolicy"]
    mesh = "serving.mesh."
    assert (
        cf.facts[mesh + "connection_pool.tcp.max_connections"]
        == policy["connectionPool"]["tcp"]["maxConnections"]
    )
    assert cf.facts[mesh + "connection_pool.tcp.connect_timeout_seconds"] == 5.0
    http = policy["connectionPool"]["http"]
    assert (
        cf.facts[mesh + "connection_pool.http.http1_max_pending_requests"] == http["http1MaxPendingRequests"]
    )
    assert (
        cf.facts[mesh + "connection_pool.http.max_requests_per_connection"]
        == http["maxRequestsPerConnection"]
    )
    assert cf.facts[mesh + "connection_pool.http.idle_timeout_seconds"] == 90.0
    od = policy["outlierDetection"]
    assert cf.facts[mesh + "outlier_detection.consecutive_5xx_errors"] == od["consecutive5xxErrors"]
    assert cf.facts[mesh + "outlier_detection.base_ejection_time_seconds"] == 60.0
    assert cf.facts[mesh + "outlier_detection.max_ejection_percent"] == od["maxEjectionPercent"]
    assert "serving.mesh.connection_pool.http.max_retries" not in cf.facts  # not declared


def test_hpa_facts_with_a_quantity_target(stack: list[dict[str, Any]]) -> None:
    cf = by_id(run(kept(stack)))["llm/Deployment/vllm-llama"]
    hpa = find(stack, "HorizontalPodAutoscaler", "vllm-llama")["spec"]
    a = "orchestration.autoscaling."
    assert cf.facts[a + "kind"] == "HorizontalPodAutoscaler"
    assert cf.facts[a + "metric_type"] == hpa["metrics"][0]["type"]
    assert cf.facts[a + "metric"] == hpa["metrics"][0]["pods"]["metric"]["name"]
    assert hpa["metrics"][0]["pods"]["target"]["averageValue"] == "500m" and cf.facts[a + "target"] == 0.5
    assert (cf.facts[a + "min"], cf.facts[a + "max"]) == (hpa["minReplicas"], hpa["maxReplicas"])
    dep = find(stack, "Deployment", "vllm-llama")
    assert cf.facts["orchestration.replicas.desired"] == dep["spec"]["replicas"]
    assert cf.facts["orchestration.replicas.ready"] == dep["status"]["readyReplicas"]


def test_keda_scaledobject_is_reported_not_the_hpa_it_made(stack: list[dict[str, Any]]) -> None:
    so = find(stack, "ScaledObject", "sglang-qwen")["spec"]
    a = "orchestration.autoscaling."
    cf = by_id(run(kept(stack)))["llm/Deployment/sglang-qwen"]
    assert cf.facts[a + "kind"] == "ScaledObject"
    assert cf.facts[a + "metric_type"] == so["triggers"][0]["type"]
    assert cf.facts[a + "metric"] == so["triggers"][0]["metadata"]["metricName"]
    assert cf.facts[a + "target"] == int(so["triggers"][0]["metadata"]["threshold"])
    assert (cf.facts[a + "min"], cf.facts[a + "max"]) == (so["minReplicaCount"], so["maxReplicaCount"])
    # ScaledObjects unread (KEDA's CRD absent from the API): the HPA it made is what is known.
    cf = by_id(run(kept(stack), ScaledObject=SourceState.UNAVAILABLE))["llm/Deployment/sglang-qwen"]
    assert cf.facts[a + "kind"] == "HorizontalPodAutoscaler"
    assert cf.facts[a + "metric_type"] == "External"
    assert "ScaledObject (unavailable" in cf.status.message


def test_template_placement_and_configmap_digests(stack: list[dict[str, Any]]) -> None:
    cf = by_id(run(kept(stack)))["llm/Deployment/vllm-llama"]
    spec = find(stack, "Deployment", "vllm-llama")["spec"]["template"]["spec"]
    for label, value in spec["nodeSelector"].items():
        assert cf.facts[f"orchestration.template.node_selector.{label}"] == value
    gpu = strs(cf.facts["orchestration.template.affinity.gpu"])
    assert gpu == sorted(gpu) and len(gpu) == 2
    assert not any("topology.kubernetes.io/zone" in g for g in gpu)
    assert "nvidia.com/gpu.product In NVIDIA-A100-SXM4-80GB,NVIDIA-H100-80GB-HBM3" in gpu
    expected = sorted(
        f"{t['key']}{'=' + t['value'] if 'value' in t else ''}:{t['effect']}" for t in spec["tolerations"]
    )
    assert cf.facts["orchestration.template.tolerations"] == expected
    # Mounted, projected, envFrom'd: a digest each; a configMapKeyRef to none: absent.
    for name in ("vllm-config", "vllm-extra", "vllm-env"):
        assert str(cf.facts[f"orchestration.configmap.{name}.digest"]).startswith("sha256:")
    assert cf.facts["orchestration.configmap.vllm-limits.digest"] == "absent"


def test_configmap_digest_follows_content_not_order_and_keeps_no_content(stack: list[dict[str, Any]]) -> None:
    cm = find(stack, "ConfigMap", "vllm-config")
    s = slim("ConfigMap", cm)
    assert s is not None and set(s) == {"metadata", "digest"}
    assert s["metadata"] == {"name": "vllm-config", "namespace": "llm", "resourceVersion": "40010"}
    reordered = {**cm, "data": dict(reversed(list(cm["data"].items())))}
    assert slim("ConfigMap", reordered) == s
    changed = copy.deepcopy(cm)
    changed["data"]["config.yaml"] += "x"
    changed_slim = slim("ConfigMap", changed)
    assert changed_slim is not None and changed_slim["digest"] != s["digest"]
    objects = kept(stack)
    before = by_id(run(objects))["llm/Deployment/vllm-llama"].facts[
        "orchestration.configmap.vllm-config.digest"
    ]
    objects["ConfigMap"]["vllm-config"] = changed_slim
    after = by_id(run(objects))["llm/Deployment/vllm-llama"].facts[
        "orchestration.configmap.vllm-config.digest"
    ]
    assert before == s["digest"] and after == changed_slim["digest"]


def test_configmap_values_never_appear_in_the_output(stack: list[dict[str, Any]]) -> None:
    objects = kept(stack)
    objects["ReplicaSet"] = {
        "r": slimmed("ReplicaSet", replica_set_of(find(stack, "Deployment", "vllm-llama"), "6f7c8d9b5", "2"))
    }
    out = repr(run(objects)) + repr(objects)
    for cm in (d for d in stack if d["kind"] == "ConfigMap"):
        for part in ("data", "binaryData"):
            for key, value in cm.get(part, {}).items():
                for line in str(value).splitlines():
                    if len(line.strip()) >= 6:
                        assert line.strip() not in out, (cm["metadata"]["name"], key)
    assert "ConfigMapContentMarkerXYZZY" not in out and "EnvConfigMapMarkerPLUGH" not in out


def test_a_secret_is_never_kept_and_slim_drops_noise(stack: list[dict[str, Any]]) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf-secret"},
        "data": {"token": "aGZf"},
    }
    assert slim("Secret", secret) is None
    assert slim("Pod", {"metadata": {"name": "p"}}) is None  # not a kind derive reads
    dep = find(stack, "Deployment", "vllm-llama")
    s = slim("Deployment", dep)
    assert s is not None
    assert "managedFields" not in s["metadata"]
    assert "kubectl.kubernetes.io/last-applied-configuration" not in s["metadata"].get("annotations", {})
    assert "hf_LastAppliedTokenValue" not in repr(s)
    assert s["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "2"}
    assert set(s["spec"]) == {"replicas", "selector", "template"}
    assert set(s["status"]) <= {"replicas", "readyReplicas", "updatedReplicas", "availableReplicas"}


def test_provenance_names_object_resource_version_and_field(stack: list[dict[str, Any]]) -> None:
    d = run(kept(stack))
    names = {f"{x['kind']}/llm/{x['metadata']['name']}@{x['metadata']['resourceVersion']}: " for x in stack}
    for cf in d.facts:
        for key, prov in cf.provenance.items():
            if cf.facts[key] == "none" or key in ("serving.route", "serving.inference_pool"):
                continue
            assert any(prov.detail.startswith(n) for n in names), (key, prov.detail)
    cf = by_id(d)["llm/Deployment/vllm-llama"]
    assert (
        cf.provenance["orchestration.replicas.desired"].detail
        == "Deployment/llm/vllm-llama@41001: spec.replicas"
    )


def test_unavailable_kinds_leave_their_facts_out_and_are_named(stack: list[dict[str, Any]]) -> None:
    d = run(kept(stack), HTTPRoute=SourceState.UNAVAILABLE, HorizontalPodAutoscaler=SourceState.ERROR)
    cf = by_id(d)["llm/Deployment/vllm-llama"]
    assert not any("HTTPRoute" in r for r in strs(cf.facts["serving.route"]))
    assert "serving.backend_timeout_seconds" not in cf.facts
    assert not any(k.startswith("orchestration.autoscaling.") for k in cf.facts)  # unknown, not "none"
    assert cf.status.state == SourceState.OK  # its own kinds were read
    assert "HTTPRoute (unavailable: HTTPRoute not served)" in cf.status.message
    assert "HorizontalPodAutoscaler (error" in cf.status.message
    # A workload kind it is made of not read: not ok.
    d = run(kept(stack), ReplicaSet=SourceState.ERROR)
    assert by_id(d)["llm/Deployment/vllm-llama"].status.state == SourceState.ERROR
    # Deployments unread: no Deployment workload at all (their objects are left out).
    assert run(kept(stack), Deployment=SourceState.UNAVAILABLE).facts == []
    # ConfigMaps unread: no digest is claimed, not even "absent".
    cf = by_id(run(kept(stack), ConfigMap=SourceState.UNAVAILABLE))["llm/Deployment/vllm-llama"]
    assert not any(k.startswith("orchestration.configmap.") for k in cf.facts)


def test_secrets_in_the_template_come_out_redacted(stack: list[dict[str, Any]]) -> None:
    dep = find(stack, "Deployment", "vllm-llama")
    objects = kept([*stack, replica_set_of(dep, "6f7c8d9b5", "2")])
    d = run(objects)
    (rev,) = d.revisions
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    hf = env["HF_TOKEN"]["value"]
    sk = env["OPENAI_COMPAT_KEY_HINT"]["value"]
    assert hf.startswith("hf_") and sk.startswith("sk-")
    assert rev.facts["orchestration.template.vllm.env.HF_TOKEN"] == REDACTOR.digest(hf)
    assert rev.facts["orchestration.template.vllm.env.OPENAI_COMPAT_KEY_HINT"] == REDACTOR.digest(sk)
    assert rev.facts["orchestration.template.vllm.env.VLLM_LOGGING_LEVEL"] == "INFO"
    assert (
        rev.facts["orchestration.template.vllm.env.HUGGING_FACE_HUB_TOKEN"] == "secretKeyRef:hf-secret/token"
    )
    assert rev.facts["orchestration.template.vllm.env.MAX_BATCH"] == "configMapKeyRef:vllm-limits/max_batch"
    assert rev.facts["orchestration.template.vllm.env.POD_NAME"] == "fieldRef:metadata.name"
    args = rev.facts["orchestration.template.vllm.args"]
    assert isinstance(args, list) and str(args[-1]).startswith("redacted:sha256:")
    assert rev.facts["orchestration.template.volumes.tokens"] == "secret:hf-secret"
    assert rev.facts["orchestration.template.volumes.models"] == "persistentVolumeClaim:models-pvc"
    assert rev.facts["orchestration.template.volumes.shm"] == "emptyDir:Memory"
    assert rev.facts["orchestration.template.volumes.bundle"] == "projected:configMap:vllm-extra"
    everything = repr(d)  # what leaves derive (the slim objects stay in the watch's memory)
    for secret in (hf, sk, "sk-proj-ArgValueSecret0123456789abcdef", "hf_LastAppliedTokenValue1234567890"):
        assert secret not in everything
    # Redaction follows the salt: another installation's digests differ.
    other = derive("llm", objects, all_ok(), Redactor("another-salt"), NOW).revisions[0]
    assert (
        other.facts["orchestration.template.vllm.env.HF_TOKEN"]
        != rev.facts["orchestration.template.vllm.env.HF_TOKEN"]
    )


# --- revisions ---------------------------------------------------------------------------------


@pytest.fixture
def rollout() -> list[dict[str, Any]]:
    return fixture("revisions.yaml")


def test_two_replicasets_diff_in_image_and_one_arg(rollout: list[dict[str, Any]]) -> None:
    d = run(kept(rollout))
    revs = {r.revision: r for r in d.revisions if r.workload == "llm/Deployment/llama-rollout"}
    assert set(revs) == {"1", "2"}
    old, new = revs["1"], revs["2"]
    differ = {k for k in old.facts.keys() | new.facts.keys() if old.facts.get(k) != new.facts.get(k)}
    assert differ == {"orchestration.template.vllm.image", "orchestration.template.vllm.args"}
    for rev, rs_name in ((old, "llama-rollout-6d8f9b7c4d"), (new, "llama-rollout-7b5c4d9f8")):
        rs = find(rollout, "ReplicaSet", rs_name)
        c = rs["spec"]["template"]["spec"]["containers"][0]
        assert rev.facts["orchestration.template.vllm.image"] == c["image"]
        assert rev.facts["orchestration.template.vllm.args"] == c["args"]
        assert rev.template_hash == rs["metadata"]["labels"]["pod-template-hash"]
        assert rev.source == f"ReplicaSet/llm/{rs_name}@{rs['metadata']['resourceVersion']}"
        assert rev.provenance["orchestration.template.vllm.image"].detail.startswith(rev.source + ": ")
        assert rev.created_at > 0
    a, b = (rev.facts["orchestration.template.vllm.args"] for rev in (old, new))
    assert isinstance(a, list) and isinstance(b, list)
    assert [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y] == [3]
    # Both revisions carry the same secret: the same digest, never the value.
    assert (
        old.facts["orchestration.template.vllm.env.HF_TOKEN"]
        == new.facts["orchestration.template.vllm.env.HF_TOKEN"]
    )
    assert str(new.facts["orchestration.template.vllm.env.UPSTREAM_KEY"]).startswith("redacted:sha256:")


def test_revision_map_and_current_revision_of_a_deployment(rollout: list[dict[str, Any]]) -> None:
    objects = kept(rollout)
    cf = by_id(run(objects))["llm/Deployment/llama-rollout"]
    expected = {
        rs["metadata"]["labels"]["pod-template-hash"]: rs["metadata"]["annotations"][
            "deployment.kubernetes.io/revision"
        ]
        for rs in rollout
        if rs["kind"] == "ReplicaSet"
    }
    assert cf.revisions == expected
    assert cf.current_revision == "2"
    # Mid-rollback: the Deployment's template is revision 1's again; its ReplicaSet is current.
    dep = find(rollout, "Deployment", "llama-rollout")
    back = copy.deepcopy(dep)
    old_rs = find(rollout, "ReplicaSet", "llama-rollout-6d8f9b7c4d")
    back["spec"]["template"]["spec"] = copy.deepcopy(old_rs["spec"]["template"]["spec"])
    objects["Deployment"]["llama-rollout"] = slimmed("Deployment", back)
    assert by_id(run(objects))["llm/Deployment/llama-rollout"].current_revision == "1"


def test_statefulset_revisions_and_update_revision(rollout: list[dict[str, Any]]) -> None:
    d = run(kept(rollout))
    cf = by_id(d)["llm/StatefulSet/tgi-sts"]
    sts = find(rollout, "StatefulSet", "tgi-sts")
    crs = [x for x in rollout if x["kind"] == "ControllerRevision"]
    for cr in crs:
        assert cf.revisions[cr["metadata"]["name"]] == str(
            cr["revision"]
        )  # the pods' controller-revision-hash
        assert cf.revisions[cr["metadata"]["labels"]["controller.kubernetes.io/hash"]] == str(cr["revision"])
    update = next(cr for cr in crs if cr["metadata"]["name"] == sts["status"]["updateRevision"])
    assert cf.current_revision == str(update["revision"])
    revs = {r.revision: r for r in d.revisions if r.workload == "llm/StatefulSet/tgi-sts"}
    for cr in crs:
        c = cr["data"]["spec"]["template"]["spec"]["containers"][0]
        assert revs[str(cr["revision"])].facts["orchestration.template.tgi.image"] == c["image"]
        assert revs[str(cr["revision"])].template_hash == cr["metadata"]["name"]


# --- KServe and LeaderWorkerSet ------------------------------------------------------------------


@pytest.fixture
def kserve() -> list[dict[str, Any]]:
    return fixture("kserve.yaml")


def test_kserve_deployment_rolls_up_to_its_inferenceservice(kserve: list[dict[str, Any]]) -> None:
    d = run(kept(kserve))
    ids = by_id(d)
    assert "llm/Deployment/granite-predictor" not in ids  # the agent names the InferenceService
    cf = ids["llm/InferenceService/granite"]
    dep = find(kserve, "Deployment", "granite-predictor")
    assert cf.facts["orchestration.replicas.desired"] == dep["spec"]["replicas"]
    assert cf.facts["orchestration.autoscaling.kind"] == "HorizontalPodAutoscaler"  # the one KServe made
    predictor = find(kserve, "InferenceService", "granite")["spec"]["predictor"]
    assert cf.facts["serving.timeout_seconds"] == float(predictor["timeout"])
    assert cf.facts["serving.container_concurrency"] == predictor["containerConcurrency"]
    # Its predictor's pods are one workload, compared as peers; no pool shadows that workload's id.
    assert not [p for p in d.pools if p.pool == "llm/InferenceService/granite"]


def test_kserve_predictor_bounds_without_an_hpa(kserve: list[dict[str, Any]]) -> None:
    objects = kept(kserve)
    del objects["HorizontalPodAutoscaler"]
    cf = by_id(run(objects))["llm/InferenceService/granite"]
    predictor = find(kserve, "InferenceService", "granite")["spec"]["predictor"]
    a = "orchestration.autoscaling."
    assert cf.facts[a + "kind"] == "InferenceService"
    assert (cf.facts[a + "min"], cf.facts[a + "max"]) == (predictor["minReplicas"], predictor["maxReplicas"])
    assert (cf.facts[a + "metric"], cf.facts[a + "target"]) == (
        predictor["scaleMetric"],
        predictor["scaleTarget"],
    )
    # Without its Deployment (serverless, or not made yet) the predictor's model is the template.
    del objects["Deployment"]
    cf = by_id(run(objects))["llm/InferenceService/granite"]
    limits = predictor["model"]["resources"]["limits"]
    assert cf.facts["orchestration.template.resources.limits.cpu"] == limits["cpu"]
    assert "orchestration.replicas.desired" not in cf.facts


def test_leaderworkerset_group_size_replicas_and_revision(kserve: list[dict[str, Any]]) -> None:
    d = run(kept(kserve))
    cf = by_id(d)["llm/LeaderWorkerSet/deepseek-lws"]
    lws = find(kserve, "LeaderWorkerSet", "deepseek-lws")
    assert cf.facts["orchestration.group_size"] == lws["spec"]["leaderWorkerTemplate"]["size"]
    assert cf.facts["orchestration.replicas.desired"] == lws["spec"]["replicas"]
    assert cf.facts["orchestration.replicas.ready"] == lws["status"]["readyReplicas"]
    cr = find(kserve, "ControllerRevision", "deepseek-lws-6b7c8d9f4")
    the_hash = cr["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/template-revision-hash"]
    assert cf.revisions[the_hash] == str(cr["revision"]) and cf.current_revision == "1"
    (rev,) = [r for r in d.revisions if r.workload == "llm/LeaderWorkerSet/deepseek-lws"]
    assert rev.template_hash == the_hash
    leader = cr["data"]["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    assert rev.facts["orchestration.template.vllm-leader.args"] == leader["args"]


def test_statefulset_owned_by_a_leaderworkerset_is_that_workload(kserve: list[dict[str, Any]]) -> None:
    objects = kept(kserve)
    sts = {
        "kind": "StatefulSet",
        "metadata": {
            "name": "deepseek-lws",
            "resourceVersion": "7",
            "ownerReferences": [{"kind": "LeaderWorkerSet", "name": "deepseek-lws", "controller": True}],
        },
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"labels": {"leaderworkerset.sigs.k8s.io/name": "deepseek-lws"}}},
        },
    }
    objects["StatefulSet"] = {"deepseek-lws": slimmed("StatefulSet", sts)}
    ids = by_id(run(objects))
    assert "llm/StatefulSet/deepseek-lws" not in ids
    assert "llm/LeaderWorkerSet/deepseek-lws" in ids


# --- hostile input and bounds -------------------------------------------------------------------


def test_wrong_types_are_skipped_and_named() -> None:
    dep = {
        "kind": "Deployment",
        "metadata": {"name": "broken", "resourceVersion": "1"},
        "spec": {"replicas": "many", "template": "not a template"},
    }
    odd = {
        "kind": "Deployment",
        "metadata": {"name": "odd", "labels": ["x"], "ownerReferences": "me"},
        "spec": {
            "template": {"spec": {"containers": {"name": "x"}, "tolerations": "all", "nodeSelector": [1]}}
        },
    }
    objects = {"Deployment": {"broken": slimmed("Deployment", dep), "odd": slimmed("Deployment", odd)}}
    objects["Service"] = {
        "s": slimmed("Service", {"metadata": {"name": "s"}, "spec": {"selector": "all", "ports": 80}})
    }
    d = run(objects)
    ids = by_id(d)
    broken = ids["llm/Deployment/broken"]
    assert broken.facts["orchestration.replicas.desired"] == 1  # "many" is no count: the default
    assert broken.status.state == SourceState.ERROR
    assert "spec.template.spec is not a pod spec" in broken.status.message
    assert "containers is dict, not a list" in ids["llm/Deployment/odd"].status.message


def test_caps_bound_a_hostile_template() -> None:
    containers = [
        {
            "name": f"c{i}",
            "image": "x" * 100_000,
            "env": [{"name": f"E{j}", "value": "v"} for j in range(100)],
        }
        for i in range(40)
    ]
    rs = {
        "kind": "ReplicaSet",
        "metadata": {
            "name": "big-1",
            "labels": {"pod-template-hash": "1"},
            "ownerReferences": [{"kind": "Deployment", "name": "big", "controller": True}],
        },
        "spec": {"template": {"spec": {"containers": containers}}},
    }
    dep = {
        "kind": "Deployment",
        "metadata": {"name": "big"},
        "spec": {"template": {"spec": {"containers": containers}}},
    }
    objects = {
        "Deployment": {"big": slimmed("Deployment", dep)},
        "ReplicaSet": {"big-1": slimmed("ReplicaSet", rs)},
    }
    d = run(objects)
    (rev,) = d.revisions
    assert len(rev.facts) == MAX_FACTS_PER_WORKLOAD
    assert all(len(v) <= MAX_TEXT for v in rev.facts.values() if isinstance(v, str))
    assert len(repr(d)) < 2_000_000


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
_KEYS = st.sampled_from(
    ["metadata", "spec", "status", "template", "containers", "name", "labels", "selector", "matchLabels",
     "ownerReferences", "kind", "controller", "env", "value", "valueFrom", "resources", "limits", "rules",
     "backendRefs", "http", "route", "destination", "host", "scaleTargetRef", "metrics", "triggers", "data",
     "predictor", "leaderWorkerTemplate", "volumes", "configMap", "ports", "annotations", "revision"]
)  # fmt: skip
# Objects shaped like Kubernetes' (the keys derive looks for) with anything anywhere.
_OBJ = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_KEYS | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from([*KIND_NAMES, "Secret", "Pod"]), obj=_OBJ)
def test_slim_never_raises_and_keeps_no_secret(kind: str, obj: Any) -> None:
    out = slim(kind, obj)
    if kind == "Secret":
        assert out is None
    if out is not None:
        json.dumps(out)  # plain JSON data
        assert isinstance(out["metadata"]["name"], str)


def _check_bounded(d: Derived) -> None:
    for cf in d.facts:
        assert len(cf.facts) <= MAX_FACTS_PER_WORKLOAD
        for key, value in cf.facts.items():
            validate_key(key)
            validate_value(value, key)
            assert cf.provenance[key].source == CLUSTER_SOURCE
        assert len(cf.status.message) <= 4_096
    for r in d.revisions:
        assert isinstance(r, RevisionTemplate) and len(r.facts) <= MAX_FACTS_PER_WORKLOAD
        for key, value in r.facts.items():
            validate_key(key)
            validate_value(value, key)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    objects=st.dictionaries(
        st.sampled_from(KIND_NAMES),
        st.dictionaries(st.sampled_from(["a", "b", "vllm", "x-1"]), _OBJ, max_size=3),
        max_size=8,
    ),
    raw=st.booleans(),
    states=st.dictionaries(st.sampled_from(KIND_NAMES), st.sampled_from(list(SourceState)), max_size=4),
)
def test_derive_never_raises_on_any_objects(
    objects: dict[str, dict[str, Any]], raw: bool, states: dict[str, SourceState]
) -> None:
    kept_objects: dict[str, dict[str, Any]] = {}
    for kind, named in objects.items():
        for name, raw_obj in named.items():
            obj = raw_obj
            if isinstance(raw_obj, dict):
                md = raw_obj.get("metadata")
                obj = {**raw_obj, "metadata": {**(md if isinstance(md, dict) else {}), "name": name}}
            s = obj if raw else slim(kind, obj)  # the watch slims; derive must survive unslimmed input too
            if s is not None:
                kept_objects.setdefault(kind, {})[name] = s
    kinds = {k: SourceStatus("cluster", states.get(k, SourceState.OK)) for k in KIND_NAMES}
    _check_bounded(derive("llm", kept_objects, kinds, REDACTOR, NOW))


@settings(max_examples=100, deadline=None)
@given(junk=_JSON)
def test_derive_survives_junk_in_place_of_maps(junk: Any) -> None:
    objects: Any = {"Deployment": junk, "Service": {"s": junk}, "HTTPRoute": [junk]}
    _check_bounded(derive("llm", objects, all_ok(), REDACTOR, NOW))


def test_configmap_digest_is_sha256_of_canonical_content() -> None:
    cm = {"metadata": {"name": "c"}, "data": {"b": "2", "a": "1"}, "binaryData": {"z": "AA=="}}
    canonical = json.dumps(
        {"binaryData": {"z": "AA=="}, "data": {"a": "1", "b": "2"}}, sort_keys=True, separators=(",", ":")
    )
    s = slim("ConfigMap", cm)
    assert s is not None and s["digest"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_services_select_the_labels_controllers_add_to_pods(kserve: list[dict[str, Any]]) -> None:
    objects = kept(kserve)
    objects["Service"] = {
        "lws-leader": slimmed(
            "Service",
            {
                "metadata": {"name": "lws-leader", "resourceVersion": "3"},
                "spec": {"selector": {"leaderworkerset.sigs.k8s.io/name": "deepseek-lws", "role": "leader"}},
            },
        ),
        "granite": slimmed(
            "Service",
            {
                "metadata": {"name": "granite", "resourceVersion": "4"},
                "spec": {
                    "selector": {"serving.kserve.io/inferenceservice": "granite"},
                    "ports": [{"port": 80}],
                },
            },
        ),
    }
    ids = by_id(run(objects))
    assert ids["llm/LeaderWorkerSet/deepseek-lws"].facts["serving.service.name"] == "Service/llm/lws-leader"
    assert ids["llm/InferenceService/granite"].facts["serving.service.name"] == "Service/llm/granite"


def test_secret_shaped_text_anywhere_in_the_facts_is_redacted(stack: list[dict[str, Any]]) -> None:
    token = "hf_NodeSelectorLeakAbcdefghijklmnop"
    dep = copy.deepcopy(find(stack, "Deployment", "vllm-llama"))
    dep["spec"]["template"]["spec"]["nodeSelector"]["example.com/owner"] = token
    objects = kept(stack)
    objects["Deployment"]["vllm-llama"] = slimmed("Deployment", dep)
    objects["ReplicaSet"] = {"r": slimmed("ReplicaSet", replica_set_of(dep, "6f7c8d9b5", "2"))}
    d = run(objects)
    assert token not in repr(d)
    key = "orchestration.template.node_selector.example.com/owner"
    assert by_id(d)["llm/Deployment/vllm-llama"].facts[key] == REDACTOR.digest(token)
    assert d.revisions[0].facts[key] == REDACTOR.digest(token)


def test_what_the_watch_holds_carries_no_literal_secret_and_derives_the_same(
    stack: list[dict[str, Any]],
) -> None:
    dep = find(stack, "Deployment", "vllm-llama")
    docs = [*stack, replica_set_of(dep, "6f7c8d9b5", "2")]
    env = {
        e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e
    }
    secrets = [env["HF_TOKEN"], env["OPENAI_COMPAT_KEY_HINT"], "sk-proj-ArgValueSecret0123456789abcdef"]
    held: Objects = {}
    for doc in docs:
        s = slim(str(doc.get("kind")), doc, redactor=REDACTOR)
        if s is not None:
            held.setdefault(str(doc["kind"]), {})[doc["metadata"]["name"]] = s
    # The cache itself (what the watch keeps for hours) holds the digests, not the values...
    text = json.dumps(held)
    assert not [s for s in secrets if s in text]
    assert REDACTOR.digest(env["HF_TOKEN"]) in text and "INFO" in text  # ...and plain values stay
    # ...and derives exactly what the unredacted objects derive (redaction is idempotent).
    assert run(held) == run(kept(docs))
