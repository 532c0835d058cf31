"""RoomStatsStore: the one-row-per-room summaries the published room directory lists.

`room_stats` holds, for every room, what a directory entry shows (joined
member count, name, topic, avatar, canonical alias, join rule, history
visibility, guest access, room type), so that listing and searching thousands
of published rooms reads one row per room and never a room's state.

The summaries follow `current_state_delta_stream`: `room_stats_position` says
up to which "events" stream position every change of current state is
reflected, and it moves in the same transaction as the summaries it covers.
Reading what changed (`get_changed_rooms`) and the state to summarise
(`get_stats_inputs`) happen before that write, in other transactions; that
is safe because the state read is at least as new as the changes read, and
whatever changes later has a higher position and is summarised again. How a
summary is made from the state is the updater's business
(homeserver/handlers/room_stats.py).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.state import chunks, placeholders

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RoomStats:
    """What the published room directory shows of a room."""

    room_id: str
    joined_members: int
    name: str | None = None
    topic: str | None = None
    avatar: str | None = None
    canonical_alias: str | None = None
    join_rules: str | None = None
    history_visibility: str | None = None
    guest_access: str | None = None
    room_type: str | None = None


@dataclass(frozen=True, slots=True)
class StatsInputs:
    """The current state a room's summary is made from."""

    joined_members: int
    contents: Mapping[str, JsonDict]
    """Event type -> content of the current state event with that type and state key ""."""


@dataclass(frozen=True, slots=True)
class PublicRoomsQuery:
    """Which published rooms to list, and which page of them.

    The order is joined_members descending, then room_id ascending. `bound`
    is the (joined_members, room_id) of the room just outside the page: the
    page is the `limit` rooms after it (`forwards`) or before it.
    """

    listable_join_rules: Sequence[str]
    """A room is listed if its join rule is one of these, or it is world_readable."""
    search_term: str | None = None
    """Matched (case-folded, as a substring) against name, topic and canonical alias;
    a room ID matches only in full."""
    room_types: Sequence[str | None] | None = None
    """Only rooms of these types (None in the list: rooms without a type)."""
    bound: tuple[int, str] | None = None
    forwards: bool = True
    limit: int | None = None


SEARCH_SEPARATOR = "\n"

_COLUMNS = (
    "s.room_id, s.joined_members, s.name, s.topic, s.avatar, s.canonical_alias,"
    " s.join_rules, s.history_visibility, s.guest_access, s.room_type"
)


def search_text_of(stats: RoomStats) -> str:
    """The text generic_search_term is matched against: case-folded name, topic and alias."""
    parts = (stats.name, stats.topic, stats.canonical_alias)
    return SEARCH_SEPARATOR.join(p.casefold() for p in parts if p)


def _like_pattern(term: str) -> str:
    """A LIKE pattern matching `term` anywhere, with LIKE's wildcards in it taken literally."""
    escaped = term.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- following the state changes


def _position_txn(txn: Transaction) -> int:
    txn.execute("SELECT stream_ordering FROM room_stats_position")
    row = txn.fetchone()
    assert row is not None, "room_stats_position has its row from the migration"
    return int(row[0])


def _changed_rooms_txn(
    txn: Transaction, after: int, up_to: int, limit: int
) -> tuple[list[str], int]:
    txn.execute(
        "SELECT DISTINCT stream_ordering, room_id FROM current_state_delta_stream"
        " WHERE stream_ordering > ? AND stream_ordering <= ?"
        " ORDER BY stream_ordering LIMIT ?",
        (after, up_to, limit),
    )
    rows = [(int(pos), room_id) for pos, room_id in txn.fetchall()]
    if len(rows) < limit:
        return list(dict.fromkeys(r for _, r in rows)), up_to
    # The page may end inside a position: take the rest of that position too.
    reached = rows[-1][0]
    txn.execute(
        "SELECT DISTINCT room_id FROM current_state_delta_stream WHERE stream_ordering = ?",
        (reached,),
    )
    rooms = [r for _, r in rows] + [r for (r,) in txn.fetchall()]
    return list(dict.fromkeys(rooms)), reached


