"""The cluster watch's pod-template revisions in both store backends (a SQLite file, a PostgreSQL
server; the PostgreSQL runs skip where no server can be started, as every store test does):
upsert by workload and template hash, first_seen kept and last_seen moved, the ``keep`` newest
per workload by revision number, then creation time."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import psycopg
import pytest

from collector.domain.cluster import CLUSTER_METHOD, CLUSTER_SOURCE, RevisionTemplate
from collector.store import parse_store_url, sql
from collector.store.base import FullStore
from collector.store.schema import MIGRATIONS
from skewwatch.core.facts import FactValue, Provenance

WORKLOAD = "ml/Deployment/llm"
OTHER = "ml/Deployment/embed"
DIGEST_A = "redacted:sha256:0123456789abcdef"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[FullStore]:
    s = parse_store_url(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def template(
    revision: str,
    template_hash: str,
    *,
    workload: str = WORKLOAD,
    image: str = "vllm/vllm-openai:v0.6.3",
    created_at: float = 1_000.0,
) -> RevisionTemplate:
    facts: dict[str, FactValue] = {
        "orchestration.template.image": image,
        "orchestration.template.args": ["--model", "/models/llama", "--dtype", "bfloat16"],
        "orchestration.template.env.HF_TOKEN": DIGEST_A,
        "orchestration.template.resources.limits.nvidia.com/gpu": "1",
    }
    name = f"llm-{template_hash}"
    return RevisionTemplate(
        workload=workload,
        revision=revision,
        template_hash=template_hash,
        facts=facts,
        provenance={
            k: Provenance(CLUSTER_SOURCE, CLUSTER_METHOD, f"ReplicaSet/ml/{name}@7: spec.template")
            for k in facts
        },
        created_at=created_at,
        source=f"ReplicaSet/ml/{name}@7",
    )


def clock(monkeypatch: pytest.MonkeyPatch, t: float) -> None:
    """The store's clock (first_seen / last_seen) at ``t``."""
    monkeypatch.setattr(sql, "now", lambda: t)


async def test_revisions_round_trip_with_facts_and_provenance(store: FullStore) -> None:
    a = template("1", "5d8f9c7b6a")
    assert await store.put_revisions([a], keep=10) == 1
    [back] = await store.workload_revisions(WORKLOAD)
    assert back == a
    assert (
        back.provenance["orchestration.template.image"].detail
        == "ReplicaSet/ml/llm-5d8f9c7b6a@7: spec.template"
    )
    assert await store.workload_revisions(OTHER) == []


async def test_seen_again_keeps_first_seen_moves_last_seen_and_refreshes_facts(
    store: FullStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, sql.SqlStore)
    clock(monkeypatch, 100.0)
    assert await store.put_revisions([template("1", "5d8f9c7b6a")], keep=10) == 1
    clock(monkeypatch, 250.0)
    refreshed = template("1", "5d8f9c7b6a", image="vllm/vllm-openai:v0.6.4")
    assert await store.put_revisions([refreshed], keep=10) == 0  # not new
    [row] = await store.revision_history(WORKLOAD)
    assert (row.first_seen, row.last_seen) == (100.0, 250.0)
    assert row.template.facts["orchestration.template.image"] == "vllm/vllm-openai:v0.6.4"


async def test_newest_first_by_revision_number_not_by_text_then_by_creation(store: FullStore) -> None:
    await store.put_revisions(
        [
            template("9", "aaaa9", created_at=900.0),
            template("10", "aaaa10", created_at=100.0),  # "10" < "9" as text: the number wins
            template("2", "aaaa2", created_at=2000.0),
        ],
        keep=10,
    )
    # A revision that is not a number ranks below every numbered one, then by creation time.
    await store.put_revisions([template("", "bbbb1", created_at=5000.0)], keep=10)
    assert [r.revision for r in await store.workload_revisions(WORKLOAD)] == ["10", "9", "2", ""]


async def test_keep_leaves_the_newest_of_each_workload_and_others_untouched(store: FullStore) -> None:
    await store.put_revisions([template(str(n), f"h{n}") for n in range(1, 6)], keep=10)
    await store.put_revisions(
        [template("1", "e1", workload=OTHER), template("2", "e2", workload=OTHER)], keep=10
    )
    assert await store.put_revisions([template("6", "h6")], keep=3) == 1
    assert [r.revision for r in await store.workload_revisions(WORKLOAD)] == ["6", "5", "4"]
    # the other workload was not named in that call: nothing of it was pruned
    assert [r.revision for r in await store.workload_revisions(OTHER)] == ["2", "1"]


async def test_keep_must_keep_something(store: FullStore) -> None:
    with pytest.raises(ValueError, match="keep: at least 1"):
        await store.put_revisions([template("1", "h1")], keep=0)
    assert await store.workload_revisions(WORKLOAD) == []


def test_the_revisions_table_is_an_appended_migration() -> None:
    # Migration 5, appended after the retention indexes; later ones append after it.
    [found] = [m for m in MIGRATIONS if any("CREATE TABLE workload_revisions" in s for s in m.statements)]
    assert MIGRATIONS.index(found) + 1 == 5
    assert "PRIMARY KEY (workload, template_hash)" in " ".join(found.statements)


async def test_the_table_is_created_on_both_backends_with_its_key(store_url: str, store: FullStore) -> None:
    await store.put_revisions([template("1", "h1")], keep=5)
    statement = "SELECT workload, template_hash, revision FROM workload_revisions"
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url[len("sqlite:///") :]) as conn:
            rows = conn.execute(statement).fetchall()
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(
                    "INSERT INTO workload_revisions VALUES (?, 'h1', '1', 0, 0, 0, '', '{}', '{}')",
                    (WORKLOAD,),
                )
    else:
        with psycopg.connect(store_url, autocommit=True) as conn:
            rows = conn.execute(statement).fetchall()
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(
                    "INSERT INTO workload_revisions VALUES (%s, 'h1', '1', 0, 0, 0, '', '{}', '{}')",
                    (WORKLOAD,),
                )
    assert [tuple(r) for r in rows] == [(WORKLOAD, "h1", "1")]
