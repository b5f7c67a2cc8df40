"""The agent's loop: collect on an interval, stream to the collector, reconnect with backoff.

Collection and sending are two tasks: collection never waits for the collector, so a collector
that is down (or slow) costs the agent nothing but a log line per failed attempt. The sender
opens one bidirectional stream: Hello, then the latest full Snapshot, then per cycle a Snapshot
when the fingerprint changed, else a Heartbeat; Observations when there are any. On Resync it
sends the full snapshot again. Reconnects use exponential backoff with full jitter.

Nothing acknowledged is lost, nothing changed is skipped (docs/security-delivery.md): every
configuration change (each new fingerprint, not only the latest), event and observation window
goes into the ``Outbox`` (agent.outbox) when it is published, with its sequence number and
collection time, whether or not a collector is connected. After each Hello the sender resends the
outbox in sequence order before anything new, and an ack removes what it covers. The first Hello
of an agent run carries sequence 1 until the collector acknowledged it, and nothing else is sent
before that ack: sequence 1 tells the collector a new run begins (a restarted agent without an
outbox file), a higher one that the run goes on and its replays below it are to be deduplicated
against what the collector already committed.

The backoff is reset only once the collector acknowledged a snapshot or heartbeat of the stream:
the Hello's ack alone says the collector is up, not that it takes what this agent sends. A
stream the collector rejects (``INVALID_ARGUMENT``, ``RESOURCE_EXHAUSTED``: a message it refuses;
``UNAUTHENTICATED``, ``PERMISSION_DENIED``: credentials it refuses)
backs off exponentially up to ``REJECTED_CAP_S``, and the rejection is logged when it changes,
not on every attempt. A RESOURCE_EXHAUSTED refusal's ``retry-after-seconds`` hint (a collector
over its stream limits, or shedding writes it cannot commit fast enough) is honoured: the agent
waits at least the hint, plus a random share of it again, so a shed fleet comes back spread out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import grpc

from agent.lifecycle import EngineState, EngineStatus, Event
from agent.outbox import SNAPSHOT, Outbox
from agent.transport import Connection, TransportFileError, plaintext
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from proto.skewwatch.v1 import skewwatch_pb2_grpc as pb_grpc
from skewwatch import PROTOCOL_VERSION
from skewwatch.core.facts import Snapshot
from skewwatch.core.identity import PodIdentity
from skewwatch.wire import hello_to_proto, observations_to_proto, snapshot_to_proto, timestamp

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
# A collector refusing what the agent sends will refuse it again: wait longer, up to this.
REJECTED_CAP_S = 60.0
REJECTED_BASE_S = 1.0
_DIGITS = re.compile(r"\d+")
MAX_FAILURE_REASONS = 32  # distinct reasons remembered between acked reports
# Refusals of what the agent is (its credentials, the pod it claims) are as lasting: the same.
_REJECTED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)
# This process's id in every Hello: the collector tells two agents claiming one pod apart by it.
INSTANCE_ID = uuid.uuid4().hex


RETRY_AFTER_METADATA = "retry-after-seconds"  # the collector's hint on RESOURCE_EXHAUSTED
MAX_RETRY_HINT_S = 3600.0


def retry_hint(error: grpc.aio.AioRpcError) -> float | None:
    """The seconds a RESOURCE_EXHAUSTED refusal asks the agent to wait, if it says (bounded)."""
    if error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for key, value in error.trailing_metadata() or ():
        if key == RETRY_AFTER_METADATA:
            try:
                hint = float(value)
            except (TypeError, ValueError):
                return None
            return min(hint, MAX_RETRY_HINT_S) if hint > 0 else None
    return None


class IdentityChanged(Exception):
    """The workload or pod the agent speaks for changed: the stream must start with a new Hello."""


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog's "full jitter").

    ``floor`` (a fraction of the ceiling) keeps a minimum wait: 0.5 is "equal jitter", for
    attempts that must not come back at once (a rejected stream).
    """

    def __init__(
        self, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None, floor: float = 0.0
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.floor = floor
        self.attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return self._rng.uniform(ceiling * self.floor, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class LatestSnapshot:
    """The newest published configuration and engine state, with a version counter so the
    sender can wait for something newer; what must reach the collector goes into ``outbox``.

    Each publication puts its events, its snapshot when the fingerprint changed (every change,
    whether or not a collector is connected) and its observations (while the engine runs) into
    the outbox, in that order, each with the next sequence number.
    """

    def __init__(self, outbox: Outbox | None = None) -> None:
        self.snapshot: Snapshot | None = None
        self.status: EngineStatus | None = None
        self.outbox = outbox if outbox is not None else Outbox()
        # The window of observations (the collection interval; the stream sets it).
        self.window_s = 0.0
        self.version = 0
        self._changed = asyncio.Condition()
        # The configuration last put in the outbox (a restored outbox's newest snapshot).
        self._fingerprint = self.outbox.newest_fingerprint

    async def publish(
        self, snapshot: Snapshot | None, status: EngineStatus | None = None, events: Sequence[Event] = ()
    ) -> None:
        async with self._changed:
            if status is not None:
                self.status = status
            for event in events:
                self.outbox.add(pb.AgentMessage(event=event_to_proto(event)), event.at)
            if snapshot is not None:
                self.snapshot = snapshot
                at = snapshot.collected_at
                if snapshot.fingerprint.overall != self._fingerprint:
                    self.outbox.add(pb.AgentMessage(snapshot=snapshot_to_proto(snapshot)), at)
                    self._fingerprint = snapshot.fingerprint.overall
                if snapshot.observations and self._running():
                    window = observations_to_proto(snapshot.observations, at, self.window_s)
                    self.outbox.add(pb.AgentMessage(observations=window), at)
            self.version += 1
            self._changed.notify_all()

    def _running(self) -> bool:
        return self.status is None or self.status.state is EngineState.RUNNING

    async def wait_newer(self, seen_version: int) -> tuple[Snapshot | None, int]:
        async with self._changed:
            await self._changed.wait_for(
                lambda: self.version > seen_version and (self.snapshot is not None or self.status is not None)
            )
            return self.snapshot, self.version


class AgentStream:
    """Sends snapshots from ``latest`` to one collector, forever, reconnecting as needed."""

    def __init__(
        self,
        target: str,
        identity: Callable[[Snapshot | None], PodIdentity],
        latest: LatestSnapshot,
        interval_s: float,
        connect: Callable[[], Connection] | None = None,
    ) -> None:
        self.target = target
        # Each (re)connect builds its channel and metadata anew (agent.transport): TLS files and
        # the token are read then; by default a plaintext channel to ``target``.
        self.connect = connect if connect is not None else lambda: plaintext(target)
        self.identity_of = identity
        self.identity = identity(None)
        self.latest = latest
        self.outbox = latest.outbox
        if not latest.window_s:
            latest.window_s = interval_s
        self.interval_s = interval_s
        self.backoff = Backoff(cap_s=max(5.0, min(60.0, interval_s * 4)))
        self.rejected_backoff = Backoff(REJECTED_BASE_S, REJECTED_CAP_S, floor=0.5)
        self._rng = random.Random()  # noqa: S311 - jitter, not crypto
        self.acked = 0
        self._hello_sequence = 0  # the current stream's Hello: its ack removes nothing
        self._hello_acked = asyncio.Event()
        self._stream_sent = 0  # the highest outbox sequence the current stream sent
        self._refusals = (0, 0)  # (outbox sequence, consecutive streams the collector refused at it)
        self.connected = asyncio.Event()
        # The first snapshot or heartbeat of the current stream: its ack resets the backoff.
        self._first_data_sequence: int | None = None
        # Why streams ended since the last acked report: each reason is a warning once, so that two
        # alternating reasons (a timeout, then the refusal again) do not log on every attempt.
        self._failures: set[str] = set()
        self.reconnects = 0

    @property
    def sequence(self) -> int:
        """The last sequence number used (the outbox draws them)."""
        return self.outbox.sequence

    def _next(self) -> int:
        return self.outbox.next_sequence()

    def _hello(self) -> pb.AgentMessage:
        # A run's first Hello is sequence 1 until acknowledged: the collector starts a new run.
        sequence = FIRST_HELLO_SEQUENCE if not self.outbox.hello_acked else self._next()
        return pb.AgentMessage(
            sequence=sequence, hello=hello_to_proto(self.identity, PROTOCOL_VERSION, INSTANCE_ID)
        )

    async def run_forever(self) -> None:
        while True:
            rejected = False
            hint: float | None = None
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except IdentityChanged:
                continue  # a new Hello at once, not a failure
            except grpc.aio.AioRpcError as e:
                rejected = e.code() in _REJECTED
                hint = retry_hint(e)
                self._failure(f"collector {self.target}: {e.code().name}: {e.details()}")
                if e.code() is grpc.StatusCode.INVALID_ARGUMENT:
                    self._refused()
            except TransportFileError as e:  # a credentials file not there (yet), or unusable
                self._failure(f"collector {self.target}: cannot connect: {e}")
            except (OSError, TimeoutError, grpc.RpcError) as e:
                self._failure(f"collector {self.target} unreachable: {e or type(e).__name__}")
            except Exception as e:  # a sender bug or an unsendable message must not end the agent
                self._failure(f"collector {self.target}: stream failed: {type(e).__name__}: {e}", exc=True)
            self.connected.clear()
            delay = (self.rejected_backoff if rejected else self.backoff).next_delay()
            if hint is not None:
                # An overloaded collector said when: not sooner, and spread over the hint again
                # so that a fleet shed at once does not come back at once.
                delay = max(delay, hint + self._rng.uniform(0.0, hint))
            self.reconnects += 1
            log.info("reconnecting to %s in %.2f s", self.target, delay)
            await asyncio.sleep(delay)

    def _refused(self) -> None:
        """The collector refused a message (INVALID_ARGUMENT). It handles a stream in order and
        acks each message before the next, so the message it refused is the oldest one of the
        outbox this stream sent. Refused at it ``REFUSALS_BEFORE_DROP`` streams in a row, it is
        dropped from the outbox (and reported): it would block every message after it."""
        head = next((e for e in self.outbox.pending(0) if e.sequence <= self._stream_sent), None)
        if head is None:  # the Hello, a heartbeat or a snapshot copy: nothing kept to blame
            self._refusals = (0, 0)
            return
        seq, count = self._refusals
        count = count + 1 if seq == head.sequence else 1
        self._refusals = (head.sequence, count)
        if count >= REFUSALS_BEFORE_DROP:
            self.outbox.refuse(head.sequence)
            log.warning(
                "collector %s refused %s message %d %d times: dropped from the outbox",
                self.target,
                head.kind,
                head.sequence,
                count,
            )
            self._refusals = (0, 0)

    def _failure(self, text: str, exc: bool = False) -> None:
        """Log why the stream ended, once per reason until a report is acked; again is a debug line."""
        # Sizes, ports and counts in the reason vary per attempt; the reason itself does not.
        shape = _DIGITS.sub("#", text)
        if shape in self._failures:
            log.debug("%s (again)", text)
            return
        if len(self._failures) < MAX_FAILURE_REASONS:
            self._failures.add(shape)
        log.warning("%s", text, exc_info=exc)

    def _data_acked(self) -> None:
        """The collector took a snapshot or heartbeat of this stream: the connection works."""
        if not self.connected.is_set():
            log.info("connected to collector %s", self.target)
        self.connected.set()
        self.backoff.reset()
        self.rejected_backoff.reset()
        self._failures.clear()

    async def _session(self) -> None:
        # The Hello names the workload, which the first collection may resolve better than the
        # environment can: wait for it (collection does not wait for the collector).
        if self.latest.version == 0:
            await self.latest.wait_newer(0)
        self.identity = self.identity_of(self.latest.snapshot)
        connection = self.connect()
        async with connection.channel as channel:
            await asyncio.wait_for(channel.channel_ready(), timeout=CONNECT_TIMEOUT_S)
            call = pb_grpc.IngestStub(channel).Stream(metadata=connection.metadata)
            resync = asyncio.Event()
            reader = asyncio.create_task(self._read(call, resync))
            try:
                # A TLS or token file changed on disk: a new connection (and Hello) uses it.
                if await connection.until_changed(self._write(call, resync, reader), self.interval_s):
                    raise IdentityChanged
            except asyncio.InvalidStateError as e:
                # The collector ended the call while we wrote: its status says why.
                await asyncio.wait({reader}, timeout=CONNECT_TIMEOUT_S)
                if reader.done() and not reader.cancelled() and reader.exception() is not None:
                    raise reader.exception() from e  # type: ignore[misc]
                raise ConnectionError(f"the stream ended while sending: {e}") from e
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                    await reader
                call.cancel()

    async def _read(
        self, call: grpc.aio.StreamStreamCall[pb.AgentMessage, pb.CollectorMessage], resync: asyncio.Event
    ) -> None:
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                return
            assert isinstance(msg, pb.CollectorMessage)
            body = msg.WhichOneof("body")
            if body == "ack":
                self.acked = max(self.acked, msg.ack.sequence)
                if msg.ack.sequence == self._hello_sequence:
                    # The Hello's ack covers the Hello only: the replays after it have lower numbers.
                    self.outbox.ack_hello()
                    self._hello_acked.set()
                else:
                    self.outbox.ack(msg.ack.sequence)
                first = self._first_data_sequence
                if first is not None and msg.ack.sequence >= first:
                    self._data_acked()  # the Hello's ack alone resets nothing
            elif body == "resync":
                log.info("collector asks for a full snapshot: %s", msg.resync.reason)
                resync.set()

    async def _write(
        self,
        call: grpc.aio.StreamStreamCall[pb.AgentMessage, pb.CollectorMessage],
        resync: asyncio.Event,
        reader: asyncio.Task[None],
    ) -> None:
        self._first_data_sequence = None
        outbox = self.outbox
        hello = self._hello()
        self._hello_sequence = hello.sequence
        self._hello_acked.clear()
        await call.write(hello)
        if hello.sequence == FIRST_HELLO_SEQUENCE:
            await self._hello_taken(reader)
        sent = self._stream_sent = 0  # the highest outbox sequence written on this stream
        sent_fingerprint: str | None = None
        seen_version = 0
        full = True  # a full snapshot is due: the stream's first, or the collector asked
        while True:
            snapshot_task = asyncio.ensure_future(self.latest.wait_newer(seen_version))
            resync_task = asyncio.ensure_future(resync.wait())
            try:
                done, _ = await asyncio.wait(
                    {snapshot_task, resync_task, reader}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for t in (snapshot_task, resync_task):
                    if not t.done():
                        t.cancel()
            if reader in done:
                reader.result()  # re-raises the stream's error, if any
                raise ConnectionError("collector closed the stream")
            if resync_task in done:
                resync.clear()
                full = True
            if snapshot_task in done:
                _, seen_version = snapshot_task.result()
            snapshot = self.latest.snapshot
            if self.identity_of(snapshot) != self.identity:
                log.info("the pod's identity changed (%s); saying hello again", self.identity_of(snapshot))
                raise IdentityChanged
            outbox.report_drops()
            sent, fingerprint = await self._send_outbox(call, sent)
            sent_snapshot = fingerprint is not None
            sent_fingerprint = fingerprint if fingerprint is not None else sent_fingerprint
            if full and snapshot is not None and not sent_snapshot:
                # The collector has this configuration (it acked it), or asked for it again: a copy,
                # not kept, since an acknowledged one exists.
                message = pb.AgentMessage(sequence=self._next(), snapshot=snapshot_to_proto(snapshot))
                self._sent_data(message.sequence)
                await call.write(message)
                sent_fingerprint = snapshot.fingerprint.overall
            elif snapshot_task in done and not sent_snapshot:
                message = pb.AgentMessage(sequence=self._next(), heartbeat=self._heartbeat(sent_fingerprint))
                self._sent_data(message.sequence)
                await call.write(message)
            full = False

    async def _send_outbox(
        self, call: grpc.aio.StreamStreamCall[pb.AgentMessage, pb.CollectorMessage], sent: int
    ) -> tuple[int, str | None]:
        """Write everything not acknowledged above ``sent``, in sequence order (replays first, then
        what is new); the highest sequence written and the last snapshot's fingerprint, if any."""
        fingerprint = None
        for entry in self.outbox.pending(sent):
            if entry.kind == SNAPSHOT:
                self._sent_data(entry.sequence)
                fingerprint = entry.fingerprint
            self._stream_sent = max(self._stream_sent, entry.sequence)  # before: the write may fail
            await call.write(entry.message())
            sent = max(sent, entry.sequence)
        return sent, fingerprint

    async def _hello_taken(self, reader: asyncio.Task[None]) -> None:
        """Wait for the ack of a run's first Hello. Nothing of a new run is stored before the agent
        knows the collector took that Hello: a Hello 1 sent again would make the collector start
        the run over and store its messages twice."""
        acked = asyncio.ensure_future(self._hello_acked.wait())
        try:
            await asyncio.wait({acked, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not acked.done():
                acked.cancel()
        if not self._hello_acked.is_set():
            reader.result()
            raise ConnectionError("collector closed the stream before acknowledging the Hello")

    def _sent_data(self, sequence: int) -> None:
        if self._first_data_sequence is None:
            self._first_data_sequence = sequence

    def _heartbeat(self, fingerprint: str | None) -> pb.Heartbeat:
        hb = pb.Heartbeat(at=timestamp(time.time()), overall_fingerprint=fingerprint or "")
        status = self.latest.status
        if status is not None:
            hb.engine_state = _ENGINE_STATE_TO_PB[status.state]
            hb.engine_state_since.CopyFrom(timestamp(status.since))
            hb.engine_state_message = _line(status.message)
        return hb


REFUSALS_BEFORE_DROP = 2  # streams refused at one outbox message before it is dropped
FIRST_HELLO_SEQUENCE = 1  # a run's first Hello, until acknowledged (the outbox starts above it)
_ENGINE_STATE_TO_PB = {
    EngineState.RUNNING: pb.ENGINE_STATE_RUNNING,
    EngineState.NOT_RUNNING: pb.ENGINE_STATE_NOT_RUNNING,
    EngineState.STARTING: pb.ENGINE_STATE_STARTING,
}
MAX_STATE_MESSAGE = 500  # the collector takes up to 512 characters of identity-like text
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _line(text: str) -> str:
    return _CONTROL.sub(" ", text)[:MAX_STATE_MESSAGE]


def event_to_proto(e: Event) -> pb.Event:
    return pb.Event(
        at=timestamp(e.at),
        kind=e.kind,
        old_pid=e.old_pid,
        new_pid=e.new_pid,
        old_start_time=e.old_start_time or 0.0,
        new_start_time=e.new_start_time or 0.0,
        message=_line(e.message),
    )


async def collect_forever(
    collect: Callable[[], Awaitable[Snapshot]],
    latest: LatestSnapshot,
    interval_s: float,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    lifecycle: Callable[[Snapshot], tuple[Snapshot | None, EngineStatus | None, Sequence[Event]]]
    | None = None,
    *,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Collect every ``interval_s`` (measured start to start) and publish the result.

    With ``lifecycle``, each collection goes through it first: it decides whether the
    collection is a configuration to publish, and what the engine's state and events are.
    ``pause(seconds)`` waits for the next tick; one that returns early (the engine restarted)
    makes the next collection come now, and the ticks go on from it.
    """
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        snapshot = await collect()
        if lifecycle is None:
            await latest.publish(snapshot)
        else:
            await latest.publish(*lifecycle(snapshot))
        if on_snapshot is not None:
            on_snapshot(snapshot)
        next_at += interval_s
        now = loop.time()
        next_at = max(next_at, now)  # a slow cycle skips missed ticks instead of bursting
        await pause(next_at - now)
        next_at = min(next_at, loop.time())  # woken early: the ticks go on from this collection
