"""Test certificates made by the real openssl CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(directory: Path, name: str, cn: str | None = None) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, valid a day: (cert file, key file)
    named ``<name>.crt`` and ``<name>.key`` in ``directory``; its subject CN is ``cn`` (else ``name``)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subject = f"/CN={cn or name}"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", subject,
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key
