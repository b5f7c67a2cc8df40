"""The agent's subcommands: ``skewwatch facts`` (collect once, locally) and ``skewwatch agent``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.errors import SettingsError
from agent.hashing import parse_bytes_per_s
from agent.settings import AgentSettings, env_float, env_int, env_value
from skewwatch.core.facts import Snapshot, SourceState

log = logging.getLogger(__name__)


def _add_source_flags(p: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    target = p.add_mutually_exclusive_group()
    target.add_argument("--pid", type=int, default=None, help="inference process id (SKEWWATCH_PID)")
    target.add_argument(
        "--match",
        default=None,
        metavar="REGEX",
        help="regex over the inference process's command line (SKEWWATCH_MATCH); default: the "
        "first vLLM, SGLang or TGI process",
    )
    p.add_argument(
        "--metrics-url", default=env_value(env, "SKEWWATCH_METRICS_URL"), help="runtime /metrics URL"
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=env_value(env, "SKEWWATCH_MODEL_DIR"),
        help="model directory (SKEWWATCH_MODEL_DIR); default: found from the process",
    )
    p.add_argument(
        "--source-timeout",
        type=float,
        default=None,
        help="seconds each source may take per cycle (SKEWWATCH_SOURCE_TIMEOUT; default 10)",
    )
    _add_hash_flags(p)


def _add_hash_flags(p: argparse.ArgumentParser) -> None:
    """The hashing budget (agent.hashing); each flag falls back to its SKEWWATCH_HASH_* variable."""
    g = p.add_argument_group("model hashing")
    g.add_argument(
        "--hash-mode", choices=["sha256", "blake3"], default=None, help="SKEWWATCH_HASH_MODE; sha256"
    )
    g.add_argument("--hash-threads", type=int, default=None, help="SKEWWATCH_HASH_THREADS; min(4, cores)")
    g.add_argument("--hash-nice", type=int, default=None, help="SKEWWATCH_HASH_NICE; 10")
    g.add_argument("--hash-ionice", default=None, help="SKEWWATCH_HASH_IONICE; best-effort:7")
    g.add_argument(
        "--hash-bytes-per-s", default=None, help="SKEWWATCH_HASH_BYTES_PER_S, e.g. 200M; 0 = no limit"
    )
    g.add_argument("--hash-cache-dir", type=Path, default=None, help="SKEWWATCH_HASH_CACHE_DIR")
    g.add_argument(
        "--hash-wait",
        type=float,
        default=None,
        help="seconds a collection waits for digests (SKEWWATCH_HASH_WAIT)",
    )


def hash_settings(args: argparse.Namespace, environ: Mapping[str, str], one_shot: bool) -> dict[str, Any]:
    """The hash_* fields of AgentSettings from flags, else SKEWWATCH_HASH_* variables, else defaults."""

    def pick(name: str, var: str) -> str | None:
        flag = getattr(args, name, None)
        return str(flag) if flag is not None else env_value(environ, var)

    out: dict[str, Any] = {}
    if (mode := pick("hash_mode", "SKEWWATCH_HASH_MODE")) is not None:
        out["hash_mode"] = mode
    for field_name, var in (("hash_threads", "SKEWWATCH_HASH_THREADS"), ("hash_nice", "SKEWWATCH_HASH_NICE")):
        raw = pick(field_name, var)
        if raw is not None:
            try:
                out[field_name] = int(raw)
            except ValueError as e:
                raise SettingsError(f"{var}: expected an integer, got {raw!r}") from e
    if (ionice := pick("hash_ionice", "SKEWWATCH_HASH_IONICE")) is not None:
        out["hash_ionice"] = ionice
    if (rate := pick("hash_bytes_per_s", "SKEWWATCH_HASH_BYTES_PER_S")) is not None:
        out["hash_bytes_per_s"] = parse_bytes_per_s(rate)
    if (cache := pick("hash_cache_dir", "SKEWWATCH_HASH_CACHE_DIR")) is not None:
        out["hash_cache_dir"] = Path(cache)
    wait = getattr(args, "hash_wait", None)
    if wait is None:
        wait = env_float(environ, "SKEWWATCH_HASH_WAIT")
    # One-shot `facts` waits for the digests (within the source timeout); the agent loop waits only
    # long enough for a small model, so a big one never holds up the other sources' first snapshot.
    out["hash_wait_s"] = wait if wait is not None else (8.0 if one_shot else 0.25)
    return out


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = os.environ
    facts = sub.add_parser("facts", help="collect the facts of one replica once, locally, and print them")
    _add_source_flags(facts, env)
    facts.add_argument("--format", choices=["json", "table"], default="json")
    facts.set_defaults(func=cmd_facts)

    agent = sub.add_parser("agent", help="run the sidecar loop: collect and stream to a collector")
    _add_source_flags(agent, env)
    agent.add_argument(
        "--collector",
        default=env_value(env, "SKEWWATCH_COLLECTOR"),
        metavar="HOST:PORT",
        help="collector gRPC address (SKEWWATCH_COLLECTOR)",
    )
    agent.add_argument(
        "--interval", type=float, default=None, help="seconds between collections (SKEWWATCH_INTERVAL; 15)"
    )
    agent.add_argument("--agent-id", default=env_value(env, "SKEWWATCH_AGENT_ID"))
    agent.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds a (re)started engine gets for its sources to be ready before its snapshot is "
        "sent anyway (SKEWWATCH_SETTLE; 120)",
    )
    agent.add_argument(
        "--watch-interval",
        type=float,
        default=None,
        help="seconds between looks, between collections, at whether the engine ended or was "
        "restarted: a restart is collected at once (SKEWWATCH_WATCH_INTERVAL; 0.25; 0: off)",
    )
    t = agent.add_argument_group("transport (docs/security.md)")
    t.add_argument("--tls-ca", type=Path, default=None, help="CA (PEM) of the collector's certificate: TLS")
    t.add_argument("--tls-cert", type=Path, default=None, help="client certificate (PEM) for mutual TLS")
    t.add_argument("--tls-key", type=Path, default=None, help="private key (PEM) of --tls-cert")
    t.add_argument("--tls-server-name", default=None, help="name the collector's certificate carries")
    t.add_argument("--token-file", type=Path, default=None, help="file holding this agent's bearer token")
    t.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        default=None,
        help="plaintext to a collector that is not on loopback, on purpose (SKEWWATCH_INSECURE)",
    )
    t.add_argument(
        "--outbox-file",
        type=Path,
        default=None,
        help="file (in an emptyDir) the unacknowledged messages survive in",
    )
    t.add_argument("--outbox-max-messages", type=int, default=None, help="SKEWWATCH_OUTBOX_MAX_MESSAGES; 256")
    t.add_argument("--outbox-max-bytes", type=int, default=None, help="SKEWWATCH_OUTBOX_MAX_BYTES; 32 MiB")
    agent.set_defaults(func=cmd_agent)


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> AgentSettings:
    pid = args.pid if args.pid is not None else env_int(environ, "SKEWWATCH_PID")
    match = args.match if args.match is not None else env_value(environ, "SKEWWATCH_MATCH")
    if args.pid is None and args.match is None and pid is not None and match is not None:
        raise SettingsError("SKEWWATCH_PID and SKEWWATCH_MATCH: set only one")
    interval = getattr(args, "interval", None)
    if interval is None:
        interval = env_float(environ, "SKEWWATCH_INTERVAL") or 15.0
    timeout = args.source_timeout
    if timeout is None:
        timeout = env_float(environ, "SKEWWATCH_SOURCE_TIMEOUT") or 10.0
    settle = getattr(args, "settle", None)
    if settle is None:
        settle = env_float(environ, "SKEWWATCH_SETTLE")
    watch = getattr(args, "watch_interval", None)
    if watch is None:
        watch = env_float(environ, "SKEWWATCH_WATCH_INTERVAL")
    return AgentSettings(
        collector=getattr(args, "collector", None),
        pid=pid,
        match=match,
        metrics_url=args.metrics_url,
        model_dir=Path(args.model_dir) if args.model_dir else None,
        interval_s=interval,
        source_timeout_s=timeout,
        redaction_salt=env_value(environ, "SKEWWATCH_REDACTION_SALT") or AgentSettings.redaction_salt,
        agent_id=getattr(args, "agent_id", None),
        settle_s=AgentSettings.settle_s if settle is None else settle,
        watch_interval_s=AgentSettings.watch_interval_s if watch is None else watch,
        **hash_settings(args, environ, one_shot=not hasattr(args, "collector")),
        **transport_settings(args, environ),
    ).validate()


def transport_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """The transport and outbox fields: each flag, else its SKEWWATCH_* variable, else the default."""

    def path(flag: str, variable: str) -> Path | None:
        value = getattr(args, flag, None)
        if value is not None:
            return Path(value)
        raw = env_value(environ, variable)
        return Path(raw) if raw else None

    insecure = getattr(args, "insecure", None)
    if insecure is None:
        insecure = (env_value(environ, "SKEWWATCH_INSECURE") or "").lower() in ("1", "true", "yes", "on")
    messages = getattr(args, "outbox_max_messages", None)
    if messages is None:
        messages = env_int(environ, "SKEWWATCH_OUTBOX_MAX_MESSAGES")
    size = getattr(args, "outbox_max_bytes", None)
    if size is None:
        size = env_int(environ, "SKEWWATCH_OUTBOX_MAX_BYTES")
    return {
        "tls_ca_file": path("tls_ca", "SKEWWATCH_TLS_CA"),
        "tls_cert_file": path("tls_cert", "SKEWWATCH_TLS_CERT"),
        "tls_key_file": path("tls_key", "SKEWWATCH_TLS_KEY"),
        "tls_server_name": getattr(args, "tls_server_name", None)
        or env_value(environ, "SKEWWATCH_TLS_SERVER_NAME"),
        "token_file": path("token_file", "SKEWWATCH_TOKEN_FILE"),
        "insecure": bool(insecure),
        "outbox_file": path("outbox_file", "SKEWWATCH_OUTBOX_FILE"),
        "outbox_max_messages": AgentSettings.outbox_max_messages if messages is None else messages,
        "outbox_max_bytes": AgentSettings.outbox_max_bytes if size is None else size,
    }


def _short(value: object, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(snapshot: Snapshot) -> str:
    lines = []
    keys = sorted(snapshot.facts)
    kw = max([len(k) for k in keys] + [4])
    lines.append(f"{'FACT':<{kw}}  {'VALUE':<60}  PROVENANCE")
    for k in keys:
        f = snapshot.facts[k]
        prov = f"{f.provenance.source}/{f.provenance.method}"
        if f.provenance.detail:
            prov += f" ({f.provenance.detail})"
        lines.append(f"{k:<{kw}}  {_short(f.value):<60}  {prov}")
    if snapshot.observations:
        lines.append("")
        lines.append("OBSERVATION                              VALUE")
        for name, o in sorted(snapshot.observations.items()):
            lines.append(f"{name:<40} {o.value:g} {o.unit}")
    lines.append("")
    lines.append("SOURCE            STATUS       MESSAGE")
    for name, s in sorted(snapshot.sources.items()):
        lines.append(f"{name:<17} {s.state.value:<12} {s.message}")
    lines.append("")
    for c, d in snapshot.fingerprint.as_dict().items():
        lines.append(f"fingerprint {c:<14} {d}")
    return "\n".join(lines)


def cmd_facts(args: argparse.Namespace) -> int:
    """Collect once and print; exit 1 when the target process was not found (facts still printed)."""
    settings = settings_from_args(args, os.environ)
    from agent.runtime import Agent  # the sources and their libraries: only for a collection

    snapshot = asyncio.run(Agent(settings, os.environ).collect())
    if args.format == "json":
        json.dump(snapshot.to_json(), sys.stdout, indent=2, sort_keys=False, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(render_table(snapshot))
    # The process source is unavailable when no target process was found (or it exited while
    # read): the facts are printed all the same, and the exit code says the target is missing.
    process = snapshot.sources.get("process")
    return 1 if process is not None and process.state is SourceState.UNAVAILABLE else 0


def cmd_agent(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, os.environ)
    if settings.collector is None:
        raise SettingsError("--collector: required (or set SKEWWATCH_COLLECTOR)")

    async def main() -> None:
        from agent.runtime import Agent

        agent = Agent(settings, os.environ)
        task = asyncio.create_task(agent.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            log.info("agent stopped")

    asyncio.run(main())
    return 0
