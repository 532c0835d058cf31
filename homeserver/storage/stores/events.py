"""EventStore: events with their DAG, extremities and orderings; the batch write and cached reads.

`persist_batch` stores one room's batch (see `event_batch` for what it
writes) in ONE transaction, taking the batch's positions on the "events"
stream, and returns once it is committed, so an event acknowledged after that
survives a crash. It then fills the caches with what it wrote.

Orderings: `stream_ordering` (unique, in persist order) is what sync reads;
pagination orders a room by (depth, stream_ordering).

Reads: events by ID through a bounded LRU cache of `StoredEvent`s (immutable:
an event, its stream position, outlier flag and rejection never change once
stored), the DAG edges, extremities, and a room's events by stream range or in
topological order.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction
from homeserver.storage.lru import LruCache
from homeserver.storage.stores.event_batch import BatchResult, RoomBatch, persist_batch_txn
from homeserver.storage.stores.state import StateGroup, StateStore, chunks, placeholders
from homeserver.storage.streams import StreamIdGenerator
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored, with what storing it decided. Immutable."""

    event: EventBase
    stream_ordering: int
    outlier: bool
    rejected_reason: str | None

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def topological_ordering(self) -> tuple[int, int]:
        """Pagination order within the room: (depth, stream_ordering)."""
        return (self.event.depth, self.stream_ordering)


# -- reads


_EVENT_COLUMNS = "event_id, room_version, stream_ordering, outlier, rejected_reason, json"


def _get_events_txn(txn: Transaction, event_ids: Sequence[str]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for chunk in chunks(event_ids):
        txn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id IN ({placeholders(len(chunk))})",
            chunk,
        )
        rows.extend(txn.fetchall())
    return rows


def _row_to_stored(row: tuple[object, ...]) -> StoredEvent:
    event_id, version, stream_ordering, outlier, rejected_reason, raw = row
    room_version = KNOWN_ROOM_VERSIONS[str(version)]
    event = make_event(json.loads(str(raw)), room_version, event_id=str(event_id))
    return StoredEvent(event, int(stream_ordering), bool(outlier), rejected_reason)  # type: ignore[call-overload, arg-type]


def _edges_txn(txn: Transaction, table: str, column: str, event_id: str) -> list[str]:
    txn.execute(f"SELECT {column} FROM {table} WHERE event_id = ?", (event_id,))
    return [row[0] for row in txn.fetchall()]


def _select_column_txn(txn: Transaction, sql: str, args: Sequence[object]) -> list[str]:
    txn.execute(sql, args)
    return [row[0] for row in txn.fetchall()]


