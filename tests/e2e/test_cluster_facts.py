"""Cluster facts end to end: a real collector process watches the test Kubernetes API server
(tests/kubeapi/server.py, over real HTTP, from a kubeconfig), a real agent beside a stand-in vLLM
resolves its workload through the same server (its Pod, the ReplicaSet, the Deployment), and the
API, the CLI and the evidence bundle show what only the cluster knows.

- the workload's autoscaler, Service, Ingress timeout and its pod's revision are facts with
  provenance ``cluster``/``k8s``, joined to the replica the agent reports;
- a ModelSpec's ``operations.scaling.maxReplicas`` is checked against the HorizontalPodAutoscaler;
- after a baseline, raising the autoscaler's maxReplicas is one baseline finding naming the object;
- a rollout that changes the image and an argument is revision 2; ``skewwatch diff --revisions r1
  r2`` and ``--last-good`` show exactly those changes, env values redacted, and so does the
  evidence bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from demo.harness import free_port, get_json, skewwatch
from tests.kubeapi.server import KubeApiServer, serve
from tests.support.scenario import SERVED, Scenario

pytestmark = pytest.mark.e2e

T = TypeVar("T")
NS = "team-a"
SECRET = "hf_e2eClusterWatchSecretValue0123456789"

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "llama", "namespace": NS, "labels": {"app": "llama"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "llama"}},
        "template": {
            "metadata": {"labels": {"app": "llama"}},
            "spec": {
                "containers": [
                    {
                        "name": "vllm",
                        "image": "vllm/vllm-openai:v0.6.3",
                        "args": ["--model", "/models/llama", "--dtype", "float16", "--max-model-len", "2048"],
                        "env": [{"name": "HF_TOKEN", "value": SECRET}],
                        "ports": [{"containerPort": 8000, "name": "http"}],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    }
                ]
            },
        },
    },
}
HPA: dict[str, Any] = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "llama", "namespace": NS},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama"},
        "minReplicas": 1,
        "maxReplicas": 4,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "vllm_num_requests_waiting"},
                    "target": {"type": "AverageValue", "averageValue": "5"},
                },
            }
        ],
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "llama", "namespace": NS},
    "spec": {"selector": {"app": "llama"}, "ports": [{"name": "http", "port": 80, "targetPort": 8000}]},
}
INGRESS: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {
        "name": "llama",
        "namespace": NS,
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "60"},
    },
    "spec": {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "llm.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "llama", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ],
    },
}
MODELSPEC = f"""
apiVersion: piqc.ai/v1alpha1
kind: ModelSpec
metadata:
  name: llama-scaling
spec:
  identity:
    model: {{id: {SERVED}, family: llama-3, task: chat, framework: vllm}}
  runtime:
    accelerator: {{vendor: nvidia, type: h100-80gb, count: 1}}
    batch: {{maxSequenceLengthTokens: 2048}}
  operations:
    scaling: {{minReplicas: 1, maxReplicas: 8}}
