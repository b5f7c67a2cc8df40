"""The ``webhook`` command's parser, apart from the webhook itself: registering it costs the CLI's
start-up nothing (aiohttp, the agent's engine tables and the injection are imported by
:func:`cmd_webhook` when the command runs)."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path

Command = Callable[[argparse.Namespace], int]

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


def _add_config_flag(p: argparse.ArgumentParser, flag: str) -> None:
    p.add_argument(
        flag,
        dest="webhook_config",
        type=Path,
        default=os.environ.get("SKEWWATCH_WEBHOOK_CONFIG"),
        metavar="FILE",
        help="YAML defaults of the injected agent (SKEWWATCH_WEBHOOK_CONFIG); see docs/webhook.md",
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
    _add_config_flag(p, "--config")
    p.set_defaults(func=cmd_webhook)


def attach(p: argparse.ArgumentParser) -> None:
    """Give another command (``skewwatch collector``) ``--webhook HOST:PORT --tls-cert FILE
    --tls-key FILE [--webhook-config FILE]``: with ``--webhook``, its command runs with the
    webhook served beside it, in the same process, until the command returns. The command is
    wrapped, never imported: the collector does not know the webhook exists."""
    add_webhook_flags(p, os.environ, "--webhook")
    _add_config_flag(p, "--webhook-config")
    func = p.get_default("func")
    if func is None:
        raise ValueError(f"{p.prog}: has no command to serve the webhook beside")
    p.set_defaults(func=functools.partial(_beside, func))


def _beside(func: Command, args: argparse.Namespace) -> int:
    if getattr(args, "webhook_listen", None) is None:
        return func(args)
    from skewwatch.webhook.run import run_beside

    return run_beside(func, args)


def cmd_webhook(args: argparse.Namespace) -> int:
    from skewwatch.webhook.run import run

    return run(args)