def _referenced_txn(txn: Transaction, event_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(event_ids):
        txn.execute(
            "SELECT DISTINCT e.prev_event_id FROM event_edges e"
            " JOIN events ev ON ev.event_id = e.event_id"
            f" WHERE e.prev_event_id IN ({placeholders(len(chunk))})"
            " AND NOT ev.outlier AND ev.rejected_reason IS NULL",
            chunk,
        )
        found.update(row[0] for row in txn.fetchall())
    return found


def _extremity_info_txn(txn: Transaction, room_id: str) -> list[tuple[str, int]]:
    txn.execute(
        "SELECT f.event_id, e.depth FROM event_forward_extremities f"
        " JOIN events e ON e.event_id = f.event_id WHERE f.room_id = ?",
        (room_id,),
    )
    return [(e, int(d)) for e, d in txn.fetchall()]


def _room_stream_txn(
    txn: Transaction, room_id: str, after: int, up_to: int, limit: int, backwards: bool
) -> list[str]:
    txn.execute(
        "SELECT event_id FROM events WHERE room_id = ? AND stream_ordering > ?"
        " AND stream_ordering <= ? AND NOT outlier AND rejected_reason IS NULL"
        f" ORDER BY stream_ordering {'DESC' if backwards else 'ASC'} LIMIT ?",
        (room_id, after, up_to, limit),
    )
    return [row[0] for row in txn.fetchall()]


def _room_topological_txn(
    txn: Transaction, room_id: str, start: tuple[int, int] | None, limit: int, backwards: bool
) -> list[str]:
    sql = (
        "SELECT event_id FROM events WHERE room_id = ? AND NOT outlier AND rejected_reason IS NULL"
    )
    args: list[object] = [room_id]
    if start is not None:
        op = "<" if backwards else ">"
        sql += f" AND (depth {op} ? OR (depth = ? AND stream_ordering {op} ?))"
        args += [start[0], start[0], start[1]]
    order = "DESC" if backwards else "ASC"
    txn.execute(f"{sql} ORDER BY depth {order}, stream_ordering {order} LIMIT ?", [*args, limit])
    return [row[0] for row in txn.fetchall()]


class EventStore:
    """Events: the batch write, and cached reads."""

    def __init__(
        self,
        db: Database,
        stream: StreamIdGenerator,
        state: StateStore,
        *,
        event_cache_size: int = 50_000,
    ) -> None:
        self._db = db
        self.stream = stream
        """The "events" stream: positions are stream orderings."""
        self._state = state
        self._cache: LruCache[str, StoredEvent] = LruCache(event_cache_size)

    # -- writing

    async def persist_batch(self, batch: RoomBatch) -> BatchResult:
        """Store one room's batch in one transaction; returns positions and stored group IDs."""
        if not batch.events:
            raise ValueError("empty batch")
        async with self.stream.get_next_mult(len(batch.events)) as positions:
            groups = await self._db.run_interaction(
                "persist_events", persist_batch_txn, batch, positions
            )
        # Committed: fill the caches with what we just wrote.
        result = BatchResult(
            {w.event.event_id: p for w, p in zip(batch.events, positions, strict=True)}, groups
        )
        for write, position in zip(batch.events, positions, strict=True):
            self._cache.set(
                write.event.event_id,
                StoredEvent(write.event, position, write.outlier, write.rejected_reason),
            )
        self._state.remember_groups(
            StateGroup(
                groups[g.id],
                g.room_id,
                groups.get(g.prev, g.prev) if g.prev is not None else None,
                g.delta,
            )
            for g in batch.new_groups
        )
        self._state.remember_event_groups(
            {
                w.event.event_id: (
                    None if w.state_before is None else groups.get(w.state_before, w.state_before),
                    groups.get(w.state_after, w.state_after),
                )
                for w in batch.events
                if w.state_after is not None
            }
        )
        if batch.current_state is not None:
            self._state.remember_current_state(batch.room_id, batch.current_state)
        return result

    def current_token(self) -> int:
        """The events stream position up to which everything is persisted."""
        return self.stream.get_current_token()

    # -- events

    async def get_stored_events(self, event_ids: Collection[str]) -> dict[str, StoredEvent]:
        """The events we hold among `event_ids` (rejected and outliers included)."""
        found, missing = self._cache.get_many(dict.fromkeys(event_ids))
        if missing:
            rows = await self._db.run_interaction("get_events", _get_events_txn, missing)
            for row in rows:
                stored = _row_to_stored(row)
                self._cache.set(stored.event_id, stored)
                found[stored.event_id] = stored
        return found

    async def get_events(
        self, event_ids: Collection[str], *, allow_rejected: bool = False
    ) -> dict[str, EventBase]:
        stored = await self.get_stored_events(event_ids)
        return {
            i: s.event for i, s in stored.items() if allow_rejected or s.rejected_reason is None
        }

    async def get_event(self, event_id: str, *, allow_rejected: bool = False) -> EventBase | None:
        return (await self.get_events([event_id], allow_rejected=allow_rejected)).get(event_id)

    async def have_events(self, event_ids: Collection[str]) -> set[str]:
        """Which of these events we hold (in any form)."""
        return set(await self.get_stored_events(event_ids))

    # -- the DAG

    async def get_prev_event_ids(self, event_id: str) -> list[str]:
        return await self._db.run_interaction(
            "get_prev_event_ids", _edges_txn, "event_edges", "prev_event_id", event_id
        )

    async def get_auth_event_ids(self, event_id: str) -> list[str]:
        return await self._db.run_interaction(
            "get_auth_event_ids", _edges_txn, "event_auth_edges", "auth_event_id", event_id
        )

    async def get_referenced(self, event_ids: Collection[str]) -> set[str]:
        """Those of `event_ids` listed in prev_events of an accepted, non-outlier stored event."""
        if not event_ids:
            return set()
        return await self._db.run_interaction("get_referenced", _referenced_txn, list(event_ids))

    async def get_forward_extremities(self, room_id: str) -> dict[str, int]:
        """The room's forward extremities, event ID -> depth."""
        return dict(
            await self._db.run_interaction("get_forward_extremities", _extremity_info_txn, room_id)
        )

    async def get_backward_extremities(self, room_id: str) -> list[str]:
        return await self._db.run_interaction(
            "get_backward_extremities",
            _select_column_txn,
            "SELECT event_id FROM event_backward_extremities WHERE room_id = ? ORDER BY event_id",
            (room_id,),
        )

    async def get_max_depth(self, room_id: str) -> int:
        """The greatest depth of the room's non-outlier events (0 if none)."""
        rows = await self._db.run_interaction(
            "get_max_depth",
            _select_column_txn,
            "SELECT MAX(depth) FROM events WHERE room_id = ? AND NOT outlier",
            (room_id,),
        )
        return int(rows[0]) if rows and rows[0] is not None else 0

    async def get_room_events_stream(
        self, room_id: str, after: int, up_to: int, limit: int = 100, *, backwards: bool = False
    ) -> list[StoredEvent]:
        """Accepted timeline events of the room with after < stream_ordering <= up_to.

        Oldest first, or newest first with `backwards` (then the newest `limit`).
        """
        ids = await self._db.run_interaction(
            "get_room_events_stream", _room_stream_txn, room_id, after, up_to, limit, backwards
        )
        stored = await self.get_stored_events(ids)
        return [stored[i] for i in ids]

    async def get_room_events_topological(
        self,
        room_id: str,
        start: tuple[int, int] | None,
        limit: int = 100,
        *,
        backwards: bool = True,
    ) -> list[StoredEvent]:
        """Accepted timeline events in topological order (depth, stream_ordering), for pagination.

        From just past `start` (exclusive; None: from the newest, or the oldest
        when going forwards), newest first when `backwards`.
        """
        ids = await self._db.run_interaction(
            "get_room_events_topological", _room_topological_txn, room_id, start, limit, backwards
        )
        stored = await self.get_stored_events(ids)
        return [stored[i] for i in ids]
