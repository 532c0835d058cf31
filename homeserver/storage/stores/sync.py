"""SyncStore: the reads /sync makes, batched over all of a user's rooms.

Each method is one transaction however many rooms it is asked about: a
per-room loop of index range reads (`events (room_id, stream_ordering)`,
`current_state_delta_stream (room_id, stream_ordering)`), so the cost
follows the rooms and events returned, not the size of their history.
Events themselves come from the events store's cache by ID.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.state import StateKey, chunks, placeholders


@dataclass(frozen=True, slots=True)
class StateDelta:
    """A change of a room's current state (a row of current_state_delta_stream)."""

    stream_ordering: int
    key: StateKey
    event_id: str | None
    """None: the key left the current state."""
    prev_event_id: str | None


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """One of the user's membership events (a row of room_memberships)."""

    room_id: str
    event_id: str
    membership: str
    stream_ordering: int


@dataclass(frozen=True, slots=True)
class MemberSummary:
    """What the room summary of /sync needs: member counts and the first members."""

    joined: int
    invited: int
    first_members: list[str]
    """Up to 5 joined or invited members by stream order, or else left and banned ones."""


def _recent_txn(
    txn: Transaction, ranges: Mapping[str, tuple[int, int]], limit: int
) -> dict[str, list[tuple[str, int]]]:
    result: dict[str, list[tuple[str, int]]] = {}
    for room_id, (after, up_to) in ranges.items():
        txn.execute(
            "SELECT event_id, stream_ordering FROM events WHERE room_id = ?"
            " AND stream_ordering > ? AND stream_ordering <= ?"
            " AND NOT outlier AND rejected_reason IS NULL AND NOT soft_failed"
            " ORDER BY stream_ordering DESC LIMIT ?",
            (room_id, after, up_to, limit),
        )
        result[room_id] = [(e, int(s)) for e, s in txn.fetchall()]
    return result


def _last_event_txn(txn: Transaction, positions: Mapping[str, int]) -> dict[str, str]:
    result: dict[str, str] = {}
    for room_id, position in positions.items():
        txn.execute(
            "SELECT event_id FROM events WHERE room_id = ? AND stream_ordering <= ?"
            " AND NOT outlier AND rejected_reason IS NULL AND NOT soft_failed"
            " ORDER BY stream_ordering DESC LIMIT 1",
            (room_id, position),
        )
        row = txn.fetchone()
        if row is not None:
            result[room_id] = row[0]
    return result


def _deltas_txn(
    txn: Transaction, ranges: Mapping[str, tuple[int, int]]
) -> dict[str, list[StateDelta]]:
    result: dict[str, list[StateDelta]] = {}
    for room_id, (after, up_to) in ranges.items():
        txn.execute(
            "SELECT stream_ordering, type, state_key, event_id, prev_event_id"
            " FROM current_state_delta_stream WHERE room_id = ?"
            " AND stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering",
            (room_id, after, up_to),
        )
        rows = txn.fetchall()
        if rows:
            result[room_id] = [StateDelta(int(s), (t, k), e, p) for s, t, k, e, p in rows]
    return result


def _membership_changes_txn(
    txn: Transaction, user_id: str, after: int, up_to: int
) -> list[MembershipChange]:
    txn.execute(
        "SELECT room_id, event_id, membership, stream_ordering FROM room_memberships"
        " WHERE user_id = ? AND stream_ordering > ? AND stream_ordering <= ?"
        " ORDER BY stream_ordering",
        (user_id, after, up_to),
    )
    return [MembershipChange(r, e, m, int(s)) for r, e, m, s in txn.fetchall()]


def _memberships_at_txn(
    txn: Transaction, user_id: str, room_ids: Collection[str], position: int
) -> dict[str, MembershipChange]:
    result: dict[str, MembershipChange] = {}
    for chunk in chunks(sorted(room_ids)):
        txn.execute(
            "SELECT room_id, event_id, membership, stream_ordering FROM room_memberships"
            f" WHERE user_id = ? AND room_id IN ({placeholders(len(chunk))})"
            " AND stream_ordering <= ?",
            (user_id, *chunk, position),
        )
        for room_id, event_id, membership, stream in txn.fetchall():
            if room_id not in result or int(stream) > result[room_id].stream_ordering:
                result[room_id] = MembershipChange(room_id, event_id, membership, int(stream))
    return result


def _ever_joined_txn(txn: Transaction, user_id: str, room_ids: Collection[str]) -> set[str]:
    joined: set[str] = set()
    for chunk in chunks(sorted(room_ids)):
        txn.execute(
            "SELECT DISTINCT room_id FROM room_memberships"
            f" WHERE user_id = ? AND membership = 'join' AND room_id IN ({placeholders(len(chunk))})",
            (user_id, *chunk),
        )
        joined.update(row[0] for row in txn.fetchall())
    return joined


