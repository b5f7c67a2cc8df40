"""API routes of the drift engine: workloads (and their pod-template revisions), the cluster
watch's report, findings, diff, baselines and intents.

Handlers validate every parameter and body (``BadRequestError`` naming it; intent documents with
file, line and field of each problem), call one method of ``collector.service.queries.Queries``
and serialise its typed answer; the queries and the engine behind them hold the logic.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from collector.api import body as bodies
from collector.api.params import int_param, segment_param, time_param
from collector.domain.model import SEVERITY_ORDER, Reference, Status
from collector.domain.records import FindingQuery
from collector.errors import BadRequestError, IntentError
from collector.intent.model import POLICY_KIND, Intent, parse_documents
from collector.service.queries import (
    DIFF_MODES,
    DiffRequest,
    Queries,
    intent_json,
    is_snapshot_id,
    parse_revision_ref,
)
from skewwatch.core.facts import CATEGORIES

log = logging.getLogger(__name__)
QUERIES: web.AppKey[Queries] = web.AppKey("queries", Queries)
PARSER: web.AppKey[bodies.ParsePool] = web.AppKey("parser", bodies.ParsePool)
MAX_FINDINGS_LIMIT = 1000
KINDS = ("ModelSpec", POLICY_KIND)
FINDING_CATEGORIES = (*CATEGORIES, "performance")


def _q(request: web.Request) -> Queries:
    return request.app[QUERIES]


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in allowed:  # "" too: a filter given empty is a mistake, not "any"
        raise BadRequestError(f"query parameter {name!r}: {raw[:40]!r} is not one of {', '.join(allowed)}")
    return raw


def _workload_param(request: web.Request) -> str:
    kind = request.query.get("kind")
    ns, name = request.match_info["namespace"], request.match_info["name"]
    if kind is not None and (not kind or "/" in kind):
        raise BadRequestError(
            f"query parameter 'kind': {kind[:40]!r} must be a workload kind, like Deployment"
        )
    return f"{ns}/{kind}/{name}" if kind is not None else f"{ns}/{name}"


async def path_workload(request: web.Request) -> str:
    """The workload id the path's ``{namespace}/{name}`` (and ``?kind=``) names; 404 or 400 otherwise."""
    return await _q(request).resolve_workload(_workload_param(request), "workload")


async def _workload_query(request: web.Request) -> str | None:
    raw = request.query.get("workload")
    if raw is None:
        return None
    return await _q(request).resolve_workload(raw, "query parameter 'workload'")


# -- workloads ---------------------------------------------------------------------------------


async def list_workloads(request: web.Request) -> web.Response:
    rows = [w.as_dict() for w in await _q(request).workloads()]
    return web.json_response(bodies.bounded(request, "workloads", rows))


async def get_workload(request: web.Request) -> web.Response:
    view = await _q(request).workload(await path_workload(request))
    return web.json_response(view.as_dict())


async def get_revisions(request: web.Request) -> web.Response:
    """The workload's stored pod-template revisions, newest first (at most cluster_revisions_keep)."""
    revisions = await _q(request).revisions(await path_workload(request))
    return web.json_response(revisions.as_dict())


async def get_cluster(request: web.Request) -> web.Response:
    """The cluster watch's report: available, a message, each kind's state."""
    return web.json_response(_q(request).cluster_status())


# -- findings ----------------------------------------------------------------------------------


def _status(request: web.Request) -> str | None:
    """``status``, or ``state`` (its alias, as the CLI says it); both given must agree."""
    allowed = tuple(s.value for s in Status)
    status, state = _choice(request, "status", allowed), _choice(request, "state", allowed)
    if status is not None and state is not None and status != state:
        raise BadRequestError(
            f"query parameters 'status' and 'state' name the same filter: {status!r} and {state!r} differ"
        )
    return status if status is not None else state


async def list_findings(request: web.Request) -> web.Response:
    """A page of findings, newest first; every filter is one condition of the store's query."""
    query = FindingQuery(
        workload=await _workload_query(request),
        namespace=segment_param(request, "namespace"),
        status=_status(request),
        reference=_choice(request, "reference", tuple(r.value for r in Reference)),
        category=_choice(request, "category", FINDING_CATEGORIES),
        severity=_choice(request, "severity", tuple(SEVERITY_ORDER)),
        since=time_param(request, "since"),
        until=time_param(request, "until"),
        limit=int_param(request, "limit", 100, 1, MAX_FINDINGS_LIMIT) or 100,
        before_id=int_param(request, "before", None, 1, 2**62),
    )
    page = await _q(request).findings(query)
    return web.json_response(page.as_dict())


