"""RoomBatch, and the one transaction that stores a batch of one room's events.

`persist_batch_txn` writes everything a batch changes: the events (with their
positions on the "events" stream), their prev_events and auth_events edges,
the state groups planned for them and the state before/after each, the room's
forward and backward extremities, its current state (with a row per change in
`current_state_delta_stream`) and memberships. Either all of it is committed
or none. What to write is decided by the caller
(`homeserver.handlers.room_batch`); this module only stores it.

The transaction first checks that the room's forward extremities are still the
ones the batch was computed from, and raises `StaleExtremitiesError` if not
(another writer got there first), so a lost race can never fork the DAG
silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from homeserver.storage.database import Transaction
from homeserver.storage.stores.rooms import (
    insert_membership_events_txn,
    store_room_txn,
    update_current_memberships_txn,
)
from homeserver.storage.stores.state import (
    StateGroup,
    StateKey,
    StateMap,
    chunks,
    insert_state_groups_txn,
    placeholders,
)
from homeserver.types.canonical_json import encode_canonical_json
from homeserver.types.events import EventBase

MEMBER = "m.room.member"


class StaleExtremitiesError(Exception):
    """The room's forward extremities changed since the batch was computed; recompute it."""


@dataclass(frozen=True, slots=True)
class ClientTxn:
    """A client's transaction ID for a local event, with its scope (see `event_txn_ids`)."""

    user_id: str
    scope: str
    """"d:<device_id>", or "t:<access token hash>" for requests without a device."""
    txn_id: str


@dataclass(frozen=True, slots=True)
class EventWrite:
    """One event of a batch: what to store for it."""

    event: EventBase
    outlier: bool = False
    rejected_reason: str | None = None
    state_before: int | None = None
    """State group (stored or provisional) of the state before; None for an empty state."""
    state_after: int | None = None
    """State group of the state after; None for an outlier (no state known)."""
    replaces_state: str | None = None
    """For an accepted state event: the event at its key in the state before."""
    txn: ClientTxn | None = None
    """The client transaction a local event was sent in."""
    soft_failed: bool = False
    """An accepted remote event that fails auth against the current state (`events.soft_failed`)."""
    backfilled: bool = False
    """Older history from /backfill: takes a negative stream position (EventStore.persist_batch)."""


