"""The agent's channel builder (agent.transport): files read at every connect, change detection,
the bearer token as call metadata, over real gRPC (TLS and mutual TLS with openssl-made
certificates), and an AgentStream that reconnects when its token file is rotated."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.settings import AgentSettings
from agent.stream import AgentStream, LatestSnapshot
from agent.transport import AUTHORIZATION, Connection, Transport, TransportFileError, plaintext, read_token
from collector.main import Collector
from skewwatch.core.identity import PodIdentity
from tests.support.collector import make_snapshot, settings_for, wait_until
from tests.support.tls import Pki, make_pki

TOKEN = "agent-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def replace(path: Path, text: str | bytes) -> None:
    """Replace a file as a Secret update does: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".new")
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class Echo:
    """A real gRPC server on loopback that answers each message with itself and keeps what each
    call's metadata and auth context were."""

    port: int = 0
    server: grpc.aio.Server | None = None
    calls: list[tuple[dict[str, str], dict[str, list[bytes]]]] = field(default_factory=list)

    async def handle(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
        self.calls.append((metadata, {k: list(v) for k, v in context.auth_context().items()}))
        async for raw in requests:
            yield raw


@contextlib.asynccontextmanager
async def echo(credentials: grpc.ServerCredentials | None) -> AsyncIterator[Echo]:
    e = Echo()
    server = grpc.aio.server()
    method: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(e.handle)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.Echo", {"Call": method})])
    address = "127.0.0.1:0"
    e.port = (
        server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    )
    await server.start()
    e.server = server
    try:
        yield e
    finally:
        await server.stop(None)


def server_credentials(pki: Pki, mutual: bool = False) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(pki.server.key.read_bytes(), pki.server.cert.read_bytes())],
        root_certificates=pki.ca.cert.read_bytes() if mutual else None,
        require_client_auth=mutual,
    )


async def call(connection: Connection, payload: bytes = b"ping", ready_s: float = 10) -> bytes:
    async with connection.channel as channel:
        await asyncio.wait_for(channel.channel_ready(), ready_s)
        stream: Any = channel.stream_stream("/t.Echo/Call")(metadata=connection.metadata)
        await stream.write(payload)
        reply = await asyncio.wait_for(stream.read(), 10)
        await stream.done_writing()
        assert isinstance(reply, bytes)
        return reply


async def test_token_and_client_certificate_go_over_mutual_tls_read_fresh_at_each_connect(
    tmp_path: Path, pki: Pki
) -> None:
    token = tmp_path / "token"
    token.write_text(f"  {TOKEN}\n")  # surrounding whitespace (a Secret written with echo) is stripped
    async with echo(server_credentials(pki, mutual=True)) as e:
        transport = Transport(
            f"127.0.0.1:{e.port}",
            ca_file=pki.ca.cert,
            cert_file=pki.spiffe.cert,
            key_file=pki.spiffe.key,
            token_file=token,
        )
        assert await call(transport.connect()) == b"ping"
        metadata, auth = e.calls[-1]
        assert metadata[AUTHORIZATION] == f"Bearer {TOKEN}"
        assert auth["peer_spiffe_id"] == [b"spiffe://cluster.local/ns/ml/sa/skewwatch"]
        # Rotated token and client certificate: the next connect uses both, no new Transport.
        replace(token, "rotated-" + TOKEN)
        replace(transport.cert_file or Path(), pki.pod.cert.read_bytes())
        replace(transport.key_file or Path(), pki.pod.key.read_bytes())
        assert await call(transport.connect()) == b"ping"
        metadata, auth = e.calls[-1]
        assert metadata[AUTHORIZATION] == f"Bearer rotated-{TOKEN}"
        assert auth["peer_uri"] == [b"urn:skewwatch:pod:ml/llm-0"]


@pytest.fixture
def client_files(tmp_path: Path, pki: Pki) -> tuple[Path, Path]:
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    cert.write_bytes(pki.spiffe.cert.read_bytes())
    key.write_bytes(pki.spiffe.key.read_bytes())
    return cert, key


