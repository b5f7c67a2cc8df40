"""A server ``SSLContext`` that follows its certificate and key files, for the webhook and the
collector's HTTPS API.

:class:`ReloadingTLS` serves the certificate and key in two files and loads them again, without
a restart, when either file's mtime, size or inode changes (cert-manager renews them in place; a
mounted Secret swaps its ``..data`` link). The check is made as each new connection's handshake
starts (a ``stat`` of two files; at most once per :data:`RELOAD_CHECK_S`); a pair that does not
load (a half-written renewal) keeps the previous one and is tried again at the next check. Keys
and certificates are never logged.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from pathlib import Path

from skewwatch.core.errors import SkewwatchError

log = logging.getLogger(__name__)

RELOAD_CHECK_S = 1.0


class TLSFilesError(SkewwatchError, OSError):
    """The serving certificate or key cannot be loaded; the message names the file (never its
    content)."""


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def _context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as e:
        raise TLSFilesError(f"{e.filename}: no such file") from None
    except PermissionError as e:
        raise TLSFilesError(f"{e.filename}: permission denied") from None
    except (ssl.SSLError, OSError) as e:
        # The library's reason only (e.g. KEY_VALUES_MISMATCH), never the files' content.
        reason = getattr(e, "reason", None) or type(e).__name__
        raise TLSFilesError(f"{cert} / {key}: not a usable certificate and key ({reason})") from None
    return ctx


class ReloadingTLS:
    """A server SSLContext whose certificate follows the files: the listening socket's context
    hands each new connection the newest loaded pair through its SNI callback."""

    def __init__(self, cert: Path, key: Path, *, label: str = "webhook TLS") -> None:
        self.cert, self.key = cert, key
        self.label = label  # what log lines call it
        self._stamps = self._read_stamps()
        self.current = _context(cert, key)  # raises TLSFilesError: the server does not start
        self.loads = 1
        self._checked = time.monotonic()
        # The listening context needs a certificate of its own; the callback swaps in the newest.
        self.context = _context(cert, key)
        self.context.sni_callback = self._on_hello

    def _read_stamps(self) -> tuple[tuple[int, int, int], ...] | None:
        try:
            return (_stamp(self.cert), _stamp(self.key))
        except OSError:
            return None

    def maybe_reload(self, force: bool = False) -> bool:
        """Load the files again if they changed; True when a new pair is now served."""
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_CHECK_S:
            return False
        self._checked = now
        stamps = self._read_stamps()
        if stamps is None or stamps == self._stamps:
            return False
        try:
            ctx = _context(self.cert, self.key)
        except TLSFilesError as e:
            log.warning("%s: keeping the loaded certificate: %s", self.label, e)
            return False
        self.current, self._stamps = ctx, stamps
        self.loads += 1
        log.info("%s: loaded %s again (load %d)", self.label, self.cert, self.loads)
        return True

    def _on_hello(
        self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        self.maybe_reload()
        sock.context = self.current