@dataclass(frozen=True, slots=True)
class RoomBatch:
    """Everything one persist transaction writes for one room."""

    room_id: str
    events: Sequence[EventWrite]
    received_ts: int
    new_groups: Sequence[StateGroup] = ()
    """Planned groups with provisional (negative) IDs, in planning order."""
    old_extremities: frozenset[str] | None = None
    """The extremities the batch was computed from; None: don't touch extremities or state."""
    new_extremities: frozenset[str] = frozenset()
    current_state_changes: Mapping[StateKey, str | None] = field(default_factory=dict)
    current_state: StateMap | None = None
    """The new full current state (to cache), when it changed."""
    memberships: Mapping[str, str] = field(default_factory=dict)
    """event ID -> membership, for m.room.member events entering the current state."""
    new_room_version: str | None = None
    """Set when the room is new to us (joined from its state, not from its create event)."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    positions: dict[str, int]
    """event ID -> stream ordering."""
    groups: dict[int, int]
    """provisional state group ID -> stored ID."""


def _membership_of(event: EventBase) -> str | None:
    membership = event.content.get("membership")
    return membership if isinstance(membership, str) else None


def persist_batch_txn(
    txn: Transaction, batch: RoomBatch, positions: Sequence[int]
) -> dict[int, int]:
    room_id = batch.room_id
    if batch.old_extremities is not None:
        txn.execute("SELECT event_id FROM event_forward_extremities WHERE room_id = ?", (room_id,))
        if {row[0] for row in txn.fetchall()} != batch.old_extremities:
            raise StaleExtremitiesError(room_id)

    groups = insert_state_groups_txn(txn, batch.new_groups)

    def group(group_id: int | None) -> int | None:
        return None if group_id is None else groups.get(group_id, group_id)

    event_rows: list[tuple[object, ...]] = []
    edges: list[tuple[str, str]] = []
    auth_edges: list[tuple[str, str]] = []
    state_rows: list[tuple[str, int | None, int | None]] = []
    member_rows: list[tuple[str, str, str, str, str, int]] = []
    txn_rows: list[tuple[str, str, str, str, str, int]] = []
    for write, position in zip(batch.events, positions, strict=True):
        ev = write.event
        event_rows.append(
            (
                ev.event_id,
                ev.room_id,
                ev.room_version.identifier,
                ev.type,
                ev.state_key,
                ev.sender,
                ev.depth,
                position,
                ev.origin_server_ts,
                batch.received_ts,
                write.outlier,
                write.rejected_reason,
                ev.redacts,
                encode_canonical_json(ev.pdu_json()).decode("utf-8"),
                write.replaces_state,
            )
        )
        if write.txn is not None:
            t = write.txn
            txn_rows.append(
                (t.user_id, t.scope, ev.room_id, t.txn_id, ev.event_id, batch.received_ts)
            )
        edges.extend((ev.event_id, p) for p in dict.fromkeys(ev.prev_event_ids))
        auth_edges.extend((ev.event_id, a) for a in dict.fromkeys(ev.auth_event_ids))
        if not write.outlier:
            assert write.state_after is not None
            state_rows.append((ev.event_id, group(write.state_before), group(write.state_after)))
        membership = _membership_of(ev)
        if ev.type == MEMBER and ev.state_key is not None and membership is not None:
            if write.rejected_reason is None:
                member_rows.append(
                    (ev.event_id, ev.room_id, ev.state_key, ev.sender, membership, position)
                )
        if ev.type == "m.room.create" and ev.state_key == "" and write.rejected_reason is None:
            store_room_txn(txn, ev.room_id, ev.room_version.identifier, ev.sender, ev.event_id)

    txn.executemany(
        "INSERT INTO events (event_id, room_id, room_version, type, state_key, sender, depth,"
        " stream_ordering, origin_server_ts, received_ts, outlier, rejected_reason, redacts,"
        " json, replaces_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        event_rows,
    )
    txn.executemany(
        "INSERT INTO event_txn_ids (user_id, scope, room_id, txn_id, event_id, inserted_ts)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        txn_rows,
    )
    txn.executemany(
        "UPDATE events SET soft_failed = ? WHERE event_id = ?",
        [(True, w.event.event_id) for w in batch.events if w.soft_failed],
    )
    txn.executemany(
        "INSERT INTO event_edges (event_id, prev_event_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
        edges,
    )
    txn.executemany(
        "INSERT INTO event_auth_edges (event_id, auth_event_id) VALUES (?, ?)"
        " ON CONFLICT DO NOTHING",
        auth_edges,
    )
    txn.executemany(
        "INSERT INTO event_to_state_groups (event_id, state_group_before, state_group_after)"
        " VALUES (?, ?, ?)",
        state_rows,
    )
    insert_membership_events_txn(txn, member_rows)
    if batch.new_room_version is not None:
        store_room_txn(txn, room_id, batch.new_room_version, None, None)

    if batch.old_extremities is None:
        return groups
    _update_extremities_txn(txn, batch)
    _update_current_state_txn(txn, batch, max(positions))
    return groups


def _update_extremities_txn(txn: Transaction, batch: RoomBatch) -> None:
    room_id = batch.room_id
    assert batch.old_extremities is not None
    txn.executemany(
        "DELETE FROM event_forward_extremities WHERE room_id = ? AND event_id = ?",
        [(room_id, e) for e in batch.old_extremities - batch.new_extremities],
    )
    txn.executemany(
        "INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?)",
        [(room_id, e) for e in batch.new_extremities - batch.old_extremities],
    )
    # Backward extremities: prev_events we don't hold as non-outliers.
    in_timeline = [w.event for w in batch.events if not w.outlier]
    txn.executemany(
        "DELETE FROM event_backward_extremities WHERE room_id = ? AND event_id = ?",
        [(room_id, ev.event_id) for ev in in_timeline],
    )
    prevs = list({p for ev in in_timeline for p in ev.prev_event_ids})
    held: set[str] = set()
    for chunk in chunks(prevs):
        txn.execute(
            f"SELECT event_id FROM events WHERE event_id IN ({placeholders(len(chunk))})"
            " AND NOT outlier",
            chunk,
        )
        held.update(row[0] for row in txn.fetchall())
    txn.executemany(
        "INSERT INTO event_backward_extremities (room_id, event_id) VALUES (?, ?)"
        " ON CONFLICT DO NOTHING",
        [(room_id, p) for p in prevs if p not in held],
    )


def _update_current_state_txn(txn: Transaction, batch: RoomBatch, position: int) -> None:
    room_id = batch.room_id
    changes = batch.current_state_changes
    if not changes:
        return
    old: dict[StateKey, str] = {}
    keys = list(changes)
    for chunk in chunks(keys, 200):
        where = " OR ".join(["(type = ? AND state_key = ?)"] * len(chunk))
        txn.execute(
            "SELECT type, state_key, event_id FROM current_state_events"
            f" WHERE room_id = ? AND ({where})",
            [room_id, *(part for key in chunk for part in key)],
        )
        old.update({(t, k): e for t, k, e in txn.fetchall()})
    txn.executemany(
        "DELETE FROM current_state_events WHERE room_id = ? AND type = ? AND state_key = ?",
        [(room_id, t, k) for (t, k), e in changes.items() if e is None],
    )
    txn.executemany(
        "INSERT INTO current_state_events (room_id, type, state_key, event_id)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (room_id, type, state_key)"
        " DO UPDATE SET event_id = excluded.event_id",
        [(room_id, t, k, e) for (t, k), e in changes.items() if e is not None],
    )
    txn.executemany(
        "INSERT INTO current_state_delta_stream"
        " (stream_ordering, room_id, type, state_key, event_id, prev_event_id)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(position, room_id, t, k, e, old.get((t, k))) for (t, k), e in changes.items()],
    )
    members: dict[str, tuple[str, str] | None] = {}
    for (event_type, state_key), event_id in changes.items():
        if event_type != MEMBER:
            continue
        if event_id is None or event_id not in batch.memberships:
            members[state_key] = None
        else:
            members[state_key] = (batch.memberships[event_id], event_id)
    update_current_memberships_txn(txn, room_id, members, position)
