"""The collector's ``skewwatch`` subcommands, this module their hub: ``collector`` (run one) and
the query commands ``pods``, ``history``, ``findings``, ``diff`` and ``status`` here; ``baseline``
(collector/cli/baselines.py), ``intent`` (collector/cli/intents.py), ``evidence``
(collector/cli/evidence.py) and ``revisions`` (collector/cli/revisions.py, which also renders a
diff of two pod-template revisions) in modules of their own. Output and flags shared by the
query commands: collector/cli/output.py, collector/cli/client.py, collector/cli/common.py.

``register(subparsers)`` adds them to the one ``skewwatch`` entry point; each sets
``func(args) -> exit code``. Exit codes: 0 ok, 1 the collector failed or could not be reached,
2 bad arguments or settings. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from collector.cli import baselines, intents, revisions
from collector.cli.client import (
    COLLECTOR_URL_ENV,
    DEFAULT_COLLECTOR_URL,
    add_namespace_flags,
    credentials,
    get_json,
    in_namespace,
    workload_namespace,
)
from collector.cli.common import (
    add_exit_code_flag,
    add_query_flags,
    limit,
    quote,
    show,
    usage_error,
    workload,
    workload_path,
)
from collector.cli.evidence import register as register_evidence
from collector.cli.output import Column, Table, age, emit, format_time
from collector.errors import ClientError, CollectorError, SettingsError
from collector.settings import ENV, CollectorSettings

__all__ = ["COLLECTOR_URL_ENV", "DEFAULT_COLLECTOR_URL", "collector_settings", "get_json", "register"]
VALUE_WIDTH = 80


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``collector``, ``pods``, ``history``, ``findings``, ``diff``, ``baseline``, ``status``,
    ``intent``, ``evidence`` and ``revisions``."""
    _register_collector(subparsers)
    _register_pods(subparsers)
    _register_history(subparsers)
    _register_drift(subparsers)
    baselines.register(subparsers)
    intents.register(subparsers)
    register_evidence(subparsers)
    revisions.register(subparsers)


# -- collector ---------------------------------------------------------------------------------

# flag -> settings field; the flag's default is the field's SKEWWATCH_* variable, then the default.
_COLLECTOR_FLAGS: dict[str, tuple[str, type, str]] = {
    "--grpc": ("grpc", str, "HOST:PORT for gRPC ingest from agents"),
    "--http": ("http", str, "HOST:PORT for the HTTP query API, /healthz and /readyz"),
    "--store": ("store", str, "sqlite:///PATH (postgresql://… in a later release)"),
    "--intents": ("intents", Path, "directory of ModelSpec / SkewPolicy intent documents"),
    "--max-message-bytes": ("max_message_bytes", int, "largest agent message accepted"),
    "--max-streams": ("max_streams", int, "most concurrent agent streams"),
    "--debounce-snapshots": ("debounce_snapshots", int, "evaluations a drift must persist before it opens"),
    "--debounce-seconds": ("debounce_seconds", float, "seconds a drift must persist before it opens"),
    "--baseline-stable-seconds": (
        "baseline_stable_s",
        float,
        "stable seconds with no open finding before a baseline is auto-promoted (0: never)",
    ),
    "--otlp-endpoint": ("otlp_endpoint", str, "OTLP/gRPC endpoint to push metrics to, [http[s]://]HOST:PORT"),
    "--otlp-ca-file": (
        "otlp_ca_file",
        Path,
        "CA bundle (PEM) that checks the OTLP endpoint's TLS",
    ),
    "--otlp-headers": ("otlp_headers", str, "headers sent with every OTLP export, k=v,k2=v2"),
    "--otlp-interval": ("otlp_interval_s", float, "seconds between OTLP exports"),
    "--grpc-tls-cert": ("tls_cert_file", Path, "PEM certificate (chain) gRPC ingest serves TLS with"),
    "--grpc-tls-key": ("tls_key_file", Path, "PEM private key of --grpc-tls-cert"),
    "--grpc-client-ca": (
        "tls_client_ca_file",
        Path,
        "PEM CA bundle agents' client certificates must chain to (mutual TLS)",
    ),
    "--agent-tokens": (
        "agent_tokens",
        Path,
        "file or Secret directory of agent bearer tokens, each for the cluster or namespaces",
    ),
    "--http-tls-cert": ("http_tls_cert_file", Path, "PEM certificate (chain) the HTTP API serves HTTPS with"),
    "--http-tls-key": ("http_tls_key_file", Path, "PEM private key of --http-tls-cert"),
    "--api-tokens": ("api_tokens", Path, "file or Secret directory of API bearer tokens (read, admin)"),
}


