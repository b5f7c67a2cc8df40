"""The webhook over real HTTPS on loopback, with certificates made by the openssl CLI: answers,
refusals of bodies that are too big, too slow or no review, and certificate reload."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from skewwatch import tls
from skewwatch.webhook import attach, register, server
from skewwatch.webhook.config import WebhookConfig
from skewwatch.webhook.errors import ConfigError, TLSFilesError
from skewwatch.webhook.run import serve
from skewwatch.webhook.server import RunningWebhook, start_webhook
from tests.webhook.support import make_cert, pod_review, vllm_pod


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("certs")
    return {"a": make_cert(d, "a", "webhook-a"), "b": make_cert(d, "b", "webhook-b")}


@pytest.fixture
def served(tmp_path: Path, certs: dict[str, tuple[Path, Path]]) -> tuple[Path, Path]:
    """The files the server reads: a copy of certificate a, to be replaced by the tests."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(certs["a"][0], cert)
    shutil.copy(certs["a"][1], key)
    return cert, key


@pytest.fixture
async def webhook(served: tuple[Path, Path]) -> AsyncIterator[RunningWebhook]:
    running = await start_webhook("127.0.0.1", 0, served[0], served[1], WebhookConfig())
    try:
        yield running
    finally:
        await running.stop()


def _client_tls(*cas: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for ca in cas:
        ctx.load_verify_locations(ca)
    return ctx


async def _peer_cert(port: int, ctx: ssl.SSLContext) -> bytes:
    """The DER certificate a new TLS connection to the server is shown."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert isinstance(der, bytes)
        return der
    finally:
        writer.close()
        await writer.wait_closed()


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


async def _post(
    port: int, ctx: ssl.SSLContext, body: bytes, path: str = "/mutate"
) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"https://localhost:{port}{path}",
            data=body,
            ssl=ctx,
            headers={"Content-Type": "application/json"},
        ) as r,
    ):
        return r.status, await r.json()


async def test_a_real_https_review_gets_its_uid_back_with_a_base64_json_patch(
    webhook: RunningWebhook, certs: dict[str, tuple[Path, Path]]
) -> None:
    review = pod_review(vllm_pod({"skewwatch.io/inject": "true"}), uid="a1b2")
    status, out = await _post(webhook.port, _client_tls(certs["a"][0]), json.dumps(review).encode())
    assert status == 200 and out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    response = out["response"]
    assert isinstance(response, dict)
    assert response["uid"] == "a1b2" and response["allowed"] is True and response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    assert any(op["path"] == "/spec/initContainers" for op in ops)
    status, out = await _post(
        webhook.port,
        _client_tls(certs["a"][0]),
        json.dumps(pod_review(vllm_pod())).encode(),
        "/mutate/namespace-enabled",
    )
    assert status == 200 and "patch" in out["response"]  # type: ignore[operator]
    assert webhook.handlers.counts == {"injected": 2}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not JSON"),
        (b'{"kind": "AdmissionReview"}', 400, "no request object"),
        (b"x" * (server.MAX_BODY_BYTES + 1), 413, "more than"),
    ],
)
async def test_a_body_that_is_no_review_or_too_big_is_refused_with_the_reason(
    webhook: RunningWebhook, certs: dict[str, tuple[Path, Path]], body: bytes, status: int, says: str
) -> None:
    got, out = await _post(webhook.port, _client_tls(certs["a"][0]), body)
    assert got == status and says in str(out["error"])


async def test_a_chunked_body_past_the_cap_is_refused_without_reading_it_all(
    webhook: RunningWebhook, certs: dict[str, tuple[Path, Path]]
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 64 MiB offered, no Content-Length
            sent += 1
            yield b"[" * 65536

    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"https://localhost:{webhook.port}/mutate", data=chunks(), ssl=_client_tls(certs["a"][0])
        ) as r,
    ):
        assert r.status == 413
    assert sent < 1000


async def test_a_client_that_stops_sending_its_body_gets_408_in_bounded_time(
    webhook: RunningWebhook, certs: dict[str, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "BODY_TIMEOUT_S", 0.5)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", webhook.port, ssl=_client_tls(certs["a"][0]), server_hostname="localhost"
    )
    writer.write(b'POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{"req')
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout=10)
    writer.close()
    assert b" 408 " in head


async def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(
    webhook: RunningWebhook,
    served: tuple[Path, Path],
    certs: dict[str, tuple[Path, Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tls, "RELOAD_CHECK_S", 0.0)
    both = _client_tls(certs["a"][0], certs["b"][0])
    assert await _peer_cert(webhook.port, both) == _der(certs["a"][0])
    # A renewal written in place, certificate first: the half-written pair keeps a.
    served[0].write_bytes(certs["b"][0].read_bytes())
    assert await _peer_cert(webhook.port, both) == _der(certs["a"][0])
    served[1].write_bytes(certs["b"][1].read_bytes())
    assert await _peer_cert(webhook.port, both) == _der(certs["b"][0])
    assert webhook.tls.loads == 2
    # Only b is trusted now, and the webhook still answers over it.
    review = pod_review(vllm_pod({"skewwatch.io/inject": "true"}))
    status, _ = await _post(webhook.port, _client_tls(certs["b"][0]), json.dumps(review).encode())
    assert status == 200
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _post(webhook.port, _client_tls(certs["a"][0]), json.dumps(review).encode())


async def test_a_missing_or_mismatched_certificate_is_a_typed_error_naming_the_file(
    tmp_path: Path, certs: dict[str, tuple[Path, Path]]
) -> None:
    with pytest.raises(TLSFilesError, match="no such file"):
        await start_webhook("127.0.0.1", 0, tmp_path / "none.crt", certs["a"][1], WebhookConfig())
    with pytest.raises(TLSFilesError, match="not a usable certificate and key") as e:
        await start_webhook("127.0.0.1", 0, certs["a"][0], certs["b"][1], WebhookConfig())
    assert "PRIVATE KEY" not in str(e.value)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="skewwatch")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def test_the_webhook_command_serves_with_its_config_file_until_stopped(
    tmp_path: Path, served: tuple[Path, Path], certs: dict[str, tuple[Path, Path]], port: int
) -> None:
    config = tmp_path / "webhook.yaml"
    config.write_text("image: registry.local/agent:9\nsidecarMode: container\n")
    args = _parse(
        ["webhook", "--listen", f"127.0.0.1:{port}", "--tls-cert", str(served[0]),
         "--tls-key", str(served[1]), "--config", str(config)]
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(serve(args, stop))
    ctx = _client_tls(certs["a"][0])
    for _ in range(100):
        try:
            status, out = await _post(
                port, ctx, json.dumps(pod_review(vllm_pod())).encode(), "/mutate/namespace-enabled"
            )
            break
        except aiohttp.ClientConnectorError:
            await asyncio.sleep(0.05)
    ops = json.loads(base64.b64decode(out["response"]["patch"]))  # type: ignore[index]
    (agent,) = [op["value"] for op in ops if op["path"] == "/spec/containers/2"]
    assert status == 200 and agent["image"] == "registry.local/agent:9"
    stop.set()
    await asyncio.wait_for(task, timeout=10)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--tls-cert", "c", "--tls-key", "k"], "--listen: required"),
        (["--listen", "127.0.0.1:1"], "--tls-cert and --tls-key"),
    ],
)
async def test_the_command_without_listen_or_tls_is_a_config_error(argv: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        await serve(_parse(["webhook", *argv]), asyncio.Event())


def test_a_bad_listen_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _parse(["webhook", "--listen", "localhost"])
    assert e.value.code == 2 and "expected HOST:PORT" in capsys.readouterr().err


def test_registering_the_command_imports_no_server_and_no_engine_tables() -> None:
    code = (
        "import sys, argparse; from skewwatch.webhook import register; "
        "register(argparse.ArgumentParser().add_subparsers()); "
        "heavy = ('aiohttp', 'agent.engines', 'yaml', 'skewwatch.webhook.inject'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ},
    )
    assert out.stdout.strip() == "[]"


def _with_attached(func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """A parser with a stand-in ``collector`` command the webhook is attached to, as skewwatch/cli.py does."""
    parser = argparse.ArgumentParser(prog="skewwatch")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collector")
    p.add_argument("--grpc", default="127.0.0.1:0")
    p.set_defaults(func=func)
    attach(p)
    return parser


def test_a_command_given_webhook_flags_runs_with_the_webhook_served_beside_it(
    served: tuple[Path, Path], certs: dict[str, tuple[Path, Path]], port: int
) -> None:
    seen: list[int] = []

    def collector(args: argparse.Namespace) -> int:
        # The command's own event loop in the main thread, as the collector runs; the webhook answers.
        body = json.dumps(pod_review(vllm_pod())).encode()
        status, _ = asyncio.run(_post(port, _client_tls(certs["a"][0]), body, "/mutate/namespace-enabled"))
        seen.append(status)
        return 7

    argv = [
        "collector",
        "--webhook",
        f"127.0.0.1:{port}",
        "--tls-cert",
        str(served[0]),
        "--tls-key",
        str(served[1]),
    ]
    args = _with_attached(collector).parse_args(argv)
    assert args.func(args) == 7 and seen == [200]
    with pytest.raises(ConnectionRefusedError):  # stopped when the command returned
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_without_webhook_flags_the_command_runs_alone_and_a_bad_certificate_stops_both(
    tmp_path: Path, certs: dict[str, tuple[Path, Path]], port: int
) -> None:
    calls: list[str] = []

    def collector(args: argparse.Namespace) -> int:
        calls.append(args.grpc)
        return 0

    parser = _with_attached(collector)
    args = parser.parse_args(["collector"])
    assert args.func(args) == 0 and calls == ["127.0.0.1:0"]
    bad = [
        "collector",
        "--webhook",
        f"127.0.0.1:{port}",
        "--tls-cert",
        str(certs["a"][0]),
        "--tls-key",
        str(certs["b"][1]),
    ]
    args = parser.parse_args(bad)
    with pytest.raises(TLSFilesError):
        args.func(args)
    assert calls == ["127.0.0.1:0"]  # the command never started


def test_the_webhook_process_answers_over_https_and_exits_cleanly_on_sigterm(
    tmp_path: Path, served: tuple[Path, Path], certs: dict[str, tuple[Path, Path]], port: int
) -> None:
    # A real process running the command as skewwatch/cli.py will (its parser, then func).
    script = (
        "import argparse, logging, sys; from skewwatch.webhook import register; "
        "logging.basicConfig(level=logging.INFO); "
        "p = argparse.ArgumentParser(); register(p.add_subparsers(dest='command', required=True)); "
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    argv = [
        "webhook",
        "--listen",
        f"127.0.0.1:{port}",
        "--tls-cert",
        str(served[0]),
        "--tls-key",
        str(served[1]),
    ]
    log = (tmp_path / "webhook.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-c", script, *argv], stdout=log, stderr=subprocess.STDOUT)
    try:
        body = json.dumps(pod_review(vllm_pod({"skewwatch.io/inject": "true"}))).encode()
        for _ in range(200):
            try:
                status, out = asyncio.run(_post(port, _client_tls(certs["a"][0]), body))
                break
            except aiohttp.ClientConnectorError:
                assert proc.poll() is None, (tmp_path / "webhook.log").read_text()
                time.sleep(0.05)
        assert status == 200 and out["response"]["patchType"] == "JSONPatch"  # type: ignore[index]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "webhook.log").read_text()
    assert "webhook stopped: {'injected': 1}" in text
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
