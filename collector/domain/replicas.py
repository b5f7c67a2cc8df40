"""Replicas grouped by configuration: which facts are configuration, the groups of equal
configuration, the majority among them and how a tie is broken. Pure.

Both the peer comparison and the baseline (recorded from the majority) stand on this.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from collector.domain.diff import ChangeKind, diff_facts
from collector.domain.model import Replica
from skewwatch.core.facts import FactValue
from skewwatch.core.fingerprint import fingerprint_values, is_fingerprinted

REVISION_LABELS = ("orchestration.labels.pod-template-hash", "orchestration.labels.controller-revision-hash")


def config_facts(facts: Mapping[str, FactValue], ignore: Sequence[str]) -> dict[str, FactValue]:
    """The facts that describe configuration: identity keys, per-run sizes, ignored globs removed."""
    return {
        k: v
        for k, v in facts.items()
        if is_fingerprinted(k) and not any(fnmatch.fnmatchcase(k, g) for g in ignore)
    }


def _signature(replica: Replica, ignore: Sequence[str]) -> str:
    if not ignore and replica.fingerprint:
        return replica.fingerprint
    return fingerprint_values(config_facts(replica.facts, ignore)).overall


def groups(replicas: Sequence[Replica], ignore: Sequence[str]) -> dict[str, list[Replica]]:
    out: dict[str, list[Replica]] = {}
    for r in replicas:
        if r.facts:
            out.setdefault(_signature(r, ignore), []).append(r)
    return out


def ranked(
    by_sig: Mapping[str, list[Replica]], baseline_fingerprint: str | None, violators: frozenset[str]
) -> list[list[Replica]]:
    def key(members: list[Replica]) -> tuple[int, int, int, str]:
        matches = bool(baseline_fingerprint) and any(m.fingerprint == baseline_fingerprint for m in members)
        return (-len(members), 0 if matches else 1, sum(m.pod in violators for m in members),
                min(m.pod for m in members))  # fmt: skip

    return sorted(by_sig.values(), key=key)


def tie_breaker(
    first: list[Replica], second: list[Replica], baseline_fingerprint: str | None, violators: frozenset[str]
) -> str | None:
    """Why ``first`` is the expected side of an equal split: "baseline", "intent", or None (split)."""
    if baseline_fingerprint:
        a = any(m.fingerprint == baseline_fingerprint for m in first)
        b = any(m.fingerprint == baseline_fingerprint for m in second)
        if a and not b:
            return "baseline"
    if sum(m.pod in violators for m in first) < sum(m.pod in violators for m in second):
        return "intent"
    return None


def majority_group(
    replicas: Sequence[Replica],
    ignore: Sequence[str],
    baseline_fingerprint: str | None = None,
    violators: frozenset[str] = frozenset(),
) -> list[Replica]:
    """The largest group of equal configuration; on a tie the one the baseline or intent favours,
    else (a split) the group of the lowest pod name, so that callers get a stable answer."""
    by_sig = groups(replicas, ignore)
    if not by_sig:
        return []
    return ranked(by_sig, baseline_fingerprint, violators)[0]


def revision(r: Replica) -> str | None:
    for key in REVISION_LABELS:
        if key in r.facts:
            return str(r.facts[key])
    return None


def differing_keys(a: Replica, b: Replica, ignore: Sequence[str]) -> list[str]:
    """Keys on which two replicas differ, where both sources could judge them now."""
    out = []
    for change in diff_facts(config_facts(a.facts, ignore), config_facts(b.facts, ignore)):
        key = change.key
        if change.kind is ChangeKind.REMOVED and not b.source_ok(key):
            continue
        if change.kind is ChangeKind.ADDED and not a.source_ok(key):
            continue
        if change.kind is ChangeKind.CHANGED and not (a.known(key) and b.known(key)):
            continue
        out.append(key)
    return out
