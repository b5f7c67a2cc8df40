"""JSON encoding of facts, provenance, sources, fingerprints and observations for store columns.

JSON keeps the fact model's typed distinction (``1``, ``1.0``, ``true`` and ``"1"`` all decode
back to different Python values), so a stored value fingerprints exactly as it did on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from collector.domain.baseline import Baseline
from collector.errors import StoreError
from skewwatch.core.facts import FactValue, Fingerprint, Observation, Provenance, SourceState, SourceStatus
from skewwatch.core.lru import BoundedLRU


def dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _loads(text: str, column: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError) as e:
        raise StoreError(f"stored column {column} is not valid JSON: {e}") from e


def encode_facts(facts: Mapping[str, FactValue]) -> str:
    return dumps(dict(facts))


def decode_facts(text: str) -> dict[str, FactValue]:
    data = _loads(text, "facts")
    if not isinstance(data, dict):
        raise StoreError("stored column facts is not a JSON object")
    return cast(dict[str, FactValue], data)


def encode_provenance(provenance: Mapping[str, Provenance]) -> str:
    return dumps({k: p.as_dict() for k, p in provenance.items()})


# The last few provenance columns decoded, by their text: the replicas of a workload store the
# same provenance, and evaluating the workload loads every replica.
_PROVENANCE: BoundedLRU[str, dict[str, Provenance]] = BoundedLRU(256)


def decode_provenance(text: str) -> dict[str, Provenance]:
    cached = _PROVENANCE.get(text)
    if cached is not None:
        return dict(cached)  # Provenance is frozen; the mapping is the caller's own
    data = _loads(text, "provenance")
    try:
        decoded = {k: Provenance.from_dict(v) for k, v in data.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise StoreError(f"stored column provenance is malformed: {e!r}") from e
    _PROVENANCE.put(text, decoded)
    return dict(decoded)


def encode_sources(sources: Mapping[str, SourceStatus]) -> str:
    return dumps({n: s.as_dict() for n, s in sources.items()})


def decode_sources(text: str) -> dict[str, SourceStatus]:
    data = _loads(text, "sources")
    try:
        return {
            n: SourceStatus(n, SourceState(v["status"]), v.get("message", ""), v.get("duration_seconds", 0.0))
            for n, v in data.items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise StoreError(f"stored column sources is malformed: {e!r}") from e


def encode_fingerprint(fp: Fingerprint) -> str:
    return dumps(fp.as_dict())


def decode_fingerprint(text: str) -> Fingerprint:
    data = _loads(text, "fingerprints")
    if not isinstance(data, dict) or not isinstance(data.get("overall"), str):
        raise StoreError("stored column fingerprints lacks an overall fingerprint")
    overall = data.pop("overall")
    return Fingerprint(overall=overall, categories={str(k): str(v) for k, v in data.items()})


def encode_observations(items: Mapping[str, Observation]) -> str:
    return dumps({n: o.as_dict() for n, o in items.items()})


def decode_observations(text: str) -> dict[str, Observation]:
    data = _loads(text, "observations")
    try:
        return {
            n: Observation(
                n, float(v["value"]), str(v.get("unit", "")), _bound(v, "lower"), _bound(v, "upper")
            )
            for n, v in data.items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise StoreError(f"stored column observations is malformed: {e!r}") from e


def _bound(item: Mapping[str, Any], name: str) -> float | None:
    value = item.get(name)
    return None if value is None else float(value)


def loads_value(text: str, column: str) -> Any:
    """A JSON column holding any value (finding expected/actual, pods, evidence)."""
    return _loads(text, column)


def encode_baseline(b: Baseline) -> str:
    return dumps(
        {
            "fingerprint": b.fingerprint,
            "facts": dict(b.facts),
            "provenance": {k: p.as_dict() for k, p in b.provenance.items()},
            "sources": dict(b.sources),
            "performance": dict(b.performance),
            "bounds": {k: list(v) for k, v in b.bounds.items()},
            "load": dict(b.load),
            "pods": list(b.pods),
            "samples": b.samples,
            "note": b.note,
        }
    )


def decode_baseline(row_id: int, workload: str, recorded_at: float, origin: str, text: str) -> Baseline:
    data = _loads(text, "baselines.body")
    try:
        return Baseline(
            workload=workload,
            recorded_at=recorded_at,
            origin=origin,
            fingerprint=str(data["fingerprint"]),
            facts=cast(dict[str, FactValue], data["facts"]),
            provenance={k: Provenance.from_dict(v) for k, v in data["provenance"].items()},
            sources={str(k): str(v) for k, v in data["sources"].items()},
            performance={str(k): float(v) for k, v in data["performance"].items()},
            load={str(k): float(v) for k, v in data["load"].items()},
            pods=tuple(str(p) for p in data["pods"]),
            samples=int(data["samples"]),
            id=row_id,
            note=str(data.get("note", "")),
            bounds={str(k): (float(v[0]), float(v[1])) for k, v in data.get("bounds", {}).items()},
        )
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise StoreError(f"stored baseline {row_id} is malformed: {e!r}") from e
