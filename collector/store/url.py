"""Turn a ``--store`` URL into a Store: ``sqlite:///PATH`` now, ``postgresql://`` in a later issue."""

from __future__ import annotations

from pathlib import Path

from collector.errors import StoreError, UnsupportedStoreError
from collector.store.base import FullStore
from collector.store.sqlite import SqliteStore


def parse_store_url(
    url: str,
    *,
    timeout_s: float = 10.0,
) -> FullStore:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path`` → a (not yet opened) store."""
    if url.startswith("sqlite:///"):
        raw = url[len("sqlite:///") :]
        if not raw or raw == ":memory:":
            raise StoreError(
                f"--store: {url!r} names no file; in-memory SQLite cannot be shared by the "
                "collector's connections, use sqlite:///PATH"
            )
        return SqliteStore(Path(raw), timeout_s=timeout_s)
    if url.startswith(("postgresql://", "postgres://")):
        raise UnsupportedStoreError(
            "--store: PostgreSQL is not yet supported by this collector; use sqlite:///PATH"
        )
    raise StoreError(f"--store: unsupported store URL {url!r}; expected sqlite:///PATH")
