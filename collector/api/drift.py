"""API routes of the drift engine: workloads, findings, diff, baselines and intents.

Handlers validate every parameter and body (``BadRequestError`` naming it; intent documents with
file, line and field of each problem) and translate to JSON; the engine itself is pure and lives
in ``collector.drift``, ``collector.intent`` and ``collector.baseline``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from collector.api import body as bodies
from collector.api.params import int_param
from collector.baseline.model import compare_config
from collector.domain.baseline import Baseline, BaselineError
from collector.domain.diff import ChangeKind, FactChange, diff_facts
from collector.domain.identity import split_workload, workload_id
from collector.domain.model import SEVERITY_ORDER, Reference, Replica, Status
from collector.domain.records import FindingQuery, IntentRecord, SnapshotRecord
from collector.domain.replicas import config_facts, differing_keys, groups, majority_group
from collector.errors import BadRequestError, ConflictError, IntentError, NotFoundError
from collector.intent.model import POLICY_KIND, Intent, parse_documents
from collector.service.evaluation import DriftService
from skewwatch.core.facts import CATEGORIES, SourceState
from skewwatch.core.identity import PodKey

log = logging.getLogger(__name__)
DRIFT: web.AppKey[DriftService] = web.AppKey("drift", DriftService)
PARSER: web.AppKey[bodies.ParsePool] = web.AppKey("parser", bodies.ParsePool)
MAX_FINDINGS_LIMIT = 1000
KINDS = ("ModelSpec", POLICY_KIND)
DIFF_MODES = ("last_good", "baseline", "intent", "revisions", "pods")
FINDING_CATEGORIES = (*CATEGORIES, "performance")


def _svc(request: web.Request) -> DriftService:
    return request.app[DRIFT]


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in allowed:  # "" too: a filter given empty is a mistake, not "any"
        raise BadRequestError(f"query parameter {name!r}: {raw[:40]!r} is not one of {', '.join(allowed)}")
    return raw


async def resolve_workload(svc: DriftService, text: str, where: str) -> str:
    """``namespace/name`` or ``namespace/kind/name`` → the stored workload id; 400/404 otherwise."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts) or len(text) > 512:
        raise BadRequestError(f"{where}: {text[:80]!r} must be NAMESPACE/NAME or NAMESPACE/KIND/NAME")
    known = await workload_ids(svc)
    if len(parts) == 3:
        if text in known:
            return text
        raise NotFoundError(f"workload {text} is not known to this collector")
    namespace, name = parts
    matches = sorted(w for w in known if split_workload(w)[0] == namespace and split_workload(w)[2] == name)
    if not matches:
        raise NotFoundError(f"workload {namespace}/{name} is not known to this collector")
    if len(matches) > 1:
        raise BadRequestError(f"{where}: {text} is ambiguous ({', '.join(matches)}); name the kind")
    return matches[0]


async def workload_ids(svc: DriftService) -> set[str]:
    return {workload_id(b.key.namespace, b.key.pod, b.workload) for b in await svc.store.pod_briefs()}


def _workload_param(request: web.Request) -> str:
    kind = request.query.get("kind")
    ns, name = request.match_info["namespace"], request.match_info["name"]
    if kind is not None and (not kind or "/" in kind):
        raise BadRequestError(
            f"query parameter 'kind': {kind[:40]!r} must be a workload kind, like Deployment"
        )
    return f"{ns}/{kind}/{name}" if kind is not None else f"{ns}/{name}"


# -- workloads ---------------------------------------------------------------------------------


