"""GET /api/v1/findings through a real collector: each filter alone and combined, the time range in
both forms, bad values, and a cursor that is exact across pages; every answer checked against the
served OpenAPI document.

The findings are written with the store's own write (``apply_findings``, one transaction, as an
evaluation writes them) through a second connection to the collector's SQLite file, so their
workloads, statuses and ``last_seen`` times are known exactly. None of their workloads has a pod,
or (``ml/Deployment/llm``, which has one so ``workload=ml/llm`` resolves) they are resolved: an
evaluation reconciles only a workload's pending and open findings, so none is touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from collector.domain.model import ChangeKind, FindingChange, FindingRecord, Status
from collector.store.sqlite import SqliteStore
from tests.support.collector import (
    BASE_FACTS,
    Running,
    hello_msg,
    make_snapshot,
    settings_for,
    snapshot_msg,
    started,
)
from tests.support.openapi import DOC, conforms

TIMEOUT = aiohttp.ClientTimeout(total=10)
T0 = 1796119200.0  # 2026-12-01T10:00:00Z
T0_RFC3339 = "2026-12-01T10:00:00Z"

# id (insertion order): workload, status, category, severity, reference, last_seen
SEEDS: list[tuple[str, str, str, str, str, float]] = [
    ("ml/Deployment/llm", "resolved", "runtime", "high", "baseline", T0 - 3600),  # 1
    ("ml/Deployment/chat", "open", "hardware", "critical", "peers", T0 - 1800),  # 2
    ("prod/Deployment/llm", "open", "runtime", "high", "intent", T0),  # 3
    ("ml/Deployment/llm", "resolved", "model", "medium", "intent", T0 + 60),  # 4
    ("ml-prod/Deployment/llm", "open", "runtime", "low", "peers", T0 + 120),  # 5: not in "ml"
    ("ml/StatefulSet/db", "open", "performance", "info", "baseline", T0 + 600),  # 6
    ("ml/Deployment/chat", "resolved", "runtime", "high", "peers", T0 + 3600),  # 7
    ("m_/Deployment/x", "open", "serving", "low", "intent", T0 + 7200),  # 8: "_" is no wildcard
]
# Pagination: namespace "pg", open and resolved interleaved with findings of other namespaces.
PAGED = 9  # pg findings, ids 9.. (every third resolved)


def finding(i: int, workload: str, status: str, category: str, severity: str, reference: str,
            last_seen: float) -> FindingRecord:  # fmt: skip
    return FindingRecord(
        id=0,
        workload=workload,
        reference=reference,
        key=f"{category}.seeded_{i}",
        category=category,
        severity=severity,
        status=Status(status),
        expected="a",
        actual="b",
        pods={"p-0": "b"},
        message=f"seeded {i}",
        source="test",
        hint="",
        symptom="",
        evidence={},
        first_seen=last_seen - 10,
        last_seen=last_seen,
        opened_at=last_seen - 10 if status != "pending" else None,
        resolved_at=last_seen if status == "resolved" else None,
        hits=1,
        references=(reference,),
        resolution="fixed" if status == "resolved" else "",
    )


def seeds() -> list[FindingRecord]:
    rows = [finding(i + 1, *s) for i, s in enumerate(SEEDS)]
    for j in range(PAGED):
        status = "resolved" if j % 3 == 2 else "open"
        rows.append(finding(100 + j, f"pg/Deployment/w{j}", status, "runtime", "high", "peers", T0 + j))
        if j % 2:  # an unrelated row between them: ids of one filter's matches are not contiguous
            rows.append(finding(200 + j, f"other/Deployment/w{j}", "open", "runtime", "high", "peers", T0))
    return rows


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Running, aiohttp.ClientSession, dict[str, int]]]:
    settings = settings_for(tmp_path, baseline_stable_s=0, shutdown_grace_s=0.5)
    async with (
        started(settings, tmp_path) as running,
        aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as http,
    ):
        s = running.stream()
        await s.exchange(hello_msg(1))  # ml/Deployment/llm has a pod: workload=ml/llm resolves
        await s.exchange(snapshot_msg(2, make_snapshot(BASE_FACTS)))
        assert running.collector.drift is not None
        await running.collector.drift.settled()
        store = SqliteStore(running.db)
        await store.open()
        try:
            written = await store.apply_findings([FindingChange(ChangeKind.OPENED, f) for f in seeds()])
        finally:
            await store.close()
        ids = {f.message: f.id for f in written}
        yield running, http, ids


async def get(http: aiohttp.ClientSession, query: str | URL, status: int = 200) -> Any:
    url = query if isinstance(query, URL) else f"/api/v1/findings{query}"
    async with http.get(url) as r:
        body = await r.json()
        assert r.status == status, body
    conforms(body, DOC["paths"]["/api/v1/findings"]["get"]["responses"][str(status)]["content"][
        "application/json"]["schema"])  # fmt: skip
    return body


def seeded(body: Any) -> list[int]:
    """The seed numbers (1-based, as in SEEDS) of a page's findings, in the order given."""
    return [int(f["message"].removeprefix("seeded ")) for f in body["findings"]]


