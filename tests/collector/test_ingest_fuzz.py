"""Fuzz ``Session.handle``: random bytes and hostile-but-decodable AgentMessages, a real SQLite store.

Whatever arrives, only ``IngestError`` (typed, naming the field) may escape, every case finishes
within the hypothesis deadline, and a snapshot stored before the fuzzing is still readable,
unchanged, after it. No gRPC server: the protocol layer alone, as the server drives it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.errors import IngestError
from collector.ingest.protocol import Session
from collector.ingest.registry import StreamRegistry
from collector.service.recording import Recorder
from collector.store.sqlite import SqliteStore
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.identity import PodKey
from skewwatch.wire import snapshot_to_proto
from tests.support.collector import BASE_FACTS, hello_msg, make_snapshot, snapshot_msg

KEY = PodKey("ml", "llm-0")
MAX_MESSAGE_BYTES = 64 * 1024
CASE_TIMEOUT_S = 5.0
FUZZ = settings(
    max_examples=400,
    deadline=timedelta(milliseconds=1500),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
    derandomize=False,
)
U64 = st.integers(min_value=0, max_value=2**64 - 1)
# Mostly plausible sequences (after the test Hello's 10), so the rest of the message is reached.
SEQ = st.one_of(st.integers(min_value=11, max_value=1000), U64)
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
I32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "ml", "llm-0", "a" * 600, "x\n", "\x00", "ﬀ" * 300, "../../etc", "*"]),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 1e308, -1e308, 5e-324, float("nan"), float("inf")]),
)


class Fuzzer:
    """A real store with one snapshot stored before the fuzzing; drives sessions on one loop."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = SqliteStore(path)
        self.cases = 0
        self.rejected = 0
        self.run(self.store.open())
        self.seed = make_snapshot()
        session = self.session()
        self.run(session.handle(hello_msg(1).SerializeToString()))
        self.run(session.handle(snapshot_msg(2, self.seed).SerializeToString()))
        session.close()
        pod = self.run(self.store.get_pod(KEY))
        assert pod is not None and pod.current_snapshot_id is not None
        self.seed_id = pod.current_snapshot_id

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, CASE_TIMEOUT_S))

    def session(self) -> Session:
        return Session(
            Recorder(self.store),
            max_message_bytes=MAX_MESSAGE_BYTES,
            clock=time.time,
            registry=StreamRegistry(),
            peer="ipv4:127.0.0.1:1",
        )

    def feed(self, messages: list[bytes], *, hello_first: bool) -> None:
        """One stream: optionally a valid Hello, then ``messages``; only IngestError may escape."""
        self.cases += 1
        session = self.session()
        try:
            if hello_first:
                self.run(session.handle(hello_msg(10).SerializeToString()))
            for raw in messages:
                self.run(session.handle(raw))
        except IngestError as e:
            assert str(e), "an IngestError names the field at fault"
            self.rejected += 1
        finally:
            session.close()

    def check_seed_intact(self) -> None:
        row = self.run(self.store.get_snapshot(self.seed_id))
        assert row is not None, "the snapshot stored before the fuzzing is gone"
        assert row.fingerprint == self.seed.fingerprint
        assert row.facts == {k: f.value for k, f in self.seed.facts.items()}

    def close(self) -> None:
        self.run(self.store.close())
        self.loop.close()


@pytest.fixture
def fuzzer(tmp_path: Path) -> Iterator[Fuzzer]:
    f = Fuzzer(tmp_path / "fuzz.db")
    try:
        yield f
    finally:
        f.check_seed_intact()
        print(f"\nfuzz: {f.cases} cases, {f.rejected} rejected with IngestError")
        f.close()


def timestamps() -> st.SearchStrategy[dict[str, int]]:
    seconds = st.one_of(st.integers(min_value=0, max_value=2**32), I64)
    nanos = st.one_of(st.integers(min_value=0, max_value=999_999_999), I32)
    return st.fixed_dictionaries({"seconds": seconds, "nanos": nanos})


def hostile_hello() -> st.SearchStrategy[pb.AgentMessage]:
    return st.builds(
        lambda seq, agent, version, proto, ns, pod, node, instance: pb.AgentMessage(
            sequence=seq,
            hello=pb.Hello(
                agent_id=agent,
                agent_version=version,
                protocol_version=proto,
                instance_id=instance,
                pod=pb.PodIdentity(namespace=ns, pod=pod, node=node, workload=node, workload_source=node),
            ),
        ),
        SEQ,
        TEXT,
        TEXT,
        st.one_of(st.just(1), st.integers(min_value=0, max_value=2**32 - 1)),
        st.one_of(st.just("ml"), TEXT),
        st.one_of(st.just("llm-0"), TEXT),
        TEXT,
        TEXT,
    )


def _snapshot(
    seq: int, values: list[Any], keys: list[str], ts: dict[str, int], fp: str | None
) -> pb.AgentMessage:
    facts = dict(BASE_FACTS)
    for k, v in zip(keys, values, strict=False):
        facts[k] = v
    try:
        snap = make_snapshot(facts)
    except Exception:  # a fact the model itself refuses: send the base one, still hostile elsewhere
        snap = make_snapshot()
    msg = snapshot_to_proto(snap)
    msg.collected_at.seconds = ts["seconds"]
    msg.collected_at.nanos = ts["nanos"]
    if fp is not None:
        msg.fingerprint.overall = fp
    return pb.AgentMessage(sequence=seq, snapshot=msg)