async def list_workloads(request: web.Request) -> web.Response:
    svc = _svc(request)
    now = svc.clock()
    by_workload: dict[str, list[Any]] = {}
    for b in await svc.store.pod_briefs():
        by_workload.setdefault(workload_id(b.key.namespace, b.key.pod, b.workload), []).append(b)
    counts = await svc.store.open_finding_counts(now)
    baselines = {bl.workload: bl for bl in await svc.store.list_baselines()}
    out = []
    for w in sorted(by_workload):
        pods = by_workload[w]
        live = [p for p in pods if now - p.last_seen <= svc.settings.replica_stale_s]
        ns, kind, name = split_workload(w)
        base = baselines.get(w)
        out.append(
            {
                "workload": w,
                "namespace": ns,
                "kind": kind,
                "name": name,
                "replicas": len(live),
                "replicas_live": len(live),
                "state": workload_state(len(live)),
                "pods": len(pods),
                "configurations": len({p.fingerprint for p in live if p.fingerprint}),
                "last_seen": max(p.last_seen for p in pods),
                "open_findings": dict(
                    sorted(
                        ((s, n) for s, n in counts.get(w, {}).items() if s != "silenced"),
                        key=lambda kv: SEVERITY_ORDER.get(kv[0], 9),
                    )
                ),
                "silenced_findings": counts.get(w, {}).get("silenced", 0),
                "baseline_recorded_at": base.recorded_at if base else None,
            }
        )
    return web.json_response({"workloads": out})


def workload_state(live_replicas: int) -> str:
    """``serving`` while a pod of the workload was heard from within replica_stale_s, else ``no-replicas``."""
    return "serving" if live_replicas else "no-replicas"


def _replica_json(r: Replica, majority: set[str]) -> dict[str, Any]:
    return {
        "pod": r.pod,
        "fingerprint": r.fingerprint,
        "first_seen": r.first_seen,
        "last_seen": r.last_seen,
        "in_majority": r.pod in majority,
        "snapshot_id": r.snapshot_id,
        "observations": {n: o.value for n, o in sorted(r.observations[0].items())} if r.observations else {},
    }


async def get_workload(request: web.Request) -> web.Response:
    svc = _svc(request)
    workload = await resolve_workload(svc, _workload_param(request), "workload")
    ev, replicas, baseline = await svc.evaluate_only(workload)
    majority = majority_group(replicas, ev.ignore, baseline.fingerprint if baseline else None)
    members = {r.pod for r in majority}
    rep = max(majority, key=lambda r: r.last_seen) if majority else None
    facts = dict(rep.facts) if rep else {}
    expected = config_facts(facts, ev.ignore)
    divergent = sorted(
        {
            c.key
            for r in replicas
            if r.pod not in members and r.facts
            for c in diff_facts(expected, config_facts(r.facts, ev.ignore))
        }
    )
    active = await svc.store.active_findings(workload)
    resolved = await svc.store.list_findings(FindingQuery(workload=workload, status="resolved", limit=20))
    now = time.time()
    ns, kind, name = split_workload(workload)
    bound = [
        {
            "kind": i.kind,
            "name": i.name,
            "file": i.file,
            "reason": ev.bound.reasons.get(f"{i.kind}/{i.name}", ""),
        }
        for i in ev.bound.intents
    ]
    return web.json_response(
        {
            "workload": workload,
            "namespace": ns,
            "kind": kind,
            "name": name,
            "replicas": [_replica_json(r, members) for r in replicas],
            "replicas_live": len(replicas),
            "state": workload_state(len(replicas)),
            "configurations": [
                {"fingerprint": sig, "pods": sorted(r.pod for r in rs)}
                for sig, rs in sorted(groups(replicas, ev.ignore).items(), key=lambda kv: -len(kv[1]))
            ],
            "facts": {k: facts[k] for k in sorted(facts)},
            "provenance": {k: rep.provenance[k].as_dict() for k in sorted(rep.provenance)} if rep else {},
            "divergent_keys": divergent,
            "intent": {"bound": bound, "checks": [c.as_dict() for c in ev.checks]},
            "baseline": baseline.as_dict(facts=False) if baseline else None,
            "findings": [f.as_dict(now) for f in active] + [f.as_dict(now) for f in resolved],
        }
    )


# -- findings ----------------------------------------------------------------------------------


