"""The evidence bundle: what the diagnostics playbook asks to attach to an incident, for one workload.

``EvidenceService.bundle(workload)`` assembles it from the queries every edge asks, and from
nothing else: ``Queries.workload`` (live replicas, configurations, bound intents and their checks,
the baseline, findings), ``Queries.diff`` in the ``last_good`` mode, ``Pods.list`` / ``Pods.get``
/ ``Pods.history`` (every stored pod of the workload, its latest observations, its restarts), and
``collector.baseline.model.performance_ratios`` (the current / baseline ratios the telemetry
exports), and ``Queries.template_last_good`` (the pod-template diff from the revision the baseline
was recorded on to the current one; the workload view carries the cluster facts, with their
provenance, the stored revisions and the latest probe result's summary). What those do not
answer is only selected here, never computed again: the image, GPU, argument and environment
facts are read from the stored facts by key. Pod-template facts are carried as the cluster watch
stored them (env values redacted).

The typed ``Evidence`` renders three ways, all pure: ``as_dict()`` is the JSON (schema
``skewwatch.evidence/v1``, keys in a fixed order: docs/evidence.md), ``render_markdown`` the same
data for a ticket, and ``build_tar`` a deterministic ``.tar.gz`` of both plus each pod's stored
snapshot. Fact values are carried exactly as stored: secrets arrive redacted by the agent
(``redacted:sha256:…``) and nothing here reads, derives or restores them.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector.baseline.model import performance_ratios
from collector.domain.identity import split_workload, workload_id
from collector.domain.model import Status
from collector.errors import NotFoundError
from collector.service.pods import PodHistory, Pods, PodView
from collector.service.queries import (
    NO_CLUSTER_WATCH,
    ClusterSection,
    DiffRequest,
    DiffResult,
    Queries,
    WorkloadView,
    workload_state,
)
from skewwatch.core.facts import FactValue
from skewwatch.core.identity import PodKey
from skewwatch.core.image import image_reference, image_tag

JSON = dict[str, Any]
SCHEMA = "skewwatch.evidence/v1"
# Configurations per pod whose restarts are listed (the history page Pods.history returns).
HISTORY_PER_POD = 20
# The uncompressed bytes of a tar's members; pod snapshots past it are named in OMITTED.txt.
MAX_TAR_BYTES = 48 * 1024 * 1024
IMAGE_KEYS = ("orchestration.image", "orchestration.image_digest")
GPU_KEYS = (
    "hardware.gpu.product",
    "hardware.gpu.name",
    "hardware.gpu.count",
    "hardware.gpu.memory_bytes",
    "hardware.gpu.compute_capability",
    "hardware.gpu.mig_mode",
    "hardware.driver_version",
    "hardware.cuda_driver_version",
    "orchestration.node_gpu_product",
)
ARGS_PREFIX = "runtime.args."
ENV_PREFIX = "runtime.env."


def rfc3339(t: float) -> str:
    """UTC, to the second: ``2026-12-01T17:50:38Z``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pick(facts: Mapping[str, FactValue], keys: Sequence[str]) -> JSON:
    return {k: facts[k] for k in keys if k in facts}


def _image(facts: Mapping[str, FactValue]) -> JSON:
    """The image facts, and the tag and digest its reference names (the tag a pod spec pulled by)."""
    out = _pick(facts, IMAGE_KEYS)
    image = facts.get("orchestration.image")
    if isinstance(image, str) and image.strip():
        digest = image_reference(image)[2]
        out["tag"] = image_tag(image)
        out["reference_digest"] = digest
    return out


def _prefixed(facts: Mapping[str, FactValue], prefix: str) -> JSON:
    return {k: facts[k] for k in sorted(facts) if k.startswith(prefix)}


