"""FederationReceivedStore: what receiving federation traffic records and reads.

- `received_transactions`: the answer given to each transaction an origin
  sent (PUT /_matrix/federation/v1/send/{txnId}), so that a retried
  transaction is answered the same without being processed again; old rows
  are deleted by the receiver's housekeeping.
- `events.soft_failed`: which stored events were soft-failed on receipt (the
  persist transaction writes the flag, see
  `homeserver.storage.stores.event_batch`; this store only reads it).
- the lowest depth of a room's timeline events, below which the receiver
  does not ask for missing prev_events (that history predates what we hold).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.state import chunks, placeholders


def _get_response_txn(
    txn: Transaction, origin: str, transaction_id: str, not_before_ts: int
) -> tuple[int, str] | None:
    txn.execute(
        "SELECT response_code, response_json FROM received_transactions"
        " WHERE origin = ? AND transaction_id = ? AND received_ts >= ?",
        (origin, transaction_id, not_before_ts),
    )
    row = txn.fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def _set_response_txn(
    txn: Transaction, origin: str, transaction_id: str, code: int, body: str, ts: int
) -> None:
    # A row older than the retention window may still be there (housekeeping
    # runs now and then): the new answer replaces it.
    txn.execute(
        "INSERT INTO received_transactions"
        " (origin, transaction_id, response_code, response_json, received_ts)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (origin, transaction_id) DO UPDATE SET"
        " response_code = excluded.response_code, response_json = excluded.response_json,"
        " received_ts = excluded.received_ts",
        (origin, transaction_id, code, body, ts),
    )


def _delete_before_txn(txn: Transaction, before_ts: int) -> int:
    txn.execute("DELETE FROM received_transactions WHERE received_ts < ?", (before_ts,))
    return int(txn.rowcount)


def _soft_failed_txn(txn: Transaction, event_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(event_ids):
        txn.execute(
            f"SELECT event_id FROM events WHERE event_id IN ({placeholders(len(chunk))})"
            " AND soft_failed",
            chunk,
        )
        found.update(row[0] for row in txn.fetchall())
    return found


def _min_depth_txn(txn: Transaction, room_id: str) -> int | None:
    txn.execute("SELECT MIN(depth) FROM events WHERE room_id = ? AND NOT outlier", (room_id,))
    row = txn.fetchone()
    return None if row is None or row[0] is None else int(row[0])


class FederationReceivedStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_transaction_response(
        self, origin: str, transaction_id: str, *, not_before_ts: int
    ) -> tuple[int, dict[str, Any]] | None:
        """The (status, body) we answered `origin`'s transaction with, at or after `not_before_ts`."""
        row = await self._db.run_interaction(
            "get_transaction_response", _get_response_txn, origin, transaction_id, not_before_ts
        )
        if row is None:
            return None
        code, body = row
        return code, json.loads(body)

    async def set_transaction_response(
        self, origin: str, transaction_id: str, code: int, body: Mapping[str, Any], ts: int
    ) -> None:
        await self._db.run_interaction(
            "set_transaction_response",
            _set_response_txn,
            origin,
            transaction_id,
            code,
            json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            ts,
        )

    async def delete_transactions_before(self, before_ts: int) -> int:
        """Forget the answers given before `before_ts`; how many were deleted."""
        return await self._db.run_interaction(
            "delete_received_transactions", _delete_before_txn, before_ts
        )

    async def get_soft_failed(self, event_ids: Collection[str]) -> set[str]:
        """Those of `event_ids` that were stored soft-failed."""
        if not event_ids:
            return set()
        return await self._db.run_interaction("get_soft_failed", _soft_failed_txn, list(event_ids))

    async def get_min_depth(self, room_id: str) -> int | None:
        """The lowest depth of the room's timeline (non-outlier) events; None if it has none."""
        return await self._db.run_interaction("get_room_min_depth", _min_depth_txn, room_id)
