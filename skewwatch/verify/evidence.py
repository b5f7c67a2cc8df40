"""The post-fix evidence bundle: which format a file name asks for, the default name, the atomic write.

The bundle is the collector's (``GET /api/v1/workloads/{namespace}/{name}/evidence?format=…``,
docs/evidence.md); verify fetches it through the client commands' HTTP client and writes it as it
came (JSON indented, as ``skewwatch evidence`` prints it). The format follows the file's name:
``.json``, ``.md`` / ``.markdown``, ``.tar.gz`` / ``.tgz``. Without ``--evidence-file`` it is
``evidence-<namespace>-<name>-<UTC time>.json`` in the current directory.

The write is atomic: a temporary file beside the target (same directory, so same file system),
flushed and fsynced, then renamed over it; a reader sees the old file or the whole new one, never a
part, and a failed write leaves no temporary file behind. The file is created readable by its owner
only (0600), as the bundle describes a production workload.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collector.cli.client import Credentials, get_json, request_bytes
from skewwatch.verify.errors import EvidenceWriteError, VerifyUsageError
from skewwatch.verify.routes import workload_route

# Longest suffix first: ``x.tar.gz`` is tar, not something ending in ``.gz``.
FORMATS_BY_SUFFIX: tuple[tuple[str, str], ...] = (
    (".tar.gz", "tar"),
    (".tgz", "tar"),
    (".json", "json"),
    (".markdown", "markdown"),
    (".md", "markdown"),
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Written:
    """A bundle on disk: where, in which format, how many bytes."""

    path: Path
    format: str
    size: int


def evidence_format(path: Path) -> str:
    """``json``, ``markdown`` or ``tar`` from the file's name; VerifyUsageError for any other."""
    name = path.name.lower()
    for suffix, fmt in FORMATS_BY_SUFFIX:
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    raise VerifyUsageError(
        f"--evidence-file {path}: the name must end in .json, .md or .tar.gz (it says the bundle's format)"
    )


def default_path(workload: str, now: datetime, directory: Path) -> Path:
    """``evidence-<namespace>-<name>-<YYYYMMDDTHHMMSSZ>.json`` (the kind too when it was given)."""
    parts = "-".join(_UNSAFE.sub("_", p) for p in workload.split("/"))
    return directory / f"evidence-{parts}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"


def fetch(base: str, workload: str, fmt: str, timeout_s: float, auth: Credentials) -> bytes:
    """The bundle's bytes; ClientError (one line) when the collector fails or refuses."""
    path = workload_route(workload, "evidence", f"format={fmt}")
    if fmt == "json":
        # Decoded and printed again: checked to be JSON, indented, in the bundle's own key order.
        doc = get_json(base, path, timeout_s, auth=auth)
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    return request_bytes(base, path, timeout_s, accept="*/*", auth=auth)[1]


def write_atomically(path: Path, data: bytes, fmt: str) -> Written:
    """Write ``data`` (a bundle in ``fmt``) to ``path`` at once (the module docstring says how)."""
    directory = path.parent if str(path.parent) else Path(".")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise EvidenceWriteError(f"cannot write the evidence bundle to {path}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):  # the write already failed; that error is the one to show
                os.unlink(tmp)
    return Written(path, fmt, len(data))
