"""RoomStore: the rooms we know and their memberships.

`rooms` records each room's version (the m.room.create event decides it).
Memberships come in two forms, both written by the events store in the
transaction that persists the events (the `_txn` functions below):

- `room_memberships`: every accepted m.room.member event, outliers included
  (an invite over federation arrives as an outlier), for a user's history;
- `current_memberships`: the m.room.member entries of each room's current
  state, with the membership pulled out so that "members of a room" and
  "rooms of a user" are index lookups.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction
from homeserver.storage.lru import LruCache
from homeserver.storage.stores.state import chunks, placeholders


@dataclass(frozen=True, slots=True)
class RoomInfo:
    room_id: str
    room_version: str
    creator: str | None
    create_event_id: str | None


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's membership in a room's current state."""

    room_id: str
    user_id: str
    membership: str
    event_id: str
    stream_ordering: int


# -- transaction functions the events store composes


def store_room_txn(
    txn: Transaction,
    room_id: str,
    room_version: str,
    creator: str | None,
    create_event_id: str | None,
) -> None:
    """Record a room; fills in the creator if the room was known without its create event."""
    txn.execute(
        "INSERT INTO rooms (room_id, room_version, creator, create_event_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (room_id) DO UPDATE SET"
        " creator = COALESCE(rooms.creator, excluded.creator),"
        " create_event_id = COALESCE(rooms.create_event_id, excluded.create_event_id)",
        (room_id, room_version, creator, create_event_id),
    )


def insert_membership_events_txn(
    txn: Transaction, rows: Iterable[tuple[str, str, str, str, str, int]]
) -> None:
    """Rows of (event_id, room_id, user_id, sender, membership, stream_ordering)."""
    txn.executemany(
        "INSERT INTO room_memberships"
        " (event_id, room_id, user_id, sender, membership, stream_ordering)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
        rows,
    )


def update_current_memberships_txn(
    txn: Transaction,
    room_id: str,
    changes: Mapping[str, tuple[str, str] | None],
    stream_ordering: int,
) -> None:
    """Apply changes of current state: user_id -> (membership, event_id), or None if gone."""
    gone = [(room_id, user) for user, change in changes.items() if change is None]
    if gone:
        txn.executemany("DELETE FROM current_memberships WHERE room_id = ? AND user_id = ?", gone)
    rows = [
        (room_id, user, change[0], change[1], stream_ordering)
        for user, change in changes.items()
        if change is not None
    ]
    if rows:
        txn.executemany(
            "INSERT INTO current_memberships"
            " (room_id, user_id, membership, event_id, stream_ordering)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO UPDATE SET"
            " membership = excluded.membership, event_id = excluded.event_id,"
            " stream_ordering = excluded.stream_ordering",
            rows,
        )


# -- reads


def _get_room_txn(txn: Transaction, room_id: str) -> RoomInfo | None:
    txn.execute(
        "SELECT room_id, room_version, creator, create_event_id FROM rooms WHERE room_id = ?",
        (room_id,),
    )
    row = txn.fetchone()
    return None if row is None else RoomInfo(*row)


def _memberships_txn(
    txn: Transaction, column: str, value: str, memberships: Collection[str] | None
) -> list[Membership]:
    sql = (
        "SELECT room_id, user_id, membership, event_id, stream_ordering"
        f" FROM current_memberships WHERE {column} = ?"
    )
    args: list[str] = [value]
    if memberships is not None:
        sql += f" AND membership IN ({placeholders(len(memberships))})"
        args.extend(memberships)
    txn.execute(sql + " ORDER BY room_id, user_id", args)
    return [Membership(r, u, m, e, int(s)) for r, u, m, e, s in txn.fetchall()]


def _membership_txn(txn: Transaction, room_id: str, user_id: str) -> Membership | None:
    txn.execute(
        "SELECT room_id, user_id, membership, event_id, stream_ordering"
        " FROM current_memberships WHERE room_id = ? AND user_id = ?",
        (room_id, user_id),
    )
    row = txn.fetchone()
    return None if row is None else Membership(row[0], row[1], row[2], row[3], int(row[4]))


def _membership_history_txn(
    txn: Transaction, room_id: str, user_id: str
) -> list[tuple[str, str, int]]:
    txn.execute(
        "SELECT event_id, membership, stream_ordering FROM room_memberships"
        " WHERE room_id = ? AND user_id = ? ORDER BY stream_ordering",
        (room_id, user_id),
    )
    return [(e, m, int(s)) for e, m, s in txn.fetchall()]


def _membership_histories_txn(
    txn: Transaction, room_ids: Sequence[str], user_id: str
) -> dict[str, list[tuple[str, str, int]]]:
    histories: dict[str, list[tuple[str, str, int]]] = {room_id: [] for room_id in room_ids}
    for chunk in chunks(room_ids):
        txn.execute(
            "SELECT room_id, event_id, membership, stream_ordering FROM room_memberships"
            f" WHERE user_id = ? AND room_id IN ({placeholders(len(chunk))})"
            " ORDER BY stream_ordering",
            (user_id, *chunk),
        )
        for room_id, event_id, membership, stream_ordering in txn.fetchall():
            histories[room_id].append((event_id, membership, int(stream_ordering)))
    return histories


class RoomStore:
    """Rooms and memberships; reads only (writes go through the events store)."""

    def __init__(self, db: Database, *, room_cache_size: int = 10_000) -> None:
        self._db = db
        self._rooms: LruCache[str, RoomInfo] = LruCache(room_cache_size)

    async def get_room(self, room_id: str) -> RoomInfo | None:
        room = self._rooms.get(room_id)
        if room is None:
            room = await self._db.run_interaction("get_room", _get_room_txn, room_id)
            if room is not None and room.creator is not None:
                self._rooms.set(room_id, room)  # complete rows never change
        return room

    async def get_room_version(self, room_id: str) -> str | None:
        room = await self.get_room(room_id)
        return None if room is None else room.room_version

    async def get_members(
        self, room_id: str, memberships: Collection[str] | None = ("join",)
    ) -> list[Membership]:
        """Users whose current membership in the room is one of `memberships` (None: any)."""
        return await self._db.run_interaction(
            "get_members", _memberships_txn, "room_id", room_id, memberships
        )

    async def get_rooms_for_user(
        self, user_id: str, memberships: Collection[str] | None = ("join",)
    ) -> list[Membership]:
        """Rooms where the user's current membership is one of `memberships` (None: any)."""
        return await self._db.run_interaction(
            "get_rooms_for_user", _memberships_txn, "user_id", user_id, memberships
        )

    async def get_membership(self, room_id: str, user_id: str) -> Membership | None:
        """The user's membership in the room's current state, if any."""
        return await self._db.run_interaction("get_membership", _membership_txn, room_id, user_id)

    async def get_membership_history(
        self, room_id: str, user_id: str
    ) -> list[tuple[str, str, int]]:
        """(event_id, membership, stream_ordering) of each membership event of the user, oldest first."""
        return await self._db.run_interaction(
            "get_membership_history", _membership_history_txn, room_id, user_id
        )

    async def get_membership_histories(
        self, room_ids: Collection[str], user_id: str
    ) -> dict[str, list[tuple[str, str, int]]]:
        """`get_membership_history` of several rooms in one read: room ID -> history."""
        if not room_ids:
            return {}
        return await self._db.run_interaction(
            "get_membership_histories", _membership_histories_txn, list(room_ids), user_id
        )