async def get_finding(request: web.Request) -> web.Response:
    found = await _q(request).finding(_finding_id(request))
    return web.json_response(found.as_dict())


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


def _note(body: Any, allowed: set[str]) -> tuple[str, str]:
    """(reason, by) of a note body."""
    if not isinstance(body, dict) or set(body) - allowed:
        raise BadRequestError(f"body: expected a JSON object with {', '.join(sorted(allowed))}")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip(BLANK) or len(reason) > MAX_NOTE:
        raise BadRequestError(f"body.reason: a non-empty string of at most {MAX_NOTE} characters is required")
    by = body.get("by", "")
    if not isinstance(by, str) or len(by) > 200:
        raise BadRequestError("body.by: a string of at most 200 characters")
    return reason.strip(BLANK), by


async def ack_finding(request: web.Request) -> web.Response:
    """Acknowledge: someone has seen it and is on it. It stays open and counts as before."""
    reason, by = _note(await bodies.read_json(request), {"reason", "by"})
    found = await _q(request).ack(_finding_id(request), reason, by)
    return web.json_response(found.as_dict())


async def unack_finding(request: web.Request) -> web.Response:
    found = await _q(request).unack(_finding_id(request))
    return web.json_response(found.as_dict())


def _silence_until(body: dict[str, Any], now: float) -> float:
    if ("for" in body) == ("until" in body):
        raise BadRequestError("body: give exactly one of 'for' (a duration) or 'until' (Unix time)")
    if "for" in body:
        return now + parse_duration(body["for"], "body.for")
    raw = body["until"]
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        raise BadRequestError("body.until: Unix time in seconds")
    return now + parse_duration(float(raw) - now, "body.until - now")


async def silence_finding(request: web.Request) -> web.Response:
    """Silence until a time: the finding stays listed (and keeps its lifecycle) but counts apart."""
    body = await bodies.read_json(request)
    reason, by = _note(body, {"reason", "by", "for", "until"})
    q = _q(request)
    now = q.now()
    until = _silence_until(body, now)
    found = await q.silence(_finding_id(request), reason, by, at=now, until=until)
    return web.json_response(found.as_dict())


async def unsilence_finding(request: web.Request) -> web.Response:
    found = await _q(request).unsilence(_finding_id(request))
    return web.json_response(found.as_dict())


# -- diff --------------------------------------------------------------------------------------


def _diff_mode(request: web.Request) -> str:
    modes = [m for m in DIFF_MODES if m in request.query]
    if len(modes) != 1:
        raise BadRequestError(
            f"give exactly one of {', '.join(DIFF_MODES)} (got {', '.join(modes) or 'none'})"
        )
    return modes[0]


def _pod_pair(request: web.Request) -> tuple[str, str]:
    names = [p for p in request.query["pods"].split(",") if p]
    if len(names) != 2:
        raise BadRequestError("query parameter 'pods': give two pod names, P1,P2")
    return names[0], names[1]


_REVISIONS_USAGE = (
    "query parameter 'revisions': give two snapshot ids, A,B (see skewwatch history), or two workload "
    "revisions (rN, revision:N, a template hash, current, last-good; see skewwatch revisions)"
)


def _revisions_request(request: web.Request) -> DiffRequest:
    """Two plain integers are stored snapshot ids (as ever); anything else is two workload revisions."""
    pair = request.query["revisions"].split(",")
    if len(pair) != 2 or not all(pair):
        raise BadRequestError(_REVISIONS_USAGE)
    if all(is_snapshot_id(i) for i in pair):
        return DiffRequest("revisions", revisions=(int(pair[0]), int(pair[1])))
    if any(is_snapshot_id(i) for i in pair):
        raise BadRequestError(
            f"{_REVISIONS_USAGE}: not one of each ({pair[0][:40]!r}, {pair[1][:40]!r}); a workload revision "
            "number is rN"
        )
    where = "query parameter 'revisions'"
    return DiffRequest(
        "revisions", templates=(parse_revision_ref(pair[0], where), parse_revision_ref(pair[1], where))
    )


def _diff_request(request: web.Request, mode: str) -> DiffRequest:
    if mode == "pods":
        return DiffRequest(mode, pods=_pod_pair(request))
    if mode == "revisions":
        return _revisions_request(request)
    return DiffRequest(mode)


