"""FederationSenderStore: what the federation sender remembers across restarts.

- `federation_sender_positions`: how far along the "events" stream the sender
  has assigned our events to destinations. It moves in the same transaction
  that records those assignments, so after a crash the sender resumes exactly
  where it stopped.
- `destination_rooms`: per destination and room, the newest of our events
  the destination should have.
- `destinations`: per destination, its backoff timings and
  `last_successful_stream_ordering`; the rows of `destination_rooms` above it
  are owed to the destination (catch-up sends them).
- `federation_relayed_events`: events of other servers accepted through
  send_join/send_leave/send_knock, which we send on their origin's behalf.
  A row is written before its event is persisted and removed when the event's
  destinations are recorded.

Reads of the events stream (`get_new_events`) and of membership events
(`get_memberships`) are here too: they are the sender's own views of the
`events` and `room_memberships` tables, reduced to the columns it needs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.state import chunks, placeholders


@dataclass(frozen=True, slots=True)
class RetryTimings:
    """Where a destination stands: when it last failed and how long to leave it alone.

    (The schedule that fills these in is homeserver/federation/backoff.py.)
    """

    retry_last_ts: int = 0
    """When the last failed attempt was (ms); 0 if the last attempt succeeded."""
    retry_interval: int = 0
    """How long after retry_last_ts to wait (ms); 0 when not backing off."""
    failure_ts: int | None = None
    """When the current run of failures began (ms); None while the destination answers."""

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed."""
        return self.retry_interval > 0

    def retry_at(self) -> int:
        """The first moment (ms) the destination may be tried again."""
        return self.retry_last_ts + self.retry_interval

    def is_backing_off(self, now_ms: int) -> bool:
        return now_ms < self.retry_at()


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An accepted, non-outlier event, as the sender first sees it on the events stream."""

    event_id: str
    room_id: str
    sender: str
    stream_ordering: int


@dataclass(frozen=True, slots=True)
class DestinationRoom:
    """The newest of our events in a room that a destination should have."""

    destination: str
    room_id: str
    stream_ordering: int
    event_id: str


@dataclass(frozen=True, slots=True)
class Destination:
    destination: str
    timings: RetryTimings
    last_successful_stream_ordering: int


def _get_position_txn(txn: Transaction, instance_name: str) -> int | None:
    txn.execute(
        "SELECT stream_ordering FROM federation_sender_positions WHERE instance_name = ?",
        (instance_name,),
    )
    row = txn.fetchone()
    return None if row is None else int(row[0])


def _init_position_txn(txn: Transaction, instance_name: str, position: int) -> int:
    txn.execute(
        "INSERT INTO federation_sender_positions (instance_name, stream_ordering) VALUES (?, ?)"
        " ON CONFLICT (instance_name) DO NOTHING",
        (instance_name, position),
    )
    stored = _get_position_txn(txn, instance_name)
    assert stored is not None
    return stored


def _set_position_txn(txn: Transaction, instance_name: str, position: int) -> None:
    txn.execute(
        "UPDATE federation_sender_positions SET stream_ordering = ? WHERE instance_name = ?",
        (position, instance_name),
    )


def _get_new_events_txn(txn: Transaction, after: int, up_to: int, limit: int) -> list[NewEvent]:
    txn.execute(
        "SELECT event_id, room_id, sender, stream_ordering FROM events"
        " WHERE stream_ordering > ? AND stream_ordering <= ?"
        " AND NOT outlier AND rejected_reason IS NULL"
        " ORDER BY stream_ordering LIMIT ?",
        (after, up_to, limit),
    )
    return [NewEvent(e, r, s, int(o)) for e, r, s, o in txn.fetchall()]


def _get_memberships_txn(txn: Transaction, event_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in chunks(event_ids):
        txn.execute(
            "SELECT event_id, membership FROM room_memberships"
            f" WHERE event_id IN ({placeholders(len(chunk))})",
            chunk,
        )
        found.update((e, m) for e, m in txn.fetchall())
    return found


def _get_relayed_txn(txn: Transaction, event_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in chunks(event_ids):
        txn.execute(
            "SELECT event_id, origin FROM federation_relayed_events"
            f" WHERE event_id IN ({placeholders(len(chunk))})",
            chunk,
        )
        found.update((e, o) for e, o in txn.fetchall())
    return found


def _add_relayed_txn(txn: Transaction, event_id: str, origin: str) -> None:
    txn.execute(
        "INSERT INTO federation_relayed_events (event_id, origin) VALUES (?, ?)"
        " ON CONFLICT (event_id) DO NOTHING",
        (event_id, origin),
    )


def _delete_relayed_txn(txn: Transaction, event_ids: Sequence[str]) -> None:
    for chunk in chunks(event_ids):
        txn.execute(
            f"DELETE FROM federation_relayed_events WHERE event_id IN ({placeholders(len(chunk))})",
            chunk,
        )


def _record_txn(
    txn: Transaction,
    instance_name: str,
    rows: Sequence[DestinationRoom],
    first: Mapping[str, int],
    position: int,
    relayed: Sequence[str],
) -> None:
    # A destination seen for the first time is owed exactly the events recorded now.
    txn.executemany(
        "INSERT INTO destinations (destination, last_successful_stream_ordering) VALUES (?, ?)"
        " ON CONFLICT (destination) DO NOTHING",
        [(d, s - 1) for d, s in first.items()],
    )
    txn.executemany(
        "INSERT INTO destination_rooms (destination, room_id, stream_ordering, event_id)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (destination, room_id) DO UPDATE SET"
        " stream_ordering = excluded.stream_ordering, event_id = excluded.event_id"
        " WHERE excluded.stream_ordering > destination_rooms.stream_ordering",
        [(r.destination, r.room_id, r.stream_ordering, r.event_id) for r in rows],
    )
    _delete_relayed_txn(txn, relayed)
    txn.execute(
        "UPDATE federation_sender_positions SET stream_ordering = ? WHERE instance_name = ?",
        (position, instance_name),
    )


_DESTINATION_COLUMNS = (
    "destination, retry_last_ts, retry_interval, failure_ts, last_successful_stream_ordering"
)


def _row_to_destination(row: tuple[object, ...]) -> Destination:
    destination, last_ts, interval, failure_ts, last_successful = row
    return Destination(
        str(destination),
        RetryTimings(
            int(last_ts),  # type: ignore[call-overload]
            int(interval),  # type: ignore[call-overload]
            None if failure_ts is None else int(failure_ts),  # type: ignore[call-overload]
        ),
        int(last_successful),  # type: ignore[call-overload]
    )


def _get_destination_txn(txn: Transaction, destination: str) -> Destination | None:
    txn.execute(
        f"SELECT {_DESTINATION_COLUMNS} FROM destinations WHERE destination = ?", (destination,)
    )
    row = txn.fetchone()
    return None if row is None else _row_to_destination(row)


def _set_timings_txn(
    txn: Transaction, destination: str, timings: RetryTimings, position_if_new: int
) -> None:
    txn.execute(
        "INSERT INTO destinations"
        " (destination, retry_last_ts, retry_interval, failure_ts, last_successful_stream_ordering)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (destination) DO UPDATE SET"
        " retry_last_ts = excluded.retry_last_ts, retry_interval = excluded.retry_interval,"
        " failure_ts = excluded.failure_ts",
        (
            destination,
            timings.retry_last_ts,
            timings.retry_interval,
            timings.failure_ts,
            position_if_new,
        ),
    )


def _set_last_successful_txn(txn: Transaction, destination: str, stream_ordering: int) -> None:
    txn.execute(
        "UPDATE destinations SET last_successful_stream_ordering = ?"
        " WHERE destination = ? AND last_successful_stream_ordering < ?",
        (stream_ordering, destination, stream_ordering),
    )


def _get_owed_rooms_txn(
    txn: Transaction, destination: str, after: int, before: int | None, limit: int
) -> list[DestinationRoom]:
    sql = (
        "SELECT destination, room_id, stream_ordering, event_id FROM destination_rooms"
        " WHERE destination = ? AND stream_ordering > ?"
    )
    args: list[object] = [destination, after]
    if before is not None:
        sql += " AND stream_ordering < ?"
        args.append(before)
    txn.execute(sql + " ORDER BY stream_ordering LIMIT ?", [*args, limit])
    return [DestinationRoom(d, r, int(s), e) for d, r, s, e in txn.fetchall()]


def _get_owed_destinations_txn(txn: Transaction, now_ms: int, after: str, limit: int) -> list[str]:
    txn.execute(
        "SELECT d.destination FROM destinations d"
        " WHERE d.destination > ? AND d.retry_last_ts + d.retry_interval <= ?"
        " AND EXISTS (SELECT 1 FROM destination_rooms r WHERE r.destination = d.destination"
        " AND r.stream_ordering > d.last_successful_stream_ordering)"
        " ORDER BY d.destination LIMIT ?",
        (after, now_ms, limit),
    )
    return [row[0] for row in txn.fetchall()]


def _get_failing_txn(txn: Transaction) -> list[str]:
    txn.execute("SELECT destination FROM destinations WHERE retry_interval > 0")
    return [row[0] for row in txn.fetchall()]


class FederationSenderStore:
    """The federation sender's tables (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- the sender's position on the events stream

    async def get_position(self, instance_name: str) -> int | None:
        return await self._db.run_interaction(
            "federation_sender_get_position", _get_position_txn, instance_name
        )

    async def init_position(self, instance_name: str, position: int) -> int:
        """Start at `position` unless a position is already stored; the stored position."""
        return await self._db.run_interaction(
            "federation_sender_init_position", _init_position_txn, instance_name, position
        )

    async def set_position(self, instance_name: str, position: int) -> None:
        """Move the position without recording anything (the events had no destinations)."""
        await self._db.run_interaction(
            "federation_sender_set_position", _set_position_txn, instance_name, position
        )

    async def get_new_events(self, after: int, up_to: int, limit: int) -> list[NewEvent]:
        """Accepted, non-outlier events with after < stream_ordering <= up_to, oldest first."""
        return await self._db.run_interaction(
            "federation_sender_get_new_events", _get_new_events_txn, after, up_to, limit
        )

    async def get_memberships(self, event_ids: Collection[str]) -> dict[str, str]:
        """m.room.member event ID -> its membership, for the accepted ones among `event_ids`."""
        if not event_ids:
            return {}
        return await self._db.run_interaction(
            "federation_sender_get_memberships", _get_memberships_txn, list(event_ids)
        )

    async def get_relayed(self, event_ids: Collection[str]) -> dict[str, str]:
        """Event ID -> origin, for the events among `event_ids` we are to relay."""
        if not event_ids:
            return {}
        return await self._db.run_interaction(
            "federation_sender_get_relayed", _get_relayed_txn, list(event_ids)
        )

    async def add_relayed(self, event_id: str, origin: str) -> None:
        """Mark an event (about to be persisted) as ours to send on `origin`'s behalf."""
        await self._db.run_interaction(
            "federation_sender_add_relayed", _add_relayed_txn, event_id, origin
        )

    async def delete_relayed(self, event_ids: Collection[str]) -> None:
        """Unmark events (their persisting failed, or they were handled)."""
        if event_ids:
            await self._db.run_interaction(
                "federation_sender_delete_relayed", _delete_relayed_txn, list(event_ids)
            )

    async def record(
        self,
        instance_name: str,
        rows: Sequence[DestinationRoom],
        position: int,
        *,
        relayed: Collection[str] = (),
    ) -> None:
        """Record what destinations are owed, and move the sender's position, in one transaction.

        A (destination, room) row only ever moves forward, to a newer event.
        A destination new to the table starts owed exactly its rows here.
        `relayed` events, now recorded, stop being marked as to relay.
        """
        newest: dict[tuple[str, str], DestinationRoom] = {}
        first: dict[str, int] = {}
        for row in rows:
            key = (row.destination, row.room_id)
            if key not in newest or newest[key].stream_ordering < row.stream_ordering:
                newest[key] = row
            first[row.destination] = min(
                first.get(row.destination, row.stream_ordering), row.stream_ordering
            )
        await self._db.run_interaction(
            "federation_sender_record",
            _record_txn,
            instance_name,
            list(newest.values()),
            first,
            position,
            list(relayed),
        )

    # -- destinations

    async def get_destination(self, destination: str) -> Destination | None:
        return await self._db.run_interaction(
            "federation_sender_get_destination", _get_destination_txn, destination
        )

    async def set_retry_timings(
        self, destination: str, timings: RetryTimings, *, position_if_new: int
    ) -> None:
        """Store the destination's backoff; a new destination row starts owed nothing
        after `position_if_new`."""
        await self._db.run_interaction(
            "federation_sender_set_retry_timings",
            _set_timings_txn,
            destination,
            timings,
            position_if_new,
        )

    async def set_last_successful_stream_ordering(
        self, destination: str, stream_ordering: int
    ) -> None:
        """Mark everything owed up to `stream_ordering` as delivered (never moves back)."""
        await self._db.run_interaction(
            "federation_sender_set_last_successful",
            _set_last_successful_txn,
            destination,
            stream_ordering,
        )

    async def get_owed_rooms(
        self, destination: str, after: int, *, before: int | None = None, limit: int = 50
    ) -> list[DestinationRoom]:
        """The destination's rows with after < stream_ordering (< before), oldest first."""
        return await self._db.run_interaction(
            "federation_sender_get_owed_rooms",
            _get_owed_rooms_txn,
            destination,
            after,
            before,
            limit,
        )

    async def get_owed_destinations(
        self, now_ms: int, *, after: str = "", limit: int = 100
    ) -> list[str]:
        """Destinations owed events and not backed off at `now_ms`, by name, after `after`."""
        return await self._db.run_interaction(
            "federation_sender_get_owed_destinations",
            _get_owed_destinations_txn,
            now_ms,
            after,
            limit,
        )

    async def get_failing_destinations(self) -> list[str]:
        """Destinations whose last attempt failed (being backed off, or due for a retry)."""
        return await self._db.run_interaction("federation_sender_get_failing", _get_failing_txn)
