"""Authenticated ingest over real gRPC against a real collector: TLS, mutual TLS with certificate
identity (SPIFFE ID, skewwatch pod URN), bearer tokens scoped to namespaces, their reload without
a restart, and what is counted (``skewwatch.auth.refused`` as ``/metrics`` shows it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.cluster.injection import NOT_STARTED
from collector.errors import SettingsError
from collector.ingest.auth import (
    AgentAuth,
    CertIdentity,
    Principal,
    ServerCredentialFiles,
    agent_token_label,
    cert_identity,
    pod_urn,
    spiffe_namespace,
)
from collector.main import Collector
from collector.tokens import TokenFile
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.identity import PodIdentity
from tests.support.collector import (
    STREAM_METHOD,
    AgentStream,
    heartbeat_msg,
    hello_msg,
    make_snapshot,
    settings_for,
    snapshot_msg,
    wait_until,
)
from tests.support.tls import Issued, Pki, make_ca, make_pki

TOKEN_ALL = "all-" + secrets.token_hex(16)
TOKEN_ML = "ml-" + secrets.token_hex(16)
TOKEN_OTHER = "other-" + secrets.token_hex(16)
TOKENS = (TOKEN_ALL, TOKEN_ML, TOKEN_OTHER)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class Stream(AgentStream):
    """tests.support's agent stream, with call metadata."""

    def __init__(self, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]] = ()) -> None:
        method: Any = channel.stream_stream(
            STREAM_METHOD, request_serializer=None, response_deserializer=pb.CollectorMessage.FromString
        )
        self.call = method(metadata=tuple(metadata))


@dataclass
class Served:
    collector: Collector
    grpc_port: int
    http_port: int
    channels: list[grpc.aio.Channel]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def plain(self) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(self.target)
        self.channels.append(channel)
        return channel

    def tls(self, ca: Path, client: Issued | None = None) -> grpc.aio.Channel:
        creds = grpc.ssl_channel_credentials(
            ca.read_bytes(),
            client.key.read_bytes() if client is not None else None,
            client.cert.read_bytes() if client is not None else None,
        )
        channel = grpc.aio.secure_channel(self.target, creds)
        self.channels.append(channel)
        return channel

    async def refused(self) -> dict[str, float]:
        """``skewwatch.auth.refused`` by ``surface/reason``, as ``GET /metrics`` shows it."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.http_port}/metrics") as r,
        ):
            assert r.status == 200
            text = await r.text()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.startswith("skewwatch_auth_refused") and not s.name.endswith("_created"):
                    out[f"{s.labels['surface']}/{s.labels['reason']}"] = s.value
        return out

    async def pods(self) -> list[tuple[str, str]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.http_port}/api/v1/pods") as r,
        ):
            body = await r.json()
        return sorted((p["namespace"], p["pod"]) for p in body["pods"])


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, **kw: Any) -> AsyncIterator[Served]:
    collector = Collector(settings_for(tmp_path, shutdown_grace_s=0.2, **kw))
    ports = await collector.start()
    served = Served(collector, ports.grpc, ports.http, [])
    try:
        yield served
        # A collector stopped during its first injection check can hang in stop (seen here, not
        # this module's subject): let that check finish first.
        injection = collector.injection
        if injection is not None:
            await wait_until("the first injection check", lambda: injection.report().reason != NOT_STARTED)
    finally:
        for channel in served.channels:
            await channel.close()
        await collector.stop()


def write_tokens(path: Path, lines: Sequence[str]) -> None:
    """Replace the token file as an editor or a Secret update would: a new file renamed over it."""
    tmp = path.with_suffix(".new")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)


async def accepted(
    channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]] = (), **hello: Any
) -> Stream:
    """A stream whose Hello and first snapshot were acknowledged."""
    s = Stream(channel, metadata)
    reply = await s.exchange(hello_msg(1, **hello))
    assert reply.WhichOneof("body") == "ack", reply
    reply = await s.exchange(snapshot_msg(2, make_snapshot()))
    assert reply.WhichOneof("body") == "ack", reply
    return s


async def refusal(
    channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]] = (), **hello: Any
) -> tuple[grpc.StatusCode, str]:
    """The status of a stream expected to be refused at (or before) its Hello."""
    s = Stream(channel, metadata)
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        await s.send(hello_msg(1, **hello))
    return await s.status()


def served_serial(port: int, ca: Path) -> int:
    """The serial number of the certificate the gRPC port presents to a new TLS connection."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cert = tls.getpeercert()
    assert cert is not None
    return int(str(cert["serialNumber"]), 16)


