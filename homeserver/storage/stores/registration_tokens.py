"""RegistrationTokenStore: the tokens of the m.login.registration_token stage.

A token is valid while it has not expired (`expiry_time`, ms since the epoch,
NULL for never) and `pending + completed < uses_allowed` (NULL for no limit).
A registration that passes the token stage takes one `pending` use at once,
in the same statement that checks validity, so concurrent registrations
cannot overspend a token; finishing the registration turns it into a
`completed` use, and a UIA session that expires first gives it back
(`release_pending_txn`, composed by the UIA store).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class RegistrationToken:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None

    def as_dict(self) -> dict[str, Any]:
        """The token as Synapse's admin API shows it."""
        return {
            "token": self.token,
            "uses_allowed": self.uses_allowed,
            "pending": self.pending,
            "completed": self.completed,
            "expiry_time": self.expiry_time,
        }


_COLUMNS = "token, uses_allowed, pending, completed, expiry_time"
# The SQL condition for "still usable at ?" (one parameter: now).
_VALID = (
    "(uses_allowed IS NULL OR pending + completed < uses_allowed)"
    " AND (expiry_time IS NULL OR expiry_time >= ?)"
)
# What an admin may change.
UPDATABLE = ("uses_allowed", "expiry_time")


def _row(row: tuple[Any, ...]) -> RegistrationToken:
    token, uses_allowed, pending, completed, expiry_time = row
    return RegistrationToken(
        token=str(token),
        uses_allowed=None if uses_allowed is None else int(uses_allowed),
        pending=int(pending),
        completed=int(completed),
        expiry_time=None if expiry_time is None else int(expiry_time),
    )


def _get_txn(txn: Transaction, token: str) -> RegistrationToken | None:
    txn.execute(f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = ?", (token,))
    row = txn.fetchone()
    return None if row is None else _row(row)


def release_pending_txn(txn: Transaction, token: str) -> None:
    """Give back a pending use (its registration will never finish)."""
    txn.execute(
        "UPDATE registration_tokens SET pending = pending - 1 WHERE token = ? AND pending > 0",
        (token,),
    )


def _update_txn(
    txn: Transaction, token: str, changes: Mapping[str, int | None]
) -> RegistrationToken | None:
    for column, value in changes.items():
        assert column in UPDATABLE
        txn.execute(f"UPDATE registration_tokens SET {column} = ? WHERE token = ?", (value, token))
    return _get_txn(txn, token)


class RegistrationTokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        """Add a token; False if one with this text exists."""

        def txn_fn(txn: Transaction) -> bool:
            txn.execute(
                "INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
                " VALUES (?, ?, ?) ON CONFLICT (token) DO NOTHING",
                (token, uses_allowed, expiry_time),
            )
            return txn.rowcount > 0

        return await self._db.run_interaction("create_registration_token", txn_fn)

    async def get(self, token: str) -> RegistrationToken | None:
        return await self._db.run_interaction("get_registration_token", _get_txn, token)

    async def list_tokens(self, valid: bool | None, now: int) -> list[RegistrationToken]:
        """Every token, or only the valid (True) or invalid (False) ones at `now`."""
        where, args = "", ()
        if valid is not None:
            where = f"WHERE {'' if valid else 'NOT '}({_VALID})"
            args = (now,)

        def txn_fn(txn: Transaction) -> list[RegistrationToken]:
            txn.execute(f"SELECT {_COLUMNS} FROM registration_tokens {where} ORDER BY token", args)
            return [_row(row) for row in txn.fetchall()]

        return await self._db.run_interaction("list_registration_tokens", txn_fn)

    async def update(self, token: str, changes: Mapping[str, int | None]) -> RegistrationToken | None:
        """Change `uses_allowed` and/or `expiry_time`; the token after, or None if unknown."""
        return await self._db.run_interaction("update_registration_token", _update_txn, token, changes)

    async def delete(self, token: str) -> bool:
        def txn_fn(txn: Transaction) -> bool:
            txn.execute("DELETE FROM registration_tokens WHERE token = ?", (token,))
            return txn.rowcount > 0

        return await self._db.run_interaction("delete_registration_token", txn_fn)

    async def is_valid(self, token: str, now: int) -> bool:
        def txn_fn(txn: Transaction) -> bool:
            txn.execute(f"SELECT 1 FROM registration_tokens WHERE token = ? AND {_VALID}", (token, now))
            return txn.fetchone() is not None

        return await self._db.run_interaction("registration_token_is_valid", txn_fn)

    async def take_pending(self, token: str, now: int) -> bool:
        """Take one use of the token if it is valid at `now`; whether it was."""

        def txn_fn(txn: Transaction) -> bool:
            txn.execute(
                f"UPDATE registration_tokens SET pending = pending + 1 WHERE token = ? AND {_VALID}",
                (token, now),
            )
            return txn.rowcount > 0

        return await self._db.run_interaction("take_registration_token", txn_fn)

    async def complete(self, token: str) -> None:
        """A registration that took a pending use has finished: it is now a completed use."""

        def txn_fn(txn: Transaction) -> None:
            release_pending_txn(txn, token)
            txn.execute(
                "UPDATE registration_tokens SET completed = completed + 1 WHERE token = ?", (token,)
            )

        await self._db.run_interaction("complete_registration_token", txn_fn)