async def test_the_server_name_override_checks_the_certificate_against_another_name(
    tmp_path: Path, pki: Pki
) -> None:
    named = pki.ca.issue("named", cn="collector.example", dns=("collector.example",), usage="serverAuth")
    creds = grpc.ssl_server_credentials([(named.key.read_bytes(), named.cert.read_bytes())])
    async with echo(creds) as e:
        target = f"127.0.0.1:{e.port}"
        good = Transport(target, ca_file=pki.ca.cert, server_name="collector.example")
        assert await call(good.connect()) == b"ping"
        bare = Transport(target, ca_file=pki.ca.cert)  # 127.0.0.1 is not in that certificate
        with pytest.raises(TimeoutError):  # the handshake fails: the channel never gets ready
            await call(bare.connect(), ready_s=2)


async def test_plaintext_sends_no_metadata_unless_a_token_is_given(tmp_path: Path) -> None:
    async with echo(None) as e:
        assert await call(plaintext(f"127.0.0.1:{e.port}")) == b"ping"
        assert AUTHORIZATION not in e.calls[-1][0]
        token = tmp_path / "token"
        token.write_text(TOKEN)
        assert await call(Transport(f"127.0.0.1:{e.port}", token_file=token).connect()) == b"ping"
        assert e.calls[-1][0][AUTHORIZATION] == f"Bearer {TOKEN}"


async def test_a_change_of_any_file_is_seen_and_named(
    tmp_path: Path, pki: Pki, client_files: tuple[Path, Path]
) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text(TOKEN)
    ca.write_bytes(pki.ca.cert.read_bytes())
    cert, key = client_files
    transport = Transport("127.0.0.1:1", ca_file=ca, cert_file=cert, key_file=key, token_file=token)
    for path, flag in ((token, "--token-file"), (ca, "--tls-ca"), (cert, "--tls-cert"), (key, "--tls-key")):
        original = path.read_bytes()
        connection = transport.connect()
        assert connection.changed() is None
        replace(path, original + b"\n")
        assert connection.changed() == f"{flag} {path}"
        os.unlink(path)  # gone (a Secret's atomic swap midway) is a change too
        assert connection.changed() == f"{flag} {path}"
        replace(path, original)  # the same bytes in a new file: a new inode, still a change
        assert connection.changed() == f"{flag} {path}"
    # A plain connection never changes.
    assert plaintext("127.0.0.1:1").changed() is None


def test_unusable_token_files_are_named_without_the_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n\n")
    with pytest.raises(TransportFileError, match=r"--token-file .*: empty"):
        read_token(token)
    token.write_text(f"{TOKEN} {TOKEN}\n")
    with pytest.raises(TransportFileError) as e:
        read_token(token)
    assert TOKEN not in str(e.value) and "--token-file" in str(e.value)
    with pytest.raises(TransportFileError, match="cannot read"):
        read_token(tmp_path / "missing")
    assert isinstance(e.value, OSError)  # the stream loop retries it with backoff


async def test_until_changed_ends_the_work_when_a_file_changes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    connection = Transport("127.0.0.1:1", token_file=token).connect()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    work = asyncio.create_task(connection.until_changed(forever(), 0.02))
    await asyncio.sleep(0.1)
    assert not work.done()
    replace(token, TOKEN + "x")
    assert await asyncio.wait_for(work, 5) is True and cancelled.is_set()

    async def fails() -> None:
        raise ConnectionError("the stream ended")

    with pytest.raises(ConnectionError, match="the stream ended"):
        await connection.until_changed(fails(), 0.02)
    await connection.channel.close()


def test_transport_from_settings(tmp_path: Path, pki: Pki) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    settings = AgentSettings(
        collector="collector.skewwatch:4317",
        tls_ca_file=pki.ca.cert,
        tls_cert_file=pki.pod.cert,
        tls_key_file=pki.pod.key,
        tls_server_name="collector.skewwatch.svc",
        token_file=token,
    ).validate()
    t = Transport.from_settings(settings)
    assert (t.target, t.ca_file, t.cert_file, t.key_file) == (
        "collector.skewwatch:4317",
        pki.ca.cert,
        pki.pod.cert,
        pki.pod.key,
    )
    assert (t.server_name, t.token_file) == ("collector.skewwatch.svc", token)


