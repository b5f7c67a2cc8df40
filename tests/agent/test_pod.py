"""The pod source: downward-API env and files, workload derivation, and the identity for Hello."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import AgentSettings
from agent.sources.base import AgentPaths, CollectContext, SourceResult
from agent.sources.pod import (
    PodSource,
    derive_workload,
    go_unquote,
    parse_downward_api,
    pod_identity,
)
from skewwatch.core.facts import SourceState
from skewwatch.core.identity import PodIdentity
from skewwatch.redact import REDACTED_PREFIX
from skewwatch.wire import hello_to_proto, identity_from_hello

HF = "hf_AnnotationHubToken0123456789abcd"
DOWNWARD_ENV = {
    "POD_NAME": "vllm-7d9f8b6c5-x2x9z",
    "POD_NAMESPACE": "llm",
    "NODE_NAME": "gpu-node-1",
    "POD_UID": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
    "POD_IP": "10.1.2.3",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
}


async def collect(environ: dict[str, str], podinfo: Path) -> SourceResult:
    # The service-account root is a path that does not exist: no test asks a real cluster.
    paths = AgentPaths(podinfo=podinfo, serviceaccount=podinfo / "no-serviceaccount")
    ctx = CollectContext(settings=AgentSettings(), paths=paths, environ=environ)
    return await PodSource().collect(ctx)


def values(result: SourceResult) -> dict[str, object]:
    return {f.key: f.value for f in result.facts}


# --- pure parsers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "labels", "workload", "source"),
    [
        ("vllm-7d9f8b6c5-x2x9z", {}, "ns/Deployment/vllm", "pod-name"),
        ("vllm-llama3-1b-instruct-5b8c7d9f4d-qv2lm", {}, "ns/Deployment/vllm-llama3-1b-instruct", "pod-name"),
        ("web-0", {}, "ns/StatefulSet/web", "pod-name"),
        ("llama-70b-12", {}, "ns/StatefulSet/llama-70b", "pod-name"),
        ("runner-x2x9z", {}, "ns/ReplicaSet/runner", "pod-name"),
        ("standalone", {}, "ns/Pod/standalone", "pod-name"),
        ("my-app-abc12345-zzzzz", {"pod-template-hash": "abc12345"}, "ns/Deployment/my-app", "labels"),
        ("lws-0-1", {"leaderworkerset.sigs.k8s.io/name": "lws"}, "ns/LeaderWorkerSet/lws", "labels"),
        (
            "llama-predictor-7d9f8b6c5-x2x9z",
            {"serving.kserve.io/inferenceservice": "llama"},
            "ns/InferenceService/llama",
            "labels",
        ),
        ("db-3", {"statefulset.kubernetes.io/pod-name": "db-3"}, "ns/StatefulSet/db", "labels"),
    ],
)
def test_workload_is_derived_from_labels_or_the_pod_name(
    pod: str, labels: dict[str, str], workload: str, source: str
) -> None:
    assert derive_workload("ns", pod, labels) == (workload, source)


def test_downward_api_file_is_parsed_with_go_quoting() -> None:
    text = 'app="vllm"\nnote="say \\"hi\\"\\nbye"\nunicode="caf\\u00e9 caf\\xc3\\xa9"\n\nbroken line\n'
    values_, problems = parse_downward_api(text, "/etc/podinfo/annotations")
    assert values_ == {"app": "vllm", "note": 'say "hi"\nbye', "unicode": "café café"}
    assert problems == ['/etc/podinfo/annotations line 5: expected key="value"']


def test_bad_escape_names_its_line() -> None:
    _, problems = parse_downward_api('a="\\q"', "labels")
    assert problems == ["labels line 1: unknown escape \\q"]
    with pytest.raises(ValueError, match="dangling"):
        go_unquote("x\\")


# --- the source ---------------------------------------------------------------------------------


async def test_downward_api_env_gives_identity_and_derived_deployment(tmp_path: Path) -> None:
    result = await collect(DOWNWARD_ENV, tmp_path / "absent")
    assert result.state is SourceState.OK
    f = values(result)
    assert f["orchestration.namespace"] == "llm"
    assert f["orchestration.pod"] == "vllm-7d9f8b6c5-x2x9z"
    assert f["orchestration.node"] == "gpu-node-1"
    assert f["orchestration.workload"] == "llm/Deployment/vllm"
    assert f["orchestration.pod_uid"] == DOWNWARD_ENV["POD_UID"]
    assert f["orchestration.pod_ip"] == "10.1.2.3"
    prov = {x.key: x.provenance for x in result.facts}
    assert (prov["orchestration.pod"].method, prov["orchestration.pod"].detail) == (
        "env",
        "POD_NAME (downward API)",
    )
    assert prov["orchestration.workload"].method == "derived"
    assert "Kubernetes API unavailable: no in-cluster service account" in result.message


async def test_podinfo_files_give_labels_annotations_and_identity(tmp_path: Path) -> None:
    (tmp_path / "name").write_text("web-2")
    (tmp_path / "namespace").write_text("serving\n")
    (tmp_path / "labels").write_text(
        'app.kubernetes.io/name="web"\ncontroller-revision-hash="web-6b7f9c"\nstatefulset.kubernetes.io/pod-name="web-2"'
    )
    (tmp_path / "annotations").write_text(
        f'example.com/hub-token="{HF}"\n'
        'kubectl.kubernetes.io/last-applied-configuration="{\\"kind\\":\\"Pod\\"}"\n'
        'prometheus.io/port="8000"\n'
    )
    result = await collect({"NODE_NAME": "n1"}, tmp_path)
    assert result.state is SourceState.OK, result.message
    f = values(result)
    assert f["orchestration.pod"] == "web-2"
    assert f["orchestration.namespace"] == "serving"
    assert f["orchestration.workload"] == "serving/StatefulSet/web"
    assert f["orchestration.labels.app.kubernetes.io/name"] == "web"
    assert f["orchestration.annotations.prometheus.io/port"] == "8000"
    assert str(f["orchestration.annotations.example.com/hub-token"]).startswith(REDACTED_PREFIX)
    assert "orchestration.annotations.kubectl.kubernetes.io/last-applied-configuration" not in f
    assert HF not in repr(result.facts)
    prov = {x.key: x.provenance for x in result.facts}
    assert prov["orchestration.pod"].method == "file"
    assert prov["orchestration.pod"].detail == str(tmp_path / "name")


async def test_env_wins_over_podinfo_files(tmp_path: Path) -> None:
    (tmp_path / "name").write_text("from-file")
    result = await collect({"POD_NAME": "from-env-0"}, tmp_path)
    assert values(result)["orchestration.pod"] == "from-env-0"


async def test_skewwatch_workload_overrides_derivation(tmp_path: Path) -> None:
    environ = {**DOWNWARD_ENV, "SKEWWATCH_WORKLOAD": "llm/LeaderWorkerSet/llama-405b"}
    result = await collect(environ, tmp_path)
    f = {x.key: x for x in result.facts}
    assert f["orchestration.workload"].value == "llm/LeaderWorkerSet/llama-405b"
    assert f["orchestration.workload"].provenance.method == "env"
    assert pod_identity(environ, tmp_path).workload_source == "env"


async def test_malformed_skewwatch_workload_is_an_error_but_identity_still_reported(tmp_path: Path) -> None:
    result = await collect({**DOWNWARD_ENV, "SKEWWATCH_WORKLOAD": "just-a-name"}, tmp_path)
    assert result.state is SourceState.ERROR
    assert "SKEWWATCH_WORKLOAD: expected namespace/kind/name, got 'just-a-name'" in result.message
    assert values(result)["orchestration.workload"] == "llm/Deployment/vllm"


async def test_outside_kubernetes_the_host_name_stands_in(tmp_path: Path) -> None:
    result = await collect({"HOSTNAME": "gpu-box-3"}, tmp_path)
    assert result.state is SourceState.OK
    f = values(result)
    assert f["orchestration.pod"] == "gpu-box-3"
    assert f["orchestration.namespace"] == "default"
    assert f["orchestration.workload"] == "default/Host/gpu-box-3"
    assert f["orchestration.host"] == "gpu-box-3"
    assert "not in Kubernetes" in result.message


async def test_in_kubernetes_without_pod_name_the_hostname_is_the_pod(tmp_path: Path) -> None:
    result = await collect(
        {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "HOSTNAME": "api-5d8f7c9b6-bcdfg"}, tmp_path
    )
    f = values(result)
    assert f["orchestration.pod"] == "api-5d8f7c9b6-bcdfg"
    assert f["orchestration.workload"] == "default/Deployment/api"
    assert "orchestration.node" not in f


async def test_malformed_labels_file_reports_the_line_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "labels").write_text('good="yes"\nnot a label\n')
    result = await collect(DOWNWARD_ENV, tmp_path)
    assert result.state is SourceState.ERROR
    assert f"{tmp_path / 'labels'} line 2" in result.message
    assert values(result)["orchestration.labels.good"] == "yes"


def test_pod_identity_is_the_one_identity_type_for_the_hello(tmp_path: Path) -> None:
    identity = pod_identity(DOWNWARD_ENV, tmp_path)
    assert identity == PodIdentity(
        "llm", "vllm-7d9f8b6c5-x2x9z", "gpu-node-1", "llm/Deployment/vllm", "pod-name"
    )
    hello = hello_to_proto(identity.spoken_by("", "1.2.3"), 1, "i-1")
    assert identity_from_hello(hello) == identity.spoken_by("llm/vllm-7d9f8b6c5-x2x9z", "1.2.3")
    assert pod_identity({"POD_NAME": "x-0", "POD_NAMESPACE": "a"}, tmp_path).node == ""
