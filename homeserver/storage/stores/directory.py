"""DirectoryStore: room aliases hosted on this server, and which rooms are published.

`room_aliases` maps each local alias to its room (with who made it and the
servers to join through); `published_rooms` holds the rooms whose visibility
in the published room directory is "public". Which aliases and which
publications are allowed is the room directory handler's business.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class AliasMapping:
    """A local alias: the room it points at, who made it, the servers to join through."""

    alias: str
    room_id: str
    creator: str
    servers: tuple[str, ...]


def _create_alias_txn(
    txn: Transaction, alias: str, room_id: str, creator: str, servers: str
) -> bool:
    txn.execute(
        "INSERT INTO room_aliases (room_alias, room_id, creator, servers) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (room_alias) DO NOTHING",
        (alias, room_id, creator, servers),
    )
    return txn.rowcount == 1


def _get_alias_txn(txn: Transaction, alias: str) -> AliasMapping | None:
    txn.execute("SELECT room_id, creator, servers FROM room_aliases WHERE room_alias = ?", (alias,))
    row = txn.fetchone()
    if row is None:
        return None
    room_id, creator, servers = row
    return AliasMapping(alias, room_id, creator, tuple(json.loads(servers)))


def _delete_alias_txn(txn: Transaction, alias: str) -> AliasMapping | None:
    mapping = _get_alias_txn(txn, alias)
    if mapping is not None:
        txn.execute("DELETE FROM room_aliases WHERE room_alias = ?", (alias,))
    return mapping


def _aliases_for_room_txn(txn: Transaction, room_id: str) -> list[str]:
    txn.execute(
        "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias", (room_id,)
    )
    return [alias for (alias,) in txn.fetchall()]


def _set_published_txn(txn: Transaction, room_id: str, published: bool) -> None:
    if published:
        txn.execute(
            "INSERT INTO published_rooms (room_id) VALUES (?) ON CONFLICT (room_id) DO NOTHING",
            (room_id,),
        )
    else:
        txn.execute("DELETE FROM published_rooms WHERE room_id = ?", (room_id,))


def _is_published_txn(txn: Transaction, room_id: str) -> bool:
    txn.execute("SELECT 1 FROM published_rooms WHERE room_id = ?", (room_id,))
    return txn.fetchone() is not None


class DirectoryStore:
    """Local room aliases and published rooms."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_alias(
        self, alias: str, room_id: str, creator: str, servers: Sequence[str]
    ) -> bool:
        """Map `alias` to `room_id`; False (and nothing changed) if the alias already exists."""
        return await self._db.run_interaction(
            "create_room_alias",
            _create_alias_txn,
            alias,
            room_id,
            creator,
            json.dumps(list(servers)),
        )

    async def get_alias(self, alias: str) -> AliasMapping | None:
        return await self._db.run_interaction("get_room_alias", _get_alias_txn, alias)

    async def delete_alias(self, alias: str) -> AliasMapping | None:
        """Remove the alias; what it was, or None if there was no such alias."""
        return await self._db.run_interaction("delete_room_alias", _delete_alias_txn, alias)

    async def get_aliases_for_room(self, room_id: str) -> list[str]:
        """The local aliases pointing at the room, sorted."""
        return await self._db.run_interaction(
            "get_aliases_for_room", _aliases_for_room_txn, room_id
        )

    async def set_published(self, room_id: str, published: bool) -> None:
        await self._db.run_interaction("set_room_published", _set_published_txn, room_id, published)

    async def is_published(self, room_id: str) -> bool:
        return await self._db.run_interaction("is_room_published", _is_published_txn, room_id)
