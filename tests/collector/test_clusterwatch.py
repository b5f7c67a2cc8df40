"""ClusterWatch (collector/cluster/clusterwatch.py) against the test API server: every kind of
every watched namespace reflected, derived once per burst of changes and handed to ClusterState;
its status report; namespaces from a provider started and stopped; no credentials is a status,
never an exception; and the real derive (collector/cluster/objects.py) on real manifests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from collector.cluster import objects
from collector.cluster.clusterwatch import STATUS_KEYS, ClusterWatch
from collector.cluster.resources import KINDS
from collector.domain.cluster import ClusterFacts, RevisionTemplate
from collector.service.cluster import ClusterState
from skewwatch.core.facts import SourceState, SourceStatus
from skewwatch.redact import Redactor
from tests.kubeapi.server import KubeApiServer, serve
from tests.support.kubeapi import kubeconfig

FAST: dict[str, Any] = {
    "debounce_s": 0.05,
    "namespaces_poll_s": 0.05,
    "initial_wait_s": 3.0,
    "resync_s": 60.0,
    "backoff_base_s": 0.01,
    "backoff_cap_s": 0.05,
}


class MemoryRevisions:
    """ClusterStore in memory: what put_revisions was given."""

    def __init__(self) -> None:
        self.revisions: dict[tuple[str, str], RevisionTemplate] = {}

    async def put_revisions(self, revisions: Sequence[RevisionTemplate], keep: int) -> int:
        new = sum((r.workload, r.template_hash) not in self.revisions for r in revisions)
        self.revisions.update({(r.workload, r.template_hash): r for r in revisions})
        return new

    async def workload_revisions(self, workload: str) -> list[RevisionTemplate]:
        return [r for (w, _), r in self.revisions.items() if w == workload]


class StubDerive:
    """A stand-in for objects.derive: one ClusterFacts per Deployment (its replicas), and a record
    of every call's namespace, object names and kind states."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, set[str]], dict[str, SourceState]]] = []

    def __call__(
        self,
        namespace: str,
        objs: Mapping[str, Mapping[str, Mapping[str, Any]]],
        kinds: Mapping[str, SourceStatus],
        redactor: Redactor,
        now: float,
    ) -> objects.Derived:
        self.calls.append(
            (namespace, {k: set(v) for k, v in objs.items()}, {k: s.state for k, s in kinds.items()})
        )
        facts = [
            ClusterFacts(f"{namespace}/Deployment/{name}", {"orchestration.replicas": o["spec"]["replicas"]})
            for name, o in objs.get("Deployment", {}).items()
        ]
        return objects.Derived(facts=facts, pools=[], revisions=[])


def keep(kind: str, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    return {
        "metadata": {"name": obj["metadata"]["name"]},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas")},
    }


def deployment(name: str, ns: str = "ml", replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.8.5"}]},
            },
        },
    }


async def until(cond: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.01)


def new_state() -> tuple[ClusterState, list[str], MemoryRevisions]:
    scheduled: list[str] = []
    store = MemoryRevisions()
    return ClusterState(store, scheduled.append), scheduled, store


@contextlib.asynccontextmanager
async def watching(
    api: KubeApiServer, tmp_path: Path, state: ClusterState, **kw: Any
) -> AsyncIterator[ClusterWatch]:
    async with serve(api) as url:
        env = {"KUBECONFIG": str(kubeconfig(tmp_path, url))}
        options = {**FAST, "derive": StubDerive(), "keep": keep, "namespaces": ["ml"], **kw}
        w = ClusterWatch(state, redactor=Redactor("salt"), sa_root=tmp_path / "no-sa", environ=env, **options)
        w.start()
        try:
            yield w
        finally:
            await w.stop()