async def list_findings(request: web.Request) -> web.Response:
    svc = _svc(request)
    workload = request.query.get("workload")
    query = FindingQuery(
        workload=await resolve_workload(svc, workload, "query parameter 'workload'")
        if workload is not None
        else None,
        status=_choice(request, "status", tuple(s.value for s in Status)),
        reference=_choice(request, "reference", tuple(r.value for r in Reference)),
        category=_choice(request, "category", FINDING_CATEGORIES),
        severity=_choice(request, "severity", tuple(SEVERITY_ORDER)),
        limit=int_param(request, "limit", 100, 1, MAX_FINDINGS_LIMIT) or 100,
        before_id=int_param(request, "before", None, 1, 2**62),
    )
    rows = await svc.store.list_findings(query)
    return web.json_response(
        {
            "findings": [f.as_dict(time.time()) for f in rows],
            "next_before": rows[-1].id if len(rows) == query.limit else None,
        }
    )


async def get_finding(request: web.Request) -> web.Response:
    fid = _finding_id(request)
    found = await _svc(request).store.get_finding(fid)
    if found is None:
        raise NotFoundError(f"finding {fid} does not exist")
    finding, events = found
    return web.json_response({**finding.as_dict(time.time()), "history": [e.as_dict() for e in events]})


MAX_NOTE = 1000
# What a blank reason is made of: ASCII whitespace, as the document's pattern says (regex
# engines disagree on what else \s covers).
BLANK = " \t\n\r\f\v"
MAX_SILENCE_S = 90 * 86_400
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def is_id(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes ``²`` and ``٣``, which ``int`` refuses), at most 18."""
    return text.isascii() and text.isdigit() and 0 < len(text) <= 18


def _finding_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not is_id(raw) or int(raw) < 1:
        raise BadRequestError(f"finding id {raw[:32]!r} is not a positive integer")
    return int(raw)


def parse_duration(value: object, where: str) -> float:
    """Seconds from a number or ``30m`` / ``2h`` / ``7d``; BadRequestError naming ``where``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and is_id(value[:-1]) and value[-1:] in _DURATION and len(value) <= 12:
        seconds = float(value[:-1]) * _DURATION[value[-1]]
    else:
        raise BadRequestError(f"{where}: expected seconds or a duration like 30m, 2h, 7d, got {value!r}")
    if not 0 < seconds <= MAX_SILENCE_S:
        raise BadRequestError(f"{where}: must be more than 0 and at most 90 days")
    return seconds


def _note(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict) or set(body) - allowed:
        raise BadRequestError(f"body: expected a JSON object with {', '.join(sorted(allowed))}")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip(BLANK) or len(reason) > MAX_NOTE:
        raise BadRequestError(f"body.reason: a non-empty string of at most {MAX_NOTE} characters is required")
    by = body.get("by", "")
    if not isinstance(by, str) or len(by) > 200:
        raise BadRequestError("body.by: a string of at most 200 characters")
    return {"reason": reason.strip(BLANK), "by": by}


async def _set_note(
    request: web.Request, field: str, value: dict[str, Any] | None, event: str
) -> web.Response:
    svc = _svc(request)
    fid = _finding_id(request)
    f = await svc.store.set_finding_note(fid, field, value, event, svc.clock())
    if f is None:
        raise NotFoundError(f"finding {fid} does not exist")
    log.info("finding %d %s%s", fid, event, f": {value['reason']}" if value else "")
    return web.json_response(f.as_dict(svc.clock()))


async def ack_finding(request: web.Request) -> web.Response:
    """Acknowledge: someone has seen it and is on it. It stays open and counts as before."""
    note = _note(await bodies.read_json(request), {"reason", "by"})
    return await _set_note(request, "ack", {**note, "at": _svc(request).clock()}, "acknowledged")


async def unack_finding(request: web.Request) -> web.Response:
    return await _set_note(request, "ack", None, "unacknowledged")


