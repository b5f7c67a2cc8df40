"""The collector's fact cache: decoding with it gives exactly what decoding without it gives,
it stays within its memory bound, and it changes nothing about what is refused."""

from __future__ import annotations

import pytest

from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.facts import Snapshot
from skewwatch.wire import FactCache, WireError, snapshot_from_proto, snapshot_to_proto
from tests.support.collector import BASE_FACTS, H100_FACTS, make_snapshot


def replica(i: int, **changes: object) -> Snapshot:
    return make_snapshot({**BASE_FACTS, **H100_FACTS, "orchestration.pod": f"llm-{i}", **changes})


def test_replicas_decode_the_same_with_and_without_the_cache_and_mostly_from_it() -> None:
    cache = FactCache()
    msgs = [snapshot_to_proto(replica(i)) for i in range(20)]
    msgs.append(snapshot_to_proto(replica(0, **{"runtime.dtype": "float32"})))
    for msg in msgs:
        plain, cached = snapshot_from_proto(msg), snapshot_from_proto(msg, cache)
        assert cached.facts == plain.facts and cached.fingerprint == plain.fingerprint
        assert cached.sources == plain.sources
    per_snapshot = len(msgs[0].facts)
    # Only the first replica and each replica's own identity facts (and the one changed fact)
    # were decoded; everything else came from the cache.
    assert cache.misses < per_snapshot + 3 * len(msgs), (cache.misses, cache.hits)
    assert cache.hits > (len(msgs) - 1) * (per_snapshot - 5)


def test_the_cache_stays_within_its_bound() -> None:
    cache = FactCache(max_bytes=20_000, max_entry_bytes=1_000)
    for i in range(200):
        snapshot_from_proto(snapshot_to_proto(make_snapshot({**BASE_FACTS, "runtime.args.seed": i})), cache)
    assert cache.cost <= 20_000 and len(cache) > 0


def test_a_cached_fact_twice_in_one_snapshot_is_still_a_duplicate() -> None:
    cache = FactCache()
    msg = snapshot_to_proto(replica(0))
    snapshot_from_proto(msg, cache)  # every fact is cached now
    msg.facts.append(pb.Fact().FromString(msg.facts[0].SerializeToString()))
    with pytest.raises(WireError, match="duplicate fact key"):
        snapshot_from_proto(msg, cache)


def test_a_fingerprint_that_does_not_match_cached_facts_is_refused() -> None:
    cache = FactCache()
    msg = snapshot_to_proto(replica(0))
    snapshot_from_proto(msg, cache)
    msg.fingerprint.overall = "0" * 64
    with pytest.raises(WireError, match="does not match the facts"):
        snapshot_from_proto(msg, cache)
