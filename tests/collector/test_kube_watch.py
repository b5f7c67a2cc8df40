"""The Reflector (collector/cluster/watch.py) against the test API server over real HTTP: it
lists, then follows the watch; a dropped stream resumes from its resourceVersion without a relist
and misses nothing, a compaction's 410 relists to the server's state, 403 and a CRD not installed
are unavailable (naming the grant, the versions tried) without stopping other kinds, a version
fallback is found, and memory holds only what ``keep`` keeps, under caps."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from collector.cluster.errors import ClusterTooLarge
from collector.cluster.kube import KubeClient
from collector.cluster.resources import BY_NAME
from collector.cluster.watch import Reflector, ReflectorStatus
from skewwatch.core.facts import SourceState
from tests.kubeapi.server import KubeApiServer, serve

NS = "ml"


def keep(kind: str, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """A stand-in for collector.cluster.objects.slim: a few fields of each object, never the rest."""
    meta = obj["metadata"]
    return {
        "kind": obj.get("kind"),
        "apiVersion": obj.get("apiVersion"),
        "name": meta["name"],
        "resourceVersion": meta["resourceVersion"],
        "labels": dict(meta.get("labels") or {}),
        "replicas": (obj.get("spec") or {}).get("replicas"),
    }


def deployment(name: str, replicas: int = 1, ns: str = NS, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.8.5"}]},
            },
        },
    }


def httproute(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": f"gateway.networking.k8s.io/{version}",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"parentRefs": [{"name": "gw"}]},
    }


async def until(cond: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def reflecting(
    api: KubeApiServer,
    kind: str = "Deployment",
    ns: str = NS,
    client_args: dict[str, Any] | None = None,
    **kw: Any,
) -> AsyncIterator[tuple[Reflector, list[ReflectorStatus]]]:
    """A started Reflector against ``api``, and the status it had at each on_change()."""
    changes: list[ReflectorStatus] = []
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("backoff_cap_s", 0.05)
    async with serve(api) as url, KubeClient(api.config(url), **(client_args or {})) as client:
        r = Reflector(client, BY_NAME[kind], ns, keep=kw.pop("keep", keep),
                      on_change=lambda: changes.append(r.status), rng=random.Random(7), **kw)  # fmt: skip
        r.start()
        try:
            yield r, changes
        finally:
            await r.stop()


def listed(r: Reflector) -> bool:
    return r.status.state is SourceState.OK and r.status.resource_version != ""


def rvs(r: Reflector) -> dict[str, str]:
    return {n: o["resourceVersion"] for n, o in r.objects.items()}


def lists_and_watches(api: KubeApiServer, plural: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    mine = [q for p, q in api.requests if p.endswith(f"/{plural}")]
    return [q for q in mine if "watch" not in q], [q for q in mine if "watch" in q]


async def test_initial_list_of_real_manifests_holds_every_object_slimmed(real_fixtures: Path) -> None:
    api = KubeApiServer()
    loaded = api.load_manifests((real_fixtures / "manifests").iterdir(), namespace=NS)
    by_ns_kind: dict[tuple[str, str], set[str]] = {}
    for o in loaded:
        by_ns_kind.setdefault((o["metadata"]["namespace"], o["kind"]), set()).add(o["metadata"]["name"])
    assert len(by_ns_kind) >= 3
    for (ns, kind), names in sorted(by_ns_kind.items()):
        async with reflecting(api, kind, ns) as (r, _):
            await until(lambda r=r: listed(r), f"{kind} in {ns} listed")  # type: ignore[misc]
            assert set(r.objects) == names
            res = BY_NAME[kind]
            assert rvs(r) == api.names(res.group, res.versions[0], res.plural, ns)
            obj = next(iter(r.objects.values()))
            # List items carry no kind/apiVersion; the reflector hands keep() them as a watch would.
            assert obj["kind"] == kind and obj["apiVersion"] in ("v1", "apps/v1")
            assert set(obj) == set(keep(kind, {"metadata": {"name": "x", "resourceVersion": "1"}}) or {})
            assert r.status.group_version == ("v1" if not res.group else f"{res.group}/v1")


async def test_added_modified_deleted_are_reflected_while_watching() -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    async with reflecting(api) as (r, changes):
        await until(lambda: listed(r), "listed")
        n = len(changes)
        api.apply(deployment("b"))
        await until(lambda: "b" in r.objects, "b added")
        api.apply(deployment("a", replicas=3))
        await until(lambda: r.objects["a"]["replicas"] == 3, "a modified")
        api.delete("Deployment", NS, "b")
        await until(lambda: "b" not in r.objects, "b deleted")
        assert rvs(r) == api.names("apps", "v1", "deployments", NS)
        assert r.status.resource_version == str(api.rv) and r.status.events == 3
        assert len(changes) - n == 3  # one on_change() per change
        assert r.status.relists == 0


@pytest.mark.parametrize("abrupt", [True, False], ids=["connection-dropped", "stream-ended"])
async def test_dropped_watch_resumes_from_its_version_missing_nothing_without_a_relist(abrupt: bool) -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    api.apply(deployment("gone"))
    async with reflecting(api) as (r, _):
        await until(lambda: listed(r) and len(api.watchers) == 1, "watching")
        rv_at_drop = r.status.resource_version
        # Nothing awaits between these lines: all three happen while no stream is open.
        assert api.close_watches(abrupt) == 1
        api.apply(deployment("b"))
        api.apply(deployment("a", replicas=5))
        api.delete("Deployment", NS, "gone")
        await until(lambda: r.status.resource_version == str(api.rv), "caught up")
        assert rvs(r) == api.names("apps", "v1", "deployments", NS)
        assert r.objects["a"]["replicas"] == 5 and "gone" not in r.objects
        assert r.status.relists == 0 and r.status.expired == 0
        lists, watches = lists_and_watches(api, "deployments")
        assert len(lists) == 1
        assert [w["resourceVersion"] for w in watches][:2] == [rv_at_drop, rv_at_drop]


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_compaction_while_disconnected_is_410_then_a_relist_equal_to_the_server(as_http: bool) -> None:
    api = KubeApiServer(expired_watch_as_http=as_http)
    for name in ("a", "b", "c"):
        api.apply(deployment(name))
    async with reflecting(api) as (r, _):
        await until(lambda: listed(r) and len(api.watchers) == 1, "watching")
        api.close_watches()
        api.delete("Deployment", NS, "b")
        api.apply(deployment("c", replicas=4))
        api.apply(deployment("d"))
        api.compact()
        await until(lambda: r.status.relists == 1, "relisted")
        await until(lambda: r.status.state is SourceState.OK, "ok again")
        assert r.status.expired == 1
        assert rvs(r) == api.names("apps", "v1", "deployments", NS)
        assert set(r.objects) == {"a", "c", "d"} and r.objects["c"]["replicas"] == 4
        api.apply(deployment("e"))  # and it watches on from the new list
        await until(lambda: "e" in r.objects, "watching after the relist")


async def test_forbidden_kind_is_unavailable_naming_the_grant_and_recovers_once_granted() -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    api.forbid("deployments", NS)
    async with reflecting(api) as (r, _):
        await until(lambda: r.status.state is SourceState.UNAVAILABLE, "unavailable")
        assert r.status.message == (
            "forbidden: grant list/watch deployments.apps (deploy/base ClusterRole skewwatch-collector)"
        )
        assert dict(r.objects) == {}
        api.allow("deployments", NS)
        await until(lambda: listed(r), "listed once allowed")
        assert set(r.objects) == {"a"}


async def test_crd_not_installed_is_unavailable_while_other_kinds_work() -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    async with reflecting(api, "InferencePool", resync_s=0.3) as (pool, _), reflecting(api) as (dep, _):
        await until(lambda: pool.status.state is SourceState.UNAVAILABLE, "pool unavailable")
        await until(lambda: listed(dep), "deployments listed")
        assert pool.status.message == (
            "InferencePool not installed "
            "(tried inference.networking.k8s.io/v1, inference.networking.x-k8s.io/v1alpha2)"
        )
        assert set(dep.objects) == {"a"}
        # Installed later (the older group only): found at the next retry.
        api.install("inference.networking.x-k8s.io", "v1alpha2", "inferencepools")
        pool_obj = {"name": "p", "namespace": NS}
        api.apply(
            {
                "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
                "kind": "InferencePool",
                "metadata": pool_obj,
                "spec": {"selector": {"app": "a"}},
            }
        )
        await until(lambda: listed(pool), "pool listed after install")
        assert pool.status.group_version == "inference.networking.x-k8s.io/v1alpha2" and set(
            pool.objects
        ) == {"p"}


async def test_httproute_served_only_as_v1beta1_falls_back_to_it() -> None:
    api = KubeApiServer()
    api.install("gateway.networking.k8s.io", "v1beta1", "httproutes")
    api.apply(httproute("r1", "v1beta1"))
    async with reflecting(api, "HTTPRoute") as (r, _):
        await until(lambda: listed(r), "listed")
        assert r.status.group_version == "gateway.networking.k8s.io/v1beta1" and set(r.objects) == {"r1"}
        api.apply(httproute("r2", "v1beta1"))
        await until(lambda: "r2" in r.objects, "watching v1beta1")
    paths = [p for p, _ in api.requests if p.endswith("/httproutes")]
    assert paths[0].startswith("/apis/gateway.networking.k8s.io/v1/") and "/v1beta1/" in paths[1]


async def test_crd_removed_while_watched_becomes_unavailable_and_drops_its_objects() -> None:
    api = KubeApiServer()
    api.install("gateway.networking.k8s.io", "v1", "httproutes")
    api.apply(httproute("r1", "v1"))
    async with reflecting(api, "HTTPRoute", resync_s=30) as (r, _):
        await until(lambda: listed(r) and len(api.watchers) == 1, "watching")
        api.uninstall("gateway.networking.k8s.io", "v1", "httproutes")
        await until(lambda: r.status.state is SourceState.UNAVAILABLE, "unavailable")
        assert "HTTPRoute not installed" in r.status.message and dict(r.objects) == {}


async def test_bookmark_advances_the_resource_version_without_changes() -> None:
    api = KubeApiServer(bookmark_interval_s=0.1)
    async with reflecting(api) as (r, changes):
        await until(lambda: listed(r), "listed")
        n = len(changes)
        api.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": NS}})
        await until(lambda: r.status.resource_version == str(api.rv), "bookmarked to the latest version")
        assert dict(r.objects) == {} and len(changes) == n


async def test_resync_relists_at_the_interval_and_watches_end_before_it() -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    async with reflecting(api, resync_s=1.0) as (r, _):
        await until(lambda: r.status.relists >= 1, "resynced", timeout_s=4)
        _, watches = lists_and_watches(api, "deployments")
        assert watches and all(w["timeoutSeconds"] == "1" for w in watches)
        assert all(w["allowWatchBookmarks"] == "true" for w in watches)
        assert set(r.objects) == {"a"} and r.status.expired == 0


async def test_huge_object_is_held_only_as_slimmed() -> None:
    api = KubeApiServer()
    api.apply(deployment("big", blob="x" * 2_000_000))
    async with reflecting(api) as (r, _):
        await until(lambda: listed(r), "listed")
        assert len(repr(dict(r.objects))) < 1000


async def test_over_long_watch_line_is_refused_with_the_typed_error_then_relisted() -> None:
    api = KubeApiServer()
    async with reflecting(api, client_args={"max_line_bytes": 64 * 1024}) as (r, changes):
        await until(lambda: listed(r) and len(api.watchers) == 1, "watching")
        api.apply(deployment("big", blob="x" * 100_000))
        await until(lambda: "big" in r.objects, "relisted (a page may be larger than a line)")
    refused = [s for s in changes if s.state is SourceState.ERROR]
    assert (
        refused
        and refused[0].message == "watch deployments.apps in ml: a watch event over 65536 bytes: refused"
    )
    assert r.status.relists == 1


async def test_kube_client_watch_refuses_an_over_long_line() -> None:
    api = KubeApiServer()
    rv = str(api.rv)
    api.apply(deployment("big", blob="x" * 100_000))
    async with serve(api) as url, KubeClient(api.config(url), max_line_bytes=50_000) as client:
        with pytest.raises(ClusterTooLarge, match="a watch event over 50000 bytes"):
            async with client.watch("/apis/apps/v1/namespaces/ml/deployments", rv, 5, "watch") as events:
                _ = [ev async for ev in events]


async def test_more_objects_than_the_cap_is_an_error_not_held() -> None:
    api = KubeApiServer()
    for i in range(3):
        api.apply(deployment(f"d{i}"))
    async with reflecting(api, max_objects=2) as (r, changes):
        await until(lambda: r.status.state is SourceState.ERROR, "refused")
        assert "more than 2 items" in r.status.message and dict(r.objects) == {}
        api.delete("Deployment", NS, "d2")
        await until(lambda: listed(r), "listed once under the cap")
        api.apply(deployment("d9"))  # a third by the watch: refused too, and what was held dropped
        await until(lambda: any("more than 2 objects" in c.message for c in changes), "refused on watch")
        refused = next(c for c in changes if "more than 2 objects" in c.message)
        assert refused.state is SourceState.ERROR and refused.objects == 0


async def test_api_server_down_is_an_error_with_backoff_and_cancellation_propagates() -> None:
    api = KubeApiServer()
    async with serve(api) as url:
        pass  # the port is free again: nothing listens
    async with KubeClient(api.config(url), timeout_s=1.0) as client:
        r = Reflector(client, BY_NAME["Deployment"], NS, keep=keep, backoff_base_s=0.01, backoff_cap_s=0.02)
        r.start()
        await until(lambda: r.status.state is SourceState.ERROR, "error")
        assert (
            "list deployments.apps in ml" in r.status.message and "ClientConnectorError" in r.status.message
        )
        task = r._task
        await r.stop()
        assert task is not None and task.cancelled()


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    client = KubeClient(KubeApiServer().config("http://127.0.0.1:1"))  # never opened: no request made
    r = Reflector(
        client,
        BY_NAME["Deployment"],
        NS,
        keep=keep,
        backoff_base_s=0.5,
        backoff_cap_s=60.0,
        rng=random.Random(1),
    )
    delays = [r._backoff() for _ in range(12)]
    ceilings = [min(60.0, 0.5 * 2**i) for i in range(12)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[8:]) > 8.0  # it does grow: 8 draws under a 60 s ceiling all below 8 s are ~0
    assert len(set(delays)) == len(delays)  # jittered, not fixed steps
