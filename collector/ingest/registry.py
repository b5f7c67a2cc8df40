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
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from collector.errors import CollectorError
from collector.store.base import PodIdentity, PodKey

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


class StreamRegistry:
    """Which streams are live for which pod, and the refused claims. Event-loop confined."""

    def __init__(self) -> None:
        self._live: dict[PodKey, list[Claim]] = {}
        self._conflicts: dict[PodKey, ConflictStats] = {}
        self.refused = 0
        self.takeovers = 0

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
