"""The outbox journal under damage it may meet on disk (an agent killed mid-write, a full disk, a
stray write): property-based. Whatever the bytes, loading never raises, never hands out a
sequence it handed out before, and keeps only messages a valid record put there."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.outbox import Outbox
from tests.agent.test_outbox import event_msg, snap_msg


def _journal(directory: Path) -> tuple[Path, bytes, int]:
    """A real journal of a few messages and acks: its path, bytes and the last sequence used."""
    path = directory / "outbox"
    box = Outbox(path=path)
    box.ack_hello()
    for n in range(3):
        box.add(snap_msg(n), 100.0 + n)
    box.add(event_msg("restart"), 200.0)
    box.ack(3)
    last = box.next_sequence()
    box.close()
    return path, path.read_bytes(), last


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_damaged_journal_loads_and_never_reuses_a_sequence(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        path, raw, last = _journal(Path(d))
        how = data.draw(st.sampled_from(["truncate", "flip", "garbage", "splice"]))
        if how == "truncate":
            damaged = raw[: data.draw(st.integers(0, len(raw)))]
        elif how == "flip":
            i = data.draw(st.integers(0, len(raw) - 1))
            damaged = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]
        elif how == "garbage":
            damaged = data.draw(st.binary(max_size=4096))
        else:
            i = data.draw(st.integers(0, len(raw)))
            damaged = raw[:i] + data.draw(st.binary(min_size=1, max_size=64)) + raw[i:]
        path.write_bytes(damaged)
        box = Outbox(path=path)  # never raises
        entries = list(box)
        assert all(e.sequence >= 2 for e in entries)
        assert [e.sequence for e in entries] == sorted({e.sequence for e in entries})
        for e in entries:  # only what a whole, valid record put there
            assert e.message().sequence == e.sequence
        nxt = box.next_sequence()
        assert nxt > max((e.sequence for e in entries), default=1)
        if damaged.startswith(raw):  # appended after whole records: nothing handed out is reused
            assert nxt > last
        box.close()
        again = Outbox(path=path)  # what the load wrote back loads the same
        assert [e.sequence for e in again] == [e.sequence for e in entries]
        again.close()