async def silence_finding(request: web.Request) -> web.Response:
    """Silence until a time: the finding stays listed (and keeps its lifecycle) but counts apart."""
    body = await bodies.read_json(request)
    note = _note(body, {"reason", "by", "for", "until"})
    now = _svc(request).clock()
    if ("for" in body) == ("until" in body):
        raise BadRequestError("body: give exactly one of 'for' (a duration) or 'until' (Unix time)")
    if "for" in body:
        until = now + parse_duration(body["for"], "body.for")
    else:
        raw = body["until"]
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            raise BadRequestError("body.until: Unix time in seconds")
        until = now + parse_duration(float(raw) - now, "body.until - now")
    return await _set_note(request, "silence", {**note, "at": now, "until": until}, "silenced")


async def unsilence_finding(request: web.Request) -> web.Response:
    return await _set_note(request, "silence", None, "unsilenced")


# -- diff --------------------------------------------------------------------------------------


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c.as_dict() for c in diff_facts(config_facts(before, ()), config_facts(after, ()))]


async def diff(request: web.Request) -> web.Response:
    svc = _svc(request)
    raw_workload = request.query.get("workload")
    if not raw_workload:
        raise BadRequestError("query parameter 'workload' is required (NAMESPACE/NAME)")
    modes = [m for m in DIFF_MODES if m in request.query]
    if len(modes) != 1:
        raise BadRequestError(
            f"give exactly one of {', '.join(DIFF_MODES)} (got {', '.join(modes) or 'none'})"
        )
    mode = modes[0]
    workload = await resolve_workload(svc, raw_workload, "query parameter 'workload'")
    ev, replicas, baseline = await svc.evaluate_only(workload)
    majority = majority_group(replicas, ev.ignore, baseline.fingerprint if baseline else None)
    rep = max(majority, key=lambda r: r.last_seen) if majority else None
    out: dict[str, Any] = {"workload": workload, "mode": mode, "from": None, "to": None, "changes": []}
    if mode == "intent":
        drifting = [c for c in ev.checks if c.status == "drift"]
        out["from"] = {
            "label": ", ".join(f"{i.kind}/{i.name}" for i in ev.bound.intents) or "no intent bound"
        }
        out["to"] = {"label": f"{len(replicas)} live replicas"}
        out["checks"] = [c.as_dict() for c in ev.checks]
        out["changes"] = [
            FactChange(c.target or c.field, ChangeKind.CHANGED, c.expected, _most(c.pods)).as_dict()
            for c in drifting
        ]
        return web.json_response(out)
    if mode == "pods":
        names = [p for p in request.query["pods"].split(",") if p]
        if len(names) != 2:
            raise BadRequestError("query parameter 'pods': give two pod names, P1,P2")
        by_pod = {r.pod: r for r in replicas}
        for n in names:
            if n not in by_pod:
                raise NotFoundError(f"pod {n} is not a live replica of {workload}")
        a, b = by_pod[names[0]], by_pod[names[1]]
        out["from"] = {"label": f"pod {a.pod}", "snapshot_id": a.snapshot_id}
        out["to"] = {"label": f"pod {b.pod}", "snapshot_id": b.snapshot_id}
        out["changes"] = _changes(a.facts, b.facts)
        return web.json_response(out)
    if mode == "revisions":
        ids = request.query["revisions"].split(",")
        if len(ids) != 2 or not all(is_id(i) for i in ids):
            raise BadRequestError(
                "query parameter 'revisions': give two snapshot ids, A,B (see skewwatch history)"
            )
        pods = {r.pod for r in replicas}
        snaps = []
        for i in ids:
            snap = await svc.store.get_snapshot(int(i))
            if snap is None:
                raise NotFoundError(f"snapshot {i} does not exist")
            rec = await svc.store.get_pod(snap.key)
            owner = workload_id(snap.key.namespace, snap.key.pod, rec.identity.workload) if rec else ""
            if owner != workload and snap.key.pod not in pods:
                raise BadRequestError(f"snapshot {i} belongs to {snap.key}, not to a pod of {workload}")
            snaps.append(snap)
        out["from"] = {"label": f"snapshot {snaps[0].id} of {snaps[0].key}", "snapshot_id": snaps[0].id}
        out["to"] = {"label": f"snapshot {snaps[1].id} of {snaps[1].key}", "snapshot_id": snaps[1].id}
        out["changes"] = _changes(snaps[0].facts, snaps[1].facts)
        return web.json_response(out)
    if rep is None:
        raise NotFoundError(f"workload {workload} has no live replica with a snapshot")
    out["to"] = {"label": f"current configuration (pod {rep.pod})", "snapshot_id": rep.snapshot_id}
    if mode == "baseline":
        if baseline is None:
            raise NotFoundError(
                f"workload {workload} has no baseline; record one with POST /api/v1/baselines/..."
            )
        out["from"] = {"label": f"baseline {baseline.id} ({baseline.origin})", "baseline_id": baseline.id}
        out["changes"] = _changes(baseline.facts, rep.facts)
        return web.json_response(out)
    good = await last_good(svc, workload, rep, replicas=replicas, baseline=baseline, ignore=ev.ignore)
    if good.snapshot is not None:
        out["from"] = {
            "label": f"last-good configuration of pod {rep.pod} (snapshot {good.snapshot.id})",
            "snapshot_id": good.snapshot.id,
            "why": good.why,
        }
        out["changes"] = _changes(good.snapshot.facts, rep.facts)
    elif baseline is not None:
        out["from"] = {"label": f"baseline {baseline.id} ({baseline.origin})", "baseline_id": baseline.id,
                       "why": good.why}  # fmt: skip
        out["changes"] = _changes(baseline.facts, rep.facts)
    else:
        out["from"] = {"label": "no good configuration stored for this replica", "why": good.why}
    return web.json_response(out)


