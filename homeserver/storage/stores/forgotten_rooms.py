"""ForgottenRoomStore: which rooms each user has forgotten (POST /rooms/{roomId}/forget).

A room is forgotten while the user's current membership (current_memberships)
is still the leave or ban event that was current when they forgot it; any
later membership event of theirs (a re-join, an invite, a knock) ends it, as
the spec's "Leaving rooms" asks. So nothing has to clear a row when the
membership changes, and a row whose event is no longer current means nothing.
"""

from __future__ import annotations

from homeserver.storage.database import Database, Transaction

# The memberships a user has left a room with; only these rooms can be forgotten.
DEPARTED = ("leave", "ban")


def _forget_txn(txn: Transaction, user_id: str, room_id: str) -> str | None:
    """Forget the room if the user has left it; their current membership either way (None: none)."""
    txn.execute(
        "SELECT membership, event_id FROM current_memberships WHERE room_id = ? AND user_id = ?",
        (room_id, user_id),
    )
    row = txn.fetchone()
    if row is None:
        return None
    membership, event_id = row
    if membership in DEPARTED:
        txn.execute(
            "INSERT INTO forgotten_rooms (user_id, room_id, membership_event_id) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id, room_id) DO UPDATE SET"
            " membership_event_id = excluded.membership_event_id",
            (user_id, room_id, event_id),
        )
    return str(membership)


_FORGOTTEN = (
    "SELECT f.room_id FROM forgotten_rooms AS f"
    " JOIN current_memberships AS c"
    " ON c.room_id = f.room_id AND c.user_id = f.user_id"
    " AND c.event_id = f.membership_event_id"
    " WHERE f.user_id = ?"
)


def _forgotten_rooms_txn(txn: Transaction, user_id: str) -> set[str]:
    txn.execute(_FORGOTTEN, (user_id,))
    return {str(room_id) for (room_id,) in txn.fetchall()}


def _is_forgotten_txn(txn: Transaction, user_id: str, room_id: str) -> bool:
    txn.execute(_FORGOTTEN + " AND f.room_id = ?", (user_id, room_id))
    return txn.fetchone() is not None


class ForgottenRoomStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def forget(self, user_id: str, room_id: str) -> str | None:
        """Forget the room if the user's current membership is leave or ban.

        Returns that current membership (None if the user never had one), so
        the caller can refuse a user who is still in the room; the check and
        the write are one transaction.
        """
        return await self._db.run_interaction("forget_room", _forget_txn, user_id, room_id)

    async def get_forgotten_rooms(self, user_id: str) -> set[str]:
        """The rooms the user has forgotten and not come back to since."""
        return await self._db.run_interaction("get_forgotten_rooms", _forgotten_rooms_txn, user_id)

    async def is_forgotten(self, user_id: str, room_id: str) -> bool:
        return await self._db.run_interaction(
            "is_room_forgotten", _is_forgotten_txn, user_id, room_id
        )
