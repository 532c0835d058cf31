"""AccountDataStore: users' global and per-room account data, and the "account_data" stream.

Each write takes the next position of the "account_data" stream and stores
it with the content, so /sync asks "what changed since position X" with one
index range read. Room tags are the room's `m.tag` account data; changing one
tag reads, edits and writes that content in one transaction.

Content is stored as JSON text and handed out as fresh dicts (callers may
keep or change them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.state import chunks, placeholders
from homeserver.storage.streams import StreamIdGenerator, create_stream_id_generator

ACCOUNT_DATA_STREAM = "account_data"
TAG = "m.tag"
GLOBAL = ""
"""The room_id column of global account data."""

JsonDict = dict[str, Any]


def create_account_data_stream(db: Database, *, instance_name: str = "master") -> StreamIdGenerator:
    """The "account_data" stream generator, not yet loaded (`await stream.load()` after db start)."""
    return create_stream_id_generator(
        db,
        ACCOUNT_DATA_STREAM,
        instance_name=instance_name,
        writers=[instance_name],
        tables=[("account_data", "stream_id")],
        sequence_name="account_data_stream_seq",
    )


@dataclass(frozen=True, slots=True)
class AccountDataChanges:
    """A user's account data set in a range of the stream: type -> content."""

    global_data: dict[str, JsonDict]
    rooms: dict[str, dict[str, JsonDict]]
    """room ID -> type -> content."""


def _encode(content: JsonDict) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def _upsert_txn(
    txn: Transaction, user_id: str, room_id: str, data_type: str, content: str, position: int
) -> None:
    txn.execute(
        "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, room_id, type) DO UPDATE SET"
        " content = excluded.content, stream_id = excluded.stream_id",
        (user_id, room_id, data_type, content, position),
    )


def _get_txn(txn: Transaction, user_id: str, room_id: str, data_type: str) -> JsonDict | None:
    txn.execute(
        "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
        (user_id, room_id, data_type),
    )
    row = txn.fetchone()
    return None if row is None else json.loads(row[0])


def _edit_txn(
    txn: Transaction,
    user_id: str,
    room_id: str,
    data_type: str,
    edit: Callable[[JsonDict | None], JsonDict | None],
    position: int,
) -> bool:
    new = edit(_get_txn(txn, user_id, room_id, data_type))
    if new is None:
        return False
    _upsert_txn(txn, user_id, room_id, data_type, _encode(new), position)
    return True


def _changes_txn(
    txn: Transaction,
    user_id: str,
    after: int,
    up_to: int,
    room_ids: Collection[str] | None,
) -> AccountDataChanges:
    sql = (
        "SELECT room_id, type, content FROM account_data"
        " WHERE user_id = ? AND stream_id > ? AND stream_id <= ?"
    )
    rows: list[tuple[str, str, str]] = []
    if room_ids is None:
        txn.execute(sql, (user_id, after, up_to))
        rows.extend(txn.fetchall())
    else:
        for chunk in chunks(sorted({GLOBAL, *room_ids})):
            txn.execute(
                f"{sql} AND room_id IN ({placeholders(len(chunk))})",
                (user_id, after, up_to, *chunk),
            )
            rows.extend(txn.fetchall())
    changes = AccountDataChanges({}, {})
    for room_id, data_type, content in rows:
        target = changes.global_data if room_id == GLOBAL else changes.rooms.setdefault(room_id, {})
        target[data_type] = json.loads(content)
    return changes


class AccountDataStore:
    """Account data reads and writes; every write takes a position on `stream`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.stream = create_account_data_stream(db)
        """The "account_data" stream (load it once the database has started)."""

    def current_token(self) -> int:
        """The position up to which every account data write has finished."""
        return self.stream.get_current_token()

    async def set_account_data(
        self, user_id: str, room_id: str | None, data_type: str, content: JsonDict
    ) -> int:
        """Store global (room_id None) or room account data; its stream position."""
        encoded = _encode(content)
        async with self.stream.get_next() as position:
            await self._db.run_interaction(
                "set_account_data",
                _upsert_txn,
                user_id,
                room_id or GLOBAL,
                data_type,
                encoded,
                position,
            )
        return position

    async def edit_account_data(
        self,
        user_id: str,
        room_id: str | None,
        data_type: str,
        edit: Callable[[JsonDict | None], JsonDict | None],
    ) -> int | None:
        """Replace content by `edit(current content or None)` in one transaction.

        `edit` returns the new content, or None to leave it as it is (then no
        write happens and None is returned); otherwise the write's position.
        It may run more than once (a retried transaction) and must be pure.
        """
        async with self.stream.get_next() as position:
            changed = await self._db.run_interaction(
                "edit_account_data", _edit_txn, user_id, room_id or GLOBAL, data_type, edit, position
            )
        return position if changed else None

    async def get_account_data(
        self, user_id: str, room_id: str | None, data_type: str
    ) -> JsonDict | None:
        """The content of one type of global (room_id None) or room account data."""
        return await self._db.run_interaction(
            "get_account_data", _get_txn, user_id, room_id or GLOBAL, data_type
        )

    async def get_changes(
        self, user_id: str, after: int, up_to: int, room_ids: Collection[str] | None = None
    ) -> AccountDataChanges:
        """The user's account data written at positions in (after, up_to].

        after=0 gives everything stored. With `room_ids`, room account data
        of those rooms only (global account data always).
        """
        return await self._db.run_interaction(
            "get_account_data_changes", _changes_txn, user_id, after, up_to, room_ids
        )