def _member_summaries_txn(
    txn: Transaction, room_ids: Collection[str], user_id: str
) -> dict[str, MemberSummary]:
    result: dict[str, MemberSummary] = {}
    for room_id in room_ids:
        txn.execute(
            "SELECT membership, COUNT(*) FROM current_memberships WHERE room_id = ?"
            " GROUP BY membership",
            (room_id,),
        )
        counts = {m: int(n) for m, n in txn.fetchall()}
        first: list[str] = []
        for memberships in (("join", "invite"), ("leave", "ban")):
            txn.execute(
                "SELECT user_id FROM current_memberships WHERE room_id = ? AND user_id != ?"
                f" AND membership IN ({placeholders(len(memberships))})"
                " ORDER BY stream_ordering, user_id LIMIT 5",
                (room_id, user_id, *memberships),
            )
            first = [row[0] for row in txn.fetchall()]
            if first:
                break
        result[room_id] = MemberSummary(counts.get("join", 0), counts.get("invite", 0), first)
    return result


def _out_of_band_membership_txn(
    txn: Transaction,
    room_id: str,
    user_id: str,
    membership: str,
    event_id: str,
    stream_ordering: int,
) -> None:
    # Only over an older row: a membership the room's state later gave the
    # user (a join over federation) stays.
    txn.execute(
        "INSERT INTO current_memberships (room_id, user_id, membership, event_id, stream_ordering)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO UPDATE SET"
        " membership = excluded.membership, event_id = excluded.event_id,"
        " stream_ordering = excluded.stream_ordering"
        " WHERE current_memberships.stream_ordering < excluded.stream_ordering",
        (room_id, user_id, membership, event_id, stream_ordering),
    )


class SyncStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_out_of_band_membership(
        self, room_id: str, user_id: str, membership: str, event_id: str, stream_ordering: int
    ) -> None:
        """Make an outlier membership event (an invite from a room this server is not in)
        the user's membership of the room, as /sync reads memberships.

        Such an event enters no room state, so the events store records it only
        in `room_memberships`; this puts it in `current_memberships` too, unless
        a newer membership is there already.
        """
        await self._db.run_interaction(
            "sync_out_of_band_membership",
            _out_of_band_membership_txn,
            room_id,
            user_id,
            membership,
            event_id,
            stream_ordering,
        )

    async def get_recent_event_ids(
        self, ranges: Mapping[str, tuple[int, int]], limit: int
    ) -> dict[str, list[tuple[str, int]]]:
        """Per room: (event ID, stream ordering) of the newest `limit` accepted timeline
        events with after < stream_ordering <= up_to, newest first."""
        if not ranges:
            return {}
        return await self._db.run_interaction("sync_recent_events", _recent_txn, ranges, limit)

    async def get_last_event_ids(self, positions: Mapping[str, int]) -> dict[str, str]:
        """Per room: the last accepted timeline event at or before the position (rooms with none left out)."""
        if not positions:
            return {}
        return await self._db.run_interaction("sync_last_events", _last_event_txn, positions)

    async def get_state_deltas(
        self, ranges: Mapping[str, tuple[int, int]]
    ) -> dict[str, list[StateDelta]]:
        """Per room: the changes of its current state at positions in (after, up_to], in order."""
        if not ranges:
            return {}
        return await self._db.run_interaction("sync_state_deltas", _deltas_txn, ranges)

    async def get_membership_changes(
        self, user_id: str, after: int, up_to: int
    ) -> list[MembershipChange]:
        """The user's membership events stored at positions in (after, up_to], in order."""
        return await self._db.run_interaction(
            "sync_membership_changes", _membership_changes_txn, user_id, after, up_to
        )

    async def get_memberships_at(
        self, user_id: str, room_ids: Collection[str], position: int
    ) -> dict[str, MembershipChange]:
        """Per room: the user's last membership event at or before the position."""
        if not room_ids:
            return {}
        return await self._db.run_interaction(
            "sync_memberships_at", _memberships_at_txn, user_id, room_ids, position
        )

    async def get_rooms_ever_joined(self, user_id: str, room_ids: Collection[str]) -> set[str]:
        """Those of the rooms the user has ever joined."""
        if not room_ids:
            return set()
        return await self._db.run_interaction(
            "sync_rooms_ever_joined", _ever_joined_txn, user_id, room_ids
        )

    async def get_member_summaries(
        self, room_ids: Collection[str], user_id: str
    ) -> dict[str, MemberSummary]:
        """Per room: member counts and the first members other than `user_id` (room summaries)."""
        if not room_ids:
            return {}
        return await self._db.run_interaction(
            "sync_member_summaries", _member_summaries_txn, room_ids, user_id
        )
