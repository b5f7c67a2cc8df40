"""The ``webhook`` command's parser, apart from the webhook itself: registering it costs the CLI's
start-up nothing (aiohttp, the agent's engine tables and the injection are imported by
:func:`cmd_webhook` when the command runs)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

DESCRIPTION = """\
``skewwatch webhook --listen HOST:PORT --tls-cert FILE --tls-key FILE [--config FILE]`` serves
the mutating admission webhook that injects the skewwatch agent into opted-in pods:
``POST /mutate`` (pods annotated ``skewwatch.io/inject: "true"``) and
``POST /mutate/namespace-enabled`` (pods of namespaces labelled ``skewwatch.io/inject=enabled``,
selected by the MutatingWebhookConfiguration), over TLS; the certificate and key are loaded
again when their files change. See docs/webhook.md.
"""


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8443`` for IPv6) as (host, port); ValueError naming the problem."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen: expected HOST:PORT, got {value[:80]!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def _listen(value: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_webhook_flags(p: argparse.ArgumentParser, env: Mapping[str, str], listen_flag: str) -> None:
    """``listen_flag`` (``--listen`` here, ``--webhook`` beside the collector), ``--tls-cert``,
    ``--tls-key`` and ``--webhook-config``/``--config``, each with its SKEWWATCH_WEBHOOK_* variable."""
    p.add_argument(
        listen_flag,
        dest="webhook_listen",
        type=_listen,
        default=env.get("SKEWWATCH_WEBHOOK_LISTEN"),
        metavar="HOST:PORT",
        help="where the webhook listens (SKEWWATCH_WEBHOOK_LISTEN)",
    )
    p.add_argument(
        "--tls-cert",
        type=Path,
        default=env.get("SKEWWATCH_WEBHOOK_TLS_CERT"),
        metavar="FILE",
        help="PEM certificate chain the webhook serves (SKEWWATCH_WEBHOOK_TLS_CERT); reloaded on change",
    )
    p.add_argument(
        "--tls-key",
        type=Path,
        default=env.get("SKEWWATCH_WEBHOOK_TLS_KEY"),
        metavar="FILE",
        help="its PEM private key (SKEWWATCH_WEBHOOK_TLS_KEY); reloaded on change",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = os.environ
    p = sub.add_parser(
        "webhook",
        help="serve the admission webhook that injects the agent into opted-in pods",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_webhook_flags(p, env, "--listen")
    p.add_argument(
        "--config",
        dest="webhook_config",
        type=Path,
        default=env.get("SKEWWATCH_WEBHOOK_CONFIG"),
        metavar="FILE",
        help="YAML defaults of the injected agent (SKEWWATCH_WEBHOOK_CONFIG); see docs/webhook.md",
    )
    p.set_defaults(func=cmd_webhook)


def cmd_webhook(args: argparse.Namespace) -> int:
    from skewwatch.webhook.run import run

    return run(args)
