"""Turn a ``--store`` URL into a Store: ``sqlite:///PATH`` or a ``postgresql://`` libpq URI.

A PostgreSQL password is read from the URL, else from ``SKEWWATCH_STORE_PASSWORD``, else from
the file ``SKEWWATCH_STORE_PASSWORD_FILE`` names (a mounted Secret), so it need not sit in a
command line; the store's ``url``, which is logged and shown, never holds it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from collector.errors import StoreError
from collector.store.base import FullStore
from collector.store.postgresql import PostgresStore, mask_password, url_password
from collector.store.sqlite import SqliteStore

PASSWORD_ENV = "SKEWWATCH_STORE_PASSWORD"  # noqa: S105 (a variable name, not a secret)
PASSWORD_FILE_ENV = "SKEWWATCH_STORE_PASSWORD_FILE"  # noqa: S105


def parse_store_url(
    url: str,
    *,
    timeout_s: float = 10.0,
    pool_min: int = 1,
    pool_max: int = 8,
    environ: Mapping[str, str] | None = None,
) -> FullStore:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``postgresql://…`` or
    ``postgres://…`` → a (not yet opened) store. ``pool_min``/``pool_max`` size PostgreSQL's
    connection pool; ``environ`` (default ``os.environ``) holds the password variables."""
    if url.startswith("sqlite:///"):
        raw = url[len("sqlite:///") :]
        if not raw or raw == ":memory:":
            raise StoreError(
                f"--store: {url!r} names no file; in-memory SQLite cannot be shared by the "
                "collector's connections, use sqlite:///PATH"
            )
        return SqliteStore(Path(raw), timeout_s=timeout_s)
    if url.startswith(("postgresql://", "postgres://")):
        password = (
            None if url_password(url) is not None else _password(os.environ if environ is None else environ)
        )
        return PostgresStore(
            url, password=password, timeout_s=timeout_s, pool_min=pool_min, pool_max=pool_max
        )
    raise StoreError(
        f"--store: unsupported store URL {mask_password(url)!r}; expected sqlite:///PATH or postgresql://…"
    )


def _password(environ: Mapping[str, str]) -> str | None:
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    name = environ.get(PASSWORD_FILE_ENV)
    if not name:
        return None
    try:
        return Path(name).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else str(e)
        raise StoreError(
            f"--store: cannot read the password file {name!r} ({PASSWORD_FILE_ENV}): {reason}"
        ) from e