async def test_without_filters_every_finding_is_listed_newest_first(served: Any) -> None:
    _, http, ids = served
    body = await get(http, "?limit=1000")
    got = [f["id"] for f in body["findings"]]
    assert got == sorted(ids.values(), reverse=True) and (body["more"], body["next_before"]) == (False, None)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # namespace: every workload in it, and no other namespace sharing its prefix (ml-prod) or
        # matching it as a pattern (m_)
        ("?namespace=ml", [7, 6, 4, 2, 1]),
        ("?namespace=m_", [8]),
        ("?namespace=ml-prod", [5]),
        ("?namespace=absent", []),
        ("?workload=ml/llm", [4, 1]),
        ("?status=resolved&namespace=ml", [7, 4, 1]),
        ("?state=resolved&namespace=ml", [7, 4, 1]),  # the alias
        ("?state=open&status=open&namespace=ml", [6, 2]),  # both, agreeing
        ("?category=runtime&namespace=ml", [7, 1]),
        ("?severity=high&namespace=ml", [7, 1]),
        ("?reference=intent&namespace=ml", [4]),
        # time range on last_seen: since inclusive, until exclusive
        (f"?since={T0_RFC3339}&namespace=ml", [7, 6, 4]),
        (f"?since={int(T0)}&namespace=ml", [7, 6, 4]),
        (f"?until={T0_RFC3339}&namespace=ml", [2, 1]),
        (f"?until={T0 + 60}&namespace=ml", [2, 1]),
        (f"?since={T0 - 1800}&until={T0 + 600.5}&namespace=ml", [6, 4, 2]),
        ("?since=2026-12-01T11:00:00%2B01:00&until=2026-12-01T05:01:01-05:00&namespace=ml", [4]),
        ("?since=2026-12-01t10:00:59.999999z&until=2026-12-01T10:01:00.000001Z&namespace=ml", [4]),
        ("?since=2026-12-01T10:00:00Z&until=2026-12-01T10:00:00Z", []),  # an empty range
        # combined
        (f"?namespace=ml&status=open&category=hardware&since={T0 - 1800}", [2]),
        (f"?workload=ml/llm&state=resolved&reference=intent&until={T0 + 61}", [4]),
        (f"?namespace=ml&status=open&severity=critical&since={T0 - 1799}", []),
    ],
)
async def test_each_filter_alone_and_combined(served: Any, query: str, expected: list[int]) -> None:
    _, http, _ = served
    body = await get(http, query)
    assert seeded(body) == expected, body
    assert (body["more"], body["next_before"]) == (False, None)


async def test_an_unencoded_plus_in_an_offset_still_reads_as_plus(served: Any) -> None:
    # '+' in a query string decodes to a space; an offset is the one place a space can stand for it.
    _, http, _ = served
    url = URL("/api/v1/findings?namespace=ml&since=2026-12-01T11:00:00+01:00", encoded=True)
    assert seeded(await get(http, url)) == [7, 6, 4]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?since=yesterday", "since"),
        ("?since=2026-12-01", "since"),  # a date is no moment
        ("?since=2026-12-01T10:00:00", "since"),  # no offset: whose 10:00?
        ("?until=2026-02-30T00:00:00Z", "until"),
        ("?until=2026-12-01T24:00:00Z", "until"),
        ("?since=1e9", "since"),
        ("?since=-5", "since"),
        ("?until=123456789012", "until"),  # 12 digits: past the year 5138
        ("?since=", "since"),
        ("?namespace=", "namespace"),
        ("?namespace=ml/llm", "namespace"),
        ("?state=bogus", "state"),
        ("?status=open&state=resolved", "state"),
        ("?before=0", "before"),
        ("?limit=1001", "limit"),
    ],
)
async def test_bad_values_are_400_naming_the_parameter(served: Any, query: str, parameter: str) -> None:
    _, http, _ = served
    body = await get(http, query, 400)
    assert f"'{parameter}'" in body["error"]["message"], body
    assert body["error"]["code"] == "bad_request"


async def pages(http: aiohttp.ClientSession, query: str) -> list[Any]:
    out = [await get(http, query)]
    while out[-1]["more"]:
        assert len(out) < 10, "the cursor does not end"
        out.append(await get(http, f"{query}&before={out[-1]['next_before']}"))
    return out


async def test_three_pages_end_exactly_when_the_last_one_is_full(served: Any) -> None:
    _, http, ids = served
    # 6 open pg findings, limit 2: three full pages, and the third says there is nothing more.
    got = await pages(http, "?namespace=pg&status=open&limit=2")
    assert [len(p["findings"]) for p in got] == [2, 2, 2]
    assert [p["more"] for p in got] == [True, True, False]
    assert [p["next_before"] for p in got] == [
        got[0]["findings"][-1]["id"],
        got[1]["findings"][-1]["id"],
        None,
    ]
    expected = sorted((ids[f"seeded {100 + j}"] for j in range(PAGED) if j % 3 != 2), reverse=True)
    assert [f["id"] for p in got for f in p["findings"]] == expected


async def test_three_pages_with_a_short_last_one(served: Any) -> None:
    _, http, ids = served
    got = await pages(http, "?namespace=pg&limit=4")
    assert [(len(p["findings"]), p["more"]) for p in got] == [(4, True), (4, True), (1, False)]
    assert got[-1]["next_before"] is None
    assert [f["id"] for p in got for f in p["findings"]] == sorted(
        (ids[f"seeded {100 + j}"] for j in range(PAGED)), reverse=True
    )


async def test_a_time_range_pages_in_the_store_query(served: Any) -> None:
    # The range keeps pg findings 2..7 (last_seen T0+2 .. T0+7 exclusive of T0+8); paged by 2,
    # each page is full until the range is exhausted.
    _, http, ids = served
    got = await pages(http, f"?namespace=pg&since={T0 + 2}&until=2026-12-01T10:00:08Z&limit=2")
    assert [(len(p["findings"]), p["more"]) for p in got] == [(2, True), (2, True), (2, False)]
    assert [f["id"] for p in got for f in p["findings"]] == sorted(
        (ids[f"seeded {100 + j}"] for j in range(2, 8)), reverse=True
    )
