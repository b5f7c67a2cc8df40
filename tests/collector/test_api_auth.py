"""Bearer tokens and roles on the collector's HTTP API, against a real collector on loopback.

Tokens from a ``ROLE TOKEN`` file and from a directory laid out the way the kubelet mounts a
Secret (``..data`` a link to a timestamped directory, each file a link into ``..data``, swapped
by renaming a new link over it). Every route the app registers is classified by
``collector.api.auth.ROUTE_ROLES``; without a token each ``/api/v1`` route answers 401, with a
read token every admin route answers 403 and changes nothing, with an admin token writes work.
Tokens are re-read on change without a restart; refusals are counted in ``/metrics``; HTTPS with
openssl-made certificates, and the ``skewwatch`` client speaking to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.api import auth
from collector.api.app import create_app
from collector.errors import SettingsError
from collector.main import Collector, http_security
from collector.settings import CollectorSettings
from tests.support.cli import run
from tests.support.collector import Running, feed, settings_for, started
from tests.support.paths import REPO
from tests.support.tls import self_signed

READ_TOKEN = "read-token-" + "r" * 24
ADMIN_TOKEN = "admin-token-" + "a" * 24
OTHER_READ = "second-read-" + "q" * 24
ALL_TOKENS = (READ_TOKEN, ADMIN_TOKEN, OTHER_READ)
CHALLENGE = 'Bearer realm="skewwatch"'
SPEC = (REPO / "tests" / "fixtures" / "intents" / "03-batching.modelspec.yaml").read_text()
# Values for each path parameter: the routes exist and the pod, workload and finding 1 do (feed).
CONCRETE = {"{namespace}": "ml", "{pod}": "llm-0", "{name}": "llm", "{id}": "1", "{kind}": "ModelSpec"}


def token_file(path: Path, *lines: str) -> Path:
    path.write_text("# API tokens\n" + "".join(f"{line}\n" for line in lines))
    return path


class SecretDir:
    """A directory as the kubelet mounts a Secret: files are links into ``..data``, itself a link
    to a timestamped directory; ``update`` writes a new one and renames a new link over ``..data``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.generation = 0

    def update(self, files: dict[str, str]) -> None:
        self.generation += 1
        stamp = f"..2026_12_02_00_00_{self.generation:02d}.{os.getpid()}"
        data = self.root / stamp
        data.mkdir()
        for name, value in files.items():
            (data / name).write_text(value + "\n")
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(stamp)
        old = (self.root / "..data").resolve() if (self.root / "..data").exists() else None
        os.replace(tmp, self.root / "..data")  # the atomic swap
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        for entry in self.root.iterdir():  # files the new generation dropped
            if not entry.name.startswith(".") and entry.name not in files:
                entry.unlink()
        if old is not None:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()


def concrete(pattern: str) -> str:
    for k, v in CONCRETE.items():
        pattern = pattern.replace(k, v)
    return pattern


def served_routes(running: Running, **kw: Any) -> set[tuple[str, str]]:
    """(method, pattern) of every route an app with every part the collector has registers."""

    async def metrics() -> tuple[bytes, str]:
        return b"", "text/plain"

    app = create_app(running.collector.pods, queries=running.collector.queries, metrics=metrics, **kw)
    return {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["file", "secret"])
