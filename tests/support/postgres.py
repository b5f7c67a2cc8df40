"""A real PostgreSQL server for the store tests: initdb in a temporary directory, on loopback.

The PostgreSQL store is tested against the server it will meet in production, not a fake: the
same SQL, transactions, locks and migrations. Binaries come from /usr/lib/postgresql/*/bin (the
newest) or PATH; without them a test is skipped, or fails under CI (which installs them).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import psycopg
import pytest

SUPERUSER = "skewwatch"
# A role that must log in with a password (scram-sha-256), for the password-source tests.
PASSWORD_USER = "skewwatch_pw"
PASSWORD = "s3cret-pa55"
START_TIMEOUT_S = 30


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb, else the directory of initdb on PATH."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    versioned = [d for d in found if re.fullmatch(r"\d+", d.parent.name)]
    if versioned:
        return max(versioned, key=lambda d: int(d.parent.name))
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """``with PostgresServer(tmp_dir) as pg:`` a started server; ``pg.create_database(name)``."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.port = 0
        self._bin: Path | None = None
        self._root: Path | None = None
        self._as_user: list[str] = []

    @property
    def data_dir(self) -> Path:
        assert self._root is not None, "the server is not started"
        return self._root / "data"

    def url(self, dbname: str, user: str = SUPERUSER, password: str | None = None) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database; its URL (as the superuser, trusted on loopback)."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            conn.execute(f'GRANT ALL ON DATABASE "{name}" TO {PASSWORD_USER}')
            conn.execute(f'ALTER DATABASE "{name}" OWNER TO {PASSWORD_USER}')
        return self.url(name)

    def _pg(self, tool: str, *args: str) -> None:
        assert self._bin is not None
        result = subprocess.run(
            [*self._as_user, str(self._bin / tool), *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            log = self._root / "server.log" if self._root else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")

    def __enter__(self) -> PostgresServer:
        self._bin = find_bin_dir()
        if self._bin is None:
            reason = "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin or on PATH"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        if os.geteuid() == 0:
            # initdb and postgres refuse root: run them as the postgres user, in a directory it
            # can reach (pytest's own temporary root is private to root).
            user = pwd.getpwnam("postgres")
            self._root = Path(tempfile.mkdtemp(prefix="skewwatch-pg-"))
            os.chown(self._root, user.pw_uid, user.pw_gid)
            self._as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        else:
            self._root = self.tmp_dir
        try:
            self._start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def _start(self) -> None:
        assert self._root is not None
        self._pg("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "-N")
        hba = self.data_dir / "pg_hba.conf"
        # Before the trust lines: the password role must authenticate on loopback TCP.
        rule = f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
        self._write_as_owner(hba, rule + hba.read_text())
        self.port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self._root}"
            " -c fsync=on -c max_connections=200"
        )
        self._pg(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self._root / "server.log"), "-w",
            "-t", str(START_TIMEOUT_S), "-o", options, "start",
        )  # fmt: skip
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=START_TIMEOUT_S) as conn:
            conn.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'")

    def _write_as_owner(self, path: Path, text: str) -> None:
        stat = path.stat()
        path.write_text(text)
        os.chown(path, stat.st_uid, stat.st_gid)

    def _cleanup(self) -> None:
        if self._root is not None and self._root != self.tmp_dir:
            shutil.rmtree(self._root, ignore_errors=True)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.port:
                with contextlib.suppress(RuntimeError):
                    self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        finally:
            self._cleanup()