async def diff(request: web.Request) -> web.Response:
    raw_workload = request.query.get("workload")
    if not raw_workload:
        raise BadRequestError("query parameter 'workload' is required (NAMESPACE/NAME)")
    mode = _diff_mode(request)
    q = _q(request)
    workload = await q.resolve_workload(raw_workload, "query parameter 'workload'")
    result = await q.diff(workload, _diff_request(request, mode))
    return web.json_response(result.as_dict())


# -- baselines ---------------------------------------------------------------------------------


async def list_baselines(request: web.Request) -> web.Response:
    namespace = segment_param(request, "namespace")
    rows = await _q(request).baselines(await _workload_query(request), namespace)
    return web.json_response(bodies.bounded(request, "baselines", [b.as_dict(facts=False) for b in rows]))


async def get_baseline(request: web.Request) -> web.Response:
    found = await _q(request).baseline(await path_workload(request))
    return web.json_response(found.as_dict())


async def post_baseline(request: web.Request) -> web.Response:
    note = ""
    if request.can_read_body:  # the body first: a bad one is 400 whatever the workload
        body = await bodies.read_json(request)
        if not isinstance(body, dict) or set(body) - {"note"} or not isinstance(body.get("note", ""), str):
            raise BadRequestError('body: expected {"note": "..."} or nothing')
        note = str(body.get("note", ""))[:500]
    workload = await path_workload(request)
    b = await _q(request).record_baseline(workload, note)
    return web.json_response({"workload": workload, "baseline": b.as_dict()}, status=201)


async def delete_baseline(request: web.Request) -> web.Response:
    """Forget the workload's baseline (current and older); the answer is what GET showed."""
    deleted = await _q(request).delete_baseline(await path_workload(request))
    return web.json_response({"deleted": deleted.as_dict()})


# -- intents -----------------------------------------------------------------------------------


async def list_intents(request: web.Request) -> web.Response:
    listing = _q(request).intents().as_dict()
    intents = listing.pop("intents")
    return web.json_response(bodies.bounded(request, "intents", intents, **listing))


async def _parse_body(request: web.Request, label: str) -> list[Intent]:
    """Read, decode, then parse and validate off the event loop (YAML is pure Python: a 200 kB
    document takes a good part of a second of CPU)."""
    text = await bodies.read_text(request, request.app[bodies.LIMITS].max_intent_bytes, "max_intent_bytes")
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
        super().__init__(str(error), limit=error.limit)
        self.issues = [i.as_dict() for i in error.issues]


async def post_intents(request: web.Request) -> web.Response:
    intents = await _parse_body(request, "api:POST /api/v1/intents")
    await _q(request).create_intents(intents)
    return web.json_response({"created": [intent_json(i) for i in intents]}, status=201)


def _kind_name(request: web.Request) -> tuple[str, str]:
    kind, name = request.match_info["kind"], request.match_info["name"]
    if kind not in KINDS:
        raise BadRequestError(f"kind {kind[:40]!r} is not one of {', '.join(KINDS)}")
    return kind, name


async def get_intent(request: web.Request) -> web.Response:
    kind, name = _kind_name(request)
    return web.json_response(intent_json(_q(request).intent(kind, name)))


async def put_intent(request: web.Request) -> web.Response:
    kind, name = _kind_name(request)
    intents = await _parse_body(request, f"api:PUT /api/v1/intents/{kind}/{name}")
    if len(intents) != 1 or intents[0].kind != kind or intents[0].name != name:
        got = ", ".join(f"{i.kind}/{i.name}" for i in intents)
        raise BadRequestError(f"body: must be exactly one {kind} named {name!r}, got {got}")
    created = await _q(request).put_intent(intents[0])
    return web.json_response(intent_json(intents[0]), status=201 if created else 200)


async def delete_intent(request: web.Request) -> web.Response:
    kind, name = _kind_name(request)
    await _q(request).delete_intent(kind, name)
    return web.json_response({"deleted": {"kind": kind, "name": name}})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/workloads", list_workloads)
    r.add_get("/api/v1/workloads/{namespace}/{name}", get_workload)
    r.add_get("/api/v1/workloads/{namespace}/{name}/revisions", get_revisions)
    r.add_get("/api/v1/cluster", get_cluster)
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
    r.add_delete("/api/v1/baselines/{namespace}/{name}", delete_baseline)
    r.add_get("/api/v1/intents", list_intents)
    r.add_post("/api/v1/intents", post_intents)
    r.add_get("/api/v1/intents/{kind}/{name}", get_intent)
    r.add_put("/api/v1/intents/{kind}/{name}", put_intent)
    r.add_delete("/api/v1/intents/{kind}/{name}", delete_intent)