def hostile_snapshot() -> st.SearchStrategy[pb.AgentMessage]:
    value = st.one_of(st.booleans(), I64, FLOATS, TEXT, st.none())
    key = st.one_of(st.sampled_from(["runtime.dtype", "model.id", "runtime.max_model_len"]), TEXT)
    return st.builds(
        _snapshot,
        SEQ,
        st.lists(value, max_size=4),
        st.lists(key, max_size=4),
        timestamps(),
        st.one_of(st.none(), TEXT, st.just("0" * 64)),
    )


def hostile_heartbeat() -> st.SearchStrategy[pb.AgentMessage]:
    def build(seq: int, fp: str, state: int, since: dict[str, int], at: dict[str, int], text: str) -> Any:
        hb = pb.Heartbeat(overall_fingerprint=fp, engine_state=state, engine_state_message=text)  # type: ignore[arg-type]
        hb.at.seconds, hb.at.nanos = at["seconds"], at["nanos"]
        hb.engine_state_since.seconds, hb.engine_state_since.nanos = since["seconds"], since["nanos"]
        return pb.AgentMessage(sequence=seq, heartbeat=hb)

    fp = st.one_of(st.just(""), st.just(make_snapshot().fingerprint.overall), TEXT)
    return st.builds(build, SEQ, fp, st.one_of(st.integers(0, 3), I32), timestamps(), timestamps(), TEXT)


def hostile_observations() -> st.SearchStrategy[pb.AgentMessage]:
    def build(seq: int, items: list[tuple[str, float, str]], window: float, at: dict[str, int]) -> Any:
        o = pb.Observations(window_seconds=window)
        o.at.seconds, o.at.nanos = at["seconds"], at["nanos"]
        for name, v, unit in items:
            o.items.add(name=name, value=v, unit=unit)
        return pb.AgentMessage(sequence=seq, observations=o)

    item = st.tuples(st.one_of(st.just("tokens_per_s"), TEXT), FLOATS, TEXT)
    return st.builds(build, SEQ, st.lists(item, max_size=5), FLOATS, timestamps())


def hostile_event() -> st.SearchStrategy[pb.AgentMessage]:
    def build(
        seq: int, kind: str, pids: tuple[int, int], starts: tuple[float, float], at: dict[str, int], text: str
    ) -> Any:
        e = pb.Event(
            kind=kind,
            old_pid=pids[0],
            new_pid=pids[1],
            old_start_time=starts[0],
            new_start_time=starts[1],
            message=text,
        )
        e.at.seconds, e.at.nanos = at["seconds"], at["nanos"]
        return pb.AgentMessage(sequence=seq, event=e)

    kind = st.one_of(st.just("restart"), TEXT)
    return st.builds(build, SEQ, kind, st.tuples(I64, I64), st.tuples(FLOATS, FLOATS), timestamps(), TEXT)


HOSTILE = st.one_of(
    hostile_hello(), hostile_snapshot(), hostile_heartbeat(), hostile_observations(), hostile_event()
)


def _serialize(msg: pb.AgentMessage) -> bytes:
    return msg.SerializeToString()


def test_random_bytes_only_raise_ingest_error(fuzzer: Fuzzer) -> None:
    @FUZZ
    @given(st.lists(st.binary(max_size=512), min_size=1, max_size=3), st.booleans())
    def case(messages: list[bytes], hello_first: bool) -> None:
        fuzzer.feed(messages, hello_first=hello_first)

    case()


def test_hostile_messages_only_raise_ingest_error(fuzzer: Fuzzer) -> None:
    @FUZZ
    @given(st.lists(HOSTILE.map(_serialize), min_size=1, max_size=3), st.booleans())
    def case(messages: list[bytes], hello_first: bool) -> None:
        fuzzer.feed(messages, hello_first=hello_first)

    case()


def test_mutated_valid_messages_only_raise_ingest_error(fuzzer: Fuzzer) -> None:
    """Valid messages with bytes flipped, cut or appended: the decoder's edge cases."""
    valid = [snapshot_msg(11, make_snapshot()).SerializeToString(), hello_msg(10).SerializeToString()]

    def mutate(raw: bytes, at: int, value: int, cut: int, tail: bytes) -> bytes:
        b = bytearray(raw)
        b[at % len(b)] = value
        return bytes(b[: max(1, len(b) - cut)]) + tail

    mutated: Callable[..., bytes] = mutate
    raw = st.builds(
        mutated,
        st.sampled_from(valid),
        st.integers(0, 10_000),
        st.integers(0, 255),
        st.integers(0, 8),
        st.binary(max_size=8),
    )

    @FUZZ
    @given(st.lists(raw, min_size=1, max_size=2), st.booleans())
    def case(messages: list[bytes], hello_first: bool) -> None:
        fuzzer.feed(messages, hello_first=hello_first)

    case()
