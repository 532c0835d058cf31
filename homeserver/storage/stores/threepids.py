"""ThreepidStore: third-party identifiers of accounts, and email validation sessions.

`user_threepids` binds an identifier (medium, address) to one local account;
callers canonicalise addresses before they get here. Validation sessions are
the server's side of POST .../email/requestToken: a session per (address,
client secret), a token per email sent (stored as a hash), and the time the
emailed link was followed. A token's check and the session's validation
happen in one transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class Threepid:
    medium: str
    address: str
    validated_at: int
    added_at: int


@dataclass(frozen=True, slots=True)
class ValidationSession:
    session_id: str
    medium: str
    address: str
    client_secret: str
    last_send_attempt: int
    created_ts: int
    validated_at: int | None


class ValidationOutcome(enum.Enum):
    """What following an emailed link did."""

    VALIDATED = "validated"
    UNKNOWN_SESSION = "unknown_session"
    WRONG_CLIENT_SECRET = "wrong_client_secret"
    UNKNOWN_TOKEN = "unknown_token"
    EXPIRED = "expired"


_SESSION_COLUMNS = (
    "session_id, medium, address, client_secret, last_send_attempt, created_ts, validated_at"
)


def _row_to_session(row: tuple[object, ...]) -> ValidationSession:
    session_id, medium, address, secret, attempt, created, validated = row
    return ValidationSession(
        session_id=str(session_id),
        medium=str(medium),
        address=str(address),
        client_secret=str(secret),
        last_send_attempt=int(attempt),  # type: ignore[call-overload]
        created_ts=int(created),  # type: ignore[call-overload]
        validated_at=None if validated is None else int(validated),  # type: ignore[call-overload]
    )


# -- transaction functions other stores compose


def delete_threepids_for_user_txn(txn: Transaction, user_id: str) -> None:
    """Unbind every third-party identifier of `user_id` (deactivation)."""
    txn.execute("DELETE FROM user_threepids WHERE user_id = ?", (user_id,))


# -- this store's own transactions


def _add_user_threepid_txn(
    txn: Transaction, user_id: str, medium: str, address: str, validated_at: int, added_at: int
) -> bool:
    txn.execute(
        "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?", (medium, address)
    )
    row = txn.fetchone()
    if row is not None:
        return bool(row[0] == user_id)
    txn.execute(
        "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (medium, address) DO NOTHING",
        (user_id, medium, address, validated_at, added_at),
    )
    return txn.rowcount > 0


def _start_or_continue_session_txn(
    txn: Transaction,
    session: ValidationSession,
    token_hash: str,
    next_link: str | None,
    expires_ts: int,
) -> None:
    txn.execute(
        "UPDATE threepid_validation_sessions SET last_send_attempt = ? WHERE session_id = ?",
        (session.last_send_attempt, session.session_id),
    )
    if txn.rowcount == 0:
        txn.execute(
            f"INSERT INTO threepid_validation_sessions ({_SESSION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                session.session_id,
                session.medium,
                session.address,
                session.client_secret,
                session.last_send_attempt,
                session.created_ts,
                None,
            ),
        )
    txn.execute(
        "INSERT INTO threepid_validation_tokens (token_hash, session_id, next_link, expires_ts)"
        " VALUES (?, ?, ?, ?)",
        (token_hash, session.session_id, next_link, expires_ts),
    )


def _validate_session_txn(
    txn: Transaction, session_id: str, client_secret: str, token_hash: str, now: int
) -> tuple[ValidationOutcome, str | None]:
    txn.execute(
        "SELECT client_secret, validated_at FROM threepid_validation_sessions WHERE session_id = ?",
        (session_id,),
    )
    row = txn.fetchone()
    if row is None:
        return ValidationOutcome.UNKNOWN_SESSION, None
    if row[0] != client_secret:
        return ValidationOutcome.WRONG_CLIENT_SECRET, None
    txn.execute(
        "SELECT next_link, expires_ts FROM threepid_validation_tokens"
        " WHERE session_id = ? AND token_hash = ?",
        (session_id, token_hash),
    )
    token = txn.fetchone()
    if token is None:
        return ValidationOutcome.UNKNOWN_TOKEN, None
    next_link, expires_ts = token
    if int(expires_ts) < now:
        return ValidationOutcome.EXPIRED, None
    if row[1] is None:
        txn.execute(
            "UPDATE threepid_validation_sessions SET validated_at = ? WHERE session_id = ?",
            (now, session_id),
        )
    return ValidationOutcome.VALIDATED, next_link


def _delete_session_txn(txn: Transaction, session_id: str) -> None:
    txn.execute("DELETE FROM threepid_validation_tokens WHERE session_id = ?", (session_id,))
    txn.execute("DELETE FROM threepid_validation_sessions WHERE session_id = ?", (session_id,))


def _delete_sessions_before_txn(txn: Transaction, before_ts: int, now: int) -> int:
    txn.execute(
        "SELECT session_id FROM threepid_validation_sessions WHERE created_ts < ?", (before_ts,)
    )
    old = [(row[0],) for row in txn.fetchall()]
    txn.executemany("DELETE FROM threepid_validation_tokens WHERE session_id = ?", old)
    txn.executemany("DELETE FROM threepid_validation_sessions WHERE session_id = ?", old)
    txn.execute("DELETE FROM threepid_validation_tokens WHERE expires_ts < ?", (now,))
    return len(old)


class ThreepidStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- identifiers bound to accounts

    async def get_user_threepids(self, user_id: str) -> list[Threepid]:
        def txn_fn(txn: Transaction) -> list[Threepid]:
            txn.execute(
                "SELECT medium, address, validated_at, added_at FROM user_threepids"
                " WHERE user_id = ? ORDER BY added_at, medium, address",
                (user_id,),
            )
            return [Threepid(m, a, int(v), int(t)) for m, a, v, t in txn.fetchall()]

        return await self._db.run_interaction("get_user_threepids", txn_fn)

    async def get_user_by_threepid(self, medium: str, address: str) -> str | None:
        def txn_fn(txn: Transaction) -> str | None:
            txn.execute(
                "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?",
                (medium, address),
            )
            row = txn.fetchone()
            return None if row is None else str(row[0])

        return await self._db.run_interaction("get_user_by_threepid", txn_fn)

    async def add_user_threepid(
        self, user_id: str, medium: str, address: str, validated_at: int, added_at: int
    ) -> bool:
        """Bind the identifier to `user_id`; False if another account has it."""
        return await self._db.run_interaction(
            "add_user_threepid",
            _add_user_threepid_txn,
            user_id,
            medium,
            address,
            validated_at,
            added_at,
        )

    async def remove_user_threepid(self, user_id: str, medium: str, address: str) -> bool:
        """Unbind the identifier from `user_id`; False if it was not bound to it."""

        def txn_fn(txn: Transaction) -> bool:
            txn.execute(
                "DELETE FROM user_threepids WHERE user_id = ? AND medium = ? AND address = ?",
                (user_id, medium, address),
            )
            return txn.rowcount > 0

        return await self._db.run_interaction("remove_user_threepid", txn_fn)

    # -- validation sessions

    async def get_session(
        self,
        *,
        medium: str,
        client_secret: str,
        address: str | None = None,
        session_id: str | None = None,
        validated: bool | None = None,
    ) -> ValidationSession | None:
        """The session matching every given criterion (the newest if several), or None."""
        clauses = ["medium = ?", "client_secret = ?"]
        args: list[object] = [medium, client_secret]
        if address is not None:
            clauses.append("address = ?")
            args.append(address)
        if session_id is not None:
            clauses.append("session_id = ?")
            args.append(session_id)
        if validated is not None:
            clauses.append("validated_at IS NOT NULL" if validated else "validated_at IS NULL")
        sql = (
            f"SELECT {_SESSION_COLUMNS} FROM threepid_validation_sessions"
            f" WHERE {' AND '.join(clauses)} ORDER BY created_ts DESC"
        )

        def txn_fn(txn: Transaction) -> ValidationSession | None:
            txn.execute(sql, args)
            row = txn.fetchone()
            return None if row is None else _row_to_session(row)

        return await self._db.run_interaction("get_threepid_validation_session", txn_fn)

    async def start_or_continue_session(
        self, session: ValidationSession, token_hash: str, next_link: str | None, expires_ts: int
    ) -> None:
        """Create the session (or raise its last_send_attempt) and record a new emailed token."""
        await self._db.run_interaction(
            "start_or_continue_threepid_session",
            _start_or_continue_session_txn,
            session,
            token_hash,
            next_link,
            expires_ts,
        )

    async def validate_session(
        self, session_id: str, client_secret: str, token_hash: str, now: int
    ) -> tuple[ValidationOutcome, str | None]:
        """Follow an emailed link: the outcome, and the session's next_link when validated."""
        return await self._db.run_interaction(
            "validate_threepid_session",
            _validate_session_txn,
            session_id,
            client_secret,
            token_hash,
            now,
        )

    async def delete_session(self, session_id: str) -> None:
        await self._db.run_interaction("delete_threepid_session", _delete_session_txn, session_id)

    async def delete_sessions_before(self, before_ts: int, now: int) -> int:
        """Delete sessions created before `before_ts` and tokens expired at `now`; how many sessions."""
        return await self._db.run_interaction(
            "delete_old_threepid_sessions", _delete_sessions_before_txn, before_ts, now
        )
