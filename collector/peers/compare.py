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

from collections.abc import Sequence
from typing import Any

from collector.domain.model import Drift, Reference, Replica
from collector.domain.replicas import config_facts, differing_keys, groups, ranked, revision, tie_breaker


def compare_peers(
    replicas: Sequence[Replica],
    ignore: Sequence[str] = (),
    baseline_fingerprint: str | None = None,
    violators: frozenset[str] = frozenset(),
) -> list[Drift]:
    """Minority replicas against the majority; an equal split with no tie-breaker is a split.

    ``violators`` are pods that break an intent: of two equal groups, the one with fewer of them
    is expected (as is the one matching the baseline's fingerprint). With neither, no side is
    called expected: each differing key is one drift naming every replica's value, ``split``.
    """
    live = [r for r in replicas if r.facts]
    if len(live) < 2:
        return []
    by_sig = groups(live, ignore)
    if len(by_sig) < 2:
        return []
    order = ranked(by_sig, baseline_fingerprint, violators)
    majority = order[0]
    tie = len(order[1]) == len(majority)
    broken_by = tie_breaker(majority, order[1], baseline_fingerprint, violators) if tie else "size"
    if broken_by is None:
        return _split(live, ignore)
    members = {r.pod for r in majority}
    rep = max(majority, key=lambda r: r.last_seen)
    expected_facts = config_facts(rep.facts, ignore)
    per_key: dict[str, dict[str, Any]] = {}
    present: dict[str, dict[str, bool]] = {}
    evidence: dict[str, dict[str, Any]] = {}
    for r in live:
        if r.pod in members:
            continue
        mine = config_facts(r.facts, ignore)
        for key in differing_keys(rep, r, ignore):
            per_key.setdefault(key, {})[r.pod] = mine.get(key)
            present.setdefault(key, {})[r.pod] = key in mine
            prov = r.provenance.get(key)
            if prov is not None:
                evidence.setdefault(key, {})[r.pod] = prov.as_dict()
    rep_rev = revision(rep)
    why = {"size": "", "baseline": ", the side that matches the baseline",
           "intent": ", the side that keeps the intent"}[broken_by]  # fmt: skip
    drifts = []
    for key, pods in sorted(per_key.items()):
        values = list(pods.values())
        actual = max(values, key=lambda v: sum(1 for x in values if x == v))
        expected = expected_facts.get(key)
        shown = _show(expected, key in expected_facts)
        minority_revs = {revision(r) for r in live if r.pod in pods}
        rollout = rep_rev is not None and None not in minority_revs and rep_rev not in minority_revs
        note = ""
        if rollout:
            others = ", ".join(sorted(map(str, minority_revs)))
            note = f"a rollout is in progress (pod template {rep_rev} vs {others})"
        drifts.append(
            Drift(
                Reference.PEERS,
                key,
                expected,
                actual,
                pods,
                f"{len(pods)} of {len(live)} replicas differ on {key} from {shown} "
                f"(as on {len(majority)} of {len(live)} replicas{why})",
                f"majority of replicas ({', '.join(sorted(members))})",
                evidence.get(key, {}),
                severity="info" if rollout else "",
                present=present[key],
                expected_text=f"expected {shown} (as on {len(majority)} of {len(live)} replicas{why})",
                note=note,
            )
        )
    return drifts


def _split(live: Sequence[Replica], ignore: Sequence[str]) -> list[Drift]:
    keys: set[str] = set()
    first = live[0]
    for r in live[1:]:
        keys.update(differing_keys(first, r, ignore))
    drifts = []
    for key in sorted(keys):
        pods: dict[str, Any] = {}
        present: dict[str, bool] = {}
        evidence: dict[str, Any] = {}
        for r in live:
            if key in r.facts and not r.known(key):
                continue  # carried: unknown on this replica
            pods[r.pod] = r.facts.get(key)
            present[r.pod] = key in r.facts
            prov = r.provenance.get(key)
            if prov is not None:
                evidence[r.pod] = prov.as_dict()
        values = list(pods.values())
        actual = max(values, key=lambda v: sum(1 for x in values if x == v))
        drifts.append(
            Drift(
                Reference.PEERS,
                key,
                None,
                actual,
                pods,
                f"{key} is split across {len(pods)} replicas with no majority",
                f"no majority among {len(live)} replicas",
                evidence,
                present=present,
                split=True,
            )
        )
    return drifts


def _show(value: Any, present: bool) -> str:
    if not present:
        return "(absent)"
    return value if isinstance(value, str) else repr(value)