async def test_no_credentials_is_unavailable_and_nothing_raises(tmp_path: Path) -> None:
    state, scheduled, _ = new_state()
    w = ClusterWatch(
        state, namespaces=["ml"], redactor=Redactor("salt"), sa_root=tmp_path / "no-sa", environ={}
    )
    w.start()
    await until(lambda: "no cluster access" in state.status()["message"], "status set")
    status = state.status()
    assert status == {
        "available": False,
        "message": f"no cluster access: no in-cluster service account at {tmp_path / 'no-sa'} "
        "and no KUBECONFIG",
        "namespaces": {},
    }
    await w.stop()
    assert scheduled == []


async def test_changes_are_derived_per_namespace_and_handed_to_the_state(tmp_path: Path) -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    api.apply(deployment("other", ns="elsewhere"))
    state, scheduled, _ = new_state()
    derive = StubDerive()
    async with watching(api, tmp_path, state, derive=derive) as w:
        await until(lambda: state.facts("ml/Deployment/a") is not None, "first derive")
        assert len(derive.calls) == 1  # once every kind had listed, not once per kind
        ns, names, kinds = derive.calls[0]
        assert ns == "ml" and names["Deployment"] == {"a"} and set(kinds) == {k.name for k in KINDS}
        assert kinds["Deployment"] is SourceState.OK and kinds["InferencePool"] is SourceState.UNAVAILABLE
        assert state.facts("elsewhere/Deployment/other") is None  # not a watched namespace

        for name in ("b", "c", "d"):  # one burst: one derive
            api.apply(deployment(name))
        api.apply(deployment("a", replicas=4))
        await until(lambda: state.facts("ml/Deployment/d") is not None, "burst derived")
        await until(lambda: state.facts("ml/Deployment/a").facts["orchestration.replicas"] == 4, "a modified")  # type: ignore[union-attr]
        assert len(derive.calls) <= 3
        api.delete("Deployment", "ml", "b")
        await until(lambda: state.facts("ml/Deployment/b") is None, "b gone from the state")
        assert "ml/Deployment/b" in scheduled
        assert w.derived == len(derive.calls)


async def test_status_reports_each_kind_of_each_namespace(tmp_path: Path) -> None:
    api = KubeApiServer()
    api.install("gateway.networking.k8s.io", "v1beta1", "httproutes")
    api.forbid("configmaps", "ml")
    state, _, _ = new_state()
    async with watching(api, tmp_path, state):
        await until(lambda: state.status().get("available") is True, "available")
        await until(lambda: len(state.status()["namespaces"].get("ml", {})) == len(KINDS), "every kind")
        await until(
            lambda: all(k["status"] != "pending" for k in state.status()["namespaces"]["ml"].values()),
            "every kind past its first list",
        )
        status = state.status()
        assert status["message"] == f"watching {len(KINDS)} kinds in 1 namespaces"
        kinds = status["namespaces"]["ml"]
        assert set(kinds) == {k.name for k in KINDS}
        assert all(tuple(v) == STATUS_KEYS for v in kinds.values())
        assert kinds["Deployment"]["group_version"] == "apps/v1" and kinds["Deployment"]["relists"] == 0
        assert kinds["Deployment"]["resource_version"] != ""
        assert kinds["HTTPRoute"]["group_version"] == "gateway.networking.k8s.io/v1beta1"
        assert (
            kinds["ConfigMap"]["status"] == "unavailable"
            and "grant list/watch configmaps" in kinds["ConfigMap"]["message"]
        )
        assert kinds["ScaledObject"] == {
            "status": "unavailable",
            "message": "ScaledObject not installed (tried keda.sh/v1alpha1)",
            "group_version": "",
            "resource_version": "",
            "relists": 0,
        }


async def test_namespaces_from_a_provider_start_and_stop_their_reflectors(tmp_path: Path) -> None:
    api = KubeApiServer()
    api.apply(deployment("a", ns="ml"))
    api.apply(deployment("s", ns="serving"))
    wanted = {"ml"}

    async def provider() -> set[str]:
        return set(wanted)

    state, _, _ = new_state()
    async with watching(api, tmp_path, state, namespaces=provider) as w:
        await until(lambda: state.facts("ml/Deployment/a") is not None, "ml derived")
        wanted.add("serving")
        await until(lambda: state.facts("serving/Deployment/s") is not None, "serving derived")
        wanted.discard("ml")
        await until(lambda: state.facts("ml/Deployment/a") is None, "ml cleared")
        assert set(w.status()["namespaces"]) == {"serving"}
        await until(lambda: all(x.namespace == "serving" for x in api.watchers), "ml's watches closed")
        assert state.facts("serving/Deployment/s") is not None


