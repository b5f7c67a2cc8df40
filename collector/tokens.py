"""Bearer tokens from a file or a mounted Kubernetes Secret, re-read when they change.

One format for the API's tokens (label = role: ``read``, ``admin``) and the agents' (label =
scope: ``_all`` for the whole cluster, else a namespace):

- **A directory** (a Secret mounted as a volume): each file is one token, its name
  ``LABEL`` or ``LABEL.ANYTHING`` (several tokens of one label: ``admin.alice``, ``admin.ci``),
  its content the token. Hidden files and Kubernetes' ``..data`` links are skipped.
- **A file**: one token per line, ``LABEL TOKEN``; blank lines and ``#`` comments are skipped.

A token is at least ``MIN_TOKEN_LENGTH`` characters of printable ASCII without spaces. Only
SHA-256 digests are kept in memory, compared in constant time; a token is never logged or shown,
only its name (the file name, or ``FILE:LINE``). A file that changes is read again at most every
``reload_s``; one that no longer parses keeps the previous tokens and the error is logged (and
returned by ``error``), so a bad edit never opens or closes the door by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collector.errors import SettingsError
from skewwatch.core.filestamp import stamp as file_stamp

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 4096
MAX_TOKENS = 10_000
MAX_FILE_BYTES = 4 * 1024 * 1024
_TOKEN = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class Token:
    """One configured token: where it came from, its label, and the digest of its value."""

    name: str
    label: str
    digest: bytes


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _check(value: str, where: str, what: str) -> None:
    if not MIN_TOKEN_LENGTH <= len(value) <= MAX_TOKEN_LENGTH or not _TOKEN.match(value):
        raise SettingsError(
            what,
            f"{where}: a token must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} printable ASCII "
            "characters without spaces",
        )


_LABEL_SHAPE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _shown(label: str) -> str:
    """A label as an error may quote it: never what may be a token written in its place (a line
    ``TOKEN ROLE`` the wrong way round must not put the token in the log)."""
    if _LABEL_SHAPE.match(label):
        return repr(label)
    return f"the first word ({len(label)} characters, not shown: a token in the label's place?)"


def parse(path: Path, what: str, label_ok: Callable[[str], bool]) -> tuple[Token, ...]:
    """The tokens under ``path``; SettingsError naming ``what`` (the flag) and the entry at fault."""
    tokens: list[Token] = []
    if path.is_dir():
        for entry in sorted(path.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            label = entry.name.split(".", 1)[0]
            if not label_ok(label):
                raise SettingsError(what, f"{entry}: {label!r} is not a label this token file takes")
            value = _read(entry, what).strip()
            _check(value, str(entry), what)
            tokens.append(Token(entry.name, label, digest(value)))
    elif path.is_file():
        for number, line in enumerate(_read(path, what).splitlines(), 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split()
            where = f"{path}:{number}"
            if len(parts) != 2:
                raise SettingsError(what, f"{where}: expected 'LABEL TOKEN'")
            label, value = parts
            if not label_ok(label):
                raise SettingsError(what, f"{where}: {_shown(label)} is not a label this token file takes")
            _check(value, where, what)
            tokens.append(Token(where, label, digest(value)))
    else:
        raise SettingsError(what, f"{path}: neither a file nor a directory")
    if len(tokens) > MAX_TOKENS:
        raise SettingsError(what, f"{path}: {len(tokens)} tokens, over {MAX_TOKENS}")
    return tuple(tokens)


def _read(path: Path, what: str) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise SettingsError(what, f"{path}: cannot read: {e.strerror or e}") from e
    if len(data) > MAX_FILE_BYTES:
        raise SettingsError(what, f"{path}: over {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8", "replace")


def _stamp(path: Path) -> tuple[object, ...]:
    """What changes when the tokens may have: each file's stamp (``skewwatch.core.filestamp``: a
    Secret swaps its ``..data`` link, which changes the inodes the files resolve to), and for a
    directory the names in it too."""
    try:
        if path.is_dir():
            entries = sorted(path.iterdir())
            return (tuple(e.name for e in entries), file_stamp(entries))
        return file_stamp([path])
    except OSError as e:
        return ("error", str(e))


class TokenFile:
    """The tokens of one file or directory, re-read when it changes (checked at most every ``reload_s``)."""

    def __init__(
        self, path: Path, what: str, label_ok: Callable[[str], bool], *, reload_s: float = 1.0
    ) -> None:
        self.path = path
        self.what = what
        self.label_ok = label_ok
        self.reload_s = reload_s
        self.error = ""
        self.reloads = 0
        self._lock = threading.Lock()
        self._stamp = _stamp(path)
        self._checked = time.monotonic()
        self.tokens = parse(path, what, label_ok)  # a bad file at start is a start error

    def refresh(self) -> None:
        """Re-read the tokens if the file changed (at most every ``reload_s``)."""
        now = time.monotonic()
        if now - self._checked < self.reload_s:
            return
        with self._lock:
            self._checked = now
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return
            try:
                tokens = parse(self.path, self.what, self.label_ok)
            except SettingsError as e:
                if str(e) != self.error:
                    log.error("%s: kept the previous tokens: %s", self.what, e)
                self.error = str(e)
                return
            self._stamp, self.tokens, self.error = stamp, tokens, ""
            self.reloads += 1
            log.info("%s: %d tokens loaded from %s", self.what, len(tokens), self.path)

    def match(self, presented: str) -> Token | None:
        """The configured token equal to ``presented``, compared in constant time, else None."""
        self.refresh()
        want = digest(presented)
        found = None
        for token in self.tokens:  # every token is compared: the time says nothing of which matched
            if hmac.compare_digest(token.digest, want):
                found = token
        return found


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive), else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
