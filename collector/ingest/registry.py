"""Live agent streams per pod, in memory: who speaks for each pod identity right now.

An agent's Hello names a pod (namespace/pod) and carries ``instance_id``, a random id per agent
process. Two agents of one pod share their ``agent_id`` (it defaults to namespace/pod), so the
instance is what tells them apart. The rule, applied to every Hello before anything is stored:

- no live stream with an instance id holds the pod → the stream takes it;
- the holder has the **same** instance id → the agent reconnected before its old stream was
  noticed dead: the new stream takes over and the old one is ended (``Claim.ended``);
- the holder has a **different** instance id → a second live agent claims the pod: refused
  (``IdentityConflict``, ALREADY_EXISTS on the wire), counted and kept for the API;
- an **empty** instance id (agents that predate it) is accepted as before: such a stream is
  tracked as live but neither refuses nor is refused, since nothing tells its instances apart.

A stream releases the pod when it ends. Nothing here is persisted: after a collector restart
every agent reconnects and the first one back holds its pod again; conflict counts start at 0.

With ``StreamLimits`` the registry also admits streams (``admit``, before any message is read):
at most ``max_streams`` at once and at most ``max_per_address`` from one client IP address (the
peer's port is ignored). A stream over a limit is refused with ``StreamRefused`` (the server
answers RESOURCE_EXHAUSTED with a retry hint). ``readiness`` says whether the collector still has
room: it is saturated once free slots are at most 1 % of ``max_streams`` (no slot left below 100),
so a load balancer stops sending new agents a little before the next one would be refused.
Refusals and streams cut by a deadline are counted by reason.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from collector.errors import CollectorError
from skewwatch.core.identity import PodIdentity, PodKey

log = logging.getLogger(__name__)

_ids = itertools.count(1)
# Refused-claim records kept (the oldest is dropped beyond this); pods churn with every rollout.
MAX_CONFLICT_RECORDS = 10_000


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(eq=False)
class Claim:
    """One live stream speaking for a pod. ``ended`` resolves when another stream took over."""

    key: PodKey
    agent_id: str
    instance_id: str
    peer: str
    since: float
    ended: asyncio.Future[None]
    id: int = field(default_factory=lambda: next(_ids))

    def describe(self) -> str:
        return (
            f"agent {self.agent_id!r} (instance {self.instance_id or '(none)'}, peer {self.peer}, "
            f"since {_iso(self.since)})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "instance_id": self.instance_id,
            "peer": self.peer,
            "since": self.since,
        }


@dataclass
class ConflictStats:
    """Refused claims of one pod: how many, and the last claimant."""

    count: int = 0
    last_refused_at: float | None = None
    last_claimant_peer: str | None = None
    last_claimant_agent_id: str | None = None
    last_claimant_instance_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "last_refused_at": self.last_refused_at,
            "last_claimant_peer": self.last_claimant_peer,
            "last_claimant_agent_id": self.last_claimant_agent_id,
            "last_claimant_instance_id": self.last_claimant_instance_id,
        }


class IdentityConflict(CollectorError):
    """A Hello claims a pod another live agent instance already streams for."""

    def __init__(self, message: str, holder: Claim) -> None:
        super().__init__(message)
        self.holder = holder


# Why a stream was refused at admission (RESOURCE_EXHAUSTED) or cut (DEADLINE_EXCEEDED).
REFUSED_MAX_STREAMS = "max_streams"
REFUSED_PER_ADDRESS = "max_streams_per_address"
CUT_HELLO = "hello_timeout"
CUT_FIRST_REPORT = "first_report_timeout"
CUT_IDLE = "idle_timeout"
REFUSAL_REASONS = (REFUSED_MAX_STREAMS, REFUSED_PER_ADDRESS)
CUT_REASONS = (CUT_HELLO, CUT_FIRST_REPORT, CUT_IDLE)


@dataclass(frozen=True)
class StreamLimits:
    """How many streams the collector admits, overall and per client address."""

    max_streams: int
    max_per_address: int
    retry_after_s: float = 15.0

    @property
    def headroom(self) -> int:
        """Free slots at or below which readiness reports saturation: 1 % of the limit."""
        return self.max_streams // 100

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after_s))


class StreamRefused(CollectorError):
    """A stream is over a stream limit; ``reason`` is one of ``REFUSAL_REASONS``."""

    def __init__(self, reason: str, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


def client_address(peer: str) -> str:
    """The client IP address of a gRPC peer string, without the port.

    ``ipv4:10.0.0.7:51234`` → ``10.0.0.7``; ``ipv6:[::1]:51234`` (or percent-encoded,
    ``ipv6:%5B::1%5D:51234``) → ``::1``; anything else (``unix:…``, empty) is its own address
    with a trailing ``:port`` dropped, so streams over one unix socket share one address.
    """
    text = urllib.parse.unquote(peer)
    scheme, sep, rest = text.partition(":")
    if not sep:
        return text
    if scheme == "ipv6" and rest.startswith("["):
        host, _, _ = rest[1:].partition("]")
        return host.split("%", 1)[0]  # a zone id (fe80::1%eth0) names the same host
    if scheme == "ipv4":
        return rest.rsplit(":", 1)[0]
    return scheme  # unix, unix-abstract, vsock…: one local address per kind


@dataclass(eq=False)
class Slot:
    """One admitted stream's place under the limits; give it back with ``StreamRegistry.leave``."""

    address: str
    id: int = field(default_factory=lambda: next(_ids))


