"""Canonical fingerprints: sha256 over sorted, typed facts, one per category plus an overall one.

Equal fingerprints mean equal configuration. The encoding is typed (``1``, ``1.0``, ``True`` and
``"1"`` all differ), independent of insertion order of facts and of map entries, and stable
across processes and Python versions. Identity facts that differ between replicas of one
configuration (pod name, node, GPU UUIDs) are stored but never fingerprinted, so replicas of one
workload share a fingerprint exactly when their configuration is equal. So are the engine's
per-run sizes and bookkeeping (:data:`STORED_ONLY_KEY_PATTERNS`): true, kept, shown in history,
but not configuration, so a restart with the same arguments keeps its fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping

from skewwatch.core.errors import FactError
from skewwatch.core.facts import CATEGORIES, Fact, FactValue, Fingerprint

# Keys that name *which* replica this is rather than *how* it is configured.
IDENTITY_KEY_PATTERNS: tuple[str, ...] = (
    r"orchestration\.pod",
    r"orchestration\.pod_uid",
    r"orchestration\.pod_ip",
    r"orchestration\.node",
    r"orchestration\.host",
    r"orchestration\.labels\.pod-template-hash",
    r"orchestration\.revision",
    r"orchestration\.labels\.controller-revision-hash",
    r"orchestration\.labels\.statefulset\.kubernetes\.io/pod-name",
    r"orchestration\.labels\.apps\.kubernetes\.io/pod-index",
    r"orchestration\.annotations\..*",
    r"orchestration\.node_labels\.topology\.kubernetes\.io/.*",
    r"orchestration\.node_labels\.nvidia\.com/gfd\.timestamp",
    r"orchestration\.labels\.leaderworkerset\.sigs\.k8s\.io/(group|worker)-index",
    r"hardware\.gpu\.uuids?",
    r"hardware\.gpu\.\d+\.uuid",
    r"hardware\.gpu\.\d+\.mig_uuid",
    r"hardware\.gpu\.serials?",
    r"hardware\.gpu\.\d+\.serial",
    r"hardware\.gpu\.\d+\.pci_bus_id",
    r"runtime\.pid",
)
_IDENTITY_RE = re.compile("^(?:" + "|".join(IDENTITY_KEY_PATTERNS) + ")$")

# Keys that restate, per run, what the engine sized at start-up, or how it got there: stored and
# diffed, never fingerprinted and never a finding of their own. vLLM 0.32's cache_config_info
# (decided per label in agent/engines/vllm.py): the KV cache's bytes, tokens and concurrent
# requests move by a few MB between restarts on a GPU; num_gpu_blocks, their coarse summary, is
# fingerprinted. ``_block_size_resolved`` and ``user_specified_block_size`` say how the block size
# was arrived at, not what it is (``runtime.block_size`` is).
STORED_ONLY_KEY_PATTERNS: tuple[str, ...] = (
    r"runtime\.kv_cache_memory_bytes",
    r"runtime\.kv_cache_tokens",
    r"runtime\.kv_cache_max_concurrency",
    r"runtime\.cache_config\._block_size_resolved",
    r"runtime\.cache_config\.user_specified_block_size",
    # The cluster's replica counts move with the autoscaler: state, not configuration.
    r"orchestration\.replicas\.desired",
    r"orchestration\.replicas\.ready",
)
_UNFINGERPRINTED_RE = re.compile("^(?:" + "|".join(IDENTITY_KEY_PATTERNS + STORED_ONLY_KEY_PATTERNS) + ")$")


def is_identity_key(key: str) -> bool:
    """True for keys that identify a replica and are kept out of fingerprints."""
    return bool(_IDENTITY_RE.match(key))


def is_fingerprinted(key: str) -> bool:
    """False for identity keys and per-run sizes: stored, never part of a fingerprint or a diff of
    configurations."""
    return not _UNFINGERPRINTED_RE.match(key)


def canonical(value: FactValue) -> str:
    """The typed canonical text of a fact value."""
    if value is None:
        return "n"
    if isinstance(value, bool):
        return "b:true" if value else "b:false"
    if isinstance(value, int):
        return f"i:{value}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise FactError(f"non-finite float {value!r} cannot be fingerprinted")
        return f"f:{(value + 0.0)!r}"  # + 0.0 folds -0.0 into 0.0
    if isinstance(value, str):
        return "s:" + json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "l[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "m{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v) for k, v in items) + "}"
    raise FactError(f"unsupported value type {type(value).__name__} cannot be fingerprinted")


def _digest(lines: Iterable[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def fact_line(key: str, value: FactValue) -> str | None:
    """A fact's line in its category's digest; None for a key that is never fingerprinted."""
    if not is_fingerprinted(key):
        return None
    return json.dumps(key, ensure_ascii=False) + "=" + canonical(value)


def fingerprint_lines(lines_by_key: Mapping[str, str | None]) -> Fingerprint:
    """The fingerprint of facts given as ``key -> fact_line(key, value)`` (a decoder that caches
    a fact's line computes it once for every replica sending that fact)."""
    lines: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for key in sorted(lines_by_key):
        line = lines_by_key[key]
        if line is not None:
            lines.setdefault(key.split(".", 1)[0], []).append(line)
    per_category = {c: _digest(lines[c]) for c in sorted(lines)}
    overall = _digest(f"{c}:{per_category[c]}" for c in sorted(per_category))
    return Fingerprint(overall=overall, categories=per_category)


def fingerprint_values(values: Mapping[str, FactValue]) -> Fingerprint:
    """Fingerprint a ``key -> value`` mapping (identity keys and per-run sizes left out)."""
    return fingerprint_lines({key: fact_line(key, value) for key, value in values.items()})


def fingerprint_facts(facts: Iterable[Fact]) -> Fingerprint:
    """Fingerprint facts; provenance does not count, only keys and typed values."""
    return fingerprint_values({f.key: f.value for f in facts})