def _register_collector(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "collector",
        help="run the collector: gRPC ingest, store, HTTP API",
        description="Run the collector. Every flag defaults from its SKEWWATCH_* variable.",
    )
    defaults = CollectorSettings()
    for flag, (field, kind, text) in _COLLECTOR_FLAGS.items():
        variable = ENV[field][0]
        default = getattr(defaults, field)
        p.add_argument(
            flag,
            dest=field,
            type=kind,
            default=None,
            metavar=flag.lstrip("-").upper().replace("-", "_"),
            help=f"{text} (default: ${variable}, else {default if default is not None else 'none'})",
        )
    p.add_argument(
        "--otlp-insecure",
        dest="otlp_insecure",
        action="store_const",
        const=True,
        default=None,
        help="export OTLP without TLS (default: $SKEWWATCH_OTLP_INSECURE, else false)",
    )
    p.add_argument(
        "--insecure",
        dest="insecure",
        action="store_const",
        const=True,
        default=None,
        help="serve agents plaintext gRPC on a non-loopback address, on purpose "
        "(default: $SKEWWATCH_INSECURE, else false)",
    )
    p.set_defaults(func=run_collector)


def collector_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> CollectorSettings:
    """Environment first, then the flags given; validated."""
    settings = CollectorSettings.from_env(environ)
    given = {field: getattr(args, field) for field, *_ in _COLLECTOR_FLAGS.values()}
    given["otlp_insecure"] = getattr(args, "otlp_insecure", None)
    given["insecure"] = getattr(args, "insecure", None)
    return replace(settings, **{k: v for k, v in given.items() if v is not None}).validate()