async def test_one_kind_failing_to_derive_never_stops_the_watch(tmp_path: Path) -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    state, _, _ = new_state()
    calls = 0

    def flaky(*args: Any) -> objects.Derived:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return StubDerive()(*args)

    async with watching(api, tmp_path, state, derive=flaky):
        await until(
            lambda: "deriving ml failed: RuntimeError: boom" in state.status()["message"], "failure reported"
        )
        api.apply(deployment("b"))
        await until(lambda: state.facts("ml/Deployment/b") is not None, "derived on the next change")
        assert "failed" not in state.status()["message"]


def real_manifests(real_fixtures: Path) -> list[Path]:
    return [p for p in (real_fixtures / "manifests").iterdir() if p.suffix == ".yaml"]


async def test_real_derive_on_real_manifests_yields_facts_and_revisions(
    tmp_path: Path, real_fixtures: Path
) -> None:
    api = KubeApiServer()
    loaded = api.load_manifests(real_manifests(real_fixtures), namespace="ml")
    deployments = [o for o in loaded if o["kind"] == "Deployment" and o["metadata"]["namespace"] == "ml"]
    assert deployments, "the real manifests hold Deployments"
    for d in deployments:
        api.rollout("ml", d["metadata"]["name"])
    state, _, store = new_state()
    async with watching(api, tmp_path, state, derive=objects.derive, keep=objects.slim) as w:
        workloads = [f"ml/Deployment/{d['metadata']['name']}" for d in deployments]
        await until(lambda: all(state.facts(x) is not None for x in workloads), "every Deployment derived")
        assert {r.workload for r in store.revisions.values()} >= set(workloads)
        cf = state.facts(workloads[0])
        assert cf is not None and cf.current_revision == "1"
        assert w.status()["available"] is True


async def test_credentials_appearing_later_start_the_watch(tmp_path: Path) -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    state, _, _ = new_state()
    environ: dict[str, str] = {}
    async with serve(api) as url:
        w = ClusterWatch(state, namespaces=["ml"], redactor=Redactor("salt"), sa_root=tmp_path / "no-sa",
                         environ=environ, derive=StubDerive(), keep=keep, credentials_retry_s=0.05,
                         **{k: v for k, v in FAST.items() if k != "resync_s"})  # fmt: skip
        w.start()
        try:
            await until(lambda: state.status()["available"] is False, "unavailable first")
            environ["KUBECONFIG"] = str(kubeconfig(tmp_path, url))
            await until(lambda: state.facts("ml/Deployment/a") is not None, "watching once credentials exist")
            assert state.status()["available"] is True
        finally:
            await w.stop()


async def test_rotated_token_is_used_by_the_next_requests(tmp_path: Path) -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    state, _, _ = new_state()
    async with watching(api, tmp_path, state, reload_s=0.05) as w:
        await until(lambda: state.facts("ml/Deployment/a") is not None, "watching")
        assert w.status()["available"] is True
        # The token rotates: the server takes only the new one, the kubeconfig file holds it.
        kc = tmp_path / "kubeconfig"
        old = api.token or ""
        kc.write_text(kc.read_text().replace(old, "rotated-token"))
        api.token = "rotated-token"
        await asyncio.sleep(0.2)  # past reload_s: the watch has read the credentials again
        api.close_watches()  # every watch must be made again, with the token of now
        api.apply(deployment("b"))
        await until(lambda: state.facts("ml/Deployment/b") is not None, "watching with the new token")
        assert all(s["status"] == "ok" for s in w.status()["namespaces"]["ml"].values() if s["group_version"])