async def secured(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    if request.param == "file":
        path = token_file(
            tmp_path / "tokens", f"read {READ_TOKEN}", f"admin {ADMIN_TOKEN}", f"read {OTHER_READ}"
        )
    else:
        secret = SecretDir(tmp_path / "secret")
        secret.update({"read": READ_TOKEN, "admin.ci": ADMIN_TOKEN, "read.alice": OTHER_READ})
        path = secret.root
    settings = settings_for(tmp_path, api_tokens=path, shutdown_grace_s=0.5)
    async with started(settings, tmp_path) as running:
        await feed(running)
        yield running


async def status_of(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, dict[str, str], bytes]:
    async with http.request(method, url, headers=headers, **kw) as r:
        return r.status, dict(r.headers), await r.read()


async def refused_counts(running: Running) -> dict[str, float]:
    """skewwatch.auth.refused{surface=api} by reason, from the rendered /metrics text."""
    assert running.collector.telemetry is not None
    text, _ = await running.collector.telemetry.render()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "skewwatch_auth_refused_total" and sample.labels.get("surface") == "api":
                counts[sample.labels["reason"]] = sample.value
    return counts


async def test_every_registered_route_is_in_the_role_table(running: Running) -> None:
    routes = served_routes(running)
    missing = {r for r in routes if r not in auth.ROUTE_ROLES}
    assert not missing, f"routes with no role in collector/api/auth.py ROUTE_ROLES: {sorted(missing)}"
    assert set(auth.ROUTE_ROLES) == routes  # and the table names no route that does not exist
    # Writes are admin, reads read (or open): the method says which, the table must agree.
    for (method, path), role in auth.ROUTE_ROLES.items():
        if method != "GET":
            assert role == auth.ADMIN, (method, path)
        elif path.startswith("/api/v1/") and path != "/api/v1/openapi.json":
            assert role == auth.READ, (method, path)
    # A route the table does not know fails closed.
    assert auth.route_role("PATCH", "/api/v1/pods") == auth.ADMIN
    assert auth.route_role("GET", "/api/v1/something-new") == auth.ADMIN
    assert auth.route_role("HEAD", "/api/v1/pods") == auth.READ


async def test_no_token_is_401_on_every_api_route_and_the_open_ones_stay_open(secured: Running) -> None:
    before = await refused_counts(secured)
    refused = 0
    async with aiohttp.ClientSession() as http:
        for method, pattern in sorted(served_routes(secured)):
            url = secured.http + concrete(pattern)
            for headers in (None, bearer("not-a-token-" + "x" * 20), {"Authorization": "Basic abc"}):
                status, h, body = await status_of(http, method, url, headers, json={})
                role = auth.ROUTE_ROLES[(method, pattern)]
                if role in (auth.OPEN, auth.METRICS):
                    assert status not in (401, 403), (method, pattern, status)
                    continue
                refused += 1
                assert status == 401, (method, pattern, status, body[:200])
                assert h["WWW-Authenticate"] == CHALLENGE
                assert h["Content-Type"].startswith("application/json")
                error = json.loads(body)["error"]
                assert error["code"] == "unauthenticated" and f"needs role {role}" in error["message"]
        # A path under /api/v1 that is no route: 401 first, then 404 or 405 with a token.
        for method, path, code in (("GET", "/api/v1/nothing", 404), ("PATCH", "/api/v1/pods", 405)):
            assert (await status_of(http, method, secured.http + path))[0] == 401
            assert (await status_of(http, method, secured.http + path, bearer(READ_TOKEN)))[0] == code
            refused += 1
        assert (await status_of(http, "GET", secured.http + "/nothing"))[0] == 404
    after = await refused_counts(secured)
    assert after.get("unauthenticated", 0) - before.get("unauthenticated", 0) == refused
    assert refused > 60


async def test_read_token_reads_and_is_403_on_every_admin_route(secured: Running) -> None:
    before = await refused_counts(secured)
    forbidden = 0
    async with aiohttp.ClientSession() as http:
        for token in (READ_TOKEN, OTHER_READ):
            for method, pattern in sorted(served_routes(secured)):
                role = auth.ROUTE_ROLES[(method, pattern)]
                url = secured.http + concrete(pattern)
                status, h, body = await status_of(http, method, url, bearer(token), json={})
                if role == auth.ADMIN:
                    forbidden += 1
                    assert status == 403, (method, pattern, status, body[:200])
                    assert h["WWW-Authenticate"].startswith(CHALLENGE)
                    assert b'"forbidden"' in body and b"needs role admin" in body
                    assert b"has role read" in body
                else:
                    assert status not in (401, 403), (method, pattern, status, body[:200])
        # Nothing a 403 refused happened: no baseline, the pod is still there.
        assert (await status_of(http, "GET", secured.http + "/api/v1/baselines", bearer(READ_TOKEN)))[
            2
        ].count(b'"workload"') == 0
        status, _, _ = await status_of(
            http, "GET", secured.http + "/api/v1/pods/ml/llm-0", bearer(READ_TOKEN)
        )
        assert status == 200
    after = await refused_counts(secured)
    assert after["forbidden"] - before.get("forbidden", 0) == forbidden >= 20


async def test_admin_token_records_a_baseline_and_posts_an_intent(secured: Running) -> None:
    async with aiohttp.ClientSession(headers=bearer(ADMIN_TOKEN)) as http:
        async with http.post(f"{secured.http}/api/v1/baselines/ml/llm", json={"note": "auth test"}) as r:
            assert r.status == 201, await r.text()
        async with http.post(f"{secured.http}/api/v1/intents", data=SPEC) as r:
            assert r.status == 201, await r.text()
            assert (await r.json())["created"][0]["name"] == "llama-batching"
        async with http.get(f"{secured.http}/api/v1/baselines/ml/llm") as r:
            assert r.status == 200  # admin reads too
        async with http.get(f"{secured.http}/api/v1/intents/ModelSpec/llama-batching") as r:
            assert r.status == 200
        async with http.delete(f"{secured.http}/api/v1/intents/ModelSpec/llama-batching") as r:
            assert r.status == 200


async def test_tokens_reload_from_a_rewritten_file_without_a_restart(tmp_path: Path) -> None:
    path = token_file(tmp_path / "tokens", f"read {READ_TOKEN}")
    new = "rotated-token-" + "n" * 24
    async with started(settings_for(tmp_path, api_tokens=path, shutdown_grace_s=0.5), tmp_path) as running:
        url = f"{running.http}/api/v1/pods"
        async with aiohttp.ClientSession() as http:
            assert (await status_of(http, "GET", url, bearer(READ_TOKEN)))[0] == 200
            assert (await status_of(http, "GET", url, bearer(new)))[0] == 401
            tmp = tmp_path / "tokens.new"
            token_file(tmp, f"read {new}")
            os.replace(tmp, path)
            took = await _until_status(http, url, new, 200)
            assert took < 3.0
            assert (await status_of(http, "GET", url, bearer(READ_TOKEN)))[0] == 401
            # A bad edit keeps the tokens that work.
            path.write_text("read short\n")
            await asyncio.sleep(1.2)
            assert (await status_of(http, "GET", url, bearer(new)))[0] == 200


async def _until_status(http: aiohttp.ClientSession, url: str, token: str, want: int) -> float:
    start = time.monotonic()
    while True:
        status = (await status_of(http, "GET", url, bearer(token)))[0]
        if status == want:
            return time.monotonic() - start
        assert time.monotonic() - start < 5.0, f"{token[:6]}…: still {status} after 5 s"
        await asyncio.sleep(0.1)


async def test_tokens_reload_when_the_kubelet_swaps_a_secret(tmp_path: Path) -> None:
    secret = SecretDir(tmp_path / "secret")
    secret.update({"read": READ_TOKEN, "admin": ADMIN_TOKEN})
    rotated = "rotated-admin-" + "z" * 24
    settings = settings_for(tmp_path, api_tokens=secret.root, shutdown_grace_s=0.5)
    async with started(settings, tmp_path) as running:
        url = f"{running.http}/api/v1/pods"
        post = f"{running.http}/api/v1/baselines/ml/llm"
        async with aiohttp.ClientSession() as http:
            assert (await status_of(http, "POST", post, bearer(ADMIN_TOKEN)))[0] == 404  # no workload yet
            secret.update({"read": READ_TOKEN, "admin": rotated})  # the admin token rotated
            took = await _until_status(http, url, rotated, 200)
            assert took < 3.0
            assert (await status_of(http, "POST", post, bearer(rotated)))[0] == 404  # admin: past auth
            assert (await status_of(http, "GET", url, bearer(ADMIN_TOKEN)))[0] == 401
            assert (await status_of(http, "GET", url, bearer(READ_TOKEN)))[0] == 200
            secret.update({"admin": rotated})  # the read token withdrawn
            await _until_status(http, url, READ_TOKEN, 401)


async def test_metrics_open_by_default_and_read_token_with_metrics_auth(tmp_path: Path) -> None:
    path = token_file(tmp_path / "tokens", f"read {READ_TOKEN}", f"admin {ADMIN_TOKEN}")
    async with (
        started(settings_for(tmp_path, api_tokens=path, shutdown_grace_s=0.5), tmp_path) as running,
        aiohttp.ClientSession() as http,
    ):
        status, _, body = await status_of(http, "GET", f"{running.http}/metrics")
        assert status == 200 and b"skewwatch_" in body
        for probe in ("/healthz", "/readyz", "/api/v1/openapi.json"):
            assert (await status_of(http, "GET", running.http + probe))[0] == 200
    (tmp_path / "b").mkdir()
    settings = settings_for(tmp_path / "b", api_tokens=path, metrics_auth=True, shutdown_grace_s=0.5)
    async with started(settings, tmp_path / "b") as running, aiohttp.ClientSession() as http:
        status, h, _ = await status_of(http, "GET", f"{running.http}/metrics")
        assert status == 401 and h["WWW-Authenticate"] == CHALLENGE
        status, _, body = await status_of(http, "GET", f"{running.http}/metrics", bearer(READ_TOKEN))
        assert status == 200
        samples = {
            (s.labels.get("surface"), s.labels.get("reason")): s.value
            for f in text_string_to_metric_families(body.decode())
            for s in f.samples
            if s.name == "skewwatch_auth_refused_total"
        }
        assert samples[("api", "unauthenticated")] == 1.0
        assert (await status_of(http, "GET", f"{running.http}/healthz"))[0] == 200


async def test_openapi_document_declares_the_scheme_and_each_role(secured: Running) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{secured.http}/api/v1/openapi.json") as r:
        assert r.status == 200  # open: clients discover the scheme from it
        doc = await r.json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        **doc["components"]["securitySchemes"]["bearerAuth"],
        "type": "http",
        "scheme": "bearer",
    }
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            role = auth.route_role(method.upper(), path)
            if role == auth.OPEN:
                assert op["security"] == [] and op["x-skewwatch-role"] == "none"
                continue
            assert op["x-skewwatch-role"] == role and f"Needs role {role}" in op["description"]
            assert op["security"] == [{"bearerAuth": []}] and "401" in op["responses"]
            assert ("403" in op["responses"]) == (role == auth.ADMIN)


