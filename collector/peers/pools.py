"""InferencePool homogeneity: the pods one pool routes to, whatever workload owns them, as peers. Pure.

A Gateway API InferencePool (or a KServe predictor) selects pods by labels and sends any request
to any of them, so it assumes they are interchangeable: the same weights, model, precision,
context length, KV-cache layout, GPU class and engine. Two Deployments behind one pool — an old
one and its replacement, or a "canary" left behind — can each be consistent on their own and
still give the pool's clients two different models. The pool is judged as a pseudo-workload named
by its id (``namespace/InferencePool/name``): its replicas are the live pods its selector matches
(``select_pods``), compared as peers on ``POOL_HOMOGENEOUS_KEYS`` only (what a pool assumes equal;
a pod's own port or resources may differ without harm), and each minority is one peer finding of
the pool naming the pool, the workloads of the differing pods and of the others.

A member workload rolling its pods from one template to the next mixes the pool too; when every
differing pod shares its workload with pods of the majority and runs another pod template than
they do, the finding says a rollout is in progress, at severity info, as a workload's own peer
finding does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from collector.domain.cluster import PoolMembers
from collector.domain.model import Drift, Replica
from collector.domain.replicas import revision
from collector.peers.compare import compare_peers
from skewwatch.core.facts import FactValue

# What a pool assumes equal across its pods (data: extend it here, nowhere else).
POOL_HOMOGENEOUS_KEYS: tuple[str, ...] = (
    "model.weights.digest",
    "model.id",
    "runtime.dtype",
    "runtime.max_model_len",
    "runtime.block_size",
    "runtime.quantization",
    "runtime.kv_cache_dtype",
    "hardware.gpu.product",  # the GPU class (the agent normalises NVML's name to it)
    "runtime.engine",
    "runtime.version",
)
POOL_HINT = "an InferencePool routes any request to any of its pods: "
LABEL_PREFIX = "orchestration.labels."
MAX_NAMED = 5  # pods (and workloads) a message names before "and N more"


@dataclass(frozen=True)
class PoolPod:
    """One pod a pool selects, with the workload that owns it."""

    workload: str
    replica: Replica


def labels_of(replica: Replica) -> dict[str, FactValue]:
    """The pod's labels as the agent reports them (``orchestration.labels.<k>``), keyed by ``k``."""
    return {k.removeprefix(LABEL_PREFIX): v for k, v in replica.facts.items() if k.startswith(LABEL_PREFIX)}


def select_pods(pool: PoolMembers, candidates: Iterable[PoolPod]) -> list[PoolPod]:
    """The candidates in the pool's namespace whose labels its selector matches, by pod name."""
    chosen = [
        c
        for c in candidates
        if c.replica.facts
        and c.replica.facts.get("orchestration.namespace", pool.namespace) == pool.namespace
        and pool.selects(labels_of(c.replica))
    ]
    return sorted(chosen, key=lambda c: c.replica.pod)


def _only(replica: Replica, keys: Sequence[str]) -> Replica:
    """The replica with only ``keys`` as facts, and no fingerprint: it is grouped on those alone."""
    wanted = set(keys)
    return replace(
        replica,
        facts={k: v for k, v in replica.facts.items() if k in wanted},
        provenance={k: p for k, p in replica.provenance.items() if k in wanted},
        fingerprint="",
    )


def compare_pool(
    pool: str, pods: Sequence[PoolPod], keys: Sequence[str] = POOL_HOMOGENEOUS_KEYS
) -> list[Drift]:
    """The minority pods of the pool on each of ``keys`` (a split when no side is larger).

    The drifts are peer drifts, one per key, with the pool named in their source; the message a
    finding shows is :func:`pool_message`, made once the drifts are grouped by root cause."""
    live = [p for p in pods if p.replica.facts]
    drifts = compare_peers([_only(p.replica, keys) for p in live])
    by_pod = {p.replica.pod: p for p in live}
    out = []
    for d in drifts:
        note = "" if d.split else _rollout(d.pods, by_pod)
        out.append(
            replace(
                d,
                source=f"pods of {pool}",
                note=note,
                severity="info" if note else "",
                expected_text=(
                    d.expected_text
                    if d.split
                    else f"expected {_text(d.expected)} (as on the other pods of {pool})"
                ),
            )
        )
    return out


