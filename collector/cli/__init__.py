"""The collector's ``skewwatch`` subcommands: ``collector`` (run one) and the API clients
``pods`` and ``history``.

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
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.errors import ClientError, CollectorError, SettingsError
from collector.settings import ENV, CollectorSettings

DEFAULT_COLLECTOR_URL = "http://127.0.0.1:8080"
COLLECTOR_URL_ENV = "SKEWWATCH_COLLECTOR_URL"
DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
VALUE_WIDTH = 80


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``collector``, ``pods``, ``history``, ``findings``, ``diff``, ``baseline`` and ``status``."""
    _register_collector(subparsers)
    _register_pods(subparsers)
    _register_history(subparsers)
    _register_drift(subparsers)


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
    p.set_defaults(func=run_collector)


def collector_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> CollectorSettings:
    """Environment first, then the flags given; validated."""
    settings = CollectorSettings.from_env(environ)
    given = {field: getattr(args, field) for field, *_ in _COLLECTOR_FLAGS.values()}
    given["otlp_insecure"] = getattr(args, "otlp_insecure", None)
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


# -- API clients -------------------------------------------------------------------------------


def _add_client_flags(p: argparse.ArgumentParser, *, inherited: bool = False) -> None:
    """``inherited``: a sub-subcommand's copy of its parent's flags; absent ones keep the parent's."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if inherited else value

    p.add_argument(
        "--collector",
        type=_collector_url,
        default=default(os.environ.get(COLLECTOR_URL_ENV) or DEFAULT_COLLECTOR_URL),
        metavar="URL",
        help=f"collector API base URL (default: ${COLLECTOR_URL_ENV}, else {DEFAULT_COLLECTOR_URL})",
    )
    p.add_argument("--format", choices=("table", "json"), default=default("table"))
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=default(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"HTTP timeout (default: {DEFAULT_TIMEOUT_S:g})",
    )


def _register_pods(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "pods",
        help="list the pods a collector knows (STALE: not heard from within replica_stale_s), or delete one",
    )
    _add_client_flags(p)
    p.set_defaults(func=run_pods)
    sub = p.add_subparsers(dest="pods_command", metavar="{delete}")
    d = sub.add_parser(
        "delete",
        help="forget a pod and its stored history (refused while its agent streams)",
        description="Delete a pod and its stored snapshots and observations from the collector. "
        "Refused (exit 1) while an agent streams for it, since it would come back at once.",
    )
    d.add_argument("target", type=_namespace_pod, metavar="NAMESPACE/POD")
    _add_client_flags(d, inherited=True)
    d.set_defaults(func=run_pods_delete)


def _register_history(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("history", help="a pod's configuration changes, newest first")
    p.add_argument("target", type=_namespace_pod, metavar="NAMESPACE/POD")
    p.add_argument("--limit", type=_limit, default=20, help="most snapshots to show (1-1000, default 20)")
    _add_client_flags(p)
    p.set_defaults(func=run_history)


def _collector_url(value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _positive_float(value: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < out <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600, got {value}")
    return out


def _limit(value: str) -> int:
    try:
        out = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 1 <= out <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000, got {out}")
    return out


def _namespace_pod(value: str) -> tuple[str, str]:
    parts = value.split("/")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"must be NAMESPACE/POD, got {value!r}")
    return parts[0], parts[1]


def get_json(base: str, path: str, timeout_s: float, method: str = "GET", body: bytes | None = None) -> Any:
    """``method base + path`` and decode JSON; raises ClientError with a one-line reason."""
    url = base + path
    request = urllib.request.Request(  # noqa: S310
        url,
        data=body,
        method=method,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    try:
        # The scheme was checked to be http(s) when the URL was parsed from the command line.
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            body = response.read(MAX_RESPONSE_BYTES + 1)
            if response.status == 204:
                return None  # No Content: a DELETE that succeeded
    except urllib.error.HTTPError as e:
        raise ClientError(f"{url}: HTTP {e.code}: {_error_message(e)}") from e
    except urllib.error.URLError as e:
        raise ClientError(f"cannot reach collector at {base}: {e.reason}") from e
    except (OSError, TimeoutError) as e:
        raise ClientError(f"cannot reach collector at {base}: {e or type(e).__name__}") from e
    if len(body) > MAX_RESPONSE_BYTES:
        raise ClientError(f"{url}: response larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as e:
        raise ClientError(f"{url}: response is not JSON: {e}") from e


def _error_message(e: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(e.read(64 * 1024))
        return str(data["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(e.reason)


def _show(
    command: str,
    args: argparse.Namespace,
    path: str,
    table: Callable[[Any], str],
    *,
    method: str = "GET",
    body: bytes | None = None,
) -> int:
    """Call ``path`` on the collector and print the answer as JSON or as a table; 1 on failure."""
    try:
        data = get_json(args.collector, path, args.timeout, method, body)
    except ClientError as e:
        print(f"skewwatch {command}: error: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(table(data), end="")
    return 0


def run_pods(args: argparse.Namespace) -> int:
    return _show("pods", args, "/api/v1/pods", format_pods_table)


def run_pods_delete(args: argparse.Namespace) -> int:
    namespace, pod = args.target
    path = f"/api/v1/pods/{urllib.parse.quote(namespace, safe='')}/{urllib.parse.quote(pod, safe='')}"
    try:
        get_json(args.collector, path, args.timeout, "DELETE")
    except ClientError as e:
        print(f"skewwatch pods delete: error: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({"deleted": {"namespace": namespace, "pod": pod}}, indent=2, sort_keys=True))
    else:
        print(f"deleted pod {namespace}/{pod} and its stored history")
    return 0


def run_history(args: argparse.Namespace) -> int:
    namespace, pod = args.target
    path = (
        f"/api/v1/pods/{urllib.parse.quote(namespace, safe='')}/{urllib.parse.quote(pod, safe='')}"
        f"/history?limit={args.limit}"
    )
    return _show("history", args, path, format_history_table)


# -- table rendering (pure) --------------------------------------------------------------------


def format_time(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines) + "\n"


def format_pods_table(data: dict[str, Any]) -> str:
    pods = data.get("pods", [])
    if not pods:
        return "no pods reported yet\n"
    rows = []
    for p in pods:
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
                fp[:12] if fp else "(none yet)",
                format_time(p.get("last_seen")),
                "stale" if p.get("stale") else "-",
                str(conflicts) if conflicts else "-",
                format_engine(p.get("engine")),
                summary,
            ]
        )
    header = ["NAMESPACE", "POD", "NODE", "WORKLOAD", "FINGERPRINT", "LAST SEEN", "STALE", "CONFLICTS"]
    return _table([*header, "ENGINE", "SOURCES"], rows)


def format_engine(engine: dict[str, Any] | None) -> str:
    """``running``, or ``not_running since T`` / ``starting since T``; ``-`` when the agent never said."""
    if not engine:
        return "-"
    state = str(engine.get("state"))
    return state if state == "running" else f"{state} since {format_time(engine.get('since'))}"


def format_change(change: dict[str, Any]) -> str:
    kind = change.get("change")
    before = "(absent)" if kind == "added" else format_value(change.get("before"))
    after = "(absent)" if kind == "removed" else format_value(change.get("after"))
    return f"{change['key']}: {before} -> {after}"


def format_history_table(data: dict[str, Any]) -> str:
    snaps = data.get("snapshots", [])
    events = data.get("events", [])
    head_line = f"{data.get('namespace')}/{data.get('pod')}: {len(snaps)} stored snapshot(s)"
    if events:
        head_line += f", {len(events)} restart(s)"
    out = [head_line + ", newest first"]
    # Configurations and restarts interleaved by time; a restart is an event, not a snapshot.
    items: list[tuple[float, int, dict[str, Any]]] = [
        (float(s.get("received_at") or s.get("collected_at") or 0), 0, s) for s in snaps
    ] + [(float(e.get("at") or 0), 1, e) for e in events]
    for _at, kind, item in sorted(items, key=lambda t: (-t[0], t[1])):
        if kind == 1:
            out.append(
                f"{format_time(item.get('at'))}  restart  pid {item.get('old_pid')} -> {item.get('new_pid')}"
                f"  (process start {format_time(item.get('old_start_time'))} -> "
                f"{format_time(item.get('new_start_time'))})"
            )
            continue
        s = item
        head = (
            f"{format_time(s.get('collected_at'))}  seq {s.get('sequence')}  "
            f"fingerprint {str(s.get('fingerprint', {}).get('overall', ''))[:12]}"
        )
        changes = s.get("changes", [])
        if s.get("previous_id") is None:
            out.append(f"{head}  first stored snapshot ({len(changes)} facts)")
            continue
        out.append(f"{head}  {len(changes)} change(s)")
        out.extend(f"    {format_change(c)}" for c in changes)
    if data.get("next_before") is not None:
        out.append(f"(older snapshots exist; raise --limit above {data.get('limit')})")
    return "\n".join(out) + "\n"


# -- drift: findings, diff, baseline, status -----------------------------------------------------


def _workload(value: str) -> str:
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(f"must be NAMESPACE/NAME or NAMESPACE/KIND/NAME, got {value!r}")
    return value


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
    p.add_argument("--limit", type=_limit, default=100, help="most findings to show (1-1000, default 100)")
    _add_client_flags(p)
    p.set_defaults(func=run_findings)

    p = subparsers.add_parser(
        "diff", help="what differs: against last-good, baseline or intent; revisions; pods"
    )
    p.add_argument("workload", type=_workload, metavar="NAMESPACE/NAME")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--last-good", action="store_true", help="against the replica's previous configuration")
    mode.add_argument("--baseline", action="store_true", help="against the recorded baseline")
    mode.add_argument("--intent", action="store_true", help="against the bound ModelSpec / SkewPolicy")
    mode.add_argument("--revisions", nargs=2, metavar=("A", "B"), help="two snapshot ids (see history)")
    mode.add_argument("--pods", nargs=2, metavar=("P1", "P2"), help="two pods of the workload")
    _add_client_flags(p)
    p.set_defaults(func=run_diff)

    p = subparsers.add_parser("baseline", help="show a workload's baseline, or --record one now")
    p.add_argument("workload", type=_workload, metavar="NAMESPACE/NAME")
    p.add_argument("--record", action="store_true", help="record the current configuration and performance")
    p.add_argument("--note", default="", help="a note stored with a recorded baseline")
    _add_client_flags(p)
    p.set_defaults(func=run_baseline)

    p = subparsers.add_parser("status", help="workloads and their open findings (or one workload in detail)")
    p.add_argument("workload", nargs="?", type=_workload, metavar="NAMESPACE/NAME")
    _add_client_flags(p)
    p.set_defaults(func=run_status)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="/")


def _workload_path(workload: str) -> str:
    parts = workload.split("/")
    if len(parts) == 3:
        ns, kind, name = parts
        quoted = f"{urllib.parse.quote(ns, safe='')}/{urllib.parse.quote(name, safe='')}"
        return f"{quoted}?kind={urllib.parse.quote(kind)}"
    return "/".join(urllib.parse.quote(p, safe="") for p in parts)


FINDING_ACTIONS = ("show", "ack", "silence")


def run_findings(args: argparse.Namespace) -> int:
    words = list(args.words)
    if words and words[0] in FINDING_ACTIONS:
        return _finding_action(args, words)
    if len(words) > 1:
        print("skewwatch findings: error: give at most one NAMESPACE/NAME", file=sys.stderr)
        return 2
    params = {"limit": str(args.limit)}
    if args.status != "all":
        params["status"] = args.status
    for name in ("reference", "category", "severity"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    if words:
        try:
            params["workload"] = _workload(words[0])
        except argparse.ArgumentTypeError as e:
            print(f"skewwatch findings: error: {e}", file=sys.stderr)
            return 2
    return _show(
        "findings", args, "/api/v1/findings?" + urllib.parse.urlencode(params), format_findings_table
    )


def _finding_action(args: argparse.Namespace, words: list[str]) -> int:
    action = words[0]
    if len(words) != 2 or not words[1].isdigit():
        print(f"skewwatch findings {action}: error: give one finding ID (a number)", file=sys.stderr)
        return 2
    path = f"/api/v1/findings/{words[1]}"
    if action == "show":
        return _show("findings show", args, path, format_finding_detail)
    sub = "ack" if action == "ack" else "silence"
    if args.clear:
        return _show(f"findings {action}", args, f"{path}/{sub}", format_finding_detail, method="DELETE")
    if not args.reason:
        print(f"skewwatch findings {action}: error: --reason is required", file=sys.stderr)
        return 2
    body: dict[str, Any] = {"reason": args.reason, "by": args.by or ""}
    if action == "silence":
        if (args.for_ is None) == (args.until is None):
            print("skewwatch findings silence: error: give --for DURATION or --until TIME", file=sys.stderr)
            return 2
        if args.for_ is not None:
            body["for"] = float(args.for_) if args.for_.replace(".", "", 1).isdigit() else args.for_
        else:
            body["until"] = args.until
    return _show(
        f"findings {action}",
        args,
        f"{path}/{sub}",
        format_finding_detail,
        method="POST",
        body=json.dumps(body).encode(),
    )


def format_finding_detail(data: dict[str, Any]) -> str:
    out = [format_findings_table({"findings": [data]}).rstrip("\n")]
    if data.get("acknowledged"):
        a = data["acknowledged"]
        out.append(
            f"    acknowledged by {a.get('by') or '-'} at {format_time(a.get('at'))}: {a.get('reason')}"
        )
    if data.get("silence"):
        si = data["silence"]
        state = "silenced" if data.get("silenced") else "silence ended"
        out.append(
            f"    {state} until {format_time(si.get('until'))} by {si.get('by') or '-'}: {si.get('reason')}"
        )
    for r in data.get("related") or []:
        values = ", ".join(
            f"{p}={format_value(v)}" for p, v in sorted((r.get("actual_by_pod") or {}).items())
        )
        out.append(f"    {r['role']}: {r['key']} ({'+'.join(r.get('references', []))}) {values}")
    for e in data.get("history") or []:
        out.append(f"    {format_time(e.get('at'))}  {e.get('event')}  {e.get('message', '')}")
    return "\n".join(out) + "\n"


def run_diff(args: argparse.Namespace) -> int:
    params = {"workload": args.workload}
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
    return _show("diff", args, "/api/v1/diff?" + urllib.parse.urlencode(params), format_diff_table)


def run_baseline(args: argparse.Namespace) -> int:
    path = "/api/v1/baselines/" + _workload_path(args.workload)
    if not args.record:
        return _show("baseline", args, path, format_baseline_table)
    body = json.dumps({"note": args.note}).encode()
    return _show("baseline", args, path, format_baseline_table, method="POST", body=body)


def run_status(args: argparse.Namespace) -> int:
    if args.workload:
        return _show(
            "status", args, "/api/v1/workloads/" + _workload_path(args.workload), format_workload_status
        )
    return _show("status", args, "/api/v1/workloads", format_status_table)


def format_findings_table(data: dict[str, Any]) -> str:
    findings = data.get("findings", [])
    if not findings:
        return "no findings\n"
    out = []
    for f in findings:
        status = f["status"] + (" (silenced)" if f.get("silenced") else "")
        if f.get("acknowledged"):
            status += " (acknowledged)"
        if f.get("resolution") == "gone":
            status += " (replicas gone)"
        out.append(f"#{f['id']} [{f['severity']}] {status} {f['workload']} {_refs(f)}: {f['message']}")
        when = f"    since {format_time(f.get('first_seen'))}, last seen {format_time(f.get('last_seen'))}"
        if f.get("resolved_at"):
            when += f", resolved {format_time(f['resolved_at'])}"
        out.append(when)
        if f.get("hint"):
            out.append(f"    hint: {f['hint']}")
    return "\n".join(out) + "\n"


def format_diff_table(data: dict[str, Any]) -> str:
    src = (data.get("from") or {}).get("label", "-")
    dst = (data.get("to") or {}).get("label", "-")
    changes = data.get("changes", [])
    out = [f"{data.get('workload')}: {src} -> {dst}: {len(changes)} difference(s)"]
    why = (data.get("from") or {}).get("why")
    if why:
        out.append(f"    ({why})")
    out.extend(f"    {format_change(c)}" for c in changes)
    for c in data.get("checks", []):
        if c.get("status") == "unverifiable":
            out.append(f"    (unverifiable) {c['field']}: {c.get('detail', '')}")
    return "\n".join(out) + "\n"


def format_baseline_table(data: dict[str, Any]) -> str:
    b = data.get("baseline") or {}
    out = [
        f"{data.get('workload')}: baseline {b.get('id')} ({b.get('origin')}) "
        f"recorded {format_time(b.get('recorded_at'))}",
        f"    fingerprint {str(b.get('fingerprint', ''))[:12]}, pods {', '.join(b.get('pods', []))}",
    ]
    load = ", ".join(f"{k} {v:.3g}" for k, v in sorted((b.get("load") or {}).items())) or "unknown"
    out.append(f"    load band: {load}")
    for k, v in sorted((b.get("performance") or {}).items()):
        out.append(f"    {k} = {v:.4g}")
    if b.get("facts") is not None:
        out.append(f"    {len(b['facts'])} configuration facts")
    return "\n".join(out) + "\n"


def format_status_table(data: dict[str, Any]) -> str:
    rows = []
    for w in data.get("workloads", []):
        counts = ", ".join(f"{n} {s}" for s, n in w.get("open_findings", {}).items()) or "none"
        rows.append(
            [
                w["workload"],
                str(w["replicas"]),
                str(w["configurations"]),
                counts,
                format_time(w.get("baseline_recorded_at")),
            ]
        )
    if not rows:
        return "no workloads reported yet\n"
    return _table(["WORKLOAD", "REPLICAS", "CONFIGS", "OPEN FINDINGS", "BASELINE"], rows)


def format_workload_status(data: dict[str, Any]) -> str:
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


def _refs(f: dict[str, Any]) -> str:
    return "+".join(f.get("references") or [f.get("reference", "")])