async def test_tokens_never_appear_in_logs_or_answers(
    secured: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = b""
    async with aiohttp.ClientSession() as http:
        for token in (*ALL_TOKENS, "unknown-token-" + "u" * 20):
            for method, pattern in sorted(served_routes(secured)):
                _, headers, body = await status_of(
                    http, method, secured.http + concrete(pattern), bearer(token), json={}
                )
                seen += body + repr(headers).encode()
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "api: refused" in caplog.text and "by token" in caplog.text  # it did log, by name
    for token in (*ALL_TOKENS, "unknown-token-"):
        assert token not in text
        assert token.encode() not in seen


async def test_settings_errors_at_start(tmp_path: Path) -> None:
    bad = token_file(tmp_path / "tokens", "reader " + READ_TOKEN)
    with pytest.raises(SettingsError, match=r"--api-tokens: .*tokens:2: 'reader' is not a label"):
        await Collector(settings_for(tmp_path, api_tokens=bad)).start()
    with pytest.raises(SettingsError, match="SKEWWATCH_METRICS_AUTH: needs --api-tokens"):
        await Collector(settings_for(tmp_path, metrics_auth=True)).start()
    short = token_file(tmp_path / "short", "read tooshort")
    with pytest.raises(SettingsError) as e:
        await Collector(settings_for(tmp_path, api_tokens=short)).start()
    assert "tooshort" not in str(e.value)


def test_tokens_on_plain_http_beyond_loopback_warn_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = token_file(tmp_path / "tokens", f"read {READ_TOKEN}")
    settings = CollectorSettings(
        grpc="127.0.0.1:0",
        http="0.0.0.0:0",
        store=f"sqlite:///{tmp_path / 'c.db'}",
        api_tokens=path,
        shutdown_grace_s=0.5,
    )
    with caplog.at_level(logging.WARNING, logger="collector.main"):
        http_security(settings, "0.0.0.0")  # what Collector.start calls before the API listens
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("--api-tokens on plain HTTP at 0.0.0.0:0" in m for m in warned), warned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="collector.main"):
        http_security(settings_for(tmp_path, api_tokens=path), "127.0.0.1")  # loopback: quiet
    assert not [r for r in caplog.records if "plain HTTP" in r.getMessage()]