async def test_the_agent_reconnects_with_a_rotated_token_before_the_old_one_is_revoked(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = "old-" + secrets.token_hex(16), "new-" + secrets.token_hex(16)
    tokens, agent_token = tmp_path / "agent-tokens", tmp_path / "token"
    replace(tokens, f"ml {old}\n")
    replace(agent_token, old)
    collector = Collector(
        settings_for(
            tmp_path,
            shutdown_grace_s=0.2,
            tls_cert_file=pki.server.cert,
            tls_key_file=pki.server.key,
            tls_client_ca_file=pki.ca.cert,
            agent_tokens=tokens,
        )
    )
    ports = await collector.start()
    identity = PodIdentity("ml", "llm-0", "gpu-node-1", "ml/Deployment/llm", "env", agent_id="ml/llm-0")
    latest = LatestSnapshot()
    await latest.publish(make_snapshot())
    transport = Transport(
        f"127.0.0.1:{ports.grpc}",
        ca_file=pki.ca.cert,
        cert_file=pki.spiffe.cert,
        key_file=pki.spiffe.key,
        token_file=agent_token,
    )
    stream = AgentStream(transport.target, lambda _: identity, latest, 0.1, connect=transport.connect)
    task = asyncio.create_task(stream.run_forever())
    try:
        with caplog.at_level(logging.INFO):
            await asyncio.wait_for(stream.connected.wait(), 10)
            # The rotation: the collector takes both tokens, the agent's file gets the new one...
            replace(tokens, f"ml {old}\nml {new}\n")
            await asyncio.sleep(1.1)  # the collector's token file is looked at once a second at most
            replace(agent_token, new)
            await wait_until(
                "the agent to reconnect",
                lambda: "--token-file" in caplog.text and "reconnecting" in caplog.text,
            )
            # ...then the old one is revoked: the agent, on the new token already, is not cut.
            replace(tokens, f"ml {new}\n")
            await asyncio.sleep(1.2)
            await latest.publish(make_snapshot())
            acked = stream.acked
            await wait_until("a report acked after the revocation", lambda: stream.acked > acked, 10)
        assert "UNAUTHENTICATED" not in caplog.text and old not in caplog.text and new not in caplog.text
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await collector.stop()


async def test_credentials_that_arrive_after_the_agent_started_are_used_once_there(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    # The kubelet fills an optional Secret volume in once the Secret exists: an agent started
    # before that must wait for the files, not exit (it would crash-loop beside its engine).
    token = "ns-" + secrets.token_hex(16)
    tokens, ca, agent_token = (
        tmp_path / "agent-tokens",
        tmp_path / "creds" / "ca.crt",
        tmp_path / "creds" / "token",
    )
    replace(tokens, f"ml {token}\n")
    settings = AgentSettings(collector="10.0.0.1:50051", tls_ca_file=ca, token_file=agent_token).validate()
    assert settings.tls and not ca.exists()  # valid without its files
    collector = Collector(
        settings_for(
            tmp_path, shutdown_grace_s=0.2, tls_cert_file=pki.server.cert, tls_key_file=pki.server.key,
            agent_tokens=tokens,
        )
    )  # fmt: skip
    ports = await collector.start()
    identity = PodIdentity("ml", "llm-0", "gpu-node-1", "ml/Deployment/llm", "env", agent_id="ml/llm-0")
    latest = LatestSnapshot()
    await latest.publish(make_snapshot())
    transport = Transport(f"127.0.0.1:{ports.grpc}", ca_file=ca, token_file=agent_token)
    stream = AgentStream(transport.target, lambda _: identity, latest, 0.1, connect=transport.connect)
    stream.backoff.cap_s = 0.3
    task = asyncio.create_task(stream.run_forever())
    try:
        with caplog.at_level(logging.INFO):
            await wait_until(
                "the missing file named",
                lambda: f"cannot connect: --token-file {agent_token}: cannot read" in caplog.text,
            )
            assert not stream.connected.is_set()
            ca.parent.mkdir()
            replace(ca, pki.ca.cert.read_bytes())
            replace(agent_token, token)
            await asyncio.wait_for(stream.connected.wait(), 10)
        assert token not in caplog.text
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await collector.stop()