# -- TLS ---------------------------------------------------------------------------------------


async def test_a_tls_agent_streams_and_a_plaintext_or_wrong_ca_agent_cannot(tmp_path: Path, pki: Pki) -> None:
    async with serve(tmp_path, tls_cert_file=pki.server.cert, tls_key_file=pki.server.key) as c:
        s = await accepted(c.tls(pki.ca.cert))
        await s.exchange(heartbeat_msg(3, make_snapshot().fingerprint.overall))
        assert await c.pods() == [("ml", "llm-0")]
        # An agent that trusts another CA refuses the collector's certificate: no stream at all.
        code, _ = await refusal(c.tls(pki.untrusted_ca.cert), pod="llm-1")
        assert code is grpc.StatusCode.UNAVAILABLE
        # A plaintext agent gets no HTTP/2 from a TLS port.
        code, _ = await refusal(c.plain(), pod="llm-2")
        assert code is grpc.StatusCode.UNAVAILABLE
        assert await c.pods() == [("ml", "llm-0")]


async def test_plaintext_is_warned_about_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="collector.main"):
        async with serve(tmp_path):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("gRPC ingest on 127.0.0.1:0 is plaintext" in w for w in warnings), warnings


async def test_a_replaced_certificate_is_served_to_new_connections_without_a_restart(
    tmp_path: Path, pki: Pki
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    async with serve(tmp_path, tls_cert_file=cert, tls_key_file=key) as c:
        assert await asyncio.to_thread(served_serial, c.grpc_port, pki.ca.cert) == pki.server.serial
        old = await accepted(c.tls(pki.ca.cert))
        # cert-manager renews: a new key and certificate, from a new CA this time.
        renewed_ca = make_ca(tmp_path, "renewed-ca")
        renewed = renewed_ca.server("renewed")
        for src, dst in ((renewed.key, key), (renewed.cert, cert)):
            shutil.copy(src, dst.with_suffix(".tmp"))
            os.replace(dst.with_suffix(".tmp"), dst)
        assert await asyncio.to_thread(served_serial, c.grpc_port, renewed_ca.cert) == renewed.serial
        # New agents that trust the new CA connect; the stream made before goes on.
        await accepted(c.tls(renewed_ca.cert), pod="llm-1")
        reply = await old.exchange(heartbeat_msg(3, make_snapshot().fingerprint.overall))
        assert reply.WhichOneof("body") == "ack"
        # A half-written pair (a key that is not the certificate's) keeps the current one.
        shutil.copy(pki.server.key, key)
        assert await asyncio.to_thread(served_serial, c.grpc_port, renewed_ca.cert) == renewed.serial
        assert await c.pods() == [("ml", "llm-0"), ("ml", "llm-1")]


async def test_unusable_tls_files_fail_the_start_naming_the_flag(tmp_path: Path, pki: Pki) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for kw, flag in (
        ({"tls_cert_file": garbage, "tls_key_file": pki.server.key}, "--grpc-tls-cert"),
        ({"tls_cert_file": pki.server.cert, "tls_key_file": pki.spiffe.key}, "--grpc-tls-cert"),
        (
            {"tls_cert_file": pki.server.cert, "tls_key_file": pki.server.key, "tls_client_ca_file": garbage},
            "--grpc-client-ca",
        ),
    ):
        collector = Collector(settings_for(tmp_path, **kw))
        with pytest.raises(SettingsError) as e:
            await collector.start()
        assert e.value.flag == flag, e.value


# -- mutual TLS --------------------------------------------------------------------------------


def mtls(pki: Pki, **kw: Any) -> dict[str, Any]:
    return {
        "tls_cert_file": pki.server.cert,
        "tls_key_file": pki.server.key,
        "tls_client_ca_file": pki.ca.cert,
        **kw,
    }


async def test_mutual_tls_takes_certificates_of_the_ca_for_the_pods_they_name(
    tmp_path: Path, pki: Pki
) -> None:
    async with serve(tmp_path, **mtls(pki)) as c:
        ca = pki.ca.cert
        await accepted(c.tls(ca, pki.spiffe), pod="llm-1")  # spiffe://cluster.local/ns/ml/sa/...: any ml pod
        await accepted(c.tls(ca, pki.pod), pod="llm-0")  # urn:skewwatch:pod:ml/llm-0
        await accepted(c.tls(ca, pki.plain), namespace="other", pod="any")  # no URI SAN: cluster-wide
        assert await c.refused() == {}
        assert await c.pods() == [("ml", "llm-0"), ("ml", "llm-1"), ("other", "any")]


async def test_mutual_tls_refuses_a_certificate_for_another_namespace_or_pod(
    tmp_path: Path, pki: Pki
) -> None:
    async with serve(tmp_path, **mtls(pki)) as c:
        ca = pki.ca.cert
        code, details = await refusal(c.tls(ca, pki.spiffe), namespace="prod", pod="llm-0")
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "namespace ml" in details and "prod/llm-0" in details, details
        code, details = await refusal(c.tls(ca, pki.pod), namespace="ml", pod="llm-9")
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "pod ml/llm-0" in details and "ml/llm-9" in details, details
        code, _ = await refusal(c.tls(ca, pki.pod), namespace="prod", pod="llm-0")
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert (await c.refused()).get("grpc/identity") == 3
        await accepted(c.tls(ca, pki.pod), namespace="ml", pod="llm-0")
        assert await c.pods() == [("ml", "llm-0")]  # nothing of the refused Hellos was stored


async def test_mutual_tls_without_a_trusted_client_certificate_fails_the_handshake(
    tmp_path: Path, pki: Pki
) -> None:
    """gRPC's Python API cannot ask for a client certificate without requiring it: such a client
    fails the TLS handshake (UNAVAILABLE) and the collector's code never sees it to count it."""
    async with serve(tmp_path, **mtls(pki)) as c:
        code, _ = await refusal(c.tls(pki.ca.cert))  # no client certificate
        assert code is grpc.StatusCode.UNAVAILABLE
        code, _ = await refusal(c.tls(pki.ca.cert, pki.untrusted))  # signed by a CA nobody trusts
        assert code is grpc.StatusCode.UNAVAILABLE
        assert await c.refused() == {} and await c.pods() == []


# -- bearer tokens -----------------------------------------------------------------------------


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "agent-tokens"
    write_tokens(path, ["# scope token", f"_all {TOKEN_ALL}", f"ml {TOKEN_ML}", f"other {TOKEN_OTHER}"])
    return path


async def test_a_stream_without_a_known_token_is_unauthenticated_and_counted(
    tmp_path: Path, tokens: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with serve(tmp_path, agent_tokens=tokens) as c:
            channel = c.plain()
            code, details = await refusal(channel)
            assert code is grpc.StatusCode.UNAUTHENTICATED and "no bearer token" in details, details
            wrong = "x" + TOKEN_ML[1:]
            code, details = await refusal(channel, bearer(wrong))
            assert code is grpc.StatusCode.UNAUTHENTICATED and "not one this collector accepts" in details
            assert wrong not in details
            code, _ = await refusal(channel, (("authorization", f"Basic {TOKEN_ML}"),))
            assert code is grpc.StatusCode.UNAUTHENTICATED
            assert (await c.refused()).get("grpc/unauthenticated") == 3
            await accepted(channel, bearer(TOKEN_ML))
            await accepted(channel, bearer(TOKEN_ALL), namespace="prod", pod="llm-0")
            assert await c.pods() == [("ml", "llm-0"), ("prod", "llm-0")]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "UNAUTHENTICATED" in text  # the refusal is logged...
    assert not any(t in text or t[1:] in text for t in (*TOKENS, wrong))  # ...never the token


async def test_a_token_for_a_namespace_is_refused_for_another(tmp_path: Path, tokens: Path) -> None:
    async with serve(tmp_path, agent_tokens=tokens) as c:
        code, details = await refusal(c.plain(), bearer(TOKEN_ML), namespace="prod", pod="llm-0")
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "namespace ml" in details and "prod/llm-0" in details and TOKEN_ML not in details, details
        assert await c.refused() == {"grpc/identity": 1}
        assert await c.pods() == []


async def test_a_rotated_token_file_takes_the_new_token_and_cuts_the_old_ones_without_a_restart(
    tmp_path: Path, tokens: Path
) -> None:
    new = "new-" + secrets.token_hex(16)
    async with serve(tmp_path, agent_tokens=tokens) as c:
        channel = c.plain()
        live = await accepted(channel, bearer(TOKEN_ML))
        code, _ = await refusal(channel, bearer(new))
        assert code is grpc.StatusCode.UNAUTHENTICATED
        write_tokens(tokens, [f"_all {TOKEN_ALL}", f"ml {new}"])
        await asyncio.sleep(1.1)  # TokenFile looks at the file at most once a second
        await accepted(channel, bearer(new), pod="llm-1")
        code, details = await refusal(channel, bearer(TOKEN_ML), pod="llm-2")
        assert code is grpc.StatusCode.UNAUTHENTICATED, details
        # The stream opened with the revoked token ends at its next message.
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await live.send(heartbeat_msg(3, make_snapshot().fingerprint.overall))
        code, details = await live.status()
        assert code is grpc.StatusCode.UNAUTHENTICATED and "revoked" in details, details
        assert (await c.refused()).get("grpc/unauthenticated") == 3
        # A bad edit keeps the tokens there were.
        write_tokens(tokens, ["ml short"])
        await asyncio.sleep(1.1)
        await accepted(channel, bearer(new), pod="llm-3")


async def test_a_bad_token_file_fails_the_start(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    write_tokens(path, [f"Not_A_Namespace {TOKEN_ML}"])
    with pytest.raises(SettingsError) as e:
        await Collector(settings_for(tmp_path, agent_tokens=path)).start()
    assert e.value.flag == "--agent-tokens" and TOKEN_ML not in str(e.value)


async def test_token_and_client_certificate_both_apply(tmp_path: Path, pki: Pki, tokens: Path) -> None:
    async with serve(tmp_path, **mtls(pki, agent_tokens=tokens)) as c:
        ca = pki.ca.cert
        await accepted(c.tls(ca, pki.spiffe), bearer(TOKEN_ML))
        code, _ = await refusal(c.tls(ca, pki.spiffe))
        assert code is grpc.StatusCode.UNAUTHENTICATED
        # The _all token does not widen a certificate for namespace ml, nor the reverse.
        code, _ = await refusal(c.tls(ca, pki.spiffe), bearer(TOKEN_ALL), namespace="prod")
        assert code is grpc.StatusCode.PERMISSION_DENIED
        code, _ = await refusal(c.tls(ca, pki.plain), bearer(TOKEN_OTHER), namespace="ml", pod="llm-5")
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert await c.refused() == {"grpc/unauthenticated": 1, "grpc/identity": 2}


# -- the pure parts ----------------------------------------------------------------------------


def test_spiffe_ids_and_pod_urns_parse_strictly() -> None:
    assert spiffe_namespace("spiffe://cluster.local/ns/ml/sa/skewwatch") == "ml"
    assert spiffe_namespace("spiffe://example.org/ns/team-a/sa/default") == "team-a"
    for bad in (
        "spiffe://cluster.local/ns/ml",
        "spiffe://cluster.local/ns/ml/sa/x/extra",
        "spiffe://cluster.local/ns/ML/sa/x",
        "spiffe:///ns/ml/sa/x",
        "spiffe://cluster.local/workload/x",
        "https://cluster.local/ns/ml/sa/x",
    ):
        assert spiffe_namespace(bad) is None, bad
    assert pod_urn("urn:skewwatch:pod:ml/llm-0") == ("ml", "llm-0")
    for bad in (
        "urn:skewwatch:pod:ml",
        "urn:skewwatch:pod:/llm-0",
        "urn:skewwatch:pod:ml/",
        "urn:other:ml/x",
    ):
        assert pod_urn(bad) is None, bad
    assert agent_token_label("_all") and agent_token_label("ml-prod")
    for bad in ("ML", "-ml", "a" * 64, "ml.prod", ""):
        assert not agent_token_label(bad), bad


def test_certificate_identity_from_the_auth_context() -> None:
    def ctx(*uris: str) -> dict[str, list[bytes]]:
        return {
            "transport_security_type": [b"ssl"],
            "x509_subject": [b"CN=agent"],
            "peer_uri": [u.encode() for u in uris],
        }

    assert cert_identity({"transport_security_type": [b"insecure"]}) is None
    assert cert_identity({"transport_security_type": [b"ssl"]}) is None  # TLS, no client certificate
    plain = cert_identity(ctx())
    assert plain is not None and plain.cluster_wide
    two = cert_identity(ctx("spiffe://td/ns/a/sa/x", "urn:skewwatch:pod:b/p", "https://example.org/x"))
    assert two == CertIdentity(
        "CN=agent",
        ("spiffe://td/ns/a/sa/x", "urn:skewwatch:pod:b/p", "https://example.org/x"),
        frozenset({"a"}),
        frozenset({("b", "p")}),
    )
    assert two.refusal("a", "p") is not None and two.refusal("b", "p") is not None  # both must hold
    odd = cert_identity(ctx("spiffe://td/not-kubernetes"))
    assert odd is not None and not odd.cluster_wide  # an ID that names no namespace covers nothing
    assert odd.refusal("ml", "llm-0") is not None


def test_a_token_listed_under_two_namespaces_covers_both(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    write_tokens(path, [f"ml {TOKEN_ML}", f"prod {TOKEN_ML}"])
    auth = AgentAuth(TokenFile(path, "--agent-tokens", agent_token_label))
    principal = auth.authenticate(bearer(TOKEN_ML), {})
    assert principal.scopes == {"ml", "prod"} and TOKEN_ML not in principal.describe()
    for ns in ("ml", "prod"):
        auth.authorize(principal, PodIdentity(namespace=ns, pod="p"))
    with pytest.raises(Exception, match="namespace ml, prod"):
        auth.authorize(principal, PodIdentity(namespace="dev", pod="p"))
    assert Principal().describe() == "anonymous"


def test_server_credentials_keep_the_pair_they_have_until_a_good_one_is_on_disk(
    tmp_path: Path, pki: Pki
) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    files = ServerCredentialFiles(cert, key)
    assert files.fetch() is None  # unchanged
    key.write_bytes(pki.spiffe.key.read_bytes())  # not the certificate's key
    assert files.fetch() is None and "--grpc-tls-cert" in files.error and files.reloads == 0
    other = pki.ca.server("server2")
    shutil.copy(other.cert, cert)
    shutil.copy(other.key, key)
    time.sleep(0.01)
    assert files.fetch() is not None and files.reloads == 1 and files.error == ""
    assert files.fetch() is None