"""


class ApiServerThread:
    """The test API server on its own event loop in a thread; control calls run on that loop."""

    def __init__(self) -> None:
        self.server = KubeApiServer(bookmark_interval_s=1.0)
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self.server) as url:
            self.url = url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ApiServerThread:
        self._thread.start()
        assert self._ready.wait(10), "the test API server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self.on_loop(run())

    def on_loop(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)


@pytest.fixture
def api() -> Iterator[ApiServerThread]:
    with ApiServerThread() as a:
        yield a


def kubeconfig(path: Path, url: str, token: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": url}}],
                "users": [{"name": "test", "user": {"token": token}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    return path


def pod_of(rs: dict[str, Any], name: str) -> dict[str, Any]:
    """The Pod the ReplicaSet controller would make: its template, owned by the ReplicaSet."""
    template = copy.deepcopy(rs["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": template["metadata"]["labels"],
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs["metadata"]["name"],
                    "uid": rs["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {**template["spec"], "nodeName": "node-1"},
        "status": {"phase": "Running"},
    }


def start_agent(sc: Scenario, pod: str, env: dict[str, str]) -> None:
    """A stand-in vLLM and its agent, which finds its workload through the API server."""
    port = sc.ports.setdefault(pod, free_port())
    argv = [str(sc.vllm), "serve", str(sc.model), "--dtype", "float16", "--port", str(port),
            "--served-model-name", SERVED, "--max-model-len", "2048"]  # fmt: skip
    sc.procs.start(f"vllm-{pod}", argv, sc.env)
    sc.wait(f"vllm {pod}", lambda: get_json(f"http://127.0.0.1:{port}/v1/models") is not None)
    agent_env = dict(env, POD_NAMESPACE=NS, POD_NAME=pod, NODE_NAME="node-1")
    match = f"{re.escape(str(sc.vllm))} serve .*--port {port}( |$)"
    sc.procs.start(f"agent-{pod}", skewwatch("agent", "--collector", f"127.0.0.1:{sc.grpc_port}",
                                             "--match", match, "--interval", "0.5"), agent_env)  # fmt: skip


def workload(sc: Scenario) -> Any:
    return get_json(f"{sc.api}/api/v1/workloads/{NS}/llama")


def cluster_fact(sc: Scenario, key: str) -> Any:
    w = workload(sc)
    facts = (((w or {}).get("cluster") or {}).get("cluster_facts") or {}).get("facts") or {}
    return facts.get(key)


def test_cluster_facts_join_the_workload_and_revisions_diff(sc: Scenario, api: ApiServerThread) -> None:
    for obj in (DEPLOYMENT, HPA, SERVICE, INGRESS):
        api.call(lambda o=obj: api.server.apply(copy.deepcopy(o)))  # type: ignore[misc]
    rs1 = api.call(lambda: api.server.rollout(NS, "llama"))
    pod = f"{rs1['metadata']['name']}-x7k2p"
    api.call(lambda: api.server.apply(pod_of(rs1, pod)))
    kube = kubeconfig(sc.tmp / "kubeconfig", api.url, api.server.token or "")
    sc.env["KUBECONFIG"] = str(kube)
    (sc.intents / "scaling.yaml").write_text(MODELSPEC)
    sc.start_collector()
    start_agent(sc, pod, sc.env)

    # What the pod cannot see, from the cluster, joined to the workload its agent reports.
    sc.wait("the autoscaler's bounds", lambda: cluster_fact(sc, "orchestration.autoscaling.max") == 4)
    w = workload(sc)
    assert w["cluster"]["available"] is True
    cluster = w["cluster"]["cluster_facts"]
    assert cluster["status"]["status"] == "ok"
    assert cluster["facts"]["orchestration.autoscaling.kind"] == "HorizontalPodAutoscaler"
    assert cluster["facts"]["serving.timeout_seconds"] == 60.0
    assert cluster["provenance"]["orchestration.autoscaling.max"]["detail"].startswith(
        f"HorizontalPodAutoscaler/{NS}/llama@"
    )
    assert cluster["provenance"]["serving.timeout_seconds"]["source"] == "cluster"
    assert SECRET not in json.dumps(w)
    sc.wait("the replica's revision", lambda: (get_json(f"{sc.api}/api/v1/pods/{NS}/{pod}") or {})
            .get("workload") == f"{NS}/Deployment/llama")  # fmt: skip

    # The ModelSpec's maxReplicas 8 against the autoscaler's 4: an intent finding from the cluster.
    def intent_max() -> Any:
        return next((f for f in sc.findings(workload=f"{NS}/llama", reference="intent", status="open")
                     if f["key"] == "orchestration.autoscaling.max"), None)  # fmt: skip

    try:
        sc.wait("the scaling intent finding", intent_max)
    except TimeoutError:
        view = {k: v for k, v in workload(sc).items() if k in ("intent", "findings", "state")}
        raise AssertionError(json.dumps({"findings": sc.findings(), "workload": view})[:20000]) from None
    f = intent_max()
    assert f["actual"] == 4 and "HorizontalPodAutoscaler" in f["hint"]
    # Align the intent with the autoscaler before recording the last good state.
    (sc.intents / "scaling.yaml").write_text(MODELSPEC.replace("maxReplicas: 8", "maxReplicas: 4"))
    sc.wait("the intent finding resolved", lambda: intent_max() is None)
    sc.cli("baseline", f"{NS}/llama", "--record", "--format", "json")

    # A change outside the pod after the baseline: one finding, naming the object.
    hpa = copy.deepcopy(HPA)
    hpa["spec"]["maxReplicas"] = 16
    api.call(lambda: api.server.apply(hpa))

    def baseline_max() -> Any:
        return next((f for f in sc.findings(workload=f"{NS}/llama", reference="baseline", status="open")
                     if f["key"] == "orchestration.autoscaling.max"), None)  # fmt: skip

    sc.wait("the baseline autoscaler finding", baseline_max)
    f = baseline_max()
    assert f["expected_by_reference"]["baseline"] == 4 and f["actual"] == 16

    # A rollout: another image and one argument changed; the pod-template revisions diff.
    dep = api.call(lambda: api.server.get("Deployment", NS, "llama"))
    assert dep is not None
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["image"] = "vllm/vllm-openai:v0.7.0"
    c["args"][c["args"].index("float16")] = "bfloat16"
    c["env"][0]["value"] = SECRET + "-rotated"
    api.call(lambda: api.server.apply(dep))
    api.call(lambda: api.server.rollout(NS, "llama"))

    def revisions() -> list[Any]:
        data = get_json(f"{sc.api}/api/v1/workloads/{NS}/llama/revisions") or {}
        return list(data.get("revisions") or [])

    sc.wait("two revisions", lambda: len(revisions()) == 2)
    diff = json.loads(sc.cli("diff", f"{NS}/llama", "--revisions", "r1", "r2", "-o", "json"))
    changed = {ch["key"]: ch for ch in diff["changes"]}
    assert changed["orchestration.template.vllm.image"]["before"] == "vllm/vllm-openai:v0.6.3"
    assert changed["orchestration.template.vllm.image"]["after"] == "vllm/vllm-openai:v0.7.0"
    assert "orchestration.template.vllm.args" in changed
    env = changed["orchestration.template.vllm.env.HF_TOKEN"]
    assert str(env["before"]).startswith("redacted:sha256:") and env["before"] != env["after"]
    table = sc.cli("diff", f"{NS}/llama", "--revisions", "r1", "r2")
    assert "v0.7.0" in table and SECRET not in table

    last_good = json.loads(sc.cli("diff", f"{NS}/llama", "--last-good", "-o", "json"))
    template = last_good.get("template") or {}
    assert "orchestration.template.vllm.image" in {ch["key"] for ch in template.get("changes", [])}, (
        last_good.get("template_why"),
        last_good["changes"],
    )

    evidence = sc.cli("evidence", f"{NS}/llama", "-o", "json")
    assert "orchestration.template.vllm.image" in evidence and SECRET not in evidence
    with contextlib.suppress(FileNotFoundError):
        log = (sc.tmp / "collector.log").read_text()
        assert SECRET not in log


def test_without_a_reachable_cluster_everything_else_works(sc: Scenario) -> None:
    sc.env["KUBECONFIG"] = str(kubeconfig(sc.tmp / "kubeconfig", "http://127.0.0.1:9", "t"))
    sc.start_collector()
    status = get_json(f"{sc.api}/api/v1/cluster")
    assert status is not None and "available" in status
    sc.start_replica("llama-7d9f8b6c5-abcde", NS)
    sc.wait("the replica reported", lambda: (sc.pod(NS, "llama-7d9f8b6c5-abcde") or {}).get("facts"))
    sc.wait("the watch says why it has nothing",
            lambda: "127.0.0.1:9" in json.dumps(get_json(f"{sc.api}/api/v1/cluster")))  # fmt: skip
    assert get_json(f"{sc.api}/readyz") is not None
