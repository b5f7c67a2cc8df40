"""The pod source's Kubernetes API part, against recorded-shape API objects on a real local server."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from agent.k8s import (
    ClusterView,
    KubeError,
    image_digest,
    parse_kubeconfig,
    pod_view,
    resolve_workload,
)
from agent.settings import AgentSettings
from agent.snapshot import merge_facts
from agent.sources.base import AgentPaths, CollectContext, SourceResult
from agent.sources.pod import PodSource
from skewwatch.core.facts import SourceState
from tests.support.kubeapi import kubeconfig as kube_file
from tests.support.tls import self_signed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "k8s"
TOKEN = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ"
    ".eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bGxtOnZsbG0ifQ.c2lnbmF0dXJl"
)
NS = "llm"


@dataclass
class FakeApi:
    """Serves fixture objects at their API paths; checks the bearer token; can forbid paths."""

    objects: dict[str, dict[str, object]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    trickle: bool = False  # send each object in 64 KiB writes, as a busy API server does

    def add(self, path: str, fixture: str) -> None:
        self.objects[path] = json.loads((FIXTURES / fixture).read_text())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        if request.path in self.forbidden:
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "Forbidden",
                    "code": 403,
                },
                status=403,
            )
        if request.path not in self.objects:
            return web.json_response({"kind": "Status", "reason": "NotFound", "code": 404}, status=404)
        if not self.trickle:
            return web.json_response(self.objects[request.path])
        body = json.dumps(self.objects[request.path]).encode()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        for i in range(0, len(body), 64 * 1024):
            await resp.write(body[i : i + 64 * 1024])
            await asyncio.sleep(0.001)
        await resp.write_eof()
        return resp


def deployment_api() -> FakeApi:
    api = FakeApi()
    api.add(f"/api/v1/namespaces/{NS}/pods/llama-7d9f8b6c5-x2x9z", "deployment/pod.json")
    api.add(f"/apis/apps/v1/namespaces/{NS}/replicasets/llama-7d9f8b6c5", "deployment/replicaset.json")
    api.add(f"/apis/apps/v1/namespaces/{NS}/deployments/llama", "deployment/deployment.json")
    api.add("/api/v1/nodes/gpu-node-a100-7", "deployment/node.json")
    return api


Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(api: FakeApi, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", api.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        runners.append(runner)
        return str(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


def kubeconfig(tmp_path: Path, server: str, token: str = TOKEN) -> Path:
    return kube_file(tmp_path, server, token, user="agent", namespace=NS)


async def collect(tmp_path: Path, environ: dict[str, str], source: PodSource | None = None) -> SourceResult:
    paths = AgentPaths(podinfo=tmp_path / "podinfo", serviceaccount=tmp_path / "serviceaccount")
    ctx = CollectContext(settings=AgentSettings(), paths=paths, environ=environ)
    return await (source or PodSource()).collect(ctx)


def pod_env(pod: str = "llama-7d9f8b6c5-x2x9z", node: str = "gpu-node-a100-7") -> dict[str, str]:
    return {"POD_NAME": pod, "POD_NAMESPACE": NS, "NODE_NAME": node}


def by_key(result: SourceResult) -> dict[str, object]:
    return {f.key: f.value for f in result.facts}


async def test_deployment_pod_yields_image_digest_workload_and_node_gpu_class(
    tmp_path: Path, serve: Serve
) -> None:
    port = await serve(deployment_api())
    env = pod_env() | {"KUBECONFIG": str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))}
    result = await collect(tmp_path, env)
    facts = by_key(result)
    assert result.state is SourceState.OK, result.message
    assert facts["orchestration.image"] == "vllm/vllm-openai:v0.10.1.1"  # the GPU container, not the agent
    assert facts["orchestration.image_digest"] == "sha256:" + "9f" * 32
    assert facts["orchestration.containers.skewwatch-agent.image_digest"] == "sha256:" + "1" * 64
    assert facts["orchestration.workload"] == f"{NS}/Deployment/llama"
    assert facts["orchestration.owner_chain"] == ["ReplicaSet/llama-7d9f8b6c5", "Deployment/llama"]
    assert facts["orchestration.node_gpu_product"] == "a100-80gb"
    assert facts["orchestration.node_labels.nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert facts["orchestration.node_labels.node.kubernetes.io/instance-type"] == "p4de.24xlarge"
    assert "orchestration.node_labels.kubernetes.io/hostname" not in facts
    assert facts["orchestration.resources.limits.nvidia.com/gpu"] == "1"
    assert facts["orchestration.resources.requests.memory"] == "32Gi"
    assert facts["orchestration.node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert facts["orchestration.pod_uid"] == "5e1a9c0e-3b57-4d0a-9a0b-3d1f8c7e2b10"
    assert "Kubernetes API" in result.message and "ok" in result.message
    prov = {f.key: f.provenance for f in result.facts if f.key == "orchestration.image_digest"}
    assert prov["orchestration.image_digest"].method == "k8s"
    assert "imageID" in prov["orchestration.image_digest"].detail


async def test_a_pod_of_a_megabyte_arrives_whole_over_several_chunks(tmp_path: Path, serve: Serve) -> None:
    # managedFields of a pod many controllers touched: the body comes in several reads.
    api = deployment_api()
    api.trickle = True
    pod = api.objects[f"/api/v1/namespaces/{NS}/pods/llama-7d9f8b6c5-x2x9z"]
    meta = pod["metadata"]
    assert isinstance(meta, dict)
    meta["managedFields"] = [{"manager": f"c-{i}", "fieldsV1": {"f:x": "y" * 1000}} for i in range(1000)]
    port = await serve(api)
    env = pod_env() | {"KUBECONFIG": str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))}
    result = await collect(tmp_path, env)
    assert result.state is SourceState.OK, result.message
    assert by_key(result)["orchestration.workload"] == f"{NS}/Deployment/llama", result.message
    assert "workload from the Kubernetes API" in result.message, result.message  # not from the pod name


async def test_api_workload_beats_the_name_derived_one_in_the_merge(tmp_path: Path, serve: Serve) -> None:
    port = await serve(deployment_api())
    env = pod_env() | {"KUBECONFIG": str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))}
    merged = merge_facts([await collect(tmp_path, env)])
    assert merged["orchestration.workload"].provenance.method == "k8s"


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    cert, key = self_signed(tmp_path, "kubernetes")
    other, _ = self_signed(tmp_path, "other")
    return cert, key, other


async def test_in_cluster_service_account_over_tls(
    tmp_path: Path, serve: Serve, certs: tuple[Path, Path, Path]
) -> None:
    cert, key, other = certs
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    port = await serve(deployment_api(), server_ctx)
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(TOKEN + "\n")
    (sa / "ca.crt").write_bytes(cert.read_bytes())
    (sa / "namespace").write_text(NS)
    env = pod_env() | {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    result = await collect(tmp_path, env)
    assert result.state is SourceState.OK, result.message
    assert "in-cluster service account" in result.message
    assert by_key(result)["orchestration.workload"] == f"{NS}/Deployment/llama"

    # A CA that did not sign the server's certificate: the API part fails, the downward API stands.
    (sa / "ca.crt").write_bytes(other.read_bytes())
    result = await collect(tmp_path, env)
    facts = by_key(result)
    assert "Kubernetes API error" in result.message and "certificate" in result.message.lower()
    assert facts["orchestration.pod"] == "llama-7d9f8b6c5-x2x9z"
    assert "orchestration.image" not in facts


async def test_forbidden_node_read_loses_only_the_node_facts_and_names_the_permission(
    tmp_path: Path, serve: Serve
) -> None:
    api = deployment_api()
    api.forbidden.add("/api/v1/nodes/gpu-node-a100-7")
    port = await serve(api)
    env = pod_env() | {"KUBECONFIG": str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))}
    result = await collect(tmp_path, env)
    facts = by_key(result)
    assert "get nodes" in result.message and "forbidden" in result.message
    assert "orchestration.node_gpu_product" not in facts
    assert facts["orchestration.workload"] == f"{NS}/Deployment/llama"


async def test_rejected_token_is_an_api_error_with_downward_facts_kept(tmp_path: Path, serve: Serve) -> None:
    port = await serve(deployment_api())
    env = pod_env() | {"KUBECONFIG": str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}", token="wrong"))}
    result = await collect(tmp_path, env)
    assert "unauthorized" in result.message
    assert by_key(result)["orchestration.namespace"] == NS


async def test_kserve_predictor_resolves_to_its_inference_service(tmp_path: Path, serve: Serve) -> None:
    api = FakeApi()
    api.add(f"/api/v1/namespaces/{NS}/pods/qwen-predictor-6b8c9d7f4-kq2lm", "kserve/pod.json")
    api.add(f"/apis/apps/v1/namespaces/{NS}/replicasets/qwen-predictor-6b8c9d7f4", "kserve/replicaset.json")
    api.add(f"/apis/apps/v1/namespaces/{NS}/deployments/qwen-predictor", "kserve/deployment.json")
    api.add("/api/v1/nodes/gpu-node-h100-2", "nodes/gpu-node-h100-2.json")
    port = await serve(api)
    env = pod_env("qwen-predictor-6b8c9d7f4-kq2lm", "gpu-node-h100-2")
    env["KUBECONFIG"] = str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))
    facts = by_key(await collect(tmp_path, env))
    assert facts["orchestration.workload"] == f"{NS}/InferenceService/qwen"
    assert facts["orchestration.owner_chain"] == [
        "ReplicaSet/qwen-predictor-6b8c9d7f4",
        "Deployment/qwen-predictor",
        "InferenceService/qwen",
    ]
    assert facts["orchestration.node_gpu_product"] == "h100-80gb"


async def test_leader_worker_set_pod_resolves_through_its_statefulset(tmp_path: Path, serve: Serve) -> None:
    api = FakeApi()
    api.add(f"/api/v1/namespaces/{NS}/pods/deepseek-0", "lws/pod.json")
    api.add(f"/apis/apps/v1/namespaces/{NS}/statefulsets/deepseek", "lws/statefulset.json")
    api.add(
        f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{NS}/leaderworkersets/deepseek",
        "lws/leaderworkerset.json",
    )
    api.add("/api/v1/nodes/gpu-node-h100-2", "nodes/gpu-node-h100-2.json")
    port = await serve(api)
    env = pod_env("deepseek-0", "gpu-node-h100-2") | {
        "KUBECONFIG": str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))
    }
    facts = by_key(await collect(tmp_path, env))
    assert facts["orchestration.workload"] == f"{NS}/LeaderWorkerSet/deepseek"
    assert facts["orchestration.resources.limits.nvidia.com/gpu"] == "8"


async def test_api_answer_is_cached_between_cycles(tmp_path: Path, serve: Serve) -> None:
    api = deployment_api()
    port = await serve(api)
    env = pod_env() | {"KUBECONFIG": str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))}
    now = [0.0]
    source = PodSource(refresh_s=60, clock=lambda: now[0])
    await collect(tmp_path, env, source)
    first = len(api.requests)
    now[0] = 30.0
    cached = await collect(tmp_path, env, source)
    assert len(api.requests) == first and "orchestration.image" in by_key(cached)
    now[0] = 61.0
    await collect(tmp_path, env, source)
    assert len(api.requests) == 2 * first


# --- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image_id",
    [
        "docker-pullable://vllm/vllm-openai@sha256:" + "ab" * 32,
        "docker.io/vllm/vllm-openai@sha256:" + "ab" * 32,
        "sha256:" + "ab" * 32,
    ],
)
def test_image_digest_is_read_from_every_runtime_spelling(image_id: str) -> None:
    assert image_digest(image_id) == "sha256:" + "ab" * 32


def test_image_id_without_digest_has_none() -> None:
    assert image_digest("") is None
    assert image_digest("vllm/vllm-openai:latest") is None


def test_label_names_the_workload_where_the_chain_stops_at_machinery() -> None:
    labels = {"serving.kserve.io/inferenceservice": "qwen"}
    chain = [
        ("ReplicaSet", "qwen-00001-deployment-x"),
        ("Deployment", "qwen-00001-deployment"),
        ("Revision", "qwen-00001"),
    ]
    assert resolve_workload(NS, "p", chain, labels)[0] == f"{NS}/InferenceService/qwen"
    # A custom resource the chain reached itself is the workload, whatever the labels say.
    lws_labels = {"leaderworkerset.sigs.k8s.io/name": "deepseek-kserve-mn"}
    chain = [
        ("StatefulSet", "x"),
        ("LeaderWorkerSet", "deepseek-kserve-mn"),
        ("LLMInferenceService", "deepseek"),
    ]
    assert resolve_workload(NS, "p", chain, lws_labels)[0] == f"{NS}/LLMInferenceService/deepseek"
    assert resolve_workload(NS, "bare", [], {})[0] == f"{NS}/Pod/bare"


def test_kubeconfig_problems_name_the_field() -> None:
    with pytest.raises(KubeError, match="no current-context"):
        parse_kubeconfig("apiVersion: v1\nclusters: []\n", "kc")
    with pytest.raises(KubeError, match="clusters has no entry named 'gone'"):
        parse_kubeconfig("current-context: c\ncontexts:\n- name: c\n  context: {cluster: gone}\n", "kc")
    with pytest.raises(KubeError, match="only token authentication"):
        parse_kubeconfig(
            "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
            "clusters:\n- name: k\n  cluster: {server: 'https://k:6443'}\n"
            "users:\n- name: u\n  user: {client-certificate-data: AAAA}\n",
            "kc",
        )


def test_real_admission_pod_objects_have_the_shape_the_reader_expects(real_fixtures: Path) -> None:
    path = (
        real_fixtures
        / "admission"
        / "salesforce-generic-sidecar-injector__admissionreview-v1-pod-create.json"
    )
    pod = json.loads(path.read_text())["request"]["object"]
    view = ClusterView()
    pod_view(pod, view)
    facts = {f.key: f.value for f in view.facts}
    assert facts["orchestration.image"] == "gcr.io/gsf-mgmt-devmvp-spinnaker/dva/keymaker-client:latest"
    assert facts["orchestration.service_account"] == "kaas-keymaker-orlgsgcsl34imsg6"
    # At admission the pod has not started: no digest yet, and the reader says so.
    assert "orchestration.image_digest" not in facts
    assert any("no image digest yet" in p for p in view.problems)


def test_pod_object_names_its_revision_when_no_labels_file_does() -> None:
    # The recorded-shape Pod of a Deployment: its pod-template-hash label says which ReplicaSet
    # (revision) it runs, which the collector maps to the revision number.
    pod = json.loads((Path(__file__).parent.parent / "fixtures/k8s/deployment/pod.json").read_text())
    view = ClusterView()
    pod_view(pod, view)
    facts = {f.key: f for f in view.facts}
    want = pod["metadata"]["labels"]["pod-template-hash"]
    fact = facts["orchestration.labels.pod-template-hash"]
    assert fact.value == want and "metadata.labels[pod-template-hash]" in fact.detail
    # Only revision labels are taken from the object; the rest come from the downward API.
    assert not [k for k in facts if k.startswith("orchestration.labels.") and "hash" not in k]
    pod["metadata"]["labels"]["pod-template-hash"] = "not a hash!"
    hostile = ClusterView()
    pod_view(pod, hostile)
    assert "orchestration.labels.pod-template-hash" not in {f.key for f in hostile.facts}
