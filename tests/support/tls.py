"""Test certificates made by the real openssl CLI."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT_S = 60


def self_signed(directory: Path, name: str, cn: str | None = None) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, valid a day: (cert file, key file)
    named ``<name>.crt`` and ``<name>.key`` in ``directory``; its subject CN is ``cn`` (else ``name``)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subject = f"/CN={cn or name}"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", subject,
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S,
    )  # fmt: skip
    return cert, key


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S)


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


@dataclass(frozen=True)
class Issued:
    """A certificate, its key, and the serial it was issued with (``openssl x509 -serial`` digits)."""

    cert: Path
    key: Path
    serial: int


@dataclass(frozen=True)
class CertificateAuthority:
    """A throwaway CA (EC P-256, valid a day) in ``directory``: ``<name>.crt`` and ``<name>.key``."""

    directory: Path
    name: str
    cert: Path
    key: Path

    def issue(
        self,
        name: str,
        *,
        cn: str | None = None,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        uris: Sequence[str] = (),
        usage: str = "clientAuth",
    ) -> Issued:
        """A leaf certificate signed by this CA with the SANs given, for ``usage``
        (``serverAuth`` / ``clientAuth``): ``<name>.crt``, ``<name>.key`` in the CA's directory."""
        d = self.directory
        cert, key, csr, ext = d / f"{name}.crt", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext"
        sans = [f"DNS:{n}" for n in dns] + [f"IP:{n}" for n in ips] + [f"URI:{u}" for u in uris]
        lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
        lines.append(f"extendedKeyUsage={usage}")
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _openssl(
            "req",
            "-new",
            *_EC_KEY,
            "-nodes",
            "-subj",
            f"/CN={cn or name}",
            "-keyout",
            str(key),
            "-out",
            str(csr),
        )
        serial = secrets.randbits(63) | 1
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-set_serial", str(serial), "-days", "1", "-sha256", "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        return Issued(cert, key, serial)

    def server(self, name: str = "server", cn: str = "localhost") -> Issued:
        """A server certificate for localhost and 127.0.0.1."""
        return self.issue(name, cn=cn, dns=("localhost",), ips=("127.0.0.1",), usage="serverAuth")


def make_ca(directory: Path, name: str = "ca") -> CertificateAuthority:
    """A new self-signed CA certificate and key in ``directory``."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", *_EC_KEY, "-nodes", "-days", "1", "-subj", f"/CN={name} test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return CertificateAuthority(directory, name, cert, key)


SPIFFE_TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Pki:
    """A CA and what tests need from it: a server certificate, client certificates with a SPIFFE
    URI SAN (``ns/<ns>/sa/<sa>``), with the skewwatch pod URN, with no URI SAN, and one client
    certificate from a second CA nobody trusts."""

    ca: CertificateAuthority
    server: Issued
    spiffe: Issued
    pod: Issued
    plain: Issued
    untrusted_ca: CertificateAuthority
    untrusted: Issued


def make_pki(directory: Path, *, namespace: str = "ml", pod: str = "llm-0", sa: str = "skewwatch") -> Pki:
    """A ``Pki`` in ``directory``: the SPIFFE client is for ``namespace``, the pod URN client for
    ``namespace/pod``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca")
    other = make_ca(directory, "other-ca")
    return Pki(
        ca=ca,
        server=ca.server(),
        spiffe=ca.issue("spiffe", uris=(f"spiffe://{SPIFFE_TRUST_DOMAIN}/ns/{namespace}/sa/{sa}",)),
        pod=ca.issue("pod", uris=(f"urn:skewwatch:pod:{namespace}/{pod}",)),
        plain=ca.issue("plain", cn="skewwatch-agent"),
        untrusted_ca=other,
        untrusted=other.issue("untrusted", uris=(f"spiffe://{SPIFFE_TRUST_DOMAIN}/ns/{namespace}/sa/{sa}",)),
    )