class StreamRegistry:
    """Which streams are live for which pod, and the refused claims; with ``limits``, also the
    admission of streams (overall and per client address). Event-loop confined."""

    def __init__(self, limits: StreamLimits | None = None) -> None:
        self._live: dict[PodKey, list[Claim]] = {}
        self._conflicts: dict[PodKey, ConflictStats] = {}
        self.refused = 0
        self.takeovers = 0
        self.limits = limits
        self._slots: set[Slot] = set()
        self._per_address: Counter[str] = Counter()
        # Refused streams still waiting for their first message before the refusal is sent.
        self.refusing = 0
        self.refusals: Counter[str] = Counter({r: 0 for r in REFUSAL_REASONS})
        self.cuts: Counter[str] = Counter({r: 0 for r in CUT_REASONS})

    # -- admission ---------------------------------------------------------------------------

    @property
    def in_use(self) -> int:
        return len(self._slots)

    def streams_from(self, address: str) -> int:
        return self._per_address.get(address, 0)

    def admit(self, peer: str) -> Slot:
        """Take a slot for a new stream from ``peer`` or raise ``StreamRefused``."""
        address = client_address(peer)
        limits = self.limits
        if limits is not None:
            retry = limits.retry_after_seconds
            if len(self._slots) >= limits.max_streams:
                self.refusals[REFUSED_MAX_STREAMS] += 1
                raise StreamRefused(
                    REFUSED_MAX_STREAMS,
                    f"collector at its limit of {limits.max_streams} concurrent agent streams "
                    f"(SKEWWATCH_MAX_STREAMS); retry after {retry} s",
                    retry,
                )
            if self._per_address[address] >= limits.max_per_address:
                self.refusals[REFUSED_PER_ADDRESS] += 1
                raise StreamRefused(
                    REFUSED_PER_ADDRESS,
                    f"client address {address} already holds {self._per_address[address]} streams, the "
                    f"limit per address (SKEWWATCH_MAX_STREAMS_PER_ADDRESS); retry after {retry} s",
                    retry,
                )
        slot = Slot(address)
        self._slots.add(slot)
        self._per_address[address] += 1
        return slot

    def leave(self, slot: Slot) -> None:
        """The admitted stream ended: free its slot (idempotent)."""
        if slot not in self._slots:
            return
        self._slots.remove(slot)
        self._per_address[slot.address] -= 1
        if self._per_address[slot.address] <= 0:
            del self._per_address[slot.address]

    def cut(self, reason: str) -> None:
        """Count a stream ended by a deadline (one of ``CUT_REASONS``)."""
        self.cuts[reason] += 1

    def saturated(self) -> bool:
        limits = self.limits
        return limits is not None and limits.max_streams - len(self._slots) <= limits.headroom

    def readiness(self) -> dict[str, Any]:
        """Stream slots for /readyz: in use, the limits, whether saturated, refusals and cuts."""
        limits = self.limits
        busiest = self._per_address.most_common(1)
        return {
            "in_use": len(self._slots),
            "limit": limits.max_streams if limits is not None else None,
            "per_address_limit": limits.max_per_address if limits is not None else None,
            "headroom": limits.headroom if limits is not None else None,
            "saturated": self.saturated(),
            "addresses": len(self._per_address),
            "busiest_address": {"address": busiest[0][0], "streams": busiest[0][1]} if busiest else None,
            "refused": dict(self.refusals),
            "cut": dict(self.cuts),
            "identity_conflicts": self.refused,
        }

    # -- pod claims --------------------------------------------------------------------------

    def claim(self, identity: PodIdentity, instance_id: str, peer: str, now: float) -> Claim:
        """Register a stream for ``identity`` or raise ``IdentityConflict``; see the module rule."""
        key = identity.key
        live = self._live.setdefault(key, [])
        if instance_id:
            for holder in live:
                if holder.instance_id and holder.instance_id != instance_id:
                    self._refuse(holder, identity, instance_id=instance_id, peer=peer, now=now)
            for old in [c for c in live if c.instance_id == instance_id]:
                live.remove(old)
                if not old.ended.done():
                    old.ended.set_result(None)
                self.takeovers += 1
                log.info("pod %s: its agent instance reconnected; old stream %s ends", key, old.describe())
        new = Claim(
            key=key,
            agent_id=identity.agent_id,
            instance_id=instance_id,
            peer=peer,
            since=now,
            ended=asyncio.get_running_loop().create_future(),
        )
        live.append(new)
        return new

    def _refuse(
        self, holder: Claim, identity: PodIdentity, *, instance_id: str, peer: str, now: float
    ) -> NoReturn:
        key = identity.key
        stats = self._conflicts.pop(key, None) or ConflictStats()
        self._conflicts[key] = stats  # most recently refused last
        while len(self._conflicts) > MAX_CONFLICT_RECORDS:
            del self._conflicts[next(iter(self._conflicts))]
        stats.count += 1
        stats.last_refused_at = now
        stats.last_claimant_peer = peer
        stats.last_claimant_agent_id = identity.agent_id
        stats.last_claimant_instance_id = instance_id
        self.refused += 1
        message = (
            f"hello.pod: pod {key} is already streamed by {holder.describe()}; refusing agent "
            f"{identity.agent_id!r} (instance {instance_id}, peer {peer}): two live agents claim one pod "
            "identity (check POD_NAMESPACE / POD_NAME)"
        )
        log.warning("%s [refused %d time(s)]", message, stats.count)
        raise IdentityConflict(message, holder)

    def release(self, claim: Claim) -> None:
        """The stream ended: forget it (a no-op when a newer stream already took over)."""
        live = self._live.get(claim.key)
        if live is None:
            return
        if claim in live:
            live.remove(claim)
        if not live:
            del self._live[claim.key]

    def live(self, key: PodKey) -> list[Claim]:
        """The pod's live streams, oldest first."""
        return list(self._live.get(key, ()))

    def conflicts(self, key: PodKey) -> ConflictStats:
        return self._conflicts.get(key) or ConflictStats()

    def forget(self, key: PodKey) -> None:
        """Drop the pod's conflict record (the pod was deleted)."""
        self._conflicts.pop(key, None)
