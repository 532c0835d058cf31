"""UserStore: local accounts: creation, lookup, passwords, flags, deactivation.

Deactivating an account also unbinds its third-party identifiers; listing
accounts for the admin API is `AdminUserStore`'s (admin_users.py).

User IDs are stored in full (`@localpart:server`). Lookups for login are
case-insensitive, as Synapse's are, because accounts from before the strict
localpart grammar may have upper-case letters; new localparts never do.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.devices import delete_all_devices_txn
from homeserver.storage.stores.profiles import create_profile_txn, erase_profile_txn
from homeserver.storage.stores.threepids import delete_threepids_for_user_txn
from homeserver.storage.stores.tokens import delete_tokens_for_user_txn


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: str
    password_hash: str | None
    creation_ts: int
    is_guest: bool
    admin: bool
    deactivated: bool
    erased: bool
    user_type: str | None


_COLUMNS = "name, password_hash, creation_ts, is_guest, admin, deactivated, erased, user_type"


def _row_to_user(row: tuple[object, ...]) -> UserInfo:
    name, password_hash, creation_ts, is_guest, admin, deactivated, erased, user_type = row
    return UserInfo(
        user_id=str(name),
        password_hash=password_hash,  # type: ignore[arg-type]
        creation_ts=int(creation_ts),  # type: ignore[call-overload]
        is_guest=bool(is_guest),
        admin=bool(admin),
        deactivated=bool(deactivated),
        erased=bool(erased),
        user_type=user_type,  # type: ignore[arg-type]
    )


def _name_taken_txn(txn: Transaction, user_id: str) -> bool:
    txn.execute("SELECT 1 FROM users WHERE lower(name) = lower(?)", (user_id,))
    return txn.fetchone() is not None


def _create_user_txn(
    txn: Transaction,
    user_id: str,
    password_hash: str | None,
    now: int,
    is_guest: bool,
    admin: bool,
    user_type: str | None,
    displayname: str | None,
) -> bool:
    if _name_taken_txn(txn, user_id):
        return False
    txn.execute(
        "INSERT INTO users (name, password_hash, creation_ts, is_guest, admin, user_type)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        (user_id, password_hash, now, is_guest, admin, user_type),
    )
    if txn.rowcount == 0:
        return False
    create_profile_txn(txn, user_id, displayname)
    return True


def _get_users_case_insensitive_txn(txn: Transaction, user_id: str) -> list[UserInfo]:
    txn.execute(f"SELECT {_COLUMNS} FROM users WHERE lower(name) = lower(?)", (user_id,))
    return [_row_to_user(row) for row in txn.fetchall()]


def _get_user_txn(txn: Transaction, user_id: str) -> UserInfo | None:
    txn.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", (user_id,))
    row = txn.fetchone()
    return None if row is None else _row_to_user(row)


def _next_generated_localpart_txn(txn: Transaction) -> int:
    txn.execute("UPDATE user_id_counter SET next_id = next_id + 1")
    txn.execute("SELECT next_id FROM user_id_counter")
    row = txn.fetchone()
    assert row is not None
    return int(row[0]) - 1


def _upgrade_guest_txn(txn: Transaction, user_id: str, password_hash: str) -> bool:
    txn.execute(
        "UPDATE users SET is_guest = ?, password_hash = ? WHERE name = ? AND is_guest = ?",
        (False, password_hash, user_id, True),
    )
    return txn.rowcount > 0


def _deactivate_txn(txn: Transaction, user_id: str, erase: bool) -> None:
    txn.execute(
        "UPDATE users SET deactivated = ?, password_hash = NULL WHERE name = ?", (True, user_id)
    )
    delete_all_devices_txn(txn, user_id)
    # Tokens without a device (none are issued now, but be thorough).
    delete_tokens_for_user_txn(txn, user_id)
    delete_threepids_for_user_txn(txn, user_id)
    if erase:
        txn.execute("UPDATE users SET erased = ? WHERE name = ?", (True, user_id))
        erase_profile_txn(txn, user_id)


class UserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_user(
        self,
        user_id: str,
        password_hash: str | None,
        now: int,
        *,
        is_guest: bool = False,
        admin: bool = False,
        user_type: str | None = None,
        displayname: str | None = None,
    ) -> bool:
        """Create the account and its profile; False if the ID (in any case) is taken."""
        return await self._db.run_interaction(
            "create_user",
            _create_user_txn,
            user_id,
            password_hash,
            now,
            is_guest,
            admin,
            user_type,
            displayname,
        )

    async def get_user(self, user_id: str) -> UserInfo | None:
        return await self._db.run_interaction("get_user", _get_user_txn, user_id)

    async def get_users_case_insensitive(self, user_id: str) -> list[UserInfo]:
        """Every account whose ID equals `user_id` ignoring (ASCII) case."""
        return await self._db.run_interaction(
            "get_users_case_insensitive", _get_users_case_insensitive_txn, user_id
        )

    async def is_name_taken(self, user_id: str) -> bool:
        """Whether an account with this ID, in any case, exists (deactivated ones count)."""
        return await self._db.run_interaction("is_user_name_taken", _name_taken_txn, user_id)

    async def next_generated_localpart(self) -> int:
        """A number never handed out before, for generated (numeric) localparts."""
        return await self._db.run_interaction(
            "next_generated_localpart", _next_generated_localpart_txn
        )

    async def set_password_hash(self, user_id: str, password_hash: str | None) -> None:
        await self._db.run_interaction(
            "set_password_hash",
            lambda txn: txn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, user_id)
            ),
        )

    async def upgrade_guest(self, user_id: str, password_hash: str) -> bool:
        """Turn a guest account into a full one; False if it is not a guest account."""
        return await self._db.run_interaction(
            "upgrade_guest", _upgrade_guest_txn, user_id, password_hash
        )

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self._db.run_interaction(
            "set_user_admin",
            lambda txn: txn.execute("UPDATE users SET admin = ? WHERE name = ?", (admin, user_id)),
        )

    async def set_user_type(self, user_id: str, user_type: str | None) -> None:
        await self._db.run_interaction(
            "set_user_type",
            lambda txn: txn.execute(
                "UPDATE users SET user_type = ? WHERE name = ?", (user_type, user_id)
            ),
        )

    async def deactivate(self, user_id: str, *, erase: bool) -> None:
        """Mark the account deactivated, forget its password, delete its devices and tokens
        and unbind its third-party identifiers; with `erase`, also mark it erased and
        clear its profile. One transaction."""
        await self._db.run_interaction("deactivate_user", _deactivate_txn, user_id, erase)

    async def reactivate(self, user_id: str, password_hash: str | None) -> None:
        """Undo a deactivation (an admin's decision), with a new password (or none)."""
        await self._db.run_interaction(
            "reactivate_user",
            lambda txn: txn.execute(
                "UPDATE users SET deactivated = ?, erased = ?, password_hash = ? WHERE name = ?",
                (False, False, password_hash, user_id),
            ),
        )
