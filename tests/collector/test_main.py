"""Collector lifecycle in-process: failed starts release everything, cancellation stops serve()."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import aiohttp
import pytest

from collector.errors import CollectorError, StoreError
from collector.main import Collector, serve
from collector.settings import CollectorSettings
from collector.store.sqlite import SqliteStore
from demo.harness import free_port


async def test_failed_start_releases_the_grpc_port_and_closes_the_store(tmp_path: Path) -> None:
    grpc_port = free_port()
    store = SqliteStore(tmp_path / "c.db")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = CollectorSettings(
            grpc=f"127.0.0.1:{grpc_port}",
            http=f"127.0.0.1:{busy.getsockname()[1]}",
            store=f"sqlite:///{tmp_path}/c.db",
            shutdown_grace_s=0.1,
        )
        with pytest.raises(CollectorError, match="--http: cannot listen"):
            await Collector(settings, store=store).start()
    with pytest.raises(StoreError):
        await store.ping()
    with socket.socket() as again:
        again.bind(("127.0.0.1", grpc_port))


async def test_serve_stops_on_cancellation_and_closes_the_store(tmp_path: Path) -> None:
    http_port = free_port()
    settings = CollectorSettings(
        grpc=f"127.0.0.1:{free_port()}",
        http=f"127.0.0.1:{http_port}",
        store=f"sqlite:///{tmp_path}/c.db",
        shutdown_grace_s=0.1,
    )
    task = asyncio.create_task(serve(settings))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for _ in range(200):
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(f"http://127.0.0.1:{http_port}/readyz") as r:
                    if r.status == 200:
                        break
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)  # poll interval: readiness of a server started in a task
        else:
            pytest.fail("serve() never became ready")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not (tmp_path / "c.db-wal").exists()


async def test_an_unreachable_postgresql_fails_start_with_a_typed_error_naming_it(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://skewwatch:s3cret@127.0.0.1:{port}/x"
    settings = CollectorSettings(grpc="127.0.0.1:0", http="127.0.0.1:0", store=url)
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}") as failed:
        await Collector(settings).start()
    assert "s3cret" not in str(failed.value)
