"""The agent's channel to the collector: TLS, mutual TLS and the bearer token, from files read at
every (re)connect (docs/security-transport.md).

``Transport.connect`` reads ``--tls-ca``, ``--tls-cert``/``--tls-key`` and ``--token-file`` anew
and returns a ``Connection``: a ``grpc.aio`` channel (secure with ``grpc.ssl_channel_credentials``
when ``--tls-ca`` is given, ``grpc.ssl_target_name_override`` set from ``--tls-server-name``;
plaintext otherwise) and the call metadata (``authorization: Bearer <token>``). The files are
stamped (mtime, size, inode) before they are read; ``Connection.changed`` compares the stamps,
cheaply, and ``Connection.until_changed`` (polled once per collection interval) ends a stream
whose credentials changed on disk so that the next connection uses them: a rotated certificate
or token (cert-manager, a Secret update) is picked up without a restart.

The token is stripped of surrounding whitespace and never logged; an unreadable or empty file is
a ``TransportFileError`` (an ``OSError``: the stream loop retries with backoff) naming the flag.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agent.settings import AgentSettings
from skewwatch.core.filestamp import stamp as file_stamp

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
MAX_FILE_BYTES = 1024 * 1024
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces (collector.tokens' rule)


class TransportFileError(OSError):
    """A TLS or token file cannot be used; the message names the flag and the file, never a token."""


def _read(path: Path, flag: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise TransportFileError(f"{flag} {path}: cannot read: {e.strerror or e}") from e
    if len(data) > MAX_FILE_BYTES:
        raise TransportFileError(f"{flag} {path}: over {MAX_FILE_BYTES} bytes")
    if not data.strip():
        raise TransportFileError(f"{flag} {path}: empty")
    return data


def read_token(path: Path) -> str:
    """The bearer token in ``path``, stripped; TransportFileError (naming no token) when unusable."""
    token = _read(path, "--token-file").decode("utf-8", "replace").strip()
    if not _TOKEN.match(token):
        raise TransportFileError(
            f"--token-file {path}: a token is one line of printable ASCII without spaces"
        )
    return token


def _no_change() -> str | None:
    return None


@dataclass
class Connection:
    """One connection's channel and call metadata; ``changed`` says which credential file changed
    since they were read (None: none)."""

    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...] = ()
    changed: Callable[[], str | None] = field(default=_no_change)

    async def until_changed(self, work: Awaitable[None], interval_s: float) -> bool:
        """Run ``work`` (a stream) until it ends, or until a credential file changed (checked every
        ``interval_s``): then it is cancelled and True returned. ``work``'s own error is raised."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=interval_s)
                if task in done:
                    task.result()
                    return False
                what = self.changed()
                if what is not None:
                    log.info("%s changed on disk: reconnecting to use it", what)
                    return True
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # not ``await task``: a cancel of our own still propagates
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the stream's error, if any, was raised or is moot


# Every connection is a new channel, and the agent runs its own jittered backoff between them
# (agent.stream). gRPC's global subchannel pool would hand a new channel the old one's subchannel
# with its reconnect backoff (up to 120 s): agents then missed most restarts of a collector killed
# again and again (tests/e2e/test_collector_kill9.py) while their outboxes filled. A local pool and
# a short backoff of gRPC's own leave the pacing to the agent.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def plaintext(target: str) -> Connection:
    """A plaintext channel, no metadata (a loopback collector, or ``--insecure``)."""
    return Connection(grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS))


@dataclass(frozen=True)
class Transport:
    """How to reach the collector at ``target``; ``connect`` builds each connection from the files."""

    target: str
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    token_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: AgentSettings) -> Transport:
        assert settings.collector is not None
        return cls(
            settings.collector,
            ca_file=settings.tls_ca_file,
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            server_name=settings.tls_server_name,
            token_file=settings.token_file,
        )

    @property
    def files(self) -> tuple[tuple[str, Path], ...]:
        named = (
            ("--tls-ca", self.ca_file),
            ("--tls-cert", self.cert_file),
            ("--tls-key", self.key_file),
            ("--token-file", self.token_file),
        )
        return tuple((flag, path) for flag, path in named if path is not None)

    def connect(self) -> Connection:
        """A new connection from the files as they are now; TransportFileError when one is unusable."""
        files = self.files
        stamp = file_stamp([p for _, p in files])  # before reading: a write during the read is a change
        metadata: tuple[tuple[str, str], ...] = ()
        if self.token_file is not None:
            metadata = ((AUTHORIZATION, f"Bearer {read_token(self.token_file)}"),)
        if self.ca_file is None:
            channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        else:
            root = _read(self.ca_file, "--tls-ca")
            key = _read(self.key_file, "--tls-key") if self.key_file is not None else None
            chain = _read(self.cert_file, "--tls-cert") if self.cert_file is not None else None
            credentials = grpc.ssl_channel_credentials(root, key, chain)
            options: list[tuple[str, str | int]] = list(CHANNEL_OPTIONS)
            if self.server_name:
                options.append(("grpc.ssl_target_name_override", self.server_name))
            channel = grpc.aio.secure_channel(self.target, credentials, options=options)

        def changed() -> str | None:
            now = file_stamp([p for _, p in files])
            for (flag, path), before, after in zip(files, stamp, now, strict=True):
                if before != after:
                    return f"{flag} {path}"
            return None

        return Connection(channel, metadata, changed)
