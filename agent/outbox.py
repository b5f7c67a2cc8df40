"""The agent's outbox: every message the collector has not acknowledged yet, bounded, optionally on disk.

Snapshots (each configuration change, not only the latest), events and observations go into the
outbox when they are collected, each with its sequence number (drawn here, so that a message keeps
its number across reconnects and, with a journal, across agent restarts) and the time it was
collected. Heartbeats and the Hello are not kept: a later message supersedes them. The sender
resends the outbox in sequence order after every Hello; an ``Ack(sequence)`` removes every message
up to that sequence (the collector handles a stream's messages in order, so an ack of one is an
ack of every earlier one sent on that stream).

Bounds: ``max_messages`` and ``max_bytes`` (the serialized size). Past a bound the oldest
*superseded* snapshot (one a newer snapshot follows) is dropped first, then the oldest
observations, then, as a last resort, the oldest events; the newest snapshot never. Every drop is
counted (``dropped``), logged (a WARNING at most every ``DROP_LOG_INTERVAL_S``, with counts) and
reported to the collector: ``report_drops`` appends an ``outbox_dropped`` event naming what was
dropped, sent like any other message.

Persistence (``path``, in an ``emptyDir``): an append-only journal of records, each
``length (4 bytes) | crc32 (4 bytes) | type (1 byte) | payload``:

- ``M`` a message: sequence (8), collected_at (8, a double), kind (1), the serialized AgentMessage;
- ``A`` acknowledged up to a sequence; ``D`` one message dropped (its sequence);
- ``R`` sequence numbers reserved up to (every sequence handed out is at most that), so that a
  restarted agent never reuses a number the collector may have committed (heartbeats and Hellos
  use numbers too, and are not journaled one by one).

Message and reservation records are fsynced before the call returns; acks and drops only written
(a lost ack means a resend, which the collector deduplicates). The journal is rewritten (tmp file,
fsync, rename, fsync of the directory) when it grows past ``COMPACT_FACTOR`` times the live size,
and once at load. A truncated or corrupt tail (an agent killed mid-write) is detected by its length
and CRC, skipped with a warning, and cut off by that rewrite; it never stops the agent. A journal
that cannot be read at all is set aside (``<path>.corrupt``) and the agent starts empty.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.wire import timestamp

log = logging.getLogger(__name__)

SNAPSHOT, OBSERVATIONS, EVENT = "snapshot", "observations", "event"
KEPT_KINDS = (SNAPSHOT, OBSERVATIONS, EVENT)
_KIND_CODE = {SNAPSHOT: 1, OBSERVATIONS: 2, EVENT: 3}
_CODE_KIND = {v: k for k, v in _KIND_CODE.items()}
DROPPED_EVENT_KIND = "outbox_dropped"
DROP_LOG_INTERVAL_S = 60.0
COMPACT_FACTOR = 2
COMPACT_MIN_BYTES = 1024 * 1024  # a small journal is not worth rewriting
FIRST_SEQUENCE_USED = 1  # taken by a run's first Hello
RESERVE_BLOCK = 1024  # sequence numbers reserved per journal record
MAX_RECORD_BYTES = 64 * 1024 * 1024
_HEADER = struct.Struct(">II")  # length of type+payload, crc32 of type+payload
_MESSAGE = struct.Struct(">QdB")
_SEQ = struct.Struct(">Q")
REFUSED = "refused"  # a message the collector refused (INVALID_ARGUMENT) again and again
_DROP_NAMES = {
    SNAPSHOT: ("superseded snapshot", "superseded snapshots"),
    OBSERVATIONS: ("observations window", "observations windows"),
    EVENT: ("event", "events"),
    REFUSED: ("message the collector refused", "messages the collector refused"),
}


class OutboxError(Exception):
    """A message the outbox cannot keep (no sequence body, an unknown kind)."""


@dataclass(frozen=True)
class Entry:
    """One message not acknowledged yet."""

    sequence: int
    kind: str
    collected_at: float
    data: bytes  # the serialized AgentMessage, sequence included
    fingerprint: str = ""  # a snapshot's overall fingerprint

    def message(self) -> pb.AgentMessage:
        return pb.AgentMessage.FromString(self.data)


class Outbox:
    """A bounded, ordered outbox of unacknowledged messages; see the module docstring."""

    def __init__(
        self,
        max_messages: int = 256,
        max_bytes: int = 32 * 1024 * 1024,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError(
                f"outbox bounds must be positive, got {max_messages} messages, {max_bytes} bytes"
            )
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.path = path
        self.clock = clock
        self._entries: dict[int, Entry] = {}  # in sequence order (appends only grow)
        self.bytes = 0
        self.sequence = 0  # the last sequence handed out
        self.acked = 0  # everything up to this is acknowledged
        self._reserved = 0  # journaled: no sequence above it was handed out
        self.dropped: Counter[str] = Counter()  # totals by kind
        self._unreported: Counter[str] = Counter()
        self._unreported_seqs: list[int] = []
        self._unlogged: Counter[str] = Counter()
        self._logged_at = float("-inf")
        self.skipped_records = 0  # corrupt or truncated journal records skipped at load
        self._journal: int | None = None  # the journal's file descriptor
        self._journal_bytes = 0
        self._journal_failed = False
        if path is not None:
            self._load(path)
        # Sequence 1 is a run's first Hello (agent.stream): messages start above it.
        self.sequence = max(self.sequence, FIRST_SEQUENCE_USED)

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def pending(self, after: int) -> list[Entry]:
        """The messages with a sequence above ``after``, in sequence order."""
        return [e for s, e in self._entries.items() if s > after]

    @property
    def newest_fingerprint(self) -> str | None:
        """The overall fingerprint of the newest snapshot kept, if any."""
        for entry in reversed(self._entries.values()):
            if entry.kind == SNAPSHOT:
                return entry.fingerprint
        return None

    @property
    def has_snapshot(self) -> bool:
        return self.newest_fingerprint is not None

    @property
    def hello_acked(self) -> bool:
        """Whether the collector acknowledged a Hello of this run (sequence 1 is not used again)."""
        return self.acked >= FIRST_SEQUENCE_USED

    # -- writing -----------------------------------------------------------------------------

    def next_sequence(self) -> int:
        """A new sequence number, above every number handed out before (across restarts too)."""
        self.sequence += 1
        if self.sequence > self._reserved:
            self._reserved = self.sequence + RESERVE_BLOCK
            self._write(b"R" + _SEQ.pack(self._reserved), sync=True)
        return self.sequence

    def add(self, message: pb.AgentMessage, collected_at: float, *, keep_events: bool = False) -> Entry:
        """Give ``message`` the next sequence and keep it until acknowledged; enforce the bounds."""
        kind = message.WhichOneof("body") or ""
        if kind not in _KIND_CODE:
            raise OutboxError(f"outbox: a {kind} message is not kept (only {', '.join(KEPT_KINDS)})")
        message.sequence = self.next_sequence()
        fingerprint = message.snapshot.fingerprint.overall if kind == SNAPSHOT else ""
        entry = Entry(message.sequence, kind, collected_at, message.SerializeToString(), fingerprint)
        self._keep(entry)
        self._write(
            b"M" + _MESSAGE.pack(entry.sequence, entry.collected_at, _KIND_CODE[kind]) + entry.data, sync=True
        )
        self._enforce(keep_events)
        return entry

    def ack(self, sequence: int) -> int:
        """The collector acknowledged ``sequence``: drop it and every earlier message. Returns how many."""
        if sequence <= self.acked:
            return 0
        self.acked = sequence
        gone = [s for s in self._entries if s <= sequence]
        for s in gone:
            self.bytes -= len(self._entries.pop(s).data)
        if gone:
            self._write(b"A" + _SEQ.pack(sequence), sync=False)
            self._maybe_compact()
        return len(gone)

    def ack_hello(self) -> None:
        """The collector took this run's Hello: journaled (fsynced) before anything else is sent."""
        if self.acked < FIRST_SEQUENCE_USED:
            self.acked = FIRST_SEQUENCE_USED
            self._write(b"A" + _SEQ.pack(self.acked), sync=True)

    def report_drops(self) -> Entry | None:
        """Append an ``outbox_dropped`` event naming the drops not reported yet (None if there are none)."""
        self._log_drops()  # what a rate-limited warning held back
        if not self._unreported:
            return None
        counts, seqs = self._unreported, self._unreported_seqs
        self._unreported, self._unreported_seqs = Counter(), []
        text = (
            f"agent outbox over its bounds ({self.max_messages} messages, {self.max_bytes} bytes): dropped "
            + ", ".join(f"{n} {_DROP_NAMES[k][n > 1]}" for k, n in counts.items())
            + f" (sequences {min(seqs)}..{max(seqs)}) the collector never received"
        )
        now = self.clock()
        event = pb.Event(at=timestamp(now), kind=DROPPED_EVENT_KIND, message=text[:500])
        # A report pushes out no event (no earlier report): over the bound by one at worst, it
        # cannot set off a chain of reports of reports.
        return self.add(pb.AgentMessage(event=event), now, keep_events=True)

    def close(self) -> None:
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None

    # -- bounds ------------------------------------------------------------------------------

    def _keep(self, entry: Entry) -> None:
        self._entries[entry.sequence] = entry
        self.bytes += len(entry.data)

    def _over(self) -> bool:
        return len(self._entries) > self.max_messages or self.bytes > self.max_bytes

    def _victim(self, keep_events: bool = False) -> Entry | None:
        """The message to drop next: the oldest superseded snapshot, the oldest observations, the
        oldest event; never the newest snapshot."""
        newest_snapshot = max((s for s, e in self._entries.items() if e.kind == SNAPSHOT), default=None)
        for kind in (SNAPSHOT, OBSERVATIONS) if keep_events else (SNAPSHOT, OBSERVATIONS, EVENT):
            for s, e in self._entries.items():
                if e.kind == kind and not (kind == SNAPSHOT and s == newest_snapshot):
                    return e
        return None

    def _enforce(self, keep_events: bool = False) -> None:
        while self._over():
            victim = self._victim(keep_events)
            if victim is None:
                return  # only the newest snapshot is left: it is kept even over the bound
            self._drop(victim, victim.kind)
        self._log_drops()

    def _drop(self, entry: Entry, why: str) -> None:
        del self._entries[entry.sequence]
        self.bytes -= len(entry.data)
        self.dropped[why] += 1
        self._unreported[why] += 1
        self._unreported_seqs.append(entry.sequence)
        self._unlogged[why] += 1
        self._write(b"D" + _SEQ.pack(entry.sequence), sync=False)

    def refuse(self, sequence: int) -> Entry | None:
        """Drop the message ``sequence`` the collector keeps refusing (it would block every later
        one); counted, logged and reported like a drop past the bounds."""
        entry = self._entries.get(sequence)
        if entry is not None:
            self._drop(entry, REFUSED)
            if entry.kind == EVENT and entry.message().event.kind == DROPPED_EVENT_KIND:
                # A collector that predates this report refuses it: reporting that would loop.
                self._unreported[REFUSED] -= 1
                self._unreported_seqs.pop()
                self._unreported = +self._unreported
            self._log_drops(force=True)
        return entry

    def _log_drops(self, force: bool = False) -> None:
        if not self._unlogged:
            return
        now = time.monotonic()
        if not force and now - self._logged_at < DROP_LOG_INTERVAL_S:
            return
        self._logged_at = now
        log.warning(
            "outbox over its bounds (%d messages, %d bytes): dropped %s since the last report "
            "(totals: %s); the collector is told",
            self.max_messages,
            self.max_bytes,
            ", ".join(f"{n} {k}" for k, n in sorted(self._unlogged.items())),
            ", ".join(f"{n} {k}" for k, n in sorted(self.dropped.items())),
        )
        self._unlogged = Counter()

    # -- journal -----------------------------------------------------------------------------

    def _write(self, record: bytes, *, sync: bool) -> None:
        if self._journal is None:
            return
        data = _HEADER.pack(len(record), zlib.crc32(record)) + record
        try:
            os.write(self._journal, data)
            if sync:
                os.fsync(self._journal)
        except OSError as e:
            # A full or failing disk costs persistence, not the agent: the outbox goes on in memory.
            if not self._journal_failed:
                log.warning("outbox journal %s: %s; the outbox goes on in memory only", self.path, e)
            self._journal_failed = True
            return
        self._journal_bytes += len(data)

    def _maybe_compact(self) -> None:
        if self.path is None or self._journal is None:
            return
        live = self.bytes + 64 * (len(self._entries) + 1)
        if self._journal_bytes > max(COMPACT_MIN_BYTES, COMPACT_FACTOR * live):
            try:
                self._rewrite(self.path)
            except OSError as e:  # the journal in place is still whole: append on to it
                log.warning("outbox journal %s: compaction failed (%s); appending on", self.path, e)

    def _rewrite(self, path: Path) -> None:
        """Write the live state to a new journal and put it in place atomically."""
        tmp = path.with_name(path.name + ".tmp")
        records = [b"R" + _SEQ.pack(max(self._reserved, self.sequence)), b"A" + _SEQ.pack(self.acked)]
        records += [
            b"M" + _MESSAGE.pack(e.sequence, e.collected_at, _KIND_CODE[e.kind]) + e.data
            for e in self._entries.values()
        ]
        blob = b"".join(_HEADER.pack(len(r), zlib.crc32(r)) + r for r in records)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if self._journal is not None:
            os.close(self._journal)
        self._journal = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._journal_bytes = len(blob)

    def _no_journal(self, error: OSError) -> None:
        """The journal cannot be used: the agent goes on with the outbox in memory only."""
        log.warning("outbox journal %s: %s; the outbox is kept in memory only", self.path, error)
        if self._journal is not None:
            os.close(self._journal)
        self._journal = None
        self._journal_failed = True

    def _load(self, path: Path) -> None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as e:
            self._no_journal(e)
            return
        try:
            self._replay(raw, path)
        except Exception as e:  # a journal this code cannot make sense of must not stop the agent
            aside = path.with_name(path.name + ".corrupt")
            log.warning("outbox journal %s unreadable (%s); set aside as %s, starting empty", path, e, aside)
            os.replace(path, aside)
            self._entries, self.bytes, self.sequence, self.acked, self._reserved = {}, 0, 0, 0, 0
        self.sequence = max(self.sequence, self._reserved, self.acked)
        self._reserved = self.sequence
        try:
            self._rewrite(path)  # cuts off a bad tail, and compacts
        except OSError as e:
            self._no_journal(e)
        if self._entries or self.sequence:
            log.info(
                "outbox %s: %d messages not acknowledged (sequences %s..%s), next sequence %d",
                path,
                len(self._entries),
                min(self._entries, default="-"),
                max(self._entries, default="-"),
                self.sequence + 1,
            )
        self._enforce()  # the bounds may have been lowered since

    def _replay(self, raw: bytes, path: Path) -> None:
        offset = 0
        while offset < len(raw):
            bad = self._record(raw, offset)
            if isinstance(bad, str):
                self.skipped_records += 1
                log.warning(
                    "outbox journal %s: %s at byte %d of %d; the rest (%d bytes) is skipped",
                    path,
                    bad,
                    offset,
                    len(raw),
                    len(raw) - offset,
                )
                return
            offset = bad

    def _record(self, raw: bytes, offset: int) -> int | str:
        """Apply the record at ``offset``; the next offset, or why the record is bad."""
        if offset + _HEADER.size > len(raw):
            return "a truncated record header"
        length, crc = _HEADER.unpack_from(raw, offset)
        start = offset + _HEADER.size
        if length < 1 or length > MAX_RECORD_BYTES:
            return f"a record length of {length}"
        if start + length > len(raw):
            return f"a truncated record ({len(raw) - start} of {length} bytes)"
        record = raw[start : start + length]
        if zlib.crc32(record) != crc:
            return "a record whose CRC does not match"
        kind, body = record[:1], record[1:]
        if kind == b"M" and len(body) >= _MESSAGE.size:
            seq, collected_at, code = _MESSAGE.unpack_from(body)
            data = body[_MESSAGE.size :]
            try:
                message = pb.AgentMessage.FromString(data)
            except DecodeError:
                return f"a message record that does not parse (sequence {seq})"
            body_kind = _CODE_KIND.get(code)
            if body_kind is None or message.sequence != seq or message.WhichOneof("body") != body_kind:
                return f"a message record that does not match its header (sequence {seq})"
            self.sequence = max(self.sequence, seq)
            if seq > self.acked:
                fp = message.snapshot.fingerprint.overall if body_kind == SNAPSHOT else ""
                self._keep(Entry(seq, str(body_kind), collected_at, data, fp))
        elif kind in (b"A", b"D", b"R") and len(body) == _SEQ.size:
            (seq,) = _SEQ.unpack(body)
            if kind == b"R":
                self._reserved = max(self._reserved, seq)
            elif kind == b"D":
                gone = self._entries.pop(seq, None)
                self.bytes -= len(gone.data) if gone is not None else 0
            else:
                self.acked = max(self.acked, seq)
                for s in [s for s in self._entries if s <= seq]:
                    self.bytes -= len(self._entries.pop(s).data)
        else:
            return f"an unknown record type {kind!r}"
        return int(start + length)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