@dataclass(frozen=True)
class PodEvidence:
    """One stored pod of the workload: its record and observations, its history page (restarts)."""

    view: PodView
    history: PodHistory
    live: bool  # a replica now (heard from within replica_stale_s)
    in_majority: bool

    def as_dict(self) -> JSON:
        rec, live = self.view.record, self.view.liveness
        cur = rec.current
        facts = cur.facts if cur is not None else {}
        obs = self.view.observations
        return {
            "pod": rec.identity.pod,
            "node": rec.identity.node,
            "live": self.live,
            "in_majority": self.in_majority,
            **live.fields(rec),
            "first_seen": rec.first_seen,
            "last_seen": rec.last_seen,
            "fingerprint": rec.fingerprint,
            "snapshot_id": rec.current_snapshot_id,
            "engine": rec.engine.as_dict() if rec.engine else None,
            "sources": {n: cur.sources[n].state.value for n in sorted(cur.sources)} if cur else {},
            "image": _image(facts),
            "gpu": _pick(facts, GPU_KEYS),
            "observations": {n: {"value": o.value, "unit": o.unit} for n, o in sorted(obs.items.items())}
            if obs
            else {},
            "observations_at": obs.at if obs else None,
        }


@dataclass(frozen=True)
class LastGood:
    """The diff against the last-good configuration, when it was, or why there is none."""

    result: DiffResult | None
    at: float | None  # when that configuration was received, or the baseline standing in recorded
    error: str | None = None

    def as_dict(self) -> JSON:
        r = self.result
        if r is None:
            return {"available": False, "why": self.error, "from": None, "to": None, "changes": []}
        return {
            "available": True,
            "why": self.error,
            "from": r.from_.as_dict() if r.from_ else None,
            "to": r.to.as_dict() if r.to else None,
            "last_good_at": rfc3339(self.at) if self.at is not None else None,
            "last_good_at_unix": self.at,
            "unchanged": not r.changes,
            "changes": [c.as_dict() for c in r.changes],
        }


@dataclass(frozen=True)
class TemplateDiff:
    """The pod-template diff last-good revision -> current revision, or why there is none."""

    result: DiffResult | None
    why: str | None

    def as_dict(self) -> JSON:
        r = self.result
        if r is None:
            return {
                "available": False,
                "why": self.why,
                "from": None,
                "to": None,
                "unchanged": True,
                "changes": [],
            }
        return {
            "available": True,
            "why": (r.from_.why if r.from_ else None) or self.why,
            "from": r.from_.as_dict() if r.from_ else None,
            "to": r.to.as_dict() if r.to else None,
            "unchanged": not r.changes,
            "changes": [c.as_dict() for c in r.changes],
        }


@dataclass(frozen=True)
class Evidence:
    """A workload's evidence bundle at ``generated_at``."""

    view: WorkloadView
    pods: Sequence[PodEvidence]
    last_good: LastGood
    ratios: Mapping[str, float]
    generated_at: float
    template: TemplateDiff = TemplateDiff(None, None)

    @property
    def stamp(self) -> str:
        """``generated_at`` for a file name: ``20261201T175038Z``."""
        return datetime.fromtimestamp(self.generated_at, UTC).strftime("%Y%m%dT%H%M%SZ")

    def as_dict(self) -> JSON:
        v = self.view
        namespace, kind, name = split_workload(v.workload)
        return {
            "schema": SCHEMA,
            "generated_at": rfc3339(self.generated_at),
            "generated_at_unix": self.generated_at,
            "workload": {
                "workload": v.workload,
                "namespace": namespace,
                "kind": kind,
                "name": name,
                "state": workload_state(len(v.replicas)),
                "replicas_live": len(v.replicas),
                "pods_stored": len(self.pods),
                "majority_pods": sorted(v.majority),
                "divergent_keys": list(v.divergent_keys),
            },
            "pods": [p.as_dict() for p in self.pods],
            "configurations": self._configurations(),
            "baseline": self._baseline(),
            "probe": v.probe.as_dict(document=False) if v.probe else None,
            "diff_last_good": self.last_good.as_dict(),
            "cluster": (self.view.cluster or ClusterSection(None, NO_CLUSTER_WATCH, ())).as_dict(),
            "template_diff": self.template.as_dict(),
            "findings": [f.as_dict(v.now) for f in v.findings if f.status is not Status.RESOLVED],
            "restarts": self._restarts(),
            "intents": {
                "bound": [b.as_dict() for b in v.bound],
                "checks": [c.as_dict() for c in v.checks],
            },
            "limits": {"history_per_pod": HISTORY_PER_POD, "max_tar_bytes": MAX_TAR_BYTES},
        }

    def _configurations(self) -> list[JSON]:
        """Each distinct live configuration, largest first, with its arguments and environment."""
        by_pod = {r.pod: r for r in self.view.replicas}
        out = []
        for fingerprint, pods in self.view.configurations:
            facts = by_pod[pods[0]].facts if pods and pods[0] in by_pod else {}
            out.append(
                {
                    "fingerprint": fingerprint,
                    "pods": list(pods),
                    "args": _prefixed(facts, ARGS_PREFIX),
                    "env": _prefixed(facts, ENV_PREFIX),
                }
            )
        return out

    def _baseline(self) -> JSON | None:
        b = self.view.baseline
        if b is None:
            return None
        return {**b.as_dict(facts=False), "ratios": {k: self.ratios[k] for k in sorted(self.ratios)}}

    def _restarts(self) -> list[JSON]:
        events = [(e, p.view.record.identity.pod) for p in self.pods for e in p.history.events]
        return [{"pod": pod, **e.as_dict()} for e, pod in sorted(events, key=lambda t: (-t[0].at, t[1]))]


