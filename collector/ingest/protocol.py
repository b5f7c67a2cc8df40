"""The stream protocol, without gRPC: decode and validate one untrusted message, decide the reply.

``Session`` holds one stream's state (who it speaks for, the last sequence) and turns each raw
message into calls of the service layer's ``Recorder`` (``collector.service.recording``: each
returns once committed, then schedules evaluation) and an optional reply. Every protocol or
validation failure raises ``IngestError`` naming the field; the server turns that into
INVALID_ARGUMENT. Store failures surface as ``StoreError`` and nothing is acknowledged. With a
``StreamRegistry`` the Hello also claims the pod for this stream (``collector.ingest.registry``):
a second live agent instance is refused with ``IdentityConflict`` before anything is stored.

Sequences and replays (docs/contracts.md "Wire", docs/security-delivery.md): an agent resends
what was never acknowledged, in order, after a Hello, with the numbers those messages had; they
are lower than the Hello's own. The Hello decides from which number on this stream's messages are
new (``Session.last_sequence``, the floor): a Hello with sequence 1, one not above what the store
committed for the pod, or one for a pod not stored yet starts a new run of sequences, floor 0
(every message is new); any other Hello continues the run, and the floor is the pod's committed
``last_sequence``: a replay at or below it was committed before (its ack was lost) and is
acknowledged without being stored again, one above it is stored. The Hello stores the floor as
the pod's ``last_sequence``, never its own number, so a collector killed right after the Hello
still knows, at the next one, what the run had committed. Within a stream sequences only grow.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from collector.domain.records import EngineState, HeartbeatResult
from collector.errors import IngestError
from collector.ingest.registry import Claim, StreamRegistry
from collector.service.recording import Recorder
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.identity import PodIdentity
from skewwatch.wire import (
    IDENTITY_FIELDS,
    FactCache,
    WireError,
    identity_from_hello,
    observations_from_proto,
    seconds,
    snapshot_from_proto,
)

log = logging.getLogger(__name__)

SUPPORTED_PROTOCOL_VERSIONS = frozenset({1})
# Decoding a big snapshot is CPU work; above this size it runs on a worker thread so one
# stream's large message does not stall every other stream on the event loop.
OFFLOAD_DECODE_BYTES = 64 * 1024

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MAX_IDENTITY_TEXT = 512
# Sequences are stored as SQLite INTEGER (signed 64-bit); the wire type is uint64.
MAX_SEQUENCE = 2**63 - 1
# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
# The Timestamp fields of each AgentMessage body, checked before any conversion.
_TIMESTAMP_FIELDS: dict[str, tuple[str, ...]] = {
    "snapshot": ("collected_at",),
    "heartbeat": ("at", "engine_state_since"),
    "observations": ("at",),
    "event": ("at",),
}


def decode_message(raw: bytes, max_bytes: int) -> pb.AgentMessage:
    """Parse one raw AgentMessage; raise IngestError when too large or malformed."""
    if len(raw) > max_bytes:
        raise IngestError(
            f"agent_message: {len(raw)} bytes, over the collector's limit of {max_bytes} (max_message_bytes)",
            limit="max_message_bytes",
        )
    try:
        msg = pb.AgentMessage.FromString(raw)
    except DecodeError as e:
        raise IngestError(f"agent_message: malformed protobuf ({len(raw)} bytes): {e}") from e
    if msg.WhichOneof("body") is None:
        raise IngestError("agent_message.body: no hello, snapshot, heartbeat or observations set")
    if msg.sequence <= 0:
        raise IngestError(f"agent_message.sequence: must be positive, got {msg.sequence}")
    if msg.sequence > MAX_SEQUENCE:
        raise IngestError(f"agent_message.sequence: {msg.sequence} is over {MAX_SEQUENCE}")
    body = msg.WhichOneof("body")
    for name in _TIMESTAMP_FIELDS.get(body or "", ()):
        _check_timestamp(getattr(getattr(msg, body or ""), name), f"{body}.{name}")
    return msg


def _check_timestamp(ts: Timestamp, where: str) -> None:
    """protobuf's own conversions raise a bare ValueError on an out-of-range Timestamp: refuse it
    here, naming the field, before anything converts it."""
    if not (MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= ts.nanos <= 999_999_999):
        raise IngestError(f"{where}: seconds={ts.seconds} nanos={ts.nanos} is not a valid timestamp")


def _text(value: str, where: str, *, required: bool = False) -> str:
    if required and not value:
        raise IngestError(f"{where}: required")
    if len(value) > MAX_IDENTITY_TEXT:
        raise IngestError(
            f"{where}: {len(value)} characters, over {MAX_IDENTITY_TEXT}", limit="max_identity_text"
        )
    if _CONTROL_RE.search(value):
        raise IngestError(f"{where}: contains control characters")
    return value


def identity_of(hello: pb.Hello) -> PodIdentity:
    """Validate a Hello and return the pod identity it claims."""
    version = hello.protocol_version
    if version not in SUPPORTED_PROTOCOL_VERSIONS:
        raise IngestError(
            f"hello.protocol_version: {version} is not supported (this collector speaks "
            f"{', '.join(str(v) for v in sorted(SUPPORTED_PROTOCOL_VERSIONS))})"
        )
    identity = identity_from_hello(hello)
    for name in ("namespace", "pod"):
        value = getattr(identity, name)
        if not _NAME_RE.match(value):
            raise IngestError(
                f"{IDENTITY_FIELDS[name]}: {value[:64]!r} must be 1-253 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
    for name in ("node", "workload", "workload_source", "agent_id", "agent_version"):
        _text(getattr(identity, name), IDENTITY_FIELDS[name])
    return identity


@dataclass
class SessionStats:
    snapshots_stored: int = 0
    snapshots_unchanged: int = 0
    heartbeats: int = 0
    resyncs: int = 0
    observations: int = 0
    replays: int = 0
    events: int = 0
    floor: int = 0  # the committed sequence a continuing run's replays are deduplicated against


_ENGINE_STATES = {
    pb.ENGINE_STATE_RUNNING: "running",
    pb.ENGINE_STATE_NOT_RUNNING: "not_running",
    pb.ENGINE_STATE_STARTING: "starting",
}
# "outbox_dropped": the agent's outbox dropped messages the collector never received (agent.outbox).
EVENT_KINDS = frozenset({"restart", "outbox_dropped"})
FIRST_HELLO_SEQUENCE = 1  # the first Hello of an agent run (a restarted agent without an outbox file)
MAX_PID = 2**31


def engine_state_from_proto(hb: pb.Heartbeat) -> EngineState | None:
    """The engine state a heartbeat reports; None from agents that predate it."""
    if hb.engine_state == pb.ENGINE_STATE_UNSPECIFIED:
        return None
    state = _ENGINE_STATES.get(hb.engine_state)
    if state is None:
        raise IngestError(f"heartbeat.engine_state: unknown state {hb.engine_state}")
    since = seconds(hb.engine_state_since) if hb.HasField("engine_state_since") else None
    if since is not None and not (math.isfinite(since) and since >= 0):
        raise IngestError(f"heartbeat.engine_state_since: {since!r} is not a time")
    return EngineState(state, since, _text(hb.engine_state_message, "heartbeat.engine_state_message"))


def event_from_proto(e: pb.Event) -> tuple[float, str, dict[str, object]]:
    """(at, kind, detail) of a validated event."""
    if e.kind not in EVENT_KINDS:
        raise IngestError(f"event.kind: {e.kind[:32]!r} is not one of {sorted(EVENT_KINDS)}")
    at = seconds(e.at)
    if not (math.isfinite(at) and at >= 0):
        raise IngestError(f"event.at: {at!r} is not a time")
    for name in ("old_pid", "new_pid"):
        value = getattr(e, name)
        if not 0 <= value < MAX_PID:
            raise IngestError(f"event.{name}: {value} is not a pid")
    for name in ("old_start_time", "new_start_time"):
        value = getattr(e, name)
        if not (math.isfinite(value) and value >= 0):
            raise IngestError(f"event.{name}: {value!r} is not a time")
    return (
        at,
        e.kind,
        {
            "old_pid": e.old_pid,
            "new_pid": e.new_pid,
            "old_start_time": e.old_start_time or None,
            "new_start_time": e.new_start_time or None,
            "message": _text(e.message, "event.message"),
        },
    )


def ack(sequence: int) -> pb.CollectorMessage:
    return pb.CollectorMessage(ack=pb.Ack(sequence=sequence))


def resync(reason: str) -> pb.CollectorMessage:
    return pb.CollectorMessage(resync=pb.Resync(reason=reason))


class Session:
    """One agent stream: Hello first, then snapshots, heartbeats and observations."""

    def __init__(
        self,
        recorder: Recorder,
        *,
        max_message_bytes: int,
        clock: Callable[[], float],
        registry: StreamRegistry | None = None,
        peer: str = "",
        fact_cache: FactCache | None = None,
    ) -> None:
        self.recorder = recorder
        # Shared by every stream of the collector: the facts replicas send alike decode once.
        self.fact_cache = fact_cache
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.registry = registry
        self.peer = peer
        # This stream's hold on its pod, once its Hello was accepted (with a registry).
        self.claim: Claim | None = None
        self.identity: PodIdentity | None = None
        self.last_sequence = 0
        self.stats = SessionStats()
        self.engine: EngineState | None = None  # the last engine state stored by this stream
        # A snapshot or heartbeat (a starting engine's state-only heartbeat too) was accepted:
        # the stream reports, it is not only holding a slot (the server's first-report deadline).
        self.reported = False
        self.last_kind = "none"  # the body of the last message decoded (the ingest's duration metric)

    async def handle(self, raw: bytes) -> pb.CollectorMessage | None:
        """Process one raw message; the reply (if any) is sent only after this returns."""
        msg = decode_message(raw, self.max_message_bytes)
        body = msg.WhichOneof("body")
        self.last_kind = body or "none"
        seq = msg.sequence
        if self.identity is None:
            if body != "hello":
                raise IngestError(f"agent_message.body: the first message must be hello, got {body}")
            identity = identity_of(msg.hello)
            instance_id = _text(msg.hello.instance_id, "hello.instance_id")
            claim = None
            if self.registry is not None:
                claim = self.registry.claim(identity, instance_id, self.peer, self.clock())
            try:
                floor = await self._floor(identity, seq)
                await self.recorder.hello(identity, floor, self.clock())
            except BaseException:
                if claim is not None and self.registry is not None:
                    self.registry.release(claim)
                raise
            self.claim = claim
            self.identity = identity
            self.last_sequence = floor
            log.info("agent %r streaming for %s/%s", identity.agent_id, identity.namespace, identity.pod)
            return ack(seq)
        if body == "hello":
            raise IngestError("agent_message.hello: only the first message of a stream may be hello")
        if body == "snapshot":
            reply = await self._snapshot(msg, len(raw))
            self.reported = True
            return reply
        if body == "heartbeat":
            reply = await self._heartbeat(msg)
            self.reported = True
            return reply
        if body == "event":
            return await self._event(msg)
        return await self._observations(msg)

    def close(self) -> None:
        """The stream ended: release the pod (idempotent)."""
        claim, self.claim = self.claim, None
        if claim is not None and self.registry is not None:
            self.registry.release(claim)

    async def _floor(self, identity: PodIdentity, hello_sequence: int) -> int:
        """The sequence at or below which this stream's messages were committed before (see the
        module docstring): 0 for a new run, else the pod's committed last_sequence."""
        if hello_sequence == FIRST_HELLO_SEQUENCE:
            return 0
        get_pod = getattr(self.recorder.store, "get_pod", None)
        if get_pod is None:  # a store that cannot say: every message is new, as before
            return 0
        record = await get_pod(identity.key)
        committed = int(record.last_sequence) if record is not None else 0
        if committed >= hello_sequence:
            # Not a continuation of what was stored (another sequence run): store everything.
            return 0
        if committed:
            self.stats.floor = committed
        return committed

    def _replayed(self, seq: int) -> bool:
        # Within one stream sequences only grow; at or below the floor is a retransmission already
        # committed, so it is acknowledged again without being stored twice.
        if seq <= self.last_sequence:
            self.stats.replays += 1
            return True
        return False

    async def _snapshot(self, msg: pb.AgentMessage, size: int) -> pb.CollectorMessage:
        assert self.identity is not None
        try:
            if size > OFFLOAD_DECODE_BYTES:
                snap = await asyncio.to_thread(snapshot_from_proto, msg.snapshot, self.fact_cache)
            else:
                snap = snapshot_from_proto(msg.snapshot, self.fact_cache)
        except WireError as e:
            raise IngestError(str(e), limit=e.limit) from e
        if self._replayed(msg.sequence):
            return ack(msg.sequence)
        result = await self.recorder.record_snapshot(
            self.identity,
            msg.sequence,
            facts={k: f.value for k, f in snap.facts.items()},
            provenance={k: f.provenance for k, f in snap.facts.items()},
            sources=snap.sources,
            fingerprint=snap.fingerprint,
            collected_at=snap.collected_at,
            received_at=self.clock(),
        )
        self.last_sequence = msg.sequence
        if result.new_row:
            self.stats.snapshots_stored += 1
        else:
            self.stats.snapshots_unchanged += 1
        return ack(msg.sequence)

    async def _heartbeat(self, msg: pb.AgentMessage) -> pb.CollectorMessage:
        assert self.identity is not None
        hb = msg.heartbeat
        fp = hb.overall_fingerprint
        engine = engine_state_from_proto(hb)
        # An engine that never ran (or is starting for the first time) has no configuration to
        # name yet: its heartbeat carries only its state.
        if not (fp == "" and engine is not None and engine.state != "running") and not _FINGERPRINT_RE.match(
            fp
        ):
            raise IngestError(
                f"heartbeat.overall_fingerprint: {fp[:70]!r} is not a lowercase sha256 hex digest"
            )
        if self._replayed(msg.sequence):
            return ack(msg.sequence)
        if engine is not None and engine != self.engine:
            await self.recorder.record_engine_state(self.identity, msg.sequence, engine, self.clock())
            self.engine = engine
        if fp == "":
            self.last_sequence = msg.sequence
            self.stats.heartbeats += 1
            return ack(msg.sequence)
        outcome = await self.recorder.record_heartbeat(self.identity, msg.sequence, fp, self.clock())
        self.last_sequence = msg.sequence
        if outcome is HeartbeatResult.OK:
            self.stats.heartbeats += 1
            return ack(msg.sequence)
        self.stats.resyncs += 1
        if outcome is HeartbeatResult.UNKNOWN_POD:
            return resync(f"no snapshot stored for {self.identity.key}; send a full snapshot")
        return resync(
            f"fingerprint {fp[:12]} is not the stored configuration of {self.identity.key}; "
            "send a full snapshot"
        )

    async def _event(self, msg: pb.AgentMessage) -> pb.CollectorMessage:
        assert self.identity is not None
        at, kind, detail = event_from_proto(msg.event)
        if self._replayed(msg.sequence):
            return ack(msg.sequence)
        await self.recorder.record_event(self.identity, msg.sequence, at, kind, detail)
        self.last_sequence = msg.sequence
        self.stats.events += 1
        log.info("%s/%s: %s", self.identity.namespace, self.identity.pod, detail.get("message", kind))
        return ack(msg.sequence)

    async def _observations(self, msg: pb.AgentMessage) -> pb.CollectorMessage:
        assert self.identity is not None
        o = msg.observations
        try:
            items = observations_from_proto(o)
        except WireError as e:
            raise IngestError(str(e), limit=e.limit) from e
        if not (o.window_seconds >= 0 and o.window_seconds < float("inf")):
            raise IngestError(f"observations.window_seconds: {o.window_seconds!r} must be finite and >= 0")
        if self._replayed(msg.sequence):
            return ack(msg.sequence)
        await self.recorder.record_observations(
            self.identity,
            msg.sequence,
            items={i.name: i for i in items},
            at=seconds(o.at),
            window_s=o.window_seconds,
            received_at=self.clock(),
        )
        self.last_sequence = msg.sequence
        self.stats.observations += 1
        return ack(msg.sequence)
