"""FilterStore: the filters users upload with POST /user/{userId}/filter.

A filter is stored as canonical JSON under a database-assigned ID, with its
owner; uploading the same filter again gives the same ID (clients upload
their filter at every start). Stored filters never change, so reads are
cached.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.storage.database import Database, Transaction
from homeserver.storage.lru import LruCache
from homeserver.types.canonical_json import encode_canonical_json

JsonDict = dict[str, Any]


def _add_txn(txn: Transaction, user_id: str, filter_json: str) -> int:
    txn.execute(
        "SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_json = ?"
        " ORDER BY filter_id LIMIT 1",
        (user_id, filter_json),
    )
    row = txn.fetchone()
    if row is not None:
        return int(row[0])
    txn.execute(
        "INSERT INTO user_filters (user_id, filter_json) VALUES (?, ?) RETURNING filter_id",
        (user_id, filter_json),
    )
    row = txn.fetchone()
    assert row is not None
    return int(row[0])


def _get_txn(txn: Transaction, user_id: str, filter_id: int) -> str | None:
    txn.execute(
        "SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
        (user_id, filter_id),
    )
    row = txn.fetchone()
    return None if row is None else str(row[0])


class FilterStore:
    def __init__(self, db: Database, *, cache_size: int = 10_000) -> None:
        self._db = db
        self._cache: LruCache[tuple[str, int], str] = LruCache(cache_size)

    async def add_filter(self, user_id: str, filter_json: JsonDict) -> int:
        """Store a (validated) filter for the user; its ID."""
        encoded = encode_canonical_json(filter_json).decode("utf-8")
        filter_id = await self._db.run_interaction("add_user_filter", _add_txn, user_id, encoded)
        self._cache.set((user_id, filter_id), encoded)
        return filter_id

    async def get_filter(self, user_id: str, filter_id: int) -> JsonDict | None:
        """The user's filter with this ID (a fresh dict), or None if they have none such."""
        encoded = self._cache.get((user_id, filter_id))
        if encoded is None:
            encoded = await self._db.run_interaction("get_user_filter", _get_txn, user_id, filter_id)
            if encoded is None:
                return None
            self._cache.set((user_id, filter_id), encoded)
        result: JsonDict = json.loads(encoded)
        return result
