"""Version ranges for pins: ``>=535.104,<560``, ``==0.6.3``, ``~=12.4``, or a bare prefix ``12.4``.

Versions compare numerically segment by segment (``535.104.05`` > ``535.54``); a trailing
non-numeric part (``0.6.3.post1``, ``rc1``) sorts after the bare release for ``post``/``+local``
and before it for ``dev``/``a``/``b``/``rc``, which is all a driver, CUDA or engine version needs.
A bare version is a prefix match: ``12.4`` accepts ``12.4`` and ``12.4.1``, not ``12.40``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skewwatch.core.errors import SkewwatchError


class VersionRangeError(SkewwatchError, ValueError):
    """A version or version range is malformed; the message quotes it."""


_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)(.*)$")
_CLAUSE = re.compile(r"^(==|!=|>=|<=|~=|>|<)?\s*(\S+)$")
_PRE = re.compile(r"^[.\-_]?(dev|a|alpha|b|beta|rc|pre)", re.IGNORECASE)


def parse_version(text: str) -> tuple[tuple[int, ...], int, str]:
    """(numeric release, pre/post rank, rest) — comparable tuples; raises VersionRangeError."""
    m = _VERSION.match(text.strip())
    if not m:
        raise VersionRangeError(f"{text!r} is not a version (expected digits and dots, e.g. 535.104.05)")
    release = tuple(int(p) for p in m.group(1).split("."))
    rest = m.group(2)
    rank = 0 if not rest else (-1 if _PRE.match(rest) else 1)
    return release, rank, rest


def _pad(a: tuple[int, ...], n: int) -> tuple[int, ...]:
    return a + (0,) * (n - len(a))


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` is below, equal to or above ``b``."""
    ra, ka, sa = parse_version(a)
    rb, kb, sb = parse_version(b)
    n = max(len(ra), len(rb))
    left, right = (_pad(ra, n), ka, sa), (_pad(rb, n), kb, sb)
    return (left > right) - (left < right)


@dataclass(frozen=True)
class Clause:
    op: str
    version: str

    def accepts(self, value: str) -> bool:
        if self.op == "prefix":
            want = parse_version(self.version)[0]
            return parse_version(value)[0][: len(want)] == want
        if self.op == "~=":
            want = parse_version(self.version)[0]
            head = want[:-1] if len(want) > 1 else want
            return compare(value, self.version) >= 0 and parse_version(value)[0][: len(head)] == head
        c = compare(value, self.version)
        return {"==": c == 0, "!=": c != 0, ">=": c >= 0, "<=": c <= 0, ">": c > 0, "<": c < 0}[self.op]


def parse_range(text: str) -> tuple[Clause, ...]:
    """Comma-separated clauses, all of which must hold; raises VersionRangeError."""
    if not text or not text.strip():
        raise VersionRangeError("empty version range")
    clauses = []
    for raw in text.split(","):
        m = _CLAUSE.match(raw.strip())
        if not m:
            raise VersionRangeError(f"{raw.strip()!r} in {text!r} is not a version clause (e.g. >=535.104)")
        op, version = m.group(1) or "prefix", m.group(2)
        parse_version(version)
        clauses.append(Clause(op, version))
    return tuple(clauses)


def in_range(value: str, spec: str) -> bool:
    """Does version ``value`` satisfy ``spec``? An unparseable value does not."""
    try:
        clauses = parse_range(spec)
        return all(c.accepts(value) for c in clauses)
    except VersionRangeError:
        return False