def run_collector(args: argparse.Namespace) -> int:
    from collector.main import serve

    try:
        settings = collector_settings(args, os.environ)
    except SettingsError as e:
        print(f"skewwatch collector: error: {e}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(settings))
    except CollectorError as e:
        print(f"skewwatch collector: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


# -- pods, history -----------------------------------------------------------------------------


def _register_pods(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "pods",
        help="list the pods a collector knows (STALE: not heard from within replica_stale_s), or delete one",
    )
    add_query_flags(p)
    add_namespace_flags(p)
    p.set_defaults(func=run_pods)
    sub = p.add_subparsers(dest="pods_command", metavar="{delete}")
    d = sub.add_parser(
        "delete",
        help="forget a pod and its stored history (refused while its agent streams)",
        description="Delete a pod and its stored snapshots and observations from the collector. "
        "Refused (exit 1) while an agent streams for it, since it would come back at once.",
    )
    d.add_argument("target", type=_namespace_pod, metavar="NAMESPACE/POD")
    add_query_flags(d, inherited=True)
    d.set_defaults(func=run_pods_delete)


def _register_history(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("history", help="a pod's configuration changes, newest first")
    p.add_argument("target", type=_namespace_pod, metavar="NAMESPACE/POD")
    p.add_argument("--limit", type=limit, default=20, help="most snapshots to show (1-1000, default 20)")
    add_query_flags(p)
    p.set_defaults(func=run_history)


def _namespace_pod(value: str) -> tuple[str, str]:
    parts = value.split("/")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"must be NAMESPACE/POD, got {value!r}")
    return parts[0], parts[1]


def run_pods(args: argparse.Namespace) -> int:
    def keep(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "pods": [p for p in data.get("pods", []) if in_namespace(args, p.get("namespace"))]}

    return show("pods", args, "/api/v1/pods", format_pods_table, keep=keep)


def run_pods_delete(args: argparse.Namespace) -> int:
    namespace, pod = args.target
    try:
        get_json(
            args.collector,
            f"/api/v1/pods/{quote(namespace)}/{quote(pod)}",
            args.timeout,
            "DELETE",
            auth=credentials(args),
        )
    except ClientError as e:
        print(f"skewwatch pods delete: error: {e}", file=sys.stderr)
        return 1
    emit(
        {"deleted": {"namespace": namespace, "pod": pod}},
        args.format,
        lambda _d, _w: f"deleted pod {namespace}/{pod} and its stored history\n",
    )
    return 0


def run_history(args: argparse.Namespace) -> int:
    namespace, pod = args.target
    path = f"/api/v1/pods/{quote(namespace)}/{quote(pod)}/history?limit={args.limit}"

    def more(data: dict[str, Any]) -> str | None:
        if not _has_more(data):
            return None
        return (
            f"{len(data.get('snapshots', []))} shown, older snapshots exist; raise --limit above {args.limit}"
        )

    return show("history", args, path, format_history_table, more=more)


def _has_more(data: dict[str, Any]) -> bool:
    """``more`` where the API says it, else whether it gave a ``next_before`` cursor."""
    if "more" in data:
        return bool(data["more"])
    return data.get("next_before") is not None


# -- table rendering (pure) --------------------------------------------------------------------


def format_value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def format_pods_table(data: dict[str, Any], wide: bool = False) -> Table:
    rows = []
    for p in data.get("pods", []):
        states = p.get("source_states", {})
        summary = ", ".join(f"{n} {s}" for s, n in states.items() if n) or "-"
        fp = p.get("fingerprint")
        conflicts = (p.get("conflicts") or {}).get("count", 0)
        rows.append(
            [
                p["namespace"],
                p["pod"],
                p.get("node") or "-",
                p.get("workload") or "-",
                (fp if wide else fp[:12]) if fp else "(none yet)",
                age(p.get("last_seen")),
                "stale" if p.get("stale") else "-",
                str(conflicts) if conflicts else "-",
                format_engine(p.get("engine")),
                summary,
                age(p.get("first_seen")),
                str(p.get("live_streams", 0)),
                p.get("workload_source") or "-",
            ]
        )
    columns = [Column(h) for h in ("NAMESPACE", "POD", "NODE", "WORKLOAD", "FINGERPRINT", "LAST SEEN")]
    columns += [Column(h) for h in ("STALE", "CONFLICTS", "ENGINE", "SOURCES")]
    columns += [Column("AGE", wide=True), Column("STREAMS", wide=True), Column("WORKLOAD FROM", wide=True)]
    return Table(columns, rows, empty="no pods reported yet")


def format_engine(engine: dict[str, Any] | None) -> str:
    """``running``, or ``not_running since T`` / ``starting since T``; ``-`` when the agent never said."""
    if not engine:
        return "-"
    state = str(engine.get("state"))
    return state if state == "running" else f"{state} for {age(engine.get('since'))}"


def format_change(change: dict[str, Any]) -> str:
    kind = change.get("change")
    before = "(absent)" if kind == "added" else format_value(change.get("before"))
    after = "(absent)" if kind == "removed" else format_value(change.get("after"))
    return f"{change['key']}: {before} -> {after}"


def format_history_table(data: dict[str, Any], wide: bool = False) -> str:
    snaps = data.get("snapshots", [])
    events = data.get("events", [])
    head_line = f"{data.get('namespace')}/{data.get('pod')}: {len(snaps)} stored snapshot(s)"
    restarts = sum(1 for e in events if e.get("kind", "restart") == "restart")
    if restarts:
        head_line += f", {restarts} restart(s)"
    out = [head_line + ", newest first"]
    # Configurations and restarts interleaved by time; a restart is an event, not a snapshot.
    items: list[tuple[float, int, dict[str, Any]]] = [
        (float(s.get("received_at") or s.get("collected_at") or 0), 0, s) for s in snaps
    ] + [(float(e.get("at") or 0), 1, e) for e in events]
    for _at, kind, item in sorted(items, key=lambda t: (-t[0], t[1])):
        if kind == 1 and item.get("kind", "restart") != "restart":
            # The agent's outbox dropped messages past its bounds (docs/security-delivery.md).
            out.append(f"{format_time(item.get('at'))}  {item.get('kind')}  {item.get('message', '')}")
            continue
        if kind == 1:
            out.append(
                f"{format_time(item.get('at'))}  restart  pid {item.get('old_pid')} -> {item.get('new_pid')}"
                f"  (process start {format_time(item.get('old_start_time'))} -> "
                f"{format_time(item.get('new_start_time'))})"
            )
            continue
        s = item
        fingerprint = str(s.get("fingerprint", {}).get("overall", ""))
        head = (
            f"{format_time(s.get('collected_at'))}  seq {s.get('sequence')}  "
            f"fingerprint {fingerprint if wide else fingerprint[:12]}"
        )
        if wide:
            head += f"  id {s.get('id')}"
        changes = s.get("changes", [])
        if s.get("previous_id") is None:
            out.append(f"{head}  first stored snapshot ({len(changes)} facts)")
            continue
        out.append(f"{head}  {len(changes)} change(s)")
        out.extend(f"    {format_change(c)}" for c in changes)
    return "\n".join(out) + "\n"


# -- drift: findings, diff, status -------------------------------------------------------------


def _register_drift(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "findings",
        help="drift findings, newest first; or show|ack|silence ID",
        description="skewwatch findings [NAMESPACE/NAME] lists findings; show ID shows one "
        "with its history; ack ID --reason R acknowledges it; silence ID --reason R --for 2h silences it "
        "(--until TIME, or --clear to end an acknowledgement or silence)",
    )
    p.add_argument("words", nargs="*", metavar="NAMESPACE/NAME | show ID | ack ID | silence ID")
    p.add_argument("--reason", help="why (ack, silence)")
    p.add_argument("--by", default=os.environ.get("USER", ""), help="who (ack, silence; default $USER)")
    p.add_argument("--for", dest="for_", metavar="DURATION", help="silence for 30m, 2h, 7d (silence)")
    p.add_argument("--until", type=float, metavar="UNIX_TIME", help="silence until (silence)")
    p.add_argument("--clear", action="store_true", help="take the acknowledgement or silence back")
    p.add_argument("--status", choices=("open", "pending", "resolved", "all"), default="open")
    p.add_argument("--reference", choices=("intent", "baseline", "peers"))
    p.add_argument(
        "--category", choices=("model", "runtime", "hardware", "serving", "orchestration", "performance")
    )
    p.add_argument("--severity", choices=("critical", "high", "medium", "low", "info"))
    p.add_argument("--limit", type=limit, default=100, help="most findings to show (1-1000, default 100)")
    p.add_argument(
        "--before", type=_finding_id, metavar="ID", help="only findings older than ID (the next page)"
    )
    add_namespace_flags(p)
    add_exit_code_flag(p, "any finding is listed")
    add_query_flags(p)
    p.set_defaults(func=run_findings)

    p = subparsers.add_parser(
        "diff", help="what differs: against last-good, baseline or intent; revisions; pods"
    )
    p.add_argument("workload", metavar="NAMESPACE/NAME")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--last-good",
        action="store_true",
        help="against the replica's previous configuration (and the pod template against its "
        "last-good revision)",
    )
    mode.add_argument("--baseline", action="store_true", help="against the recorded baseline")
    mode.add_argument("--intent", action="store_true", help="against the bound ModelSpec / SkewPolicy")
    mode.add_argument(
        "--revisions",
        nargs=2,
        metavar=("A", "B"),
        help="two snapshot ids (see history), or two pod-template revisions: rN, a template hash, current, "
        "last-good (see revisions)",
    )
    mode.add_argument("--pods", nargs=2, metavar=("P1", "P2"), help="two pods of the workload")
    p.add_argument("-n", "--namespace", metavar="NS", help="the workload's namespace, for a bare NAME")
    add_exit_code_flag(p, "anything differs or an intent check drifts")
    add_query_flags(p)
    p.set_defaults(func=run_diff)

    p = subparsers.add_parser("status", help="workloads and their open findings (or one workload in detail)")
    p.add_argument("workload", nargs="?", type=workload, metavar="NAMESPACE/NAME")
    add_namespace_flags(p)
    add_query_flags(p)
    p.set_defaults(func=run_status)


def _finding_id(value: str) -> str:
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 18 and int(value) > 0):
        raise argparse.ArgumentTypeError(f"must be a finding ID (a positive number), got {value!r}")
    return value