def _client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


async def test_https_with_tokens_and_the_cli_with_ca_file_and_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = self_signed(tmp_path, "api")
    tokens = token_file(tmp_path / "tokens", f"read {READ_TOKEN}", f"admin {ADMIN_TOKEN}")
    (tmp_path / "read.token").write_text(READ_TOKEN + "\n")
    (tmp_path / "admin.token").write_text(ADMIN_TOKEN)
    settings = settings_for(
        tmp_path, api_tokens=tokens, http_tls_cert_file=cert, http_tls_key_file=key, shutdown_grace_s=0.5
    )
    async with started(settings, tmp_path) as running:
        await feed(running)
        base = f"https://127.0.0.1:{running.http_port}"
        async with aiohttp.ClientSession() as http:
            status, _, _ = await status_of(
                http, "GET", f"{base}/api/v1/pods", bearer(READ_TOKEN), ssl=_client_context(cert)
            )
            assert status == 200
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await status_of(http, "GET", f"{base}/healthz")  # not a trusted certificate
            with pytest.raises(aiohttp.ClientError):
                await status_of(http, "GET", f"http://127.0.0.1:{running.http_port}/healthz")

        common = ["--collector", base, "--ca-file", str(cert)]
        capsys.readouterr()
        assert await run(["pods", *common, "--token-file", str(tmp_path / "read.token"), "-o", "json"]) == 0
        assert '"llm-0"' in capsys.readouterr().out
        assert await run(["pods", *common]) == 1  # no token
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "needs role read" in err and "--token-file FILE" in err, err
        assert "(HTTP 401)" in err
        read = ["--token-file", str(tmp_path / "read.token")]
        assert await run(["baseline", "record", "ml/llm", *common, *read]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "needs role admin" in err and "(HTTP 403)" in err, err
        admin = ["--token-file", str(tmp_path / "admin.token")]
        assert await run(["baseline", "record", "ml/llm", *common, *admin]) == 0
        capsys.readouterr()
        assert await run(["baseline", "show", "ml/llm", *common, *read, "-o", "json"]) == 0
        assert '"baseline"' in capsys.readouterr().out
        # Without --ca-file the self-signed certificate is not trusted: one line, a hint.
        assert await run(["pods", "--collector", base, *read]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not trusted" in err and "--ca-file" in err, err
        # A refused token: 401, the source named, never the token.
        (tmp_path / "wrong.token").write_text("wrong-token-" + "w" * 20)
        assert await run(["pods", *common, "--token-file", str(tmp_path / "wrong.token")]) == 1
        err = capsys.readouterr().err
        assert "was refused" in err and "wrong.token" in err and "wwwww" not in err, err

        # The certificate is re-read when it changes: new connections get the new one.
        new_cert, new_key = self_signed(tmp_path, "api2", cn="api-renewed")
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        deadline = time.monotonic() + 5
        while True:
            served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", running.http_port))
            if ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(cert.read_text()):
                break
            assert time.monotonic() < deadline, "the renewed certificate was not served within 5 s"
            await asyncio.sleep(0.3)


async def test_cli_takes_the_token_from_the_environment(
    secured: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SKEWWATCH_TOKEN_FILE", raising=False)
    monkeypatch.setenv("SKEWWATCH_TOKEN", READ_TOKEN)
    assert await run(["status", "--collector", secured.http, "-o", "json"]) == 0
    assert '"workloads"' in capsys.readouterr().out
    (tmp_path / "admin.token").write_text(ADMIN_TOKEN)
    monkeypatch.setenv("SKEWWATCH_TOKEN_FILE", str(tmp_path / "admin.token"))  # wins over SKEWWATCH_TOKEN
    assert await run(["findings", "ack", "1", "--reason", "known", "--collector", secured.http]) in (0, 1)
    err = capsys.readouterr().err
    assert "403" not in err and "401" not in err, err
    assert await run(["pods", "--collector", secured.http, "--token-file", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skewwatch pods: error: token file ") and "cannot read" in err, err


def _schemathesis(url: str, token: str) -> tuple[int, list[str]]:
    """schemathesis over the secured document with an admin token (its ``ignored_auth`` check
    probes each operation without the token and with a wrong one): cases run, failures."""
    import schemathesis
    from schemathesis.engine import Status, events

    from tests.collector.test_api_schemathesis import SEED, UNEXPRESSIBLE

    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "max-time": 40.0,
            "suppress-health-check": ["all"],
            "request-timeout": 10.0,
            "headers": {"Authorization": f"Bearer {token}"},
            "generation": {"max-examples": 5, "database": "none", "deterministic": True},
            "checks": {"enabled": True, "max_response_time": 5.0},
            "phases": {"stateful": {"enabled": False}},
            "operations": [
                {
                    "include-operation-id": op,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404", "409", "5xx"]}
                    },
                }
                for op in UNEXPRESSIBLE
            ],
        }
    )
    cases, failures = 0, []
    for event in schemathesis.engine.from_schema(schemathesis.openapi.from_url(url, config=config)).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        case = event.recorder.cases[case_id].value
                        failures.append(
                            f"{event.recorder.label}: {check.name}: {check.failure_info.failure.title}\n"
                            f"  {case.as_curl_command()[:300]}"
                        )
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            failures.append(f"error: {event!r}"[:400])
    return cases, failures


@pytest.mark.timeout(180)
async def test_schemathesis_over_the_secured_document_finds_no_failure(tmp_path: Path) -> None:
    path = token_file(tmp_path / "tokens", f"read {READ_TOKEN}", f"admin {ADMIN_TOKEN}")
    async with started(settings_for(tmp_path, api_tokens=path, shutdown_grace_s=0.5), tmp_path) as running:
        await feed(running)
        cases, failures = await asyncio.to_thread(
            _schemathesis, f"{running.http}/api/v1/openapi.json", ADMIN_TOKEN
        )
    unique = sorted(set(failures))
    assert not unique, f"{len(unique)} failures:\n" + "\n".join(unique[:30])
    assert cases >= 200, cases
    print(f"schemathesis with bearer auth: {cases} cases")


def test_a_token_sent_over_plain_http_off_loopback_is_warned_about_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from collector.cli import client

    client._warned.clear()
    client._warn_plaintext("http://127.0.0.1:8080/api/v1/pods")
    client._warn_plaintext("https://skewwatch.example:8443/api/v1/pods")
    assert capsys.readouterr().err == ""
    client._warn_plaintext("http://skewwatch.example:8080/api/v1/pods")
    client._warn_plaintext("http://skewwatch.example:8080/api/v1/findings")
    err = capsys.readouterr().err
    assert err.count("warning: sending a bearer token to skewwatch.example over plain HTTP") == 1, err
