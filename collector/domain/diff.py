"""Diff two fact maps: which keys were added, removed or changed, compared by typed value.

Pure: no I/O, no servers. Values are compared by their canonical fingerprint encoding, so
``1``, ``1.0`` and ``True`` are different values here exactly as they are to fingerprints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from skewwatch.core.facts import FactValue
from skewwatch.core.fingerprint import canonical


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True)
class FactChange:
    """One key that differs. ``before`` is None for ADDED and ``after`` for REMOVED; since None is
    also a legal fact value, ``kind`` is what tells absence from a null value."""

    key: str
    kind: ChangeKind
    before: FactValue
    after: FactValue

    @property
    def category(self) -> str:
        return self.key.split(".", 1)[0]

    def as_dict(self) -> dict[str, FactValue]:
        return {
            "key": self.key,
            "category": self.category,
            "change": self.kind.value,
            "before": self.before,
            "after": self.after,
        }


def diff_facts(before: Mapping[str, FactValue], after: Mapping[str, FactValue]) -> list[FactChange]:
    """Changes from ``before`` to ``after``, sorted by key."""
    changes: list[FactChange] = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            changes.append(FactChange(key, ChangeKind.REMOVED, before[key], None))
        elif key not in before:
            changes.append(FactChange(key, ChangeKind.ADDED, None, after[key]))
        elif canonical(before[key]) != canonical(after[key]):
            changes.append(FactChange(key, ChangeKind.CHANGED, before[key], after[key]))
    return changes