LAST_GOOD_DEPTH = 100


@dataclass(frozen=True)
class LastGood:
    snapshot: SnapshotRecord | None
    why: str


async def last_good(
    svc: DriftService,
    workload: str,
    rep: Replica,
    *,
    replicas: list[Replica],
    baseline: Baseline | None,
    ignore: Sequence[str],
) -> LastGood:
    """The newest stored configuration of ``rep`` that broke no baseline or peer check.

    Intent is not asked: a violation that persisted all along would leave nothing good, and
    what the question wants is the configuration that last *worked*. A row is judged as the
    drift engine would judge a replica reporting it now: against the workload's baseline and
    against the majority of the other live replicas. Rows taken while a source that is healthy
    now had failed (a collection during a restart) are incomplete and skipped. When no stored
    row qualifies, the recorded baseline stands in for it.
    """
    others = [r for r in replicas if r.pod != rep.pod and r.facts]
    majority = majority_group(others, ignore, baseline.fingerprint if baseline else None)
    ref = max(majority, key=lambda r: r.last_seen) if majority else None
    unhealthy_now = {n for n, st in rep.sources.items() if st.state is not SourceState.OK}
    skipped = 0
    for row in await svc.store.history(PodKey(split_workload(workload)[0], rep.pod), LAST_GOOD_DEPTH):
        if {n for n, st in row.sources.items() if st.state is not SourceState.OK} - unhealthy_now:
            skipped += 1
            continue  # incomplete
        seen = Replica(rep.pod, row.facts, row.provenance, row.sources, row.fingerprint.overall)
        if baseline is not None and compare_config(baseline, [seen], ignore):
            skipped += 1
            continue
        if ref is not None and differing_keys(ref, seen, ignore):
            skipped += 1
            continue
        checks = []
        if baseline is not None:
            checks.append(f"matches baseline {baseline.id} ({baseline.origin})")
        if ref is not None:
            checks.append(
                f"matches the majority of the other replicas ({', '.join(sorted(r.pod for r in majority))})"
            )
        if not checks:
            checks.append("no baseline and no other replica to break: the newest complete configuration")
        current = " (the current configuration)" if row.fingerprint.overall == rep.fingerprint else ""
        return LastGood(
            row,
            f"snapshot {row.id}{current}, received {_iso(row.received_at)}: complete, "
            + " and ".join(checks)
            + (
                f"; {skipped} newer stored configuration(s) broke a check or were incomplete"
                if skipped
                else ""
            ),
        )
    if baseline is not None:
        return LastGood(
            None,
            f"none of the newest {LAST_GOOD_DEPTH} stored configurations of pod {rep.pod} keeps the baseline "
            f"and the peers: the recorded baseline {baseline.id} is the last known good",
        )
    return LastGood(
        None, f"none of the stored configurations of pod {rep.pod} is complete and matches its peers"
    )


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _most(pods: Mapping[str, Any]) -> Any:
    values = list(pods.values())
    return max(values, key=values.count) if values else None


