"""OpenIdStore: the OpenID tokens users asked for, and whom each stands for until it expires.

Tokens are stored hashed, like access tokens: a copy of the database does not
let anyone pass as the users."""

from __future__ import annotations

import hashlib

from homeserver.storage.database import Database, Transaction


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _insert_token_txn(
    txn: Transaction, token: str, user_id: str, valid_until_ms: int, now_ms: int
) -> None:
    # Tokens live an hour and are rarely asked for: clearing the expired ones
    # here keeps the table small without a background job.
    txn.execute("DELETE FROM openid_tokens WHERE ts_valid_until_ms <= ?", (now_ms,))
    txn.execute(
        "INSERT INTO openid_tokens (token, user_id, ts_valid_until_ms) VALUES (?, ?, ?)",
        (hash_token(token), user_id, valid_until_ms),
    )


def _get_user_for_token_txn(txn: Transaction, token: str, now_ms: int) -> str | None:
    txn.execute(
        "SELECT user_id FROM openid_tokens WHERE token = ? AND ts_valid_until_ms > ?",
        (hash_token(token), now_ms),
    )
    row = txn.fetchone()
    return None if row is None else str(row[0])


class OpenIdStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_token(self, token: str, user_id: str, valid_until_ms: int, now_ms: int) -> None:
        """Store a new token for `user_id`, valid until `valid_until_ms` (exclusive)."""
        await self._db.run_interaction(
            "insert_openid_token", _insert_token_txn, token, user_id, valid_until_ms, now_ms
        )

    async def get_user_for_token(self, token: str, now_ms: int) -> str | None:
        """The user a token stands for, or None if it is unknown or expired at `now_ms`."""
        return await self._db.run_interaction(
            "get_user_for_openid_token", _get_user_for_token_txn, token, now_ms
        )
