"""The grpc.aio server for ``skewwatch.v1.Ingest/Stream``.

The method is registered with raw bytes (no deserializer) so the collector itself parses each
message: it enforces its own size limit, validates with ``skewwatch.wire``, and answers a bad
message with INVALID_ARGUMENT naming the field, instead of grpc's generic errors. gRPC's
transport limit is set a little above ours (``CollectorSettings.grpc_receive_limit``) so an
oversized message still reaches this code.

Status codes: INVALID_ARGUMENT for anything the agent sent wrong (it must fix and reconnect);
UNAVAILABLE when the store failed (nothing was acknowledged, the agent retries); ALREADY_EXISTS
when another live agent instance streams for the pod the Hello names (``registry``: the message
names the pod and the holder); ABORTED for an old stream whose own agent instance reconnected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from collector.errors import IngestError, StoreError
from collector.ingest.protocol import CommitHook, Session
from collector.ingest.registry import IdentityConflict, StreamRegistry
from collector.store.base import Store

log = logging.getLogger(__name__)

SERVICE = "skewwatch.v1.Ingest"
METHOD = "Stream"
FULL_METHOD = f"/{SERVICE}/{METHOD}"


class IngestService:
    """Serves agent streams into a store; one ``Session`` per stream, messages handled in order."""

    def __init__(
        self,
        store: Store,
        *,
        max_message_bytes: int,
        clock: Callable[[], float] = time.time,
        on_commit: CommitHook | None = None,
    ) -> None:
        self.store = store
        self.on_commit = on_commit
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.active_streams = 0
        self.registry = StreamRegistry()

    def handler(self) -> grpc.GenericRpcHandler:
        method: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(
            self.stream  # no (de)serializers: raw bytes in and out, parsed by Session
        )
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD: method})

    async def stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        peer = context.peer()
        session = Session(
            self.store,
            max_message_bytes=self.max_message_bytes,
            clock=self.clock,
            on_commit=self.on_commit,
            registry=self.registry,
            peer=peer,
        )
        self.active_streams += 1
        messages = aiter(requests)
        try:
            while True:
                raw = await _next_message(messages, session)
                if raw is None:
                    break
                if isinstance(raw, _TakenOver):
                    log.info("stream from %s (%s): %s", peer, _who(session), raw.reason)
                    await context.abort(grpc.StatusCode.ABORTED, raw.reason)
                try:
                    reply = await session.handle(raw)
                except IdentityConflict as e:
                    await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(e))
                except IngestError as e:
                    log.warning("stream from %s (%s): rejected: %s", peer, _who(session), e)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
                except StoreError as e:
                    log.error("stream from %s (%s): store failed: %s", peer, _who(session), e)
                    await context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable, retry: {e}")
                if reply is not None:
                    yield reply.SerializeToString()
        finally:
            session.close()
            self.active_streams -= 1
            log.info("stream from %s (%s) ended: %s", peer, _who(session), session.stats)


class _TakenOver:
    def __init__(self, reason: str) -> None:
        self.reason = reason


async def _read(messages: AsyncIterator[bytes]) -> bytes | None:
    return await anext(messages, None)


async def _next_message(messages: AsyncIterator[bytes], session: Session) -> bytes | _TakenOver | None:
    """The next raw message (None at the end of the stream), or ``_TakenOver`` once a newer stream
    of the same agent instance has taken the pod over, even while this one waits for a message
    that never comes (a dead connection not yet noticed)."""
    claim = session.claim
    if claim is None:
        return await anext(messages, None)
    if not claim.ended.done():
        read = asyncio.ensure_future(_read(messages))
        try:
            await asyncio.wait((read, claim.ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():
                read.cancel()
        if not claim.ended.done():
            return read.result()
    # A message that arrived with the takeover is dropped unacknowledged: the agent resends it.
    return _TakenOver(f"pod {claim.key}: a newer stream of this agent instance ({claim.instance_id}) took it")


def _who(session: Session) -> str:
    return "before hello" if session.identity is None else str(session.identity.key)
