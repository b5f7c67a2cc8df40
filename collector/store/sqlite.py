"""The SQLite store: one file, WAL mode, one writer thread, a small pool of reader threads.

Durability: ``synchronous=FULL``. In WAL mode NORMAL survives a process crash but may lose the
last commits on power loss or a kernel crash; the collector acknowledges a snapshot only after
its commit and the agent then drops its copy, so an acknowledged snapshot must survive both.
FULL costs one WAL fsync per commit, which ingest affords (snapshots are sent only on change,
heartbeats once per interval per pod).

Concurrency: sqlite3 calls block, so none run on the event loop. All writes go through one
dedicated thread owning the only write connection, which serialises transactions (SQLite has a
single writer anyway) and makes read-check-write sequences such as "heartbeat matches the
current fingerprint" atomic. Reads run on a separate small thread pool, each thread with its own
``query_only`` connection; WAL lets them proceed while a write is in progress.

Every write is one ``BEGIN IMMEDIATE`` … ``COMMIT``; any error rolls it back, so a failed write
never leaves partial state behind. The statements are ``collector.store.sql``'s, shared with
PostgreSQL; this module holds only what is SQLite's own (file, WAL, threads, ``user_version``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from collector.errors import StoreError
from collector.store.schema import MIGRATIONS, SCHEMA_VERSION
from collector.store.sql import Conn, SqlStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class SqliteStore(SqlStore):
    """A ``Store`` in one SQLite file."""

    def __init__(self, path: Path, *, timeout_s: float = 10.0, read_threads: int = 4) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.timeout_s = timeout_s
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._read_threads = read_threads
        self._wconn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._rconns: list[sqlite3.Connection] = []
        self._rconns_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        if not self.path.parent.is_dir():
            raise StoreError(f"store {self.url}: directory {str(self.path.parent)!r} does not exist")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skewwatch-store-writer")
        self._readers = ThreadPoolExecutor(
            max_workers=self._read_threads, thread_name_prefix="skewwatch-store-reader"
        )
        try:
            await self._run(self._writer, self._open_writer)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        writer, readers = self._writer, self._readers
        self._writer = self._readers = None
        if writer is not None:
            with contextlib.suppress(StoreError):
                await self._run(writer, self._close_writer)
            await asyncio.to_thread(writer.shutdown, True)
        if readers is not None:
            await asyncio.to_thread(readers.shutdown, True)
        with self._rconns_lock:
            conns, self._rconns = self._rconns, []
        for conn in conns:
            conn.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly one
        # store method; check_same_thread=False only so close() can run on another thread.
        conn = sqlite3.connect(
            self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _open_writer(self) -> None:
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"store {self.url}: cannot enable WAL journal mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._wconn = conn

    def _close_writer(self) -> None:
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.url}: schema version {version} is newer than this collector's "
                f"({SCHEMA_VERSION}); upgrade the collector"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            migration = MIGRATIONS[number - 1]
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in migration.statements:
                    conn.execute(statement)
                # user_version is transactional: it moves only if every statement above applied.
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("store %s: migrated schema to version %d (%s)", self.url, number, migration.description)

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._rconns_lock:
                self._rconns.append(conn)
        return conn

    async def _run(self, executor: ThreadPoolExecutor | None, fn: Callable[[], T]) -> T:
        if executor is None:
            raise StoreError(f"store {self.url} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, fn)
        except sqlite3.Error as e:
            raise StoreError(f"store {self.url}: {type(e).__name__}: {e}") from e
        except RuntimeError as e:  # executor shut down under us
            raise StoreError(f"store {self.url}: {e}") from e

    def _transaction(self, body: Callable[[Conn], T]) -> T:
        conn = self._wconn
        if conn is None:
            raise StoreError(f"store {self.url} is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def _write(self, body: Callable[[Conn], T]) -> T:
        return await self._run(self._writer, functools.partial(self._transaction, body))

    def _read_transaction(self, body: Callable[[Conn], T]) -> T:
        conn = self._reader_conn()
        # One read transaction so multi-statement reads see one consistent state.
        conn.execute("BEGIN")
        try:
            return body(conn)
        finally:
            conn.execute("COMMIT")

    async def _read(self, body: Callable[[Conn], T]) -> T:
        return await self._run(self._readers, functools.partial(self._read_transaction, body))

    def _insert(self, conn: Conn, sql: str, params: Sequence[Any]) -> int:
        rowid = cast(sqlite3.Cursor, conn.execute(sql, params)).lastrowid
        assert rowid is not None  # an INSERT of one row always has one
        return rowid

    def _write_error(self, error: Exception) -> StoreError | None:
        if isinstance(error, sqlite3.Error):
            return StoreError(f"store {self.url}: {type(error).__name__}: {error}")
        return None