def _rollout(minority: Mapping[str, Any], by_pod: Mapping[str, PoolPod]) -> str:
    """ "a rollout of W is in progress …" when every differing pod's workload also has pods on the
    majority side that run another pod template; else ""."""
    notes = []
    for workload in sorted({by_pod[p].workload for p in minority}):
        mine = [p for p in by_pod.values() if p.workload == workload]
        new = {revision(p.replica) for p in mine if p.replica.pod in minority}
        old = {revision(p.replica) for p in mine if p.replica.pod not in minority}
        if not old or None in new or None in old or new & old:
            return ""
        was, now = ", ".join(sorted(map(str, old))), ", ".join(sorted(map(str, new)))
        notes.append(f"{workload} (pod template {was} vs {now})")
    return "a rollout is in progress in " + "; ".join(notes)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else repr(value)


def _named(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def _sides(finding: Drift, pods: Sequence[PoolPod]) -> list[tuple[str, str, list[str]]]:
    """(value shown, workload, its pods) for each value and workload among the pool's pods, the
    differing pods first; on a split every pod says its own value."""
    differing = dict(finding.pods)
    present = finding.present
    rows: dict[tuple[bool, str, str], list[str]] = {}
    for p in pods:
        if not p.replica.facts:
            continue
        pod = p.replica.pod
        if pod in differing:
            shown = "(absent)" if present and not present.get(pod, True) else _text(differing[pod])
        elif finding.split:
            continue
        else:
            shown = _text(finding.expected)
        rows.setdefault((pod not in differing, shown, p.workload), []).append(pod)
    return [(shown, wl, sorted(names)) for (_, shown, wl), names in sorted(rows.items())]


def pool_message(pool: str, finding: Drift, pods: Sequence[PoolPod], related: Sequence[str] = ()) -> str:
    """ "InferencePool ml/InferencePool/llama mixes runtime.dtype: float32 on 1 pod of
    ml/Deployment/llama-b (llama-b-0); float16 on 2 pods of ml/Deployment/llama-a (…)" """
    parts = []
    for shown, workload, names in _sides(finding, pods):
        count = f"{len(names)} pod" + ("s" if len(names) != 1 else "")
        parts.append(f"{shown} on {count} of {workload} ({_named(names)})")
    how = "is split with no majority on" if finding.split else "mixes"
    text = f"{pool} {how} {finding.key} across {sum(1 for p in pods if p.replica.facts)} pods: " + "; ".join(
        parts
    )
    if related:
        text += f"; with {', '.join(related)}"
    if finding.note:
        text += f"; {finding.note}"
    return text


def pool_hint(pool: str, finding: Drift, pods: Sequence[PoolPod], play_hint: str) -> str:
    """The pool's hint: what the pool does with mixed pods, whose pods to align, and the key's own
    playbook hint (the flag to pin)."""
    workload_of = {p.replica.pod: p.workload for p in pods}
    differing = sorted({workload_of[p] for p in finding.pods if p in workload_of})
    others = sorted({p.workload for p in pods if p.replica.facts and p.replica.pod not in finding.pods})
    if finding.split:
        what = f"its pods disagree on {finding.key} ({_named(differing)}) and it mixes their answers"
    else:
        what = (
            f"the pods of {_named(differing)} run {finding.key} = {_text(finding.actual)} where "
            f"those of {_named(others) or 'the others'} run {_text(finding.expected)}"
        )
    return f"{POOL_HINT}{what}; align them ({play_hint}) or take the differing pods out of {pool}'s selector"
