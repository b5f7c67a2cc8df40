"""Redaction: secrets never leave the pod in clear.

Env and arg values whose *name* or *shape* says secret are replaced by
``redacted:sha256:<prefix>``, a salted HMAC-SHA256 digest prefix: a change of the secret is
visible (the digest changes), the value is not. The salt is per installation
(``SKEWWATCH_REDACTION_SALT``) so digests cannot be compared against a public table; replicas
sharing a salt share digests, so peer comparison still works.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

REDACTED_PREFIX = "redacted:sha256:"
DIGEST_CHARS = 16

# Names (env or flag, case-insensitive, any of - _ . as separators) that hold secrets.
_SECRET_NAME = re.compile(
    r"(?:^|[_\-.])(?:token|tokens|secret|secrets|password|passwd|pwd|passphrase|credential|credentials|"
    r"api[_\-.]?key|apikey|access[_\-.]?key|private[_\-.]?key|secret[_\-.]?key|auth|authorization|"
    r"bearer|cookie|session[_\-.]?key|signing[_\-.]?key|client[_\-.]?secret|sas|dsn|conn(?:ection)?[_\-.]?string)"
    r"(?:$|[_\-.])",
    re.IGNORECASE,
)
# Names that look secret by the pattern above but hold only counts or flags.
_NOT_SECRET_NAME = re.compile(
    r"(?:^|[_\-.])(?:max|min|num)[_\-.](?:[a-z0-9]+[_\-.])*tokens?(?:$|[_\-.])|"
    r"(?:^|[_\-.])tokens?[_\-.](?:per|limit|budget|len|length|count)(?:$|[_\-.])|"
    r"tokenizer|(?:^|[_\-.])auth[_\-.]?(?:type|mode|method)$|token[_\-.]?(?:file|path)$",
    re.IGNORECASE,
)
# Values that are secrets whatever their name.
_SECRET_VALUE = re.compile(
    r"(?:^|[^A-Za-z0-9])("
    r"hf_[A-Za-z0-9]{20,}|"  # HuggingFace tokens
    r"sk-[A-Za-z0-9_\-]{16,}|"  # OpenAI-style keys
    r"sk_(?:live|test)_[A-Za-z0-9]{16,}|"
    r"(?:AKIA|ASIA)[A-Z0-9]{16}|"  # AWS access key ids
    r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|"
    r"xox[abprs]-[A-Za-z0-9-]{10,}|"  # Slack
    r"AIza[0-9A-Za-z_\-]{35}|"  # Google API keys
    r"glpat-[A-Za-z0-9_\-]{20,}|"
    r"nvapi-[A-Za-z0-9_\-]{20,}|"  # NVIDIA NGC
    r"eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}|"  # JWTs
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r")"
)
# Credentials embedded in URLs: scheme://user:password@host
_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]+:)([^@\s/]+)(@)")


class Redactor:
    def __init__(self, salt: str) -> None:
        self._key = salt.encode("utf-8")

    def digest(self, value: str) -> str:
        mac = hmac.new(self._key, value.encode("utf-8", "surrogateescape"), hashlib.sha256)
        return REDACTED_PREFIX + mac.hexdigest()[:DIGEST_CHARS]

    def value(self, name: str, value: str, force: bool = False) -> str:
        """The value to report for ``name``: itself, or its redacted digest."""
        if value.startswith(REDACTED_PREFIX):
            return value
        if force or is_secret_name(name) or is_secret_value(value):
            return self.digest(value)
        if _URL_CREDENTIALS.search(value):
            return _URL_CREDENTIALS.sub(lambda m: m.group(1) + self.digest(m.group(2)) + m.group(3), value)
        return value

    def env(self, environ: Mapping[str, str], secret_names: frozenset[str] = frozenset()) -> dict[str, str]:
        """Redact an environment; ``secret_names`` come from ``secretKeyRef`` and are always secret."""
        return {k: self.value(k, v, force=k in secret_names) for k, v in environ.items()}

    def argv(self, argv: Sequence[str]) -> list[str]:
        """Redact a command line: values of secret flags, and secret-shaped values anywhere."""
        out: list[str] = []
        secret_next = False
        for arg in argv:
            if secret_next:
                out.append(self.digest(arg))
                secret_next = False
                continue
            if arg.startswith("-") and "=" in arg:
                flag, _, val = arg.partition("=")
                out.append(flag + "=" + self.value(flag.lstrip("-"), val))
                continue
            if arg.startswith("-") and is_secret_name(arg.lstrip("-")):
                out.append(arg)
                secret_next = True
                continue
            out.append(self.text(arg))
        return out

    def text(self, text: str) -> str:
        """Redact secret-shaped substrings and URL credentials inside free text (shell scripts)."""
        text = _SECRET_VALUE.sub(lambda m: m.group(0).replace(m.group(1), self.digest(m.group(1))), text)
        text = _URL_CREDENTIALS.sub(lambda m: m.group(1) + self.digest(m.group(2)) + m.group(3), text)
        # NAME=value and --flag value / --flag=value inside a script
        text = re.sub(
            r"(?P<name>[A-Za-z_][A-Za-z0-9_\-]*)(?P<sep>=|\s+)(?P<val>[^\s'\"]+)",
            lambda m: (
                m.group(0)
                if not is_secret_name(m.group("name"))
                or m.group("val").startswith(REDACTED_PREFIX)
                or (m.group("sep") != "=" and not m.string[max(0, m.start() - 2) : m.start()].endswith("-"))
                else m.group("name") + m.group("sep") + self.digest(m.group("val"))
            ),
            text,
        )
        return text


def is_secret_name(name: str) -> bool:
    name = name.strip().lstrip("-")
    return bool(_SECRET_NAME.search(name)) and not _NOT_SECRET_NAME.search(name)


def is_secret_value(value: str) -> bool:
    return bool(_SECRET_VALUE.search(value))
