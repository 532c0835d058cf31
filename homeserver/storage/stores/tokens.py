"""TokenStore: access tokens, refresh tokens and login tokens, stored only as hashes.

Callers hash a token (`homeserver.handlers.auth.hash_token`) before it gets
here; no table holds a usable token. A new session's tokens are written in the
same transaction as its device row (`DeviceStore.add_session`, with
`insert_tokens_txn`), and deleting a device deletes its tokens in the same
transaction, so no token outlives its device.

Refresh tokens rotate (spec: POST /refresh): using one replaces the access
token issued with it, issues a new pair, and points the old refresh token at
the new one. The old refresh token keeps working until the new pair is used
(its access token once, or its refresh token), when the old row is deleted;
from then on it is unknown.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class NewAccessToken:
    token_hash: str
    valid_until_ms: int | None


@dataclass(frozen=True, slots=True)
class NewRefreshToken:
    token_hash: str
    expiry_ts: int | None


@dataclass(frozen=True, slots=True)
class AccessTokenInfo:
    """An access token as found by lookup, with what authentication needs of its user."""

    token_hash: str
    user_id: str
    device_id: str | None
    valid_until_ms: int | None
    is_guest: bool
    deactivated: bool


@dataclass(frozen=True, slots=True)
class RefreshTokenInfo:
    user_id: str
    device_id: str
    expiry_ts: int | None


class RefreshOutcome(enum.Enum):
    REFRESHED = "refreshed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


# -- transaction functions other stores compose


def delete_tokens_for_devices_txn(txn: Transaction, user_id: str, device_ids: Iterable[str]) -> None:
    """Delete every access and refresh token of these devices of `user_id`."""
    rows = [(user_id, device_id) for device_id in device_ids]
    txn.executemany("DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", rows)
    txn.executemany("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", rows)


def delete_tokens_for_user_txn(
    txn: Transaction, user_id: str, except_token_hash: str | None = None
) -> None:
    """Delete every access and refresh token of `user_id`, but the access token `except_token_hash`."""
    keep_refresh: str | None = None
    if except_token_hash is not None:
        txn.execute(
            "SELECT refresh_token_hash FROM access_tokens WHERE token_hash = ?", (except_token_hash,)
        )
        row = txn.fetchone()
        keep_refresh = row[0] if row else None
    txn.execute(
        "DELETE FROM access_tokens WHERE user_id = ? AND token_hash <> ?",
        (user_id, except_token_hash or ""),
    )
    txn.execute(
        "DELETE FROM refresh_tokens WHERE user_id = ? AND token_hash <> ?",
        (user_id, keep_refresh or ""),
    )


# -- this store's own transactions


def insert_tokens_txn(
    txn: Transaction,
    user_id: str,
    device_id: str | None,
    now: int,
    access: NewAccessToken,
    refresh: NewRefreshToken | None,
) -> None:
    if refresh is not None:
        assert device_id is not None, "refresh tokens belong to a device"
        txn.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts, expiry_ts)"
            " VALUES (?, ?, ?, ?, ?)",
            (refresh.token_hash, user_id, device_id, now, refresh.expiry_ts),
        )
    txn.execute(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, valid_until_ms,"
        " refresh_token_hash) VALUES (?, ?, ?, ?, ?, ?)",
        (
            access.token_hash,
            user_id,
            device_id,
            now,
            access.valid_until_ms,
            refresh.token_hash if refresh else None,
        ),
    )


def _lookup_access_token_txn(
    txn: Transaction, token_hash: str, now: int
) -> AccessTokenInfo | None:
    txn.execute(
        "SELECT t.user_id, t.device_id, t.valid_until_ms, t.used, t.refresh_token_hash,"
        " u.is_guest, u.deactivated"
        " FROM access_tokens AS t JOIN users AS u ON u.name = t.user_id"
        " WHERE t.token_hash = ?",
        (token_hash,),
    )
    row = txn.fetchone()
    if row is None:
        return None
    user_id, device_id, valid_until_ms, used, refresh_hash, is_guest, deactivated = row
    expired = valid_until_ms is not None and valid_until_ms <= now
    if not used and not expired:
        # First use: the refresh token this pair was refreshed from is now spent.
        txn.execute("UPDATE access_tokens SET used = ? WHERE token_hash = ?", (True, token_hash))
        if refresh_hash is not None:
            txn.execute("DELETE FROM refresh_tokens WHERE next_token_hash = ?", (refresh_hash,))
    return AccessTokenInfo(
        token_hash=token_hash,
        user_id=user_id,
        device_id=device_id,
        valid_until_ms=valid_until_ms,
        is_guest=bool(is_guest),
        deactivated=bool(deactivated),
    )


def _get_refresh_token_txn(txn: Transaction, token_hash: str) -> RefreshTokenInfo | None:
    txn.execute(
        "SELECT user_id, device_id, expiry_ts FROM refresh_tokens WHERE token_hash = ?",
        (token_hash,),
    )
    row = txn.fetchone()
    return None if row is None else RefreshTokenInfo(row[0], row[1], row[2])


def _refresh_txn(
    txn: Transaction,
    old_hash: str,
    now: int,
    access: NewAccessToken,
    refresh: NewRefreshToken,
) -> tuple[RefreshOutcome, RefreshTokenInfo | None]:
    txn.execute(
        "SELECT user_id, device_id, expiry_ts, next_token_hash FROM refresh_tokens"
        " WHERE token_hash = ?",
        (old_hash,),
    )
    row = txn.fetchone()
    if row is None:
        return RefreshOutcome.UNKNOWN, None
    user_id, device_id, expiry_ts, next_hash = row
    info = RefreshTokenInfo(user_id, device_id, expiry_ts)
    if expiry_ts is not None and expiry_ts <= now:
        return RefreshOutcome.EXPIRED, info
    # The access token issued with the old refresh token is replaced by the new one.
    txn.execute("DELETE FROM access_tokens WHERE refresh_token_hash = ?", (old_hash,))
    if next_hash is not None:
        # An earlier refresh whose answer the client never used: replaced too.
        txn.execute("DELETE FROM access_tokens WHERE refresh_token_hash = ?", (next_hash,))
        txn.execute("DELETE FROM refresh_tokens WHERE token_hash = ?", (next_hash,))
    # Using this refresh token spends the one it was refreshed from.
    txn.execute("DELETE FROM refresh_tokens WHERE next_token_hash = ?", (old_hash,))
    insert_tokens_txn(txn, user_id, device_id, now, access, refresh)
    txn.execute(
        "UPDATE refresh_tokens SET next_token_hash = ? WHERE token_hash = ?",
        (refresh.token_hash, old_hash),
    )
    return RefreshOutcome.REFRESHED, info


def _delete_access_token_txn(txn: Transaction, token_hash: str) -> None:
    txn.execute("SELECT refresh_token_hash FROM access_tokens WHERE token_hash = ?", (token_hash,))
    row = txn.fetchone()
    if row is not None and row[0] is not None:
        txn.execute("DELETE FROM refresh_tokens WHERE token_hash = ?", (row[0],))
    txn.execute("DELETE FROM access_tokens WHERE token_hash = ?", (token_hash,))


def _update_last_used_txn(txn: Transaction, last_used: Mapping[str, int]) -> None:
    txn.executemany(
        "UPDATE access_tokens SET last_used_ts = ? WHERE token_hash = ?",
        [(ts, token_hash) for token_hash, ts in sorted(last_used.items())],
    )


def _consume_login_token_txn(txn: Transaction, token_hash: str, now: int) -> str | None:
    txn.execute(
        "SELECT user_id, expiry_ts FROM login_tokens WHERE token_hash = ?", (token_hash,)
    )
    row = txn.fetchone()
    if row is None:
        return None
    txn.execute("DELETE FROM login_tokens WHERE token_hash = ?", (token_hash,))
    user_id, expiry_ts = row
    return str(user_id) if expiry_ts > now else None


class TokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def lookup_access_token(self, token_hash: str, now: int) -> AccessTokenInfo | None:
        """The token, if it exists (expired or not); its first use is recorded."""
        return await self._db.run_interaction(
            "lookup_access_token", _lookup_access_token_txn, token_hash, now
        )

    async def get_refresh_token(self, token_hash: str) -> RefreshTokenInfo | None:
        return await self._db.run_interaction(
            "get_refresh_token", _get_refresh_token_txn, token_hash
        )

    async def refresh(
        self, old_hash: str, now: int, access: NewAccessToken, refresh: NewRefreshToken
    ) -> tuple[RefreshOutcome, RefreshTokenInfo | None]:
        """Replace the pair of the refresh token `old_hash` by `access` and `refresh`."""
        return await self._db.run_interaction(
            "refresh_tokens", _refresh_txn, old_hash, now, access, refresh
        )

    async def delete_access_token(self, token_hash: str) -> None:
        """Delete an access token and the refresh token issued with it."""
        await self._db.run_interaction("delete_access_token", _delete_access_token_txn, token_hash)

    async def delete_tokens_for_user(
        self, user_id: str, except_token_hash: str | None = None
    ) -> None:
        await self._db.run_interaction(
            "delete_tokens_for_user", delete_tokens_for_user_txn, user_id, except_token_hash
        )

    async def update_last_used(self, last_used: Mapping[str, int]) -> None:
        """Record when each token (by hash) was last used."""
        await self._db.run_interaction("update_token_last_used", _update_last_used_txn, last_used)

    async def add_login_token(self, token_hash: str, user_id: str, now: int, expiry_ts: int) -> None:
        await self._db.run_interaction(
            "add_login_token",
            lambda txn: txn.execute(
                "INSERT INTO login_tokens (token_hash, user_id, created_ts, expiry_ts)"
                " VALUES (?, ?, ?, ?)",
                (token_hash, user_id, now, expiry_ts),
            ),
        )

    async def consume_login_token(self, token_hash: str, now: int) -> str | None:
        """The user a login token is for, deleting it; None if unknown, used or expired."""
        return await self._db.run_interaction(
            "consume_login_token", _consume_login_token_txn, token_hash, now
        )

    async def delete_expired_login_tokens(self, now: int) -> None:
        await self._db.run_interaction(
            "delete_expired_login_tokens",
            lambda txn: txn.execute("DELETE FROM login_tokens WHERE expiry_ts <= ?", (now,)),
        )
