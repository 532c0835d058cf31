"""ProfileStore: local users' profiles (displayname, avatar_url and other fields).

displayname and avatar_url are columns of `profiles` (other code reads them
often, for membership events); every other field (m.tz, custom namespaced
keys) is a JSON value in `profile_fields`. A profile row exists for each
registered user, so "no row" means "no such local user".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from homeserver.storage.database import Database, Transaction

# Fields kept in columns of `profiles`, by key.
COLUMN_FIELDS = ("displayname", "avatar_url")


@dataclass(frozen=True, slots=True)
class Profile:
    displayname: str | None
    avatar_url: str | None
    # Every other field, by key (a fresh dict per read: callers may keep it).
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Every field that is set, by key (as GET /profile/{userId} shows them)."""
        result: dict[str, Any] = dict(self.fields)
        if self.displayname is not None:
            result["displayname"] = self.displayname
        if self.avatar_url is not None:
            result["avatar_url"] = self.avatar_url
        return result


def create_profile_txn(txn: Transaction, user_id: str, displayname: str | None) -> None:
    txn.execute(
        "INSERT INTO profiles (user_id, displayname) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING",
        (user_id, displayname),
    )


def erase_profile_txn(txn: Transaction, user_id: str) -> None:
    """Clear every field of the profile (the row stays: the user still exists)."""
    txn.execute(
        "UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = ?", (user_id,)
    )
    txn.execute("DELETE FROM profile_fields WHERE user_id = ?", (user_id,))


def _get_profile_txn(txn: Transaction, user_id: str) -> Profile | None:
    txn.execute("SELECT displayname, avatar_url FROM profiles WHERE user_id = ?", (user_id,))
    row = txn.fetchone()
    if row is None:
        return None
    txn.execute(
        "SELECT field_name, value FROM profile_fields WHERE user_id = ? ORDER BY field_name",
        (user_id,),
    )
    fields = {name: json.loads(value) for name, value in txn.fetchall()}
    return Profile(displayname=row[0], avatar_url=row[1], fields=fields)


def _set_field_txn(txn: Transaction, user_id: str, key: str, value: Any) -> bool:
    if key in COLUMN_FIELDS:
        txn.execute(f"UPDATE profiles SET {key} = ? WHERE user_id = ?", (value, user_id))
        return txn.rowcount > 0
    txn.execute("SELECT 1 FROM profiles WHERE user_id = ?", (user_id,))
    if txn.fetchone() is None:
        return False
    txn.execute(
        "INSERT INTO profile_fields (user_id, field_name, value) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, field_name) DO UPDATE SET value = excluded.value",
        (user_id, key, json.dumps(value, ensure_ascii=False, separators=(",", ":"))),
    )
    return True


def _delete_field_txn(txn: Transaction, user_id: str, key: str) -> None:
    if key in COLUMN_FIELDS:
        txn.execute(f"UPDATE profiles SET {key} = NULL WHERE user_id = ?", (user_id,))
    else:
        txn.execute(
            "DELETE FROM profile_fields WHERE user_id = ? AND field_name = ?", (user_id, key)
        )


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_profile(self, user_id: str) -> Profile | None:
        """The profile of a local user; None if there is no such user."""
        return await self._db.run_interaction("get_profile", _get_profile_txn, user_id)

    async def set_field(self, user_id: str, key: str, value: Any) -> bool:
        """Set one field (None clears displayname/avatar_url); False if there is no such user."""
        return await self._db.run_interaction("set_profile_field", _set_field_txn, user_id, key, value)

    async def delete_field(self, user_id: str, key: str) -> None:
        await self._db.run_interaction("delete_profile_field", _delete_field_txn, user_id, key)