class EvidenceService:
    """Assembles ``Evidence`` from the drift queries ``queries`` and the pod queries ``pods``."""

    def __init__(self, queries: Queries, pods: Pods) -> None:
        self.queries = queries
        self.pods = pods

    async def bundle(self, workload: str) -> Evidence:
        """The bundle of a resolved workload id (``Queries.resolve_workload``); NotFoundError when
        the collector knows no pod of it."""
        view = await self.queries.workload(workload)
        stored = [
            p.record.key
            for p in await self.pods.list()
            if workload_id(p.record.key.namespace, p.record.key.pod, p.record.identity.workload) == workload
        ]
        if not stored:
            raise NotFoundError(f"workload {workload} is not known to this collector")
        live = {r.pod for r in view.replicas}
        pods = [
            PodEvidence(
                await self.pods.get(key),
                await self.pods.history(key, HISTORY_PER_POD),
                key.pod in live,
                key.pod in view.majority,
            )
            for key in stored
        ]
        ratios = performance_ratios(view.baseline, view.replicas) if view.baseline else {}
        last_good = await self._last_good(workload, view, {k.pod: k for k in stored})
        template = TemplateDiff(*await self.queries.template_last_good(workload, view.baseline))
        return Evidence(view, pods, last_good, ratios, self.queries.now(), template)

    async def _last_good(self, workload: str, view: WorkloadView, keys: Mapping[str, PodKey]) -> LastGood:
        try:
            result = await self.queries.diff(workload, DiffRequest("last_good"))
        except NotFoundError as e:  # no live replica with a snapshot: nothing to compare
            return LastGood(None, None, str(e))
        side = result.from_
        why = side.why if side else None
        if side is not None and side.ref == "baseline" and view.baseline is not None:
            return LastGood(result, view.baseline.recorded_at, why)
        rep = view.representative
        if (
            side is not None
            and side.ref == "snapshot"
            and side.ref_id is not None
            and rep
            and rep.pod in keys
        ):
            # The newest row below id + 1: the last-good snapshot itself, from the pod's history.
            page = await self.pods.history(keys[rep.pod], 1, side.ref_id + 1)
            at = page.shown[0].received_at if page.shown and page.shown[0].id == side.ref_id else None
            return LastGood(result, at, why)
        return LastGood(result, None, why)


# -- Markdown ------------------------------------------------------------------------------------

_TEXT_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def text_cell(value: object) -> str:
    """Plain text safe in a table cell: newlines become spaces, Markdown and ``|`` are escaped."""
    return _TEXT_SPECIAL.sub(r"\\\1", _NEWLINES.sub(" ", str(value)))