FINDING_ACTIONS = ("show", "ack", "silence")


def run_findings(args: argparse.Namespace) -> int:
    words = list(args.words)
    if words and words[0] in FINDING_ACTIONS:
        return _finding_action(args, words)
    if len(words) > 1:
        return usage_error("findings", "give at most one NAMESPACE/NAME (or show|ack|silence ID)")
    params = {"limit": str(args.limit)}
    if args.status != "all":
        params["status"] = args.status
    for name in ("reference", "category", "severity", "before", "namespace"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    if words:
        try:
            params["workload"] = workload(words[0])
        except argparse.ArgumentTypeError as e:
            return usage_error("findings", str(e))
        if args.namespace and workload_namespace(words[0]) != args.namespace:
            return usage_error("findings", f"{words[0]} is not in namespace {args.namespace} (-n)")

    def keep(data: dict[str, Any]) -> dict[str, Any]:
        # The namespace is also filtered here, for a collector whose API does not take it.
        found = [
            f for f in data.get("findings", []) if in_namespace(args, workload_namespace(f.get("workload")))
        ]
        return {**data, "findings": found}

    def more(data: dict[str, Any]) -> str | None:
        if not _has_more(data):
            return None
        shown = len(data.get("findings", []))
        return f"{shown} shown, more exist; see the next ones with --before {data.get('next_before')}"

    return show(
        "findings",
        args,
        "/api/v1/findings?" + urllib.parse.urlencode(params),
        format_findings_table,
        keep=keep,
        found=lambda data: bool(data.get("findings")),
        more=more,
    )


def _finding_action(args: argparse.Namespace, words: list[str]) -> int:
    action = words[0]
    if len(words) != 2 or not words[1].isdigit():
        return usage_error(f"findings {action}", "give one finding ID (a number)")
    path = f"/api/v1/findings/{words[1]}"
    if action == "show":
        return show("findings show", args, path, format_finding_detail)
    sub = "ack" if action == "ack" else "silence"
    if args.clear:
        return show(f"findings {action}", args, f"{path}/{sub}", format_finding_detail, method="DELETE")
    if not args.reason:
        return usage_error(f"findings {action}", "--reason is required")
    body: dict[str, Any] = {"reason": args.reason, "by": args.by or ""}
    if action == "silence":
        if (args.for_ is None) == (args.until is None):
            return usage_error("findings silence", "give --for DURATION or --until TIME")
        if args.for_ is not None:
            body["for"] = float(args.for_) if args.for_.replace(".", "", 1).isdigit() else args.for_
        else:
            body["until"] = args.until
    return show(
        f"findings {action}",
        args,
        f"{path}/{sub}",
        format_finding_detail,
        method="POST",
        body=json.dumps(body).encode(),
    )


def _finding_status(f: dict[str, Any]) -> str:
    marks = [f["status"]]
    if f.get("silenced"):
        marks.append("silenced")
    if f.get("acknowledged"):
        marks.append("acknowledged")
    if f.get("resolution") == "gone":
        marks.append("gone")
    return ",".join(marks)


def format_findings_table(data: dict[str, Any], wide: bool = False) -> Table:
    findings = data.get("findings", [])
    rows = [
        [
            str(f["id"]),
            f["severity"],
            _finding_status(f),
            f["workload"],
            f.get("key") or "-",
            _refs(f),
            age(f.get("first_seen")),
            f["message"],
            f.get("category") or "-",
            ",".join(f.get("pods") or []) or "-",
            age(f.get("last_seen")),
            age(f.get("resolved_at")),
        ]
        for f in findings
    ]
    columns = [
        Column(h) for h in ("ID", "SEVERITY", "STATUS", "WORKLOAD", "KEY", "REFERENCE", "AGE", "MESSAGE")
    ]
    columns += [Column(h, wide=True) for h in ("CATEGORY", "PODS", "LAST SEEN", "RESOLVED")]
    notes = [f"#{f['id']} hint: {f['hint']}" for f in findings if f.get("hint")]
    return Table(columns, rows, notes=["", *notes] if notes else [], empty="no findings")


def format_finding_detail(data: dict[str, Any], wide: bool = False) -> str:
    f = data
    out = [
        f"finding #{f['id']} [{f['severity']}] {_finding_status(f)}: {f['workload']}",
        f"    key: {f.get('key')} ({f.get('category')}), against {_refs(f)}",
        f"    message: {f['message']}",
        f"    pods: {', '.join(f.get('pods') or []) or '-'}",
        f"    first seen {format_time(f.get('first_seen'))} ({age(f.get('first_seen'))} ago), "
        f"last seen {format_time(f.get('last_seen'))}",
    ]
    if f.get("resolved_at"):
        out.append(
            f"    resolved {format_time(f['resolved_at'])}"
            + (f" ({f['resolution']})" if f.get("resolution") else "")
        )
    if f.get("hint"):
        out.append(f"    hint: {f['hint']}")
    if f.get("acknowledged"):
        a = f["acknowledged"]
        out.append(
            f"    acknowledged by {a.get('by') or '-'} at {format_time(a.get('at'))}: {a.get('reason')}"
        )
    if f.get("silence"):
        si = f["silence"]
        state = "silenced" if f.get("silenced") else "silence ended"
        out.append(
            f"    {state} until {format_time(si.get('until'))} by {si.get('by') or '-'}: {si.get('reason')}"
        )
    for r in f.get("related") or []:
        values = ", ".join(
            f"{p}={format_value(v)}" for p, v in sorted((r.get("actual_by_pod") or {}).items())
        )
        out.append(f"    {r['role']}: {r['key']} ({'+'.join(r.get('references', []))}) {values}")
    history = f.get("history")
    if history is not None:
        rows = [
            [format_time(e.get("at")), age(e.get("at")), str(e.get("event")), str(e.get("message") or "")]
            for e in history
        ]
        table = Table([Column(h) for h in ("TIME", "AGE", "EVENT", "MESSAGE")], rows, empty="no history")
        out.extend(["", "history:", table.plain().rstrip("\n")])
    return "\n".join(out) + "\n"


def run_diff(args: argparse.Namespace) -> int:
    try:
        name = revisions.namespaced(args.workload, args.namespace)
    except argparse.ArgumentTypeError as e:
        return usage_error("diff", str(e))
    params = {"workload": name}
    if args.last_good:
        params["last_good"] = "1"
    elif args.baseline:
        params["baseline"] = "1"
    elif args.intent:
        params["intent"] = "1"
    elif args.revisions:
        params["revisions"] = ",".join(args.revisions)
    else:
        params["pods"] = ",".join(args.pods)
    return show(
        "diff", args, "/api/v1/diff?" + urllib.parse.urlencode(params), format_diff_table, found=has_drift
    )


def has_drift(data: dict[str, Any]) -> bool:
    """A diff shows drift when anything changed, an intent check drifts (unverifiable is not drift)
    or, with --last-good, the pod template changed since its last-good revision."""
    template = data.get("template") or {}
    return (
        bool(data.get("changes"))
        or any(c.get("status") == "drift" for c in data.get("checks") or [])
        or bool(template.get("changes"))
    )


def run_status(args: argparse.Namespace) -> int:
    if args.workload:
        if args.namespace and workload_namespace(args.workload) != args.namespace:
            return usage_error("status", f"{args.workload} is not in namespace {args.namespace} (-n)")
        return show(
            "status", args, "/api/v1/workloads/" + workload_path(args.workload), format_workload_status
        )

    def keep(data: dict[str, Any]) -> dict[str, Any]:
        listed = data.get("workloads", [])
        return {
            **data,
            "workloads": [w for w in listed if in_namespace(args, workload_namespace(w.get("workload")))],
        }

    return show("status", args, "/api/v1/workloads", format_status_table, keep=keep)


def format_diff_table(data: dict[str, Any], wide: bool = False) -> str:
    if revisions.is_template_diff(data):
        return "\n".join(revisions.format_template_changes(data, str(data.get("workload")))) + "\n"
    src = (data.get("from") or {}).get("label", "-")
    dst = (data.get("to") or {}).get("label", "-")
    changes = data.get("changes", [])
    out = [f"{data.get('workload')}: {src} -> {dst}: {len(changes)} difference(s)"]
    why = (data.get("from") or {}).get("why")
    if why:
        out.append(f"    ({why})")
    out.extend(f"    {format_change(c)}" for c in changes)
    for c in data.get("checks", []):
        if c.get("status") == "unverifiable" or (wide and c.get("status") != "ok"):
            out.append(f"    ({c.get('status')}) {c['field']}: {c.get('detail', '')}")
    out.extend(revisions.format_last_good_template(data))
    return "\n".join(out) + "\n"


def format_status_table(data: dict[str, Any], wide: bool = False) -> Table:
    rows = []
    for w in data.get("workloads", []):
        counts = ", ".join(f"{n} {s}" for s, n in w.get("open_findings", {}).items()) or "none"
        rows.append(
            [
                w["workload"],
                str(w.get("state") or "-"),
                str(w["replicas"]),
                str(w["configurations"]),
                counts,
                age(w.get("baseline_recorded_at")),
                age(w.get("last_seen")),
                str(w.get("silenced_findings", 0)),
                str(w.get("pods", "-")),
            ]
        )
    columns = [Column(h) for h in ("WORKLOAD", "STATE", "REPLICAS", "CONFIGS", "OPEN FINDINGS", "BASELINE")]
    columns += [Column("LAST SEEN"), Column("SILENCED", wide=True), Column("PODS KNOWN", wide=True)]
    return Table(columns, rows, empty="no workloads reported yet")


def format_workload_status(data: dict[str, Any], wide: bool = False) -> str:
    out = [f"{data.get('workload')}: {len(data.get('replicas', []))} live replica(s), "
           f"{len(data.get('configurations', []))} configuration(s)"]  # fmt: skip
    for c in data.get("configurations", []):
        out.append(f"    {str(c['fingerprint'])[:12]}: {', '.join(c['pods'])}")
    bound = data.get("intent", {}).get("bound", [])
    out.append(
        "intent: " + (", ".join(f"{i['kind']}/{i['name']} ({i['reason']})" for i in bound) or "none bound")
    )
    base = data.get("baseline")
    out.append(
        f"baseline: {base['id']} ({base['origin']}) {format_time(base['recorded_at'])}"
        if base
        else "baseline: none"
    )
    out.append(format_probe_line(data.get("probe")))
    if not data.get("replicas"):
        out.append("no live replicas")
    opened = [f for f in data.get("findings", []) if f.get("status") == "open"]
    silenced = [f for f in opened if f.get("silenced")]
    findings = [f for f in opened if not f.get("silenced")]
    facts = sum(1 + len(f.get("related") or ()) for f in findings)
    line = f"open findings: {len(findings)} root cause(s) ({facts} drifted fact(s))"
    if silenced:
        line += f", {len(silenced)} silenced"
    out.append(line)
    out.extend(f"    #{f['id']} [{f['severity']}] {_refs(f)}: {f['message']}" for f in findings)
    out.extend(f"    #{f['id']} (silenced) [{f['severity']}] {_refs(f)}: {f['message']}" for f in silenced)
    return "\n".join(out) + "\n"


def _num(value: Any, unit: str) -> str:
    return f"{value:.0f} {unit}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def format_probe_line(probe: dict[str, Any] | None) -> str:
    """The latest probe result in one line: verdict, when, each level's tokens/s and TTFT p95."""
    if not probe:
        return "probe: none stored"
    summary = probe.get("summary") or {}
    levels = "; ".join(
        f"c{lv.get('concurrency')} {_num(lv.get('output_tokens_per_s'), 'tok/s')} "
        f"TTFT p95 {_num(lv.get('ttft_ms_p95'), 'ms')}"
        for lv in summary.get("levels") or []
    )
    failed = summary.get("failed") or []
    return (
        f"probe: {probe.get('verdict')} {format_time(probe.get('recorded_at'))} (#{probe.get('id')})"
        + (f": {levels}" if levels else ": no level ran")
        + (f"; failed {', '.join(failed)}" if failed else "")
    )


def _refs(f: dict[str, Any]) -> str:
    return "+".join(f.get("references") or [f.get("reference", "")])
