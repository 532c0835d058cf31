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
from homeserver.storage.stores.event_batch import (
    BatchResult,
    ClientTxn,
    RoomBatch,
    persist_batch_txn,
)
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
    replaces_state: str | None = None
    """For an accepted state event: the event it replaced at its key (None if the key was new)."""

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def topological_ordering(self) -> tuple[int, int]:
        """Pagination order within the room: (depth, stream_ordering)."""
        return (self.event.depth, self.stream_ordering)


# -- reads


_EVENT_COLUMNS = (
    "event_id, room_version, stream_ordering, outlier, rejected_reason, json, replaces_state"
)


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
    event_id, version, stream_ordering, outlier, rejected_reason, raw, replaces = row
    room_version = KNOWN_ROOM_VERSIONS[str(version)]
    event = make_event(json.loads(str(raw)), room_version, event_id=str(event_id))
    return StoredEvent(
        event,
        int(stream_ordering),  # type: ignore[call-overload]
        bool(outlier),
        rejected_reason,  # type: ignore[arg-type]
        replaces,  # type: ignore[arg-type]
    )


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
            " AND NOT ev.outlier AND ev.rejected_reason IS NULL AND NOT ev.soft_failed",
            chunk,
        )
        found.update(row[0] for row in txn.fetchall())
    return found


def _event_ids_for_txns_txn(
    txn: Transaction, room_id: str, txns: Sequence[ClientTxn]
) -> dict[ClientTxn, str]:
    found: dict[ClientTxn, str] = {}
    for t in txns:
        txn.execute(
            "SELECT event_id FROM event_txn_ids"
            " WHERE user_id = ? AND scope = ? AND room_id = ? AND txn_id = ?",
            (t.user_id, t.scope, room_id, t.txn_id),
        )
        row = txn.fetchone()
        if row is not None:
            found[t] = row[0]
    return found


def _txn_ids_for_events_txn(txn: Transaction, event_ids: Sequence[str]) -> dict[str, ClientTxn]:
    found: dict[str, ClientTxn] = {}
    for chunk in chunks(event_ids):
        txn.execute(
            "SELECT event_id, user_id, scope, txn_id FROM event_txn_ids"
            f" WHERE event_id IN ({placeholders(len(chunk))})",
            chunk,
        )
        for event_id, user_id, scope, txn_id in txn.fetchall():
            found[event_id] = ClientTxn(user_id, scope, txn_id)
    return found


def _delete_old_txn_ids_txn(txn: Transaction, before_ts: int) -> int:
    txn.execute("DELETE FROM event_txn_ids WHERE inserted_ts < ?", (before_ts,))
    return int(txn.rowcount)


def _merge_positions(batch: RoomBatch, live: Sequence[int], backfill: Sequence[int]) -> list[int]:
    """Each event's position, in batch order: live events take the stream's positions,
    backfilled ones the negative positions, going down in the order given."""
    live_iter, backfill_iter = iter(live), iter(backfill)
    return [next(backfill_iter) if w.backfilled else next(live_iter) for w in batch.events]


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
        " AND stream_ordering <= ? AND NOT outlier AND rejected_reason IS NULL AND NOT soft_failed"
        f" ORDER BY stream_ordering {'DESC' if backwards else 'ASC'} LIMIT ?",
        (room_id, after, up_to, limit),
    )
    return [row[0] for row in txn.fetchall()]


def _room_topological_txn(
    txn: Transaction, room_id: str, start: tuple[int, int] | None, limit: int, backwards: bool
) -> list[str]:
    sql = (
        "SELECT event_id FROM events WHERE room_id = ? AND NOT outlier AND rejected_reason IS NULL AND NOT soft_failed"
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
        self._lowest_position: int | None = None

    # -- writing

    async def persist_batch(self, batch: RoomBatch) -> BatchResult:
        """Store one room's batch in one transaction; returns positions and stored group IDs."""
        if not batch.events:
            raise ValueError("empty batch")
        live = sum(1 for w in batch.events if not w.backfilled)
        backfill = await self._backfill_positions(len(batch.events) - live)
        if live:
            async with self.stream.get_next_mult(live) as live_positions:
                positions = _merge_positions(batch, live_positions, backfill)
                groups = await self._db.run_interaction(
                    "persist_events", persist_batch_txn, batch, positions
                )
        else:
            positions = _merge_positions(batch, [], backfill)
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
                StoredEvent(
                    write.event,
                    position,
                    write.outlier,
                    write.rejected_reason,
                    write.replaces_state,
                ),
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

    async def get_event_ids_for_txns(
        self, room_id: str, txns: Collection[ClientTxn]
    ) -> dict[ClientTxn, str]:
        """The events already sent in these client transactions (in this room)."""
        return await self._db.run_interaction(
            "get_event_ids_for_txns", _event_ids_for_txns_txn, room_id, list(txns)
        )

    async def get_txn_ids_for_events(self, event_ids: Collection[str]) -> dict[str, ClientTxn]:
        """The client transaction each of these local events was sent in, where known."""
        if not event_ids:
            return {}
        return await self._db.run_interaction(
            "get_txn_ids_for_events", _txn_ids_for_events_txn, list(event_ids)
        )

    async def delete_old_txn_ids(self, before_ts: int) -> int:
        """Forget transaction IDs recorded before `before_ts`; how many were deleted."""
        return await self._db.run_interaction(
            "delete_old_txn_ids", _delete_old_txn_ids_txn, before_ts
        )

    async def _backfill_positions(self, n: int) -> list[int]:
        """`n` new positions below every stored event, for backfilled history.

        Counted in memory from the lowest position stored, as Synapse's
        backfill stream goes down from 0: this relies on the event persister
        being the one writer of events (see homeserver.handlers.event_persistence).
        """
        if n == 0:
            return []
        if self._lowest_position is None:
            rows = await self._db.run_interaction(
                "get_lowest_position",
                _select_column_txn,
                "SELECT MIN(stream_ordering) FROM events",
                (),
            )
            lowest = int(rows[0]) if rows and rows[0] is not None else 0
            if self._lowest_position is None:  # no other call got there while we read
                self._lowest_position = min(lowest, 0)
        first = self._lowest_position - 1
        self._lowest_position -= n
        return list(range(first, first - n, -1))

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