def _stats_inputs_txn(
    txn: Transaction, room_ids: Sequence[str], event_types: Sequence[str]
) -> dict[str, StatsInputs]:
    joined: dict[str, int] = {}
    contents: dict[str, dict[str, JsonDict]] = {}
    for chunk in chunks(room_ids):
        txn.execute(
            "SELECT room_id, COUNT(*) FROM current_memberships"
            f" WHERE room_id IN ({placeholders(len(chunk))}) AND membership = 'join'"
            " GROUP BY room_id",
            chunk,
        )
        joined.update((room_id, int(n)) for room_id, n in txn.fetchall())
        txn.execute(
            "SELECT c.room_id, c.type, e.json FROM current_state_events AS c"
            " JOIN events AS e ON e.event_id = c.event_id"
            f" WHERE c.room_id IN ({placeholders(len(chunk))}) AND c.state_key = ''"
            f" AND c.type IN ({placeholders(len(event_types))})",
            [*chunk, *event_types],
        )
        for room_id, event_type, event_json in txn.fetchall():
            content = json.loads(event_json).get("content")
            if isinstance(content, dict):
                contents.setdefault(room_id, {})[event_type] = content
    return {
        room_id: StatsInputs(joined.get(room_id, 0), contents.get(room_id, {}))
        for room_id in room_ids
    }


def _write_stats_txn(txn: Transaction, stats: Sequence[RoomStats], position: int) -> None:
    if stats:
        _upsert_stats_txn(txn, stats)
    # Never backwards: a stale writer must not make the next start skip changes.
    txn.execute(
        "UPDATE room_stats_position SET stream_ordering = ? WHERE stream_ordering < ?",
        (position, position),
    )


def _upsert_stats_txn(txn: Transaction, stats: Sequence[RoomStats]) -> None:
    txn.executemany(
        "INSERT INTO room_stats (room_id, joined_members, name, topic, avatar, canonical_alias,"
        " join_rules, history_visibility, guest_access, room_type, search_text)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (room_id) DO UPDATE SET joined_members = excluded.joined_members,"
        " name = excluded.name, topic = excluded.topic, avatar = excluded.avatar,"
        " canonical_alias = excluded.canonical_alias, join_rules = excluded.join_rules,"
        " history_visibility = excluded.history_visibility,"
        " guest_access = excluded.guest_access, room_type = excluded.room_type,"
        " search_text = excluded.search_text",
        [
            (
                s.room_id,
                s.joined_members,
                s.name,
                s.topic,
                s.avatar,
                s.canonical_alias,
                s.join_rules,
                s.history_visibility,
                s.guest_access,
                s.room_type,
                search_text_of(s),
            )
            for s in stats
        ],
    )


def _get_stats_txn(txn: Transaction, room_id: str) -> RoomStats | None:
    txn.execute(f"SELECT {_COLUMNS} FROM room_stats AS s WHERE s.room_id = ?", (room_id,))
    row = txn.fetchone()
    return None if row is None else _row_to_stats(row)


def _row_to_stats(row: tuple[Any, ...]) -> RoomStats:
    room_id, joined, *rest = row
    return RoomStats(room_id, int(joined), *rest)


# -- listing published rooms