# -- baselines ---------------------------------------------------------------------------------


async def list_baselines(request: web.Request) -> web.Response:
    svc = _svc(request)
    raw = request.query.get("workload")
    workload = await resolve_workload(svc, raw, "query parameter 'workload'") if raw is not None else None
    rows = await svc.store.list_baselines(workload)
    return web.json_response({"baselines": [b.as_dict(facts=False) for b in rows]})


async def get_baseline(request: web.Request) -> web.Response:
    svc = _svc(request)
    workload = await resolve_workload(svc, _workload_param(request), "workload")
    rows = await svc.store.list_baselines(workload, limit=50)
    if not rows:
        raise NotFoundError(f"workload {workload} has no baseline")
    return web.json_response(
        {
            "workload": workload,
            "baseline": rows[0].as_dict(),
            "history": [b.as_dict(facts=False) for b in rows[1:]],
        }
    )


async def post_baseline(request: web.Request) -> web.Response:
    svc = _svc(request)
    note = ""
    if request.can_read_body:  # the body first: a bad one is 400 whatever the workload
        body = await bodies.read_json(request)
        if not isinstance(body, dict) or set(body) - {"note"} or not isinstance(body.get("note", ""), str):
            raise BadRequestError('body: expected {"note": "..."} or nothing')
        note = str(body.get("note", ""))[:500]
    workload = await resolve_workload(svc, _workload_param(request), "workload")
    try:
        b = await svc.record(workload, origin="manual", note=note)
    except BaselineError as e:
        raise ConflictError(str(e)) from e
    return web.json_response({"workload": workload, "baseline": b.as_dict()}, status=201)


# -- intents -----------------------------------------------------------------------------------


def _intent_json(i: Intent) -> dict[str, Any]:
    return {"kind": i.kind, "name": i.name, "file": i.file, "document": i.data}


async def list_intents(request: web.Request) -> web.Response:
    reg = _svc(request).registry
    return web.json_response(
        {
            "intents": reg.listing(),
            "errors": [e.as_dict() for e in reg.errors()],
            "directory": str(reg.directory) if reg.directory else None,
        }
    )


async def _parse_body(request: web.Request, label: str) -> list[Intent]:
    """Read, decode, then parse and validate off the event loop (YAML is pure Python: a 200 kB
    document takes a good part of a second of CPU)."""
    text = await bodies.read_text(request, request.app[bodies.LIMITS].max_intent_bytes)
    if not text.strip():
        raise BadRequestError("body: an intent document (YAML or JSON) is required")
    try:
        intents = await request.app[PARSER].run("intent body", parse_documents, text, label)
    except IntentError as e:
        raise IntentBadRequest(e) from e
    if not intents:
        raise BadRequestError("body: no intent document in it (only empty or null documents)")
    return intents


class IntentBadRequest(BadRequestError):
    """A posted intent breaks its schema; the response lists each issue with line and field."""

    def __init__(self, error: IntentError) -> None:
        super().__init__(str(error))
        self.issues = [i.as_dict() for i in error.issues]


