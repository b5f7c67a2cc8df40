"""A bounded, thread-safe least-recently-used map: what the collector's decode caches share.

Bounded by a cost per entry (1 each by default, so ``max_cost`` counts entries; bytes for a
cache bounded by memory); past ``max_cost`` the least recently used entries go. An entry that
alone costs more than ``max_entry_cost`` is never kept. ``hits`` and ``misses`` count ``get``s.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedLRU(Generic[K, V]):
    def __init__(
        self,
        max_cost: int,
        cost: Callable[[K], int] = lambda _: 1,
        max_entry_cost: int | None = None,
    ) -> None:
        self.max_cost = max_cost
        self.max_entry_cost = max_entry_cost
        self._cost_of = cost
        self._entries: OrderedDict[K, V] = OrderedDict()
        self.cost = 0  # the entries' total cost now
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: K, value: V) -> None:
        cost = self._cost_of(key)
        if self.max_entry_cost is not None and cost > self.max_entry_cost:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = value
            self.cost += cost
            while self.cost > self.max_cost and self._entries:
                old, _ = self._entries.popitem(last=False)
                self.cost -= self._cost_of(old)

    def __len__(self) -> int:
        return len(self._entries)