def _public_rooms_where(query: PublicRoomsQuery) -> tuple[str, list[Any]]:
    """The FROM and WHERE shared by the listing and the count (without the page bound)."""
    rules = list(query.listable_join_rules)
    sql = (
        " FROM published_rooms AS p JOIN room_stats AS s ON s.room_id = p.room_id"
        " WHERE s.joined_members > 0"
        f" AND (s.join_rules IN ({placeholders(len(rules))})"
        " OR s.history_visibility = 'world_readable')"
    )
    args: list[Any] = list(rules)
    if query.search_term:
        sql += " AND (s.search_text LIKE ? ESCAPE '\\' OR s.room_id = ?)"
        args += [_like_pattern(query.search_term), query.search_term]
    if query.room_types:
        types = [t for t in query.room_types if t is not None]
        clauses = []
        if types:
            clauses.append(f"s.room_type IN ({placeholders(len(types))})")
            args += types
        if len(types) < len(query.room_types):
            clauses.append("s.room_type IS NULL")
        sql += f" AND ({' OR '.join(clauses)})"
    return sql, args


def _public_rooms_txn(txn: Transaction, query: PublicRoomsQuery) -> list[RoomStats]:
    sql, args = _public_rooms_where(query)
    if query.bound is not None:
        joined, room_id = query.bound
        if query.forwards:
            sql += " AND (s.joined_members < ? OR (s.joined_members = ? AND s.room_id > ?))"
        else:
            sql += " AND (s.joined_members > ? OR (s.joined_members = ? AND s.room_id < ?))"
        args += [joined, joined, room_id]
    if query.forwards:
        sql += " ORDER BY s.joined_members DESC, s.room_id ASC"
    else:
        sql += " ORDER BY s.joined_members ASC, s.room_id DESC"
    if query.limit is not None:
        sql += " LIMIT ?"
        args.append(query.limit)
    txn.execute(f"SELECT {_COLUMNS}{sql}", args)
    rooms = [_row_to_stats(row) for row in txn.fetchall()]
    if not query.forwards:
        rooms.reverse()
    return rooms


def _count_public_rooms_txn(txn: Transaction, query: PublicRoomsQuery) -> int:
    sql, args = _public_rooms_where(query)
    txn.execute(f"SELECT COUNT(*){sql}", args)
    row = txn.fetchone()
    return int(row[0]) if row is not None else 0


class RoomStatsStore:
    """Room summaries for the directory, and how far they follow the state changes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_position(self) -> int:
        """The "events" stream position up to which every state change is summarised."""
        return await self._db.run_interaction("get_room_stats_position", _position_txn)

    async def get_changed_rooms(
        self, after: int, up_to: int, limit: int = 1000
    ) -> tuple[list[str], int]:
        """Rooms whose current state changed at positions in (after, up_to], and how far that got.

        At most about `limit` positions at once: the second value is `up_to`
        when every change up to it is in the list, else the position reached.
        """
        return await self._db.run_interaction(
            "get_room_stats_changes", _changed_rooms_txn, after, up_to, limit
        )

    async def get_stats_inputs(
        self, room_ids: Collection[str], event_types: Collection[str]
    ) -> dict[str, StatsInputs]:
        """For each room: its joined member count and the contents of these state events."""
        if not room_ids:
            return {}
        return await self._db.run_interaction(
            "get_room_stats_inputs",
            _stats_inputs_txn,
            list(dict.fromkeys(room_ids)),
            list(event_types),
        )

    async def write_stats(self, stats: Sequence[RoomStats], position: int) -> None:
        """Store these summaries and record that every change up to `position` is summarised."""
        await self._db.run_interaction("write_room_stats", _write_stats_txn, list(stats), position)

    async def get_stats(self, room_id: str) -> RoomStats | None:
        return await self._db.run_interaction("get_room_stats", _get_stats_txn, room_id)

    async def get_public_rooms(self, query: PublicRoomsQuery) -> list[RoomStats]:
        """One page of the published rooms the query selects, in directory order."""
        return await self._db.run_interaction("get_public_rooms", _public_rooms_txn, query)

    async def count_public_rooms(self, query: PublicRoomsQuery) -> int:
        """How many published rooms the query selects (its bound and limit aside)."""
        return await self._db.run_interaction("count_public_rooms", _count_public_rooms_txn, query)