async def _store_intents(svc: DriftService, intents: list[Intent]) -> None:
    for i in intents:
        await svc.store.put_intent(IntentRecord(i.kind, i.name, json.dumps(i.data), svc.clock()))
        svc.registry.put_api(i)
    svc.schedule_all()


async def post_intents(request: web.Request) -> web.Response:
    svc = _svc(request)
    intents = await _parse_body(request, "api:POST /api/v1/intents")
    existing = {(i.kind, i.name) for i in svc.registry.intents()}
    clash = [f"{i.kind}/{i.name}" for i in intents if (i.kind, i.name) in existing]
    if clash:
        raise ConflictError(
            f"{', '.join(clash)} already exist; PUT /api/v1/intents/{{kind}}/{{name}} replaces"
        )
    await _store_intents(svc, intents)
    return web.json_response({"created": [_intent_json(i) for i in intents]}, status=201)


def _kind_name(request: web.Request) -> tuple[str, str]:
    kind, name = request.match_info["kind"], request.match_info["name"]
    if kind not in KINDS:
        raise BadRequestError(f"kind {kind[:40]!r} is not one of {', '.join(KINDS)}")
    return kind, name


async def get_intent(request: web.Request) -> web.Response:
    kind, name = _kind_name(request)
    found = _svc(request).registry.get(kind, name)
    if found is None:
        raise NotFoundError(f"{kind} {name} is not loaded")
    return web.json_response(_intent_json(found))


async def put_intent(request: web.Request) -> web.Response:
    svc = _svc(request)
    kind, name = _kind_name(request)
    intents = await _parse_body(request, f"api:PUT /api/v1/intents/{kind}/{name}")
    if len(intents) != 1 or intents[0].kind != kind or intents[0].name != name:
        got = ", ".join(f"{i.kind}/{i.name}" for i in intents)
        raise BadRequestError(f"body: must be exactly one {kind} named {name!r}, got {got}")
    created = svc.registry.get(kind, name) is None
    await _store_intents(svc, intents)
    return web.json_response(_intent_json(intents[0]), status=201 if created else 200)


async def delete_intent(request: web.Request) -> web.Response:
    svc = _svc(request)
    kind, name = _kind_name(request)
    if not await svc.store.delete_intent(kind, name):
        found = svc.registry.get(kind, name)
        if found is not None:
            raise ConflictError(
                f"{kind} {name} comes from the intents directory ({found.file}); remove the file"
            )
        raise NotFoundError(f"{kind} {name} was not posted through the API")
    svc.registry.delete_api(kind, name)
    svc.schedule_all()
    return web.json_response({"deleted": {"kind": kind, "name": name}})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/workloads", list_workloads)
    r.add_get("/api/v1/workloads/{namespace}/{name}", get_workload)
    r.add_get("/api/v1/findings", list_findings)
    r.add_get("/api/v1/findings/{id}", get_finding)
    r.add_post("/api/v1/findings/{id}/ack", ack_finding)
    r.add_delete("/api/v1/findings/{id}/ack", unack_finding)
    r.add_post("/api/v1/findings/{id}/silence", silence_finding)
    r.add_delete("/api/v1/findings/{id}/silence", unsilence_finding)
    r.add_get("/api/v1/diff", diff)
    r.add_get("/api/v1/baselines", list_baselines)
    r.add_get("/api/v1/baselines/{namespace}/{name}", get_baseline)
    r.add_post("/api/v1/baselines/{namespace}/{name}", post_baseline)
    r.add_get("/api/v1/intents", list_intents)
    r.add_post("/api/v1/intents", post_intents)
    r.add_get("/api/v1/intents/{kind}/{name}", get_intent)
    r.add_put("/api/v1/intents/{kind}/{name}", put_intent)
    r.add_delete("/api/v1/intents/{kind}/{name}", delete_intent)
