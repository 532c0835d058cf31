"""StateStore: room state as deduplicated delta groups, the state at each event, current state.

How state is stored (the point of this module; see DESIGN.md "Where Synapse
hurts its operators"): a *state group* is one full room state, stored as a
delta over a parent group (`state_groups.prev_group`, rows in
`state_group_deltas`) or in full when it has no parent. Every event points at
the group of the state before it and the group after it
(`event_to_state_groups`), and groups are shared:

- a message event, and a rejected event, adds no group: after = before;
- an event with one prev_event starts from that event's after group, so a
  linear room of messages adds no group at all;
- a fork whose resolved state equals one of its branches' states reuses that
  branch's group; otherwise the new group is a delta over the closest branch;
- a state event adds one group holding one row over its before group ...

... unless `plan_state_group` decides to merge. Plain delta chains either grow
without bound (slow reads) or need periodic full snapshots, and snapshots of a
big room cost (state changes x state size) rows: Synapse's problem. Instead,
a new delta is layered on its base only while it is *smaller* than the base's
own delta; otherwise it is merged into the base's delta and placed one level
up, and so on (at the top, the merged delta becomes a new full snapshot). The
layers along any chain then roughly halve in size from the root down, like the
digits of a binary counter: a chain has O(log changes) groups, reading a state
reads at most about twice its size in rows, and each change is copied
O(log changes) times, so the table holds O(changes x log changes) rows whatever
the size of the state. (MAX_CHAIN_LENGTH bounds the chain for odd shapes of
deltas that don't halve.)

Groups are immutable, so they and the composed states are cached (bounded by
their number of rows). Group IDs are assigned by the database when a batch of
events is persisted; before that, planned groups carry negative provisional IDs
and `insert_state_groups_txn` maps them.

Current state (`current_state_events`) is written by the events store in the
same transaction as the events that changed it; this store reads it and keeps
the last read or written copy of each room's in memory. THE SINGLE-WRITER-PER-
ROOM ASSUMPTION: that copy is only right while this process is the one
persisting events of the room (see homeserver/handlers/event_persistence.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from homeserver.storage.database import Database, Transaction
from homeserver.storage.lru import LruCache

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]

MAX_CHAIN_LENGTH = 24
"""The most groups on the path from any group to its full snapshot (itself included)."""

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StateGroup:
    """One state group: `delta` over the full state of group `prev` (a full state if None).

    `delta` maps (type, state_key) to an event ID, or to None when the key is
    absent from this group's state though present in its parent's.
    """

    id: int
    room_id: str
    prev: int | None
    delta: Mapping[StateKey, str | None]

    def weight(self) -> int:
        return len(self.delta) + 1


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


# -- the storage policy (pure) ----------------------------------------------------


def chain_length(group_id: int | None, groups: Mapping[int, StateGroup]) -> int:
    """How many groups from `group_id` up to its snapshot, itself included (0 for None)."""
    length = 0
    while group_id is not None:
        length += 1
        group_id = groups[group_id].prev
    return length


def plan_state_group(
    room_id: str,
    base_id: int | None,
    changes: Mapping[StateKey, str | None],
    groups: Mapping[int, StateGroup],
    new_id: int,
) -> StateGroup:
    """The group to store for "the state of `base_id`, with `changes` applied".

    `groups` must hold `base_id` and its ancestors. The result has ID `new_id`
    and is layered on `base_id` or one of its ancestors, with `changes` merged
    into the deltas it skipped (see the module docstring). `changes` should be
    non-empty: an unchanged state reuses `base_id` instead.
    """
    delta: dict[StateKey, str | None] = dict(changes)
    base = base_id
    depth = chain_length(base, groups)
    while base is not None:
        group = groups[base]
        if len(delta) < len(group.delta) and depth < MAX_CHAIN_LENGTH:
            return StateGroup(new_id, room_id, base, MappingProxyType(delta))
        merged = dict(group.delta)
        merged.update(delta)
        delta = merged
        base = group.prev
        depth -= 1
    full = {key: event_id for key, event_id in delta.items() if event_id is not None}
    return StateGroup(new_id, room_id, None, MappingProxyType(full))


def compose_state(
    group_id: int,
    groups: Mapping[int, StateGroup],
    known_state: Callable[[int], StateMap | None] = lambda _: None,
) -> dict[StateKey, str]:
    """The full state of `group_id`: its ancestors' deltas applied from the snapshot down.

    `known_state(id)` may return the full state of an ancestor already at
    hand (a cache); the walk stops there.
    """
    path: list[StateGroup] = []
    state: dict[StateKey, str] = {}
    current: int | None = group_id
    while current is not None:
        known = known_state(current)
        if known is not None:
            state = dict(known)
            break
        group = groups[current]
        path.append(group)
        current = group.prev
    for group in reversed(path):
        for key, event_id in group.delta.items():
            if event_id is None:
                state.pop(key, None)
            else:
                state[key] = event_id
    return state


def state_diff(old: StateMap, new: StateMap) -> dict[StateKey, str | None]:
    """The changes that turn `old` into `new` (None for keys `new` lacks)."""
    diff: dict[StateKey, str | None] = {k: v for k, v in new.items() if old.get(k) != v}
    diff.update({k: None for k in old if k not in new})
    return diff


# -- transactions -------------------------------------------------------------------


def insert_state_groups_txn(txn: Transaction, groups: Sequence[StateGroup]) -> dict[int, int]:
    """Store planned groups (in planning order); returns provisional ID -> stored ID."""
    stored: dict[int, int] = {}
    for group in groups:
        prev = None if group.prev is None else stored.get(group.prev, group.prev)
        txn.execute(
            "INSERT INTO state_groups (room_id, prev_group) VALUES (?, ?) RETURNING id",
            (group.room_id, prev),
        )
        row = txn.fetchone()
        assert row is not None
        group_id = stored[group.id] = int(row[0])
        txn.executemany(
            "INSERT INTO state_group_deltas (state_group, type, state_key, event_id)"
            " VALUES (?, ?, ?, ?)",
            [(group_id, key[0], key[1], event_id) for key, event_id in group.delta.items()],
        )
    return stored


def _get_groups_txn(
    txn: Transaction, group_ids: Collection[int], stop_at: Collection[int]
) -> dict[int, StateGroup]:
    """The groups and their ancestors, not walking past the groups in `stop_at`."""
    found: dict[int, StateGroup] = {}
    todo = [g for g in dict.fromkeys(group_ids) if g not in stop_at]
    while todo:
        parents: dict[int, tuple[str, int | None]] = {}
        deltas: dict[int, dict[StateKey, str | None]] = {}
        for chunk in chunks(todo):
            txn.execute(
                f"SELECT id, room_id, prev_group FROM state_groups WHERE id IN ({placeholders(len(chunk))})",
                chunk,
            )
            for group_id, room_id, prev in txn.fetchall():
                parents[int(group_id)] = (room_id, None if prev is None else int(prev))
                deltas[int(group_id)] = {}
            txn.execute(
                "SELECT state_group, type, state_key, event_id FROM state_group_deltas"
                f" WHERE state_group IN ({placeholders(len(chunk))})",
                chunk,
            )
            for group_id, event_type, state_key, event_id in txn.fetchall():
                deltas[int(group_id)][(event_type, state_key)] = event_id
        missing = set(todo) - parents.keys()
        if missing:
            raise KeyError(f"unknown state groups {sorted(missing)}")
        for group_id, (room_id, prev) in parents.items():
            found[group_id] = StateGroup(
                group_id, room_id, prev, MappingProxyType(deltas[group_id])
            )
        todo = [
            prev
            for _, prev in parents.values()
            if prev is not None and prev not in found and prev not in stop_at
        ]
        todo = list(dict.fromkeys(todo))
    return found


def _get_event_groups_txn(
    txn: Transaction, event_ids: Sequence[str]
) -> dict[str, tuple[int | None, int]]:
    result: dict[str, tuple[int | None, int]] = {}
    for chunk in chunks(event_ids):
        txn.execute(
            "SELECT event_id, state_group_before, state_group_after FROM event_to_state_groups"
            f" WHERE event_id IN ({placeholders(len(chunk))})",
            chunk,
        )
        for event_id, before, after in txn.fetchall():
            result[event_id] = (None if before is None else int(before), int(after))
    return result


def _get_current_state_txn(txn: Transaction, room_id: str) -> dict[StateKey, str]:
    txn.execute(
        "SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ?",
        (room_id,),
    )
    return {(t, k): e for t, k, e in txn.fetchall()}


def _count_state_rows_txn(txn: Transaction, room_id: str | None) -> tuple[int, int]:
    if room_id is None:
        txn.execute("SELECT COUNT(*) FROM state_groups")
        groups = int(txn.fetchall()[0][0])
        txn.execute("SELECT COUNT(*) FROM state_group_deltas")
        return groups, int(txn.fetchall()[0][0])
    txn.execute("SELECT COUNT(*) FROM state_groups WHERE room_id = ?", (room_id,))
    groups = int(txn.fetchall()[0][0])
    txn.execute(
        "SELECT COUNT(*) FROM state_group_deltas d JOIN state_groups g ON g.id = d.state_group"
        " WHERE g.room_id = ?",
        (room_id,),
    )
    return groups, int(txn.fetchall()[0][0])


# -- the store ------------------------------------------------------------------------


class StateStore:
    """Reads of state groups, of the state at events, and of current state; with caches."""

    def __init__(
        self,
        db: Database,
        *,
        group_cache_rows: int = 200_000,
        state_cache_rows: int = 500_000,
        event_groups_cache_size: int = 100_000,
        current_state_cache_rows: int = 500_000,
    ) -> None:
        self._db = db
        self._groups: LruCache[int, StateGroup] = LruCache(group_cache_rows, StateGroup.weight)
        self._states: LruCache[int, StateMap] = LruCache(state_cache_rows, len)
        self._event_groups: LruCache[str, tuple[int | None, int]] = LruCache(
            event_groups_cache_size
        )
        self._current: LruCache[str, StateMap] = LruCache(current_state_cache_rows, len)

    # -- groups

    async def get_state_groups(self, group_ids: Collection[int]) -> dict[int, StateGroup]:
        """These groups and all their ancestors."""
        result: dict[int, StateGroup] = {}
        todo = list(dict.fromkeys(group_ids))
        while todo:
            found, missing = self._groups.get_many(todo)
            result.update(found)
            if missing:
                loaded = await self._db.run_interaction(
                    "get_state_groups", _get_groups_txn, missing, frozenset(result)
                )
                for group in loaded.values():
                    self._groups.set(group.id, group)
                result.update(loaded)
            todo = list(
                {g.prev for g in result.values() if g.prev is not None and g.prev not in result}
            )
        return result

    async def get_state_for_groups(self, group_ids: Collection[int]) -> dict[int, StateMap]:
        """The full state of each group (read-only mappings)."""
        states, missing = self._states.get_many(dict.fromkeys(group_ids))
        if missing:
            groups = await self.get_state_groups(missing)
            for group_id in missing:
                state = MappingProxyType(compose_state(group_id, groups, self._states.get))
                self._states.set(group_id, state)
                states[group_id] = state
        return states

    async def get_state_for_group(self, group_id: int) -> StateMap:
        return (await self.get_state_for_groups([group_id]))[group_id]

    def remember_groups(
        self, groups: Iterable[StateGroup], states: Mapping[int, StateMap] | None = None
    ) -> None:
        """Cache groups (and optionally their full states) just stored by this process."""
        for group in groups:
            self._groups.set(group.id, group)
        for group_id, state in (states or {}).items():
            self._states.set(group_id, MappingProxyType(dict(state)))

    # -- state at events

    async def get_state_groups_for_events(
        self, event_ids: Collection[str]
    ) -> dict[str, tuple[int | None, int]]:
        """event ID -> (group before, group after), for the non-outlier events we hold.

        The group before is None only for an empty state (the m.room.create event).
        """
        found, missing = self._event_groups.get_many(dict.fromkeys(event_ids))
        if missing:
            loaded = await self._db.run_interaction(
                "get_state_groups_for_events", _get_event_groups_txn, missing
            )
            for event_id, groups in loaded.items():
                self._event_groups.set(event_id, groups)
            found.update(loaded)
        return found

    def remember_event_groups(self, groups: Mapping[str, tuple[int | None, int]]) -> None:
        for event_id, pair in groups.items():
            self._event_groups.set(event_id, pair)

    async def get_state_ids_for_event(
        self, event_id: str, *, after: bool = False
    ) -> StateMap | None:
        """The state before (or after) an event; None if we have no state for it (outlier, unknown)."""
        groups = (await self.get_state_groups_for_events([event_id])).get(event_id)
        if groups is None:
            return None
        group = groups[1] if after else groups[0]
        if group is None:
            return MappingProxyType({})
        return await self.get_state_for_group(group)

    # -- current state

    async def get_current_state_ids(self, room_id: str) -> StateMap:
        """The room's current state, (type, state_key) -> event ID (read-only; empty if unknown)."""
        state = self._current.get(room_id)
        if state is None:
            state = MappingProxyType(
                await self._db.run_interaction(
                    "get_current_state_ids", _get_current_state_txn, room_id
                )
            )
            self._current.set(room_id, state)
        return state

    def remember_current_state(self, room_id: str, state: StateMap) -> None:
        """Called by the events store after a transaction that rewrote the room's current state."""
        self._current.set(room_id, MappingProxyType(dict(state)))

    def forget_current_state(self, room_id: str) -> None:
        self._current.pop(room_id)

    # -- measuring

    async def count_state_rows(self, room_id: str | None = None) -> tuple[int, int]:
        """(state groups, delta rows) stored, for one room or all: what the storage costs."""
        return await self._db.run_interaction("count_state_rows", _count_state_rows_txn, room_id)
