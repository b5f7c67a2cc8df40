"""JSON shapes of the pod routes, from the service's typed results. Pure: no aiohttp, no I/O.

The pod detail keeps the field names of ``skewwatch facts`` JSON (facts, provenance,
observations, sources, fingerprint) so tools can read either. A ``PodView``'s ``Liveness``
carries what the store does not know: the time, the stale threshold, the pod's live streams and
refused claims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from collector.domain.diff import diff_facts
from collector.domain.records import ObservationsRecord
from collector.service.pods import PodHistory, PodView
from skewwatch.core.facts import Provenance, SourceState, SourceStatus

JSON = dict[str, Any]


def source_states(sources: Mapping[str, SourceStatus]) -> dict[str, int]:
    counts = {s.value: 0 for s in SourceState}
    for status in sources.values():
        counts[status.state.value] += 1
    return counts


def _provenance(p: Mapping[str, Provenance]) -> JSON:
    return {k: p[k].as_dict() for k in sorted(p)}


def _sources(s: Mapping[str, SourceStatus]) -> JSON:
    return {n: s[n].as_dict() for n in sorted(s)}


def pod_summary(view: PodView) -> JSON:
    rec, live = view.record, view.liveness
    i = rec.identity
    sources = rec.current.sources if rec.current is not None else {}
    return {
        "namespace": i.namespace,
        "pod": i.pod,
        "node": i.node,
        "workload": i.workload,
        "workload_source": i.workload_source,
        "first_seen": rec.first_seen,
        "last_seen": rec.last_seen,
        **live.fields(rec),
        "fingerprint": rec.fingerprint,
        "source_states": source_states(sources),
        "live_streams": len(live.streams),
        "conflicts": dict(live.conflicts),
        "engine": rec.engine.as_dict() if rec.engine else None,
    }


def pod_detail(view: PodView) -> JSON:
    rec, live, observations = view.record, view.liveness, view.observations
    i = rec.identity
    cur = rec.current
    out: JSON = {
        "namespace": i.namespace,
        "pod": i.pod,
        "node": i.node,
        "workload": i.workload,
        "workload_source": i.workload_source,
        "agent": {"id": i.agent_id, "version": i.agent_version},
        "first_seen": rec.first_seen,
        "last_seen": rec.last_seen,
        **live.fields(rec),
        "last_sequence": rec.last_sequence,
        "streams": [dict(s) for s in live.streams],
        "conflicts": dict(live.conflicts),
        "engine": rec.engine.as_dict() if rec.engine else None,
        "snapshot": None,
        "facts": {},
        "provenance": {},
        "sources": {},
        "fingerprint": None,
        "observations": {},
        "observations_at": None,
        "observations_window_seconds": None,
    }
    if cur is not None:
        out["snapshot"] = {
            "id": rec.current_snapshot_id,
            "sequence": cur.sequence,
            "collected_at": cur.collected_at,
            "received_at": cur.received_at,
        }
        out["facts"] = {k: cur.facts[k] for k in sorted(cur.facts)}
        out["provenance"] = _provenance(cur.provenance)
        out["sources"] = _sources(cur.sources)
        out["fingerprint"] = cur.fingerprint.as_dict()
    if observations is not None:
        out["observations"] = {
            n: {"value": o.value, "unit": o.unit} for n, o in sorted(observations.items.items())
        }
        out["observations_at"] = observations.at
        out["observations_window_seconds"] = observations.window_s
    return out


def observation_series(rows: Sequence[ObservationsRecord]) -> list[JSON]:
    """Stored observation windows, newest first: each one's end, length and values by name."""
    return [
        {
            "at": r.at,
            "window_seconds": r.window_s,
            "values": {n: o.value for n, o in sorted(r.items.items())},
        }
        for r in rows
    ]


def history(page: PodHistory) -> JSON:
    """The page's shown rows, each with its changes against the next older row."""
    rows, limit = page.rows, page.limit
    snapshots = []
    for idx, snap in enumerate(page.shown):
        previous = rows[idx + 1] if idx + 1 < len(rows) else None
        entry: JSON = {
            "id": snap.id,
            "sequence": snap.sequence,
            "agent_id": snap.agent_id,
            "collected_at": snap.collected_at,
            "received_at": snap.received_at,
            "fingerprint": snap.fingerprint.as_dict(),
            "previous_id": previous.id if previous is not None else None,
            "changes": [c.as_dict() for c in diff_facts(previous.facts if previous else {}, snap.facts)],
        }
        if page.include_facts:
            entry["facts"] = {k: snap.facts[k] for k in sorted(snap.facts)}
            entry["provenance"] = _provenance(snap.provenance)
            entry["sources"] = _sources(snap.sources)
        snapshots.append(entry)
    return {
        "namespace": page.key.namespace,
        "pod": page.key.pod,
        "limit": limit,
        "snapshots": snapshots,
        # Pass as ?before= to page further back; null when this page reaches the first snapshot.
        "next_before": page.next_before,
        "events": [e.as_dict() for e in page.events],
    }
