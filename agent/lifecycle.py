"""A source that is not ready is not a change; a restart is an event, not a configuration.

Pure: no I/O, no clock (``now`` is an argument). Two pieces sit between collection and the stream:

- :class:`Carry` remembers each source's facts from its last good collection. When a source is
  pending, unavailable or erroring, the facts it no longer reports are carried into the new
  collection with ``Provenance.last_seen`` set: their value is *unknown* since then, not gone. The
  merge and the ``auto`` rules then see what they saw before, so the fingerprint does not move
  and no snapshot, history row, diff line or finding comes of a source going away and coming back.
- :class:`Lifecycle` turns each collection into what to publish. The target process gone is a
  state (``NOT_RUNNING`` since T), sent in heartbeats; the configuration last sent still stands. A
  process whose pid or start time changed is a restart: an :class:`Event` (time, old and new pid
  and start time), then ``STARTING`` until every source that was ready before the restart is
  ready again (or ``settle_s`` passed), and only then one snapshot — so a restart with one
  changed argument is one snapshot holding exactly what changed, and one with unchanged
  arguments is none. The first attach waits the same way for the runtime the process serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from agent.sources.base import ProcessInfo, SourceResult
from skewwatch.core.facts import Fact, Snapshot, SourceState

DEFAULT_SETTLE_S = 120.0  # a big model loads for minutes; past this, send what is known


class EngineState(StrEnum):
    RUNNING = "running"
    NOT_RUNNING = "not_running"
    STARTING = "starting"


@dataclass(frozen=True)
class Event:
    at: float
    kind: str  # "restart"
    old_pid: int
    new_pid: int
    old_start_time: float | None
    new_start_time: float | None
    message: str


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState
    since: float
    message: str = ""


class Carry:
    """The last good facts of each source, carried while the source is not ready."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[tuple[Fact, ...], float]] = {}

    def apply(self, name: str, result: SourceResult, at: float) -> SourceResult:
        """``result`` with the facts its source gave last time filled in when it is not ok now."""
        if result.state is SourceState.OK:
            self._last[name] = (tuple(result.facts), at)
            return result
        previous = self._last.get(name)
        if previous is None:
            return result
        facts, seen_at = previous
        have = {f.key for f in result.facts}
        carried = [
            replace(f, provenance=replace(f.provenance, last_seen=f.provenance.last_seen or seen_at))
            for f in facts
            if f.key not in have
        ]
        if not carried:
            return result
        return replace(result, facts=[*result.facts, *carried])


@dataclass
class Step:
    """What one collection yields: a snapshot to publish (or None), the engine's state, events."""

    snapshot: Snapshot | None
    status: EngineStatus
    events: list[Event] = field(default_factory=list)


def _identity(p: ProcessInfo) -> tuple[int, float | None]:
    return (p.pid, p.start_time)


class Lifecycle:
    def __init__(self, settle_s: float = DEFAULT_SETTLE_S) -> None:
        self.settle_s = settle_s
        self.process: ProcessInfo | None = None  # the process of the last collection that had one
        self.published: Snapshot | None = None
        self.status: EngineStatus | None = None
        self._settling_since: float | None = None
        self._expected: frozenset[str] = frozenset()
        # Sources that were ready at some point in the current process's life: after a restart
        # these must be ready again (a process shutting down closes its port first).
        self._ready: set[str] = set()

    def _set(self, state: EngineState, now: float, message: str) -> EngineStatus:
        if self.status is None or self.status.state is not state:
            self.status = EngineStatus(state, now, message)
        elif self.status.message != message:
            self.status = replace(self.status, message=message)
        return self.status

    def step(self, snapshot: Snapshot, process: ProcessInfo | None, now: float) -> Step:
        if process is None:
            why = snapshot.sources.get("process")
            message = why.message if why is not None else "no process source"
            return Step(None, self._set(EngineState.NOT_RUNNING, now, message))
        events: list[Event] = []
        old = self.process
        if old is not None and _identity(old) != _identity(process):
            events.append(
                Event(
                    now,
                    "restart",
                    old.pid,
                    process.pid,
                    old.start_time,
                    process.start_time,
                    f"{process.engine} restarted: pid {old.pid} -> {process.pid}",
                )
            )
            self._begin_settling(now, frozenset(self._ready))
            self._ready = set()
        elif old is None:
            # First attach (the pod starting, or the agent): the engine's runtime may still be
            # loading; wait for it as after a restart, so that a pod's start is one snapshot and
            # its runtime not listening yet is no finding. Past settle_s it is sent as it is.
            self._begin_settling(now, frozenset({"runtime_metrics"} if process.metrics_url else ()))
        self.process = process
        self._ready.update(n for n, st in snapshot.sources.items() if st.state is SourceState.OK)
        if self._settling_since is not None:
            waiting = sorted(n for n in self._expected if not _ready(snapshot, n))
            if waiting and now - self._settling_since < self.settle_s:
                return Step(
                    None, self._set(EngineState.STARTING, now, "waiting for " + ", ".join(waiting)), events
                )
            self._settling_since = None
        self.published = snapshot
        return Step(snapshot, self._set(EngineState.RUNNING, now, ""), events)

    def _begin_settling(self, now: float, expected: frozenset[str]) -> None:
        self._settling_since = now
        self._expected = expected


def _ready(snapshot: Snapshot, name: str) -> bool:
    """Is the source answering? Ok, or a partial failure that read facts of its own now (one
    hostile field is an error of that field, not an engine still loading)."""
    status = snapshot.sources.get(name)
    if status is None or status.state is SourceState.OK:
        return True
    if status.state is not SourceState.ERROR:
        return False
    return any(f.provenance.source == name and not f.provenance.carried for f in snapshot.facts.values())