def code_cell(value: object) -> str:
    """A code span safe in a table cell: JSON for values (``"1"`` is not ``1``), a string as it is;
    newlines shown as ``\\n``, ``|`` escaped (GFM splits cells before code spans), and a fence
    longer than any backtick run in it."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    if not text.strip():
        return "(empty)" if not text else f"`{text}` (blank)"
    text = _NEWLINES.sub("\\\\n", text).replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _value(value: object) -> str:
    return code_cell(json.dumps(value, ensure_ascii=False, sort_keys=True))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def _when(t: object) -> str:
    return rfc3339(float(t)) if isinstance(t, int | float) else "-"


def _md_workload(doc: JSON) -> list[str]:
    w = doc["workload"]
    rows = [[code_cell(k), code_cell(w[k])] for k in w]
    return ["## Workload", "", *_table(["field", "value"], rows)]


def _md_pods(doc: JSON) -> list[str]:
    rows = []
    for p in doc["pods"]:
        image, gpu = p["image"], p["gpu"]
        engine = p["engine"]["state"] if p["engine"] else "-"
        rows.append(
            [
                code_cell(p["pod"]),
                code_cell(p["node"]),
                "yes" if p["live"] else "no (stale)",
                "yes" if p["in_majority"] else "no",
                code_cell((p["fingerprint"] or "")[:12]),
                _when(p["last_seen"]),
                text_cell(engine),
                code_cell(image.get("orchestration.image", "-")),
                code_cell(image.get("orchestration.image_digest", "-")),
                code_cell(gpu.get("hardware.gpu.product", "-")),
                code_cell(gpu.get("hardware.driver_version", "-")),
            ]
        )
    header = ["pod", "node", "live", "majority", "fingerprint", "last seen", "engine", "image", "digest"]
    out = ["## Pods", "", *_table([*header, "GPU", "driver"], rows)]
    gpu_rows = [
        [code_cell(p["pod"]), code_cell(k), _value(v)] for p in doc["pods"] for k, v in p["gpu"].items()
    ]
    return [*out, "### GPU and driver", "", *_table(["pod", "key", "value"], gpu_rows)]


def _md_configurations(doc: JSON) -> list[str]:
    out = ["## Configurations: arguments and environment (as stored, secrets redacted)", ""]
    if not doc["configurations"]:
        out += ["(no live replica)", ""]
    for c in doc["configurations"]:
        pods = ", ".join(code_cell(p) for p in c["pods"])
        out += [f"### Configuration {code_cell(c['fingerprint'][:12])}: {pods}", ""]
        rows = [[code_cell(k), _value(v)] for k, v in {**c["args"], **c["env"]}.items()]
        out += _table(["key", "value"], rows)
    return out


def _md_performance(doc: JSON) -> list[str]:
    base = doc["baseline"]
    perf = base["performance"] if base else {}
    ratios = base["ratios"] if base else {}
    rows = [
        [
            code_cell(p["pod"]),
            code_cell(n),
            _value(o["value"]),
            text_cell(o["unit"] or "-"),
            _value(perf[n]) if n in perf else "-",
            f"{ratios[n]:.3f}" if n in ratios else "-",
        ]
        for p in doc["pods"]
        for n, o in p["observations"].items()
    ]
    header = ["pod", "observation", "value", "unit", "baseline", "ratio (workload median / baseline)"]
    return ["## Key metrics and baseline ratios", "", *_table(header, rows)]


def _md_probe(doc: JSON) -> list[str]:
    """The latest probe result: verdict, target, the per-level numbers, the failed thresholds."""
    out = ["## Latest probe", ""]
    p = doc.get("probe")
    if p is None:
        return [*out, "No probe result is stored for this workload.", ""]
    s = p["summary"]
    target = ", ".join(f"{k} {code_cell(s[k])}" for k in ("endpoint", "model") if k in s)
    out += [
        f"Verdict {code_cell(p['verdict'])}, probe result {p['id']}, recorded at {_when(p['recorded_at'])}"
        + (f"; {target}" if target else "")
        + ".",
        "",
    ]
    rows = [
        [
            text_cell(lv["concurrency"]),
            _number_cell(lv["requests_per_s"]),
            _number_cell(lv["output_tokens_per_s"]),
            _number_cell(lv["ttft_ms_p95"]),
            _number_cell(lv["e2e_ms_p99"]),
            text_cell(", ".join(f"{k} {n}" for k, n in sorted(lv["errors"].items())) or "none"),
        ]
        for lv in s["levels"]
    ]
    header = ["concurrency", "requests/s", "output tokens/s", "TTFT p95 ms", "E2E p99 ms", "errors"]
    out += _table(header, rows) if rows else ["No concurrency level ran.", ""]
    if s["failed"]:
        out += ["Failed thresholds: " + ", ".join(code_cell(f) for f in s["failed"]) + ".", ""]
    return out


def _number_cell(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _md_diff(doc: JSON) -> list[str]:
    d = doc["diff_last_good"]
    out = ["## Diff against last-good", ""]
    if not d["available"]:
        return [*out, f"No diff: {text_cell(d['why'])}", ""]
    out += [
        f"From: {text_cell(d['from']['label'])}; to: {text_cell(d['to']['label'])}.",
        "",
        f"Last good at: {text_cell(d['last_good_at'] or 'unknown')}. {text_cell(d['why'] or '')}",
        "",
    ]
    if d["unchanged"]:
        return [
            *out,
            f"Nothing changed since the last-good configuration ({text_cell(d['last_good_at'])}).",
            "",
        ]
    rows = [
        [code_cell(c["key"]), text_cell(c["change"]), _value(c.get("before")), _value(c.get("after"))]
        for c in d["changes"]
    ]
    return [*out, *_table(["key", "change", "before", "after"], rows)]


def _md_cluster(doc: JSON) -> list[str]:
    """The cluster facts with their provenance, and the stored pod-template revisions."""
    c = doc.get("cluster")
    if c is None:  # a bundle of a collector before the cluster watch
        return []
    out = ["## Cluster facts (the Kubernetes API)", ""]
    cf = c["cluster_facts"]
    if cf is None:
        out += [f"No cluster facts: {text_cell(c['message'] or 'unknown')}", ""]
    else:
        status = cf["status"]
        out += [
            f"Watch status: {text_cell(status['status'])}"
            + (f" ({text_cell(status['message'])})" if status.get("message") else "")
            + f"; observed at {_when(cf['observed_at'])}; current revision: "
            + code_cell(cf["current_revision"] or "-"),
            "",
        ]
        prov = cf["provenance"]
        rows = [
            [code_cell(k), _value(v), code_cell(prov[k]["detail"] if k in prov else "-")]
            for k, v in cf["facts"].items()
        ]
        out += _table(["key", "value", "from"], rows)
    rows = [
        [
            code_cell(r["revision"] or "-"),
            code_cell(r["template_hash"]),
            "yes" if r["current"] else "",
            _when(r["created_at"]),
            _when(r["first_seen"]),
            _when(r["last_seen"]),
            code_cell(r["source"] or "-"),
        ]
        for r in c["revisions"]
    ]
    header = ["revision", "template hash", "current", "created", "first seen", "last seen", "source"]
    return [*out, "### Pod-template revisions (newest first)", "", *_table(header, rows)]


def _md_template(doc: JSON) -> list[str]:
    d = doc.get("template_diff")
    if d is None:
        return []
    out = ["## Pod-template diff: last-good revision to current", ""]
    if not d["available"]:
        return [*out, f"No template diff: {text_cell(d['why'])}", ""]
    out += [f"From: {text_cell(d['from']['label'])}; to: {text_cell(d['to']['label'])}.", ""]
    if d["why"]:
        out += [text_cell(d["why"]), ""]
    if d["unchanged"]:
        return [*out, "The current pod template is the last-good one.", ""]
    rows = [
        [
            text_cell(c["category"]),
            code_cell(c["key"]),
            text_cell(c["change"]),
            _value(c.get("before")),
            _value(c.get("after")),
        ]
        for c in d["changes"]
    ]
    return [*out, *_table(["category", "key", "change", "before", "after"], rows)]


def _md_findings(doc: JSON) -> list[str]:
    rows = [
        [
            str(f["id"]),
            text_cell(f["status"]),
            text_cell(f["severity"]),
            code_cell(f["key"]),
            text_cell(", ".join(f["references"])),
            _value(f["expected"]),
            _value(f["actual"]),
            ", ".join(code_cell(p) for p in f["pods"]),
            text_cell(f["hint"]),
        ]
        for f in doc["findings"]
    ]
    header = ["id", "status", "severity", "key", "references", "expected", "actual", "pods", "hint"]
    return ["## Open findings and mitigation hints", "", *_table(header, rows)]


def _md_restarts(doc: JSON) -> list[str]:
    rows = [
        [
            code_cell(e["pod"]),
            _when(e["at"]),
            text_cell(e["kind"]),
            _value(e.get("old_pid")),
            _value(e.get("new_pid")),
        ]
        for e in doc["restarts"]
    ]
    engines = [
        [
            code_cell(p["pod"]),
            text_cell(p["engine"]["state"]),
            _when(p["engine"]["since"]),
            text_cell(p["engine"]["message"]),
        ]
        for p in doc["pods"]
        if p["engine"]
    ]
    return [
        "## Restarts",
        "",
        *_table(["pod", "at", "event", "old pid", "new pid"], rows),
        "### Engine state now",
        "",
        *_table(["pod", "state", "since", "message"], engines),
    ]


def _md_applied(doc: JSON) -> list[str]:
    bound = [
        [text_cell(b["kind"]), code_cell(b["name"]), code_cell(b["file"]), text_cell(b["reason"])]
        for b in doc["intents"]["bound"]
    ]
    checks = [
        [
            code_cell(c["intent"]),
            code_cell(c["field"]),
            code_cell(c["target"] or "-"),
            _value(c["expected"]),
            text_cell(c["status"]),
        ]
        for c in doc["intents"]["checks"]
    ]
    base = doc["baseline"]
    out = [
        "## Intents and baseline applied",
        "",
        "### Intents",
        "",
        *_table(["kind", "name", "file", "why bound"], bound),
    ]
    out += ["### Intent checks", "", *_table(["intent", "field", "fact", "expected", "status"], checks)]
    out += ["### Baseline", ""]
    if base is None:
        return [*out, "(no baseline recorded)", ""]
    rows = [
        [code_cell(k), code_cell(base[k])] for k in ("id", "origin", "fingerprint", "pods", "samples", "note")
    ]
    return [*out, f"Recorded at {_when(base['recorded_at'])}.", "", *_table(["field", "value"], rows)]


def render_markdown(doc: JSON) -> str:
    """The bundle ``doc`` (``Evidence.as_dict()``) as Markdown: one heading per section, tables
    whose cells cannot be broken by a ``|`` or a newline in a value."""
    lines = [
        f"# Evidence: {code_cell(doc['workload']['workload'])}",
        "",
        f"Generated at {text_cell(doc['generated_at'])} (schema {code_cell(doc['schema'])}).",
        "",
    ]
    for section in (
        _md_workload,
        _md_pods,
        _md_configurations,
        _md_performance,
        _md_probe,
        _md_diff,
        _md_cluster,
        _md_template,
        _md_findings,
        _md_restarts,
        _md_applied,
    ):
        lines += section(doc)
    return "\n".join(lines)


# -- tar -----------------------------------------------------------------------------------------

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def snapshot_member(pod: str, taken: set[str]) -> str:
    """``snapshots/<pod>.json`` with the name reduced to ``[A-Za-z0-9._-]`` (unique among ``taken``)."""
    base = _UNSAFE_NAME.sub("_", pod)[:200] or "_"
    name, n = f"snapshots/{base}.json", 1
    while name in taken:
        n += 1
        name = f"snapshots/{base}.{n}.json"
    taken.add(name)
    return name


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def build_tar(doc: JSON, markdown: str, snapshots: Sequence[tuple[str, JSON]]) -> bytes:
    """A ``.tar.gz`` in memory: ``evidence.json``, ``evidence.md`` and ``snapshots/<pod>.json`` per
    (pod, snapshot JSON) given. Deterministic: every mtime (tar and gzip) is the bundle's
    ``generated_at``, owners are 0. Members stay within ``MAX_TAR_BYTES`` uncompressed: snapshots
    past it are left out and named in ``snapshots/OMITTED.txt``."""
    mtime = int(doc["generated_at_unix"])
    members = [
        ("evidence.json", json.dumps(doc, indent=2, ensure_ascii=False).encode() + b"\n"),
        ("evidence.md", markdown.encode()),
    ]
    used = sum(len(d) for _, d in members)
    taken: set[str] = set()
    omitted = []
    for pod, snap in snapshots:
        data = json.dumps(snap, indent=2, ensure_ascii=False).encode() + b"\n"
        if used + len(data) > MAX_TAR_BYTES:
            omitted.append(pod)
            continue
        used += len(data)
        members.append((snapshot_member(pod, taken), data))
    if omitted:
        note = f"left out past {MAX_TAR_BYTES} bytes uncompressed: " + ", ".join(omitted) + "\n"
        members.append(("snapshots/OMITTED.txt", note.encode()))
    buf = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=mtime) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in members:
            _add(tar, name, data, mtime)
    return buf.getvalue()
