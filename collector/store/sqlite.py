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

Failures of the database itself (``classify``, one function for every sqlite3 error): a
**corrupt** file (garbage, truncated, a malformed page), a **read-only** one (file or directory
not writable, a read-only filesystem), a **full** one (no space left: ENOSPC, or the process's
file size limit: EFBIG), a **locked** one, or another disk I/O error each become one line of
``StoreError`` naming the file and what is wrong (``StoreError.reason``). At open a corrupt or
read-only database refuses the start. While running, such an error fails the whole batch (no
write of it is acknowledged: the agents get UNAVAILABLE and resend) and ``ping`` (so ``/readyz``)
reports it for ``FAILURE_HOLD_S`` after the last failed write (a corrupt file: until restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from collector.errors import StoreError
from collector.store.schema import MIGRATIONS, SCHEMA_VERSION
from collector.store.sql import Conn, SqlStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# StoreError.reason of a failure of the database itself (not of one write's own data).
CORRUPT = "corrupt"
READ_ONLY = "read_only"
FULL = "full"
LOCKED = "locked"
IO = "io"
ENVIRONMENT = frozenset({CORRUPT, READ_ONLY, FULL, LOCKED, IO})
# Fail /readyz this long after the last write that failed for one of these (corrupt: always).
FAILURE_HOLD_S = 30.0
# Primary SQLite result codes (sqlite3.Error.sqlite_errorcode & 0xFF).
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 5, 6, 8, 10, 11, 13, 14, 26
_FREE_SPACE_LOW = 1024 * 1024  # a filesystem with less free than this is full for our purpose
_MESSAGES = (  # for errors raised without a result code
    ("malformed", _CORRUPT),
    ("not a database", _NOTADB),
    ("readonly database", _READONLY),
    ("disk is full", _FULL),
    ("disk i/o error", _IOERR),
    ("database is locked", _BUSY),
    ("unable to open database file", _CANTOPEN),
)


def _code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(error).lower()
    return next((c for needle, c in _MESSAGES if needle in text), None)


def _not_writable(path: Path) -> str | None:
    """Why this process cannot write the database (file or directory), or None."""
    uid = os.geteuid()
    if path.exists() and not os.access(path, os.W_OK):
        return f"uid {uid} cannot write the file"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"uid {uid} cannot write its directory {str(path.parent)!r} (for the -wal and -shm files)"
    return None


def _no_room(path: Path) -> str | None:
    """Why the database cannot grow (the file size limit, a full filesystem), or None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        for f in (path, path.with_name(path.name + "-wal")):
            with contextlib.suppress(OSError):
                size = f.stat().st_size
                if size + 64 * 1024 >= soft:
                    return (
                        f"EFBIG: {f.name} is {size} bytes, at the process's file size limit "
                        f"(RLIMIT_FSIZE {soft})"
                    )
    with contextlib.suppress(OSError):
        st = os.statvfs(path.parent)
        free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
        if free < _FREE_SPACE_LOW:
            return f"ENOSPC: the filesystem holding {str(path.parent)!r} has {free} bytes free"
    return None


_WAL_HEADER_BYTES = 32


def _truncated(path: Path) -> str | None:
    """Why the file is shorter than its header says (a truncated copy), or None.

    Not when a WAL with frames lies beside it: a collector killed in the middle of a checkpoint
    leaves page 1 (whose header counts the new pages) copied into the file before the pages past
    its end, and SQLite completes that from the WAL when it opens the database. Damage the WAL
    cannot mend shows as SQLITE_CORRUPT on the first read, and is classified then."""
    try:
        if os.stat(f"{path}-wal").st_size > _WAL_HEADER_BYTES:
            return None
    except OSError:
        pass  # no WAL: the file must hold everything itself
    try:
        with path.open("rb") as f:
            header = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None  # not a database at all: SQLite says so itself (SQLITE_NOTADB)
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    (change_counter,) = struct.unpack(">I", header[24:28])
    (pages,) = struct.unpack(">I", header[28:32])
    (valid_for,) = struct.unpack(">I", header[92:96])
    if pages and valid_for == change_counter and size < pages * page_size:
        return f"truncated: {size} bytes, its header says {pages} pages of {page_size} bytes"
    return None


def classify(error: sqlite3.Error, path: Path, url: str, timeout_s: float = 0.0) -> StoreError:
    """The one-line ``StoreError`` a sqlite3 error becomes, its ``reason`` one of ``ENVIRONMENT``
    when the database itself is at fault (corrupt, read-only, full, locked, disk I/O), else None
    (an error of one statement or its data)."""
    code = _code(error)
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    what = f"{error} ({name})"
    where = f"store {url}: database file {str(path)!r}"
    if code in (_CORRUPT, _NOTADB):
        return StoreError(
            f"{where} is corrupt: {what}; restore it from a backup, or move it aside to start with an "
            "empty store",
            reason=CORRUPT,
        )
    if code in (_IOERR, _FULL):
        room = _no_room(path)
        if code == _FULL or room is not None:
            return StoreError(
                f"{where} is full, it cannot grow: {room or 'no space left'}: {what}", reason=FULL
            )
    if code in (_READONLY, _PERM, _CANTOPEN, _IOERR):
        denied = _not_writable(path)
        if denied is not None or code in (_READONLY, _PERM):
            why = denied or "a read-only filesystem or mount"
            return StoreError(
                f"{where} is read-only for this collector: {why}: {what}; give it write access to the "
                "file and its directory",
                reason=READ_ONLY,
            )
        if code == _CANTOPEN:
            return StoreError(f"{where} cannot be opened: {what}", reason=IO)
        return StoreError(f"{where}: disk I/O error: {what}", reason=IO)
    if code in (_BUSY, _LOCKED):
        held = f" longer than {timeout_s:g} s" if timeout_s else ""
        return StoreError(
            f"{where} is locked: another process or connection holds it{held}: {what}", reason=LOCKED
        )
    return StoreError(f"store {url}: {type(error).__name__}: {error}")


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
        # The last write that failed for the database itself (monotonic time, error), for ping.
        self._failed: tuple[float, StoreError] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        if not self.path.parent.is_dir():
            raise StoreError(f"store {self.url}: directory {str(self.path.parent)!r} does not exist")
        where = f"store {self.url}: database file {str(self.path)!r}"
        denied = _not_writable(self.path)
        if denied is not None:
            raise StoreError(
                f"{where} is read-only for this collector: {denied}; give it write access to the file and "
                "its directory",
                reason=READ_ONLY,
            )
        truncated = _truncated(self.path)
        if truncated is not None:
            raise StoreError(
                f"{where} is corrupt: {truncated}; restore it from a backup, or move it aside to start with "
                "an empty store",
                reason=CORRUPT,
            )
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
            error = classify(e, self.path, self.url, self.timeout_s)
            # A failed write, or a corrupt page any read found: /readyz says so (``ping``).
            if error.reason is not None and (executor is self._writer or error.reason == CORRUPT):
                self._failed = (time.monotonic(), error)
            raise error from e
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
                # SQLite may have rolled back itself (a full disk, an I/O error); a ROLLBACK that
                # fails too must not hide the error that caused it.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return result

    async def _write(self, body: Callable[[Conn], T]) -> T:
        result = await self._run(self._writer, functools.partial(self._transaction, body))
        self._failed = None  # the database takes writes again
        return result

    async def ping(self) -> None:
        """The store answers a read, and no write failed for the database itself lately (within
        ``FAILURE_HOLD_S``; a corrupt file until restart): else ``StoreError`` saying why."""
        failed = self._failed
        if failed is not None:
            at, error = failed
            ago = time.monotonic() - at
            if error.reason == CORRUPT or ago < FAILURE_HOLD_S:
                raise StoreError(f"{error} (the last write failed {ago:.0f} s ago)", reason=error.reason)
        await super().ping()

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
            classified = classify(error, self.path, self.url, self.timeout_s)
            # A failure of the database itself fails the whole batch: nothing in it is acknowledged.
            return None if classified.reason is not None else classified
        return None
