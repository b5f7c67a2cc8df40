"""Replica skew: the majority configuration of a workload against the minority. Pure.

Replicas are grouped by a fingerprint over their configuration facts (identity keys such as pod
name and node, and the workload's ignore globs, left out). The largest group is the majority;
on a tie, the group matching the baseline's fingerprint, else the one holding the longest-running
replica. Every fact on which a minority replica differs is one drift naming the pods:
"2 of 8 replicas: hardware.gpu.product = a100-40gb, expected h100-80gb". When the minority runs
another pod template (a different ``pod-template-hash`` / ``controller-revision-hash``) the
difference is a rollout in progress and says so, at severity info.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from collector.drift.diff import ChangeKind, diff_facts
from collector.drift.model import Drift, Reference, Replica
from skewwatch.core.facts import FactValue
from skewwatch.core.fingerprint import fingerprint_values, is_identity_key

REVISION_LABELS = ("orchestration.labels.pod-template-hash", "orchestration.labels.controller-revision-hash")


def config_facts(facts: Mapping[str, FactValue], ignore: Sequence[str]) -> dict[str, FactValue]:
    """The facts that describe configuration: identity keys and ignored globs removed."""
    return {
        k: v
        for k, v in facts.items()
        if not is_identity_key(k) and not any(fnmatch.fnmatchcase(k, g) for g in ignore)
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


def majority_group(
    replicas: Sequence[Replica], ignore: Sequence[str], baseline_fingerprint: str | None = None
) -> list[Replica]:
    by_sig = groups(replicas, ignore)
    if not by_sig:
        return []

    def rank(item: tuple[str, list[Replica]]) -> tuple[int, int, float]:
        _sig, members = item
        return (
            len(members),
            1 if baseline_fingerprint and any(m.fingerprint == baseline_fingerprint for m in members) else 0,
            -min(m.first_seen for m in members),
        )

    return max(by_sig.items(), key=rank)[1]


def _revision(r: Replica) -> str | None:
    for key in REVISION_LABELS:
        if key in r.facts:
            return str(r.facts[key])
    return None


def compare_peers(
    replicas: Sequence[Replica], ignore: Sequence[str] = (), baseline_fingerprint: str | None = None
) -> list[Drift]:
    live = [r for r in replicas if r.facts]
    if len(live) < 2:
        return []
    majority = majority_group(live, ignore, baseline_fingerprint)
    members = {r.pod for r in majority}
    rep = max(majority, key=lambda r: r.last_seen)
    expected_facts = config_facts(rep.facts, ignore)
    tie = len(majority) * 2 <= len(live)
    per_key: dict[str, dict[str, Any]] = {}
    evidence: dict[str, dict[str, Any]] = {}
    for r in live:
        if r.pod in members:
            continue
        for change in diff_facts(expected_facts, config_facts(r.facts, ignore)):
            if change.kind is ChangeKind.REMOVED and not r.source_ok(change.key):
                continue
            if change.kind is ChangeKind.ADDED and not rep.source_ok(change.key):
                continue
            per_key.setdefault(change.key, {})[r.pod] = (
                None if change.kind is ChangeKind.REMOVED else change.after
            )
            prov = r.provenance.get(change.key)
            if prov is not None:
                evidence.setdefault(change.key, {})[r.pod] = prov.as_dict()
    rep_rev = _revision(rep)
    drifts = []
    for key, pods in sorted(per_key.items()):
        values = list(pods.values())
        actual = max(values, key=lambda v: sum(1 for x in values if x == v))
        expected = expected_facts.get(key)
        shown = _show(actual, key in expected_facts or actual is not None)
        message = (
            f"{len(pods)} of {len(live)} replicas: {key} = {shown}, expected "
            f"{_show(expected, key in expected_facts)} (as on {len(majority)} of {len(live)} replicas"
            f"{', no clear majority' if tie else ''})"
        )
        minority_revs = {_revision(r) for r in live if r.pod in pods}
        rollout = rep_rev is not None and None not in minority_revs and rep_rev not in minority_revs
        if rollout:
            others = ", ".join(sorted(map(str, minority_revs)))
            message += f"; a rollout is in progress (pod template {rep_rev} vs {others})"
        drifts.append(
            Drift(
                Reference.PEERS,
                key,
                expected,
                actual,
                pods,
                message,
                f"majority of replicas ({', '.join(sorted(members))})",
                evidence.get(key, {}),
                severity="info" if rollout else "",
            )
        )
    return drifts


def _show(value: Any, present: bool) -> str:
    if not present:
        return "(absent)"
    return value if isinstance(value, str) else repr(value)
