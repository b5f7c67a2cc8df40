"""The grpc.aio server for ``skewwatch.v1.Ingest/Stream``.

The method is registered with raw bytes (no deserializer) so the collector itself parses each
message: it enforces its own size limit, validates with ``skewwatch.wire``, and answers a bad
message with INVALID_ARGUMENT naming the field, instead of grpc's generic errors. gRPC's
transport limit is set a little above ours (``CollectorSettings.grpc_receive_limit``) so an
oversized message still reaches this code.

Status codes: INVALID_ARGUMENT for anything the agent sent wrong (it must fix and reconnect);
UNAVAILABLE when the store failed (nothing was acknowledged, the agent retries);
RESOURCE_EXHAUSTED with a retry hint when the collector sheds a write because too many wait for
the store (``collector.service.recording``: group commit's ``max_pending``); ALREADY_EXISTS
when another live agent instance streams for the pod the Hello names (``registry``: the message
names the pod and the holder); ABORTED for an old stream whose own agent instance reconnected.
With agent authentication (``collector.ingest.auth``): UNAUTHENTICATED for a missing, unknown or
revoked bearer token, PERMISSION_DENIED for a Hello naming a pod its token or client certificate
does not cover.

Limits (docs/collector-limits.md): a stream over ``max_streams`` or over the per-client-address
limit is refused with RESOURCE_EXHAUSTED, its details ending "retry after N s" and the same N in
the ``retry-after-seconds`` trailing metadata. The refusal is sent after the stream's first
message arrived (or ``REFUSE_WAIT_S`` passed): a status that overtakes the client's own write can
make grpc's Python client report INTERNAL ("Internal error from Core") instead of the status
sent. A stream that sends no Hello within ``hello_s`` of connecting, no snapshot or
heartbeat within ``first_report_s`` of its Hello, or nothing for ``idle_s`` ends with
DEADLINE_EXCEEDED naming the deadline. Only time spent waiting for the agent counts against
these, never the collector's own work on a message. gRPC's own ``maximum_concurrent_rpcs`` is not
used: its refusals carry no retry hint and know nothing of client addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from collector.errors import IngestError, StoreError, WriteShedError
from collector.ingest.auth import AgentAuth, AuthRefused, Principal
from collector.ingest.protocol import Session, decode_message, identity_of
from collector.ingest.registry import (
    CUT_FIRST_REPORT,
    CUT_HELLO,
    CUT_IDLE,
    IdentityConflict,
    Slot,
    StreamLimits,
    StreamRefused,
    StreamRegistry,
)
from collector.service.recording import Recorder
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.wire import FactCache

log = logging.getLogger(__name__)

SERVICE = "skewwatch.v1.Ingest"
METHOD = "Stream"
FULL_METHOD = f"/{SERVICE}/{METHOD}"
RETRY_AFTER_METADATA = "retry-after-seconds"
# Longest wait for a refused stream's first message before the refusal is sent anyway.
REFUSE_WAIT_S = 2.0
# Refusal log lines at most this often (a flood of refusals is counted, not logged one by one).
REFUSAL_LOG_INTERVAL_S = 10.0
# Streams refused for their credentials that wait for their first message, at most (no limits set).
AUTH_REFUSE_WAITS = 64


@dataclass(frozen=True)
class StreamTimeouts:
    """Seconds a stream may wait: for its Hello, then its first snapshot or heartbeat, then any message."""

    hello_s: float = 10.0
    first_report_s: float = 30.0
    idle_s: float = 60.0


class IngestService:
    """Serves agent streams into the service layer's ``Recorder`` (``collector.service.recording``);
    one ``Session`` per stream, messages handled in order."""

    def __init__(
        self,
        recorder: Recorder,
        *,
        max_message_bytes: int,
        clock: Callable[[], float] = time.time,
        limits: StreamLimits | None = None,
        timeouts: StreamTimeouts | None = None,
        auth: AgentAuth | None = None,
    ) -> None:
        self.recorder = recorder
        self.auth = auth  # tokens / client-certificate identity (collector.ingest.auth); None: open
        self._auth_refusing = 0
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.registry = StreamRegistry(limits)
        self.fact_cache = FactCache()
        self.timeouts = timeouts or StreamTimeouts()
        self._refusal_logged_at = -REFUSAL_LOG_INTERVAL_S

    @property
    def active_streams(self) -> int:
        """Admitted streams now open (refused ones are not counted)."""
        return self.registry.in_use

    def handler(self) -> grpc.GenericRpcHandler:
        method: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(
            self.stream  # no (de)serializers: raw bytes in and out, parsed by Session
        )
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD: method})

    async def stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        peer = context.peer()
        messages = aiter(requests)
        admission = await self._admit(messages, context, peer)
        if admission is None:
            return
        session = Session(
            self.recorder,
            max_message_bytes=self.max_message_bytes,
            clock=self.clock,
            registry=self.registry,
            peer=peer,
            fact_cache=self.fact_cache,
        )
        loop = asyncio.get_running_loop()
        waited_since_hello = 0.0  # time spent waiting for the agent, not on our own work
        try:
            while True:
                timeout, cut = self._read_limit(session, waited_since_hello)
                started = loop.time()
                raw = await _next_message(messages, session, timeout)
                if session.identity is not None:
                    waited_since_hello += loop.time() - started
                if raw is None:
                    break
                if isinstance(raw, _TimedOut):
                    message = self._cut_message(cut)
                    self.registry.cut(cut)
                    log.info("stream from %s (%s): %s", peer, _who(session), message)
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, message)
                if isinstance(raw, _TakenOver):
                    log.info("stream from %s (%s): %s", peer, _who(session), raw.reason)
                    await context.abort(grpc.StatusCode.ABORTED, raw.reason)
                began = loop.time()
                reply = await self._answer(session, admission, raw, context, peer)
                self.recorder.events.ingested(session.last_kind, loop.time() - began)
                if reply is not None:
                    yield reply.SerializeToString()
        finally:
            session.close()
            self.registry.leave(admission.slot)
            log.info("stream from %s (%s) ended: %s", peer, _who(session), session.stats)

    async def _answer(
        self,
        session: Session,
        admission: _Admission,
        raw: bytes,
        context: grpc.aio.ServicerContext[Any, Any],
        peer: str,
    ) -> pb.CollectorMessage | None:
        """The reply to one message, or the stream aborted with the status its error calls for
        (``context.abort`` raises: nothing after a refusal runs)."""
        reply = None
        try:
            reply = await self._handle(session, admission, raw)
        except AuthRefused as e:
            await self._refuse_auth(None, context, peer, e, admission.principal)
        except IdentityConflict as e:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(e))
        except IngestError as e:
            if e.limit is not None:
                self.recorder.events.limit_exceeded(e.limit)
            log.warning("stream from %s (%s): rejected: %s", peer, _who(session), e)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except WriteShedError as e:
            self.recorder.events.limit_exceeded("commit_max_pending")
            self._log_refusal(peer, str(e))
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                str(e),
                trailing_metadata=((RETRY_AFTER_METADATA, str(e.retry_after_s)),),
            )
        except StoreError as e:
            self.recorder.events.store_failed("ingest")
            log.error("stream from %s (%s): store failed: %s", peer, _who(session), e)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable, retry: {e}")
        return reply

    async def _admit(
        self, messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any], peer: str
    ) -> _Admission | None:
        """Check the new stream's credentials (``collector.ingest.auth``), then take its slot under
        the stream limits; None once a refusal was sent."""
        principal = None
        if self.auth is not None:
            try:
                principal = self.auth.authenticate(_metadata(context), context.auth_context())
            except AuthRefused as e:
                await self._refuse_auth(messages, context, peer, e)
                return None
        try:
            slot = self.registry.admit(peer)
        except StreamRefused as e:
            await self._refuse(messages, context, peer, e)
            return None
        return _Admission(slot, principal)

    async def _handle(
        self, session: Session, admission: _Admission, raw: bytes
    ) -> pb.CollectorMessage | None:
        """``session.handle``, after the credentials' checks: the Hello's pod must be one they cover
        (checked before the Session claims it); later, the token must still be configured."""
        principal = admission.principal
        if self.auth is not None and principal is not None:
            if session.identity is not None:
                admission.principal = self.auth.recheck(principal, session.identity)
            else:
                msg = decode_message(raw, self.max_message_bytes)
                if msg.WhichOneof("body") == "hello":
                    self.auth.authorize(principal, identity_of(msg.hello))
        return await session.handle(raw)

    async def _refuse_auth(
        self,
        messages: AsyncIterator[bytes] | None,
        context: grpc.aio.ServicerContext[Any, Any],
        peer: str,
        refused: AuthRefused,
        principal: Principal | None = None,
    ) -> None:
        """End a stream its credentials do not allow: counted, logged (never the token), and, for a
        stream that sent nothing yet, after its first message (as ``_refuse`` explains)."""
        self.recorder.events.refused("grpc", refused.reason)
        who = f" ({principal.describe()})" if principal is not None else ""
        self._log_refusal(peer, f"{refused.code.name}: {refused}{who}")
        limits = self.registry.limits
        bound = limits.max_streams if limits is not None else AUTH_REFUSE_WAITS
        if messages is not None and self._auth_refusing < bound:
            self._auth_refusing += 1  # a flood of refused streams waits no longer than a bounded few
            try:
                with contextlib.suppress(TimeoutError, grpc.RpcError, StopAsyncIteration):
                    await asyncio.wait_for(_read(messages), min(REFUSE_WAIT_S, self.timeouts.hello_s))
            finally:
                self._auth_refusing -= 1
        await context.abort(refused.code, str(refused))

    def _read_limit(self, session: Session, waited_since_hello: float) -> tuple[float, str]:
        """How long the next read may wait, and which deadline ends the stream if it passes."""
        t = self.timeouts
        if session.identity is None:
            return t.hello_s, CUT_HELLO
        if not session.reported:
            left = max(0.0, t.first_report_s - waited_since_hello)
            if left <= t.idle_s:
                return left, CUT_FIRST_REPORT
        return t.idle_s, CUT_IDLE

    def _cut_message(self, cut: str) -> str:
        t = self.timeouts
        if cut == CUT_HELLO:
            return f"no hello within {t.hello_s:g} s of connecting (SKEWWATCH_HELLO_TIMEOUT)"
        if cut == CUT_FIRST_REPORT:
            return (
                f"no snapshot or heartbeat within {t.first_report_s:g} s of the hello "
                "(SKEWWATCH_FIRST_REPORT_TIMEOUT)"
            )
        return (
            f"no message for {t.idle_s:g} s (SKEWWATCH_IDLE_TIMEOUT): an agent sends a heartbeat "
            "every interval"
        )

    def _log_refusal(self, peer: str, text: str) -> None:
        """A refusal (a stream over a limit, a shed write) is logged at most once per interval."""
        now = time.monotonic()
        if now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL_S:
            self._refusal_logged_at = now
            log.warning("stream from %s refused: %s", peer, text)

    async def _refuse(
        self,
        messages: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[Any, Any],
        peer: str,
        refused: StreamRefused,
    ) -> None:
        """End a stream over a limit with RESOURCE_EXHAUSTED and a retry hint, cleanly."""
        self.recorder.events.limit_exceeded(refused.reason)  # max_streams | max_streams_per_address
        self._log_refusal(peer, f"{refused} [refused so far: {dict(self.registry.refusals)}]")
        registry = self.registry
        # Wait (briefly, and for a bounded number of streams) for the client's first write.
        bound = registry.limits.max_streams if registry.limits is not None else 0
        if registry.refusing < bound:
            registry.refusing += 1
            try:
                await asyncio.wait_for(_read(messages), min(REFUSE_WAIT_S, self.timeouts.hello_s))
            except (TimeoutError, grpc.RpcError, StopAsyncIteration):
                pass
            finally:
                registry.refusing -= 1
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            str(refused),
            trailing_metadata=((RETRY_AFTER_METADATA, str(refused.retry_after_s)),),
        )


@dataclass
class _Admission:
    """An admitted stream: its slot, and who it is (None: no authentication configured)."""

    slot: Slot
    principal: Principal | None


class _TakenOver:
    def __init__(self, reason: str) -> None:
        self.reason = reason


async def _read(messages: AsyncIterator[bytes]) -> bytes | None:
    return await anext(messages, None)


class _TimedOut:
    pass


_TIMED_OUT = _TimedOut()


async def _next_message(
    messages: AsyncIterator[bytes], session: Session, wait_s: float
) -> bytes | _TakenOver | _TimedOut | None:
    """The next raw message (None at the end of the stream); ``_TimedOut`` when none came within
    ``wait_s`` seconds; or ``_TakenOver`` once a newer stream of the same agent instance has
    taken the pod over, even while this one waits for a message that never comes (a dead
    connection not yet noticed)."""
    claim = session.claim
    if claim is None or not claim.ended.done():
        read = asyncio.ensure_future(_read(messages))
        waits: set[asyncio.Future[Any]] = {read}
        if claim is not None:
            waits.add(claim.ended)
        try:
            await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():
                read.cancel()
        if claim is None or not claim.ended.done():
            if not read.done() or read.cancelled():
                return _TIMED_OUT
            return read.result()
    assert claim is not None
    # A message that arrived with the takeover is dropped unacknowledged: the agent resends it.
    return _TakenOver(f"pod {claim.key}: a newer stream of this agent instance ({claim.instance_id}) took it")


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> list[tuple[str, str | bytes]]:
    return [(k, v) for k, v in context.invocation_metadata() or ()]


def _who(session: Session) -> str:
    return "before hello" if session.identity is None else str(session.identity.key)
