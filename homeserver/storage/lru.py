"""A bounded least-recently-used cache for store reads.

Stores cache immutable values only (events, state groups), so nothing here
invalidates entries on a timer: an entry leaves when the cache is full. Each
entry has a weight (1 by default; a state map weighs its number of entries),
and the cache keeps the total weight under `max_weight`, so its memory is
bounded by what it holds rather than by how many keys it has.

Not thread-safe: use it from the reactor thread only (stores fill it with what
their transactions returned, after `run_interaction` comes back).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """key -> value, dropping the least recently used entries beyond `max_weight`."""

    __slots__ = ("_entries", "_max_weight", "_weigh", "_weight", "hits", "misses")

    def __init__(self, max_weight: int, weigh: Callable[[V], int] | None = None) -> None:
        if max_weight < 1:
            raise ValueError("max_weight must be at least 1")
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._max_weight = max_weight
        self._weigh = weigh
        self._weight = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[0]

    def get_many(self, keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
        """(found, missing) for these keys."""
        found: dict[K, V] = {}
        missing: list[K] = []
        for key in keys:
            value = self.get(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        return found, missing

    def set(self, key: K, value: V) -> None:
        weight = max(1, self._weigh(value)) if self._weigh is not None else 1
        old = self._entries.pop(key, None)
        if old is not None:
            self._weight -= old[1]
        if weight > self._max_weight:
            return  # would evict everything else and still not fit
        self._entries[key] = (value, weight)
        self._weight += weight
        while self._weight > self._max_weight:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._weight -= dropped

    def pop(self, key: K) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._weight -= old[1]

    def clear(self) -> None:
        self._entries.clear()
        self._weight = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def weight(self) -> int:
        return self._weight
