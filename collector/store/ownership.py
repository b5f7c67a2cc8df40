"""Which collector evaluates a workload, when several share one PostgreSQL database.

Ownership is a PostgreSQL session advisory lock per workload (64-bit key: the workload id hashed
with ``hashtextextended``), all held on one dedicated connection of the owning collector. A lock
lives as long as that session: a collector that dies, or loses its connection, loses every lock
with it, and the next collector to try takes them (``DriftService`` tries the workloads nobody
owns on its tick). A collector that stores a change of a workload it does not own hands it over
with ``NOTIFY`` on one channel; every collector ``LISTEN``s on a second dedicated connection and
schedules the workloads it owns. Advisory locks and notifications are PostgreSQL's own,
transactional, and need no table, lease clock or leader election of ours.

Two distinct workloads whose 64-bit hashes collide would share an owner (never two owners of
one): with a few thousand workloads the odds are about 1e-12.

Threads: psycopg connections are not shared between threads. The lock connection is used only
from a one-thread executor; the listening connection only from its own thread, which passes
notifications to the event loop with ``call_soon_threadsafe``. The set of owned workloads is read
and written on the event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg

from collector.errors import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "skewwatch_workloads"
LOCK_SEED = 0x5357  # hashtextextended's seed: our keys apart from other users of advisory locks
MAX_PAYLOAD = 7900  # NOTIFY payloads are at most 8000 bytes
LISTEN_POLL_S = 1.0  # how often the listening thread checks whether it should stop


class PostgresOwnership:
    """``collector.service.ports.Ownership`` over PostgreSQL advisory locks and LISTEN/NOTIFY."""

    def __init__(
        self,
        conninfo: str,
        shown_url: str,
        *,
        connect_kwargs: Mapping[str, Any] | None = None,
        connect_timeout_s: float = 10.0,
        scrub: Callable[[str], str] = str,
    ) -> None:
        self._scrub = scrub  # removes the password from an error's text
        self._conninfo = conninfo
        self._kwargs = dict(connect_kwargs or {})  # the store's: its password, its timeout
        self._kwargs.setdefault("connect_timeout", max(1, round(connect_timeout_s)))
        self.url = shown_url  # for messages: the password masked
        self._timeout = connect_timeout_s
        self.instance = uuid.uuid4().hex  # this collector, in notifications (ignore our own)
        self._owned: set[str] = set()
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._changed: Callable[[str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.handed_over_to_us = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skewwatch-ownership")
        await self._run(self._connect_locks)
        self._stop.clear()
        ready = threading.Event()
        errors: list[BaseException] = []
        self._listener = threading.Thread(
            target=self._listen, args=(ready, errors), name="skewwatch-ownership-listen", daemon=True
        )
        self._listener.start()
        await asyncio.to_thread(ready.wait, self._timeout + 1)
        if errors:
            await self.close()
            why = self._scrub(str(errors[0]))
            raise StoreError(f"store {self.url}: cannot LISTEN for workload hand-overs: {why}")

    async def close(self) -> None:
        self._stop.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            await asyncio.to_thread(listener.join, LISTEN_POLL_S * 3)
        executor, self._executor = self._executor, None
        if executor is not None:
            with contextlib.suppress(StoreError, RuntimeError):
                await asyncio.get_running_loop().run_in_executor(executor, self._close_locks)
            await asyncio.to_thread(executor.shutdown, True)
        self._owned.clear()

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self._conninfo, autocommit=True, application_name="skewwatch-ownership", **self._kwargs
        )

    def _connect_locks(self) -> None:
        self._lock_conn = self._connect()

    def _close_locks(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            conn.close()  # the session ends: PostgreSQL releases its advisory locks

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreError(f"store {self.url}: workload ownership is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except psycopg.Error as e:
            raise StoreError(f"store {self.url}: ownership: {type(e).__name__}: {self._scrub(str(e))}") from e

    def _locks(self) -> psycopg.Connection[Any]:
        conn = self._lock_conn
        if conn is None or conn.closed:
            conn = self._lock_conn = self._connect()
        return conn

    # -- Ownership -----------------------------------------------------------------------------

    def owned(self) -> set[str]:
        return set(self._owned)

    async def own(self, workloads: Sequence[str]) -> set[str]:
        wanted = [w for w in dict.fromkeys(workloads) if w not in self._owned]
        if wanted:

            def body() -> list[str]:
                rows = (
                    self._locks()
                    .execute(
                        "SELECT w FROM unnest(%s::text[]) AS w"
                        " WHERE pg_try_advisory_lock(hashtextextended(w, %s))",
                        (wanted, LOCK_SEED),
                    )
                    .fetchall()
                )
                return [str(r[0]) for r in rows]

            self._owned.update(await self._run(body))
        return {w for w in workloads if w in self._owned}

    async def hand_over(self, workload: str) -> None:
        payload = json.dumps({"from": self.instance, "workload": workload})
        if len(payload.encode()) > MAX_PAYLOAD:
            raise StoreError(f"store {self.url}: workload id too long to hand over ({len(workload)} chars)")
        await self._run(lambda: self._locks().execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload)))

    def listen(self, changed: Callable[[str], None]) -> None:
        self._changed = changed

    async def check(self) -> None:
        """The lock session still answers; if it was lost, so were its locks: own nothing, and
        connect again (the next ``own`` takes what is free)."""

        def body() -> bool:
            conn = self._lock_conn
            if conn is not None and not conn.closed:
                try:
                    conn.execute("SELECT 1")
                    return True
                except psycopg.Error as e:
                    log.warning(
                        "store %s: ownership session lost, its workloads are released: %s", self.url, e
                    )
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
            self._lock_conn = None
            self._locks()
            return False

        if not await self._run(body):
            self._owned.clear()

    # -- the listening thread -------------------------------------------------------------------

    def _listen(self, ready: threading.Event, errors: list[BaseException]) -> None:
        conn: psycopg.Connection[Any] | None = None
        first = True
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                    conn.execute(f"LISTEN {CHANNEL}")
                    if first:
                        first = False
                        ready.set()
                for note in conn.notifies(timeout=LISTEN_POLL_S):
                    self._received(note.payload)
                    if self._stop.is_set():
                        break
            except psycopg.Error as e:
                if first:
                    errors.append(e)
                    ready.set()
                    return
                log.warning("store %s: hand-over listener reconnects: %s", self.url, self._scrub(str(e)))
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                conn = None
                self._stop.wait(LISTEN_POLL_S)
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _received(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            sender, workload = str(note["from"]), str(note["workload"])
        except (ValueError, KeyError, TypeError):
            log.warning("store %s: ignored a malformed hand-over notification", self.url)
            return
        if sender != self.instance and self._loop is not None:
            self._loop.call_soon_threadsafe(self._dispatch, workload)

    def _dispatch(self, workload: str) -> None:
        if workload in self._owned and self._changed is not None:
            self.handed_over_to_us += 1
            self._changed(workload)
