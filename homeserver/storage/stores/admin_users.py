"""AdminUserStore: listing and searching local accounts for the admin API.

The rows of Synapse's `GET /_synapse/admin/v2/users`: each account with its
profile and the last time any of its devices was seen. Filters match
substrings case-insensitively on both engines (`lower(...) LIKE lower(?)`,
with `%`, `_` and `\\` in the search text taken literally).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction

# Sort keys the admin API accepts, and the column each sorts by.
ORDER_COLUMNS = {
    "name": "u.name",
    "displayname": "p.displayname",
    "is_guest": "u.is_guest",
    "admin": "u.admin",
    "deactivated": "u.deactivated",
    "user_type": "u.user_type",
    "avatar_url": "p.avatar_url",
    "shadow_banned": "u.name",
    "creation_ts": "u.creation_ts",
    "last_seen_ts": "last_seen_ts",
    "locked": "u.name",
}


@dataclass(frozen=True, slots=True)
class UserListQuery:
    start: int
    limit: int
    # Substring of the user ID.
    user_id: str | None = None
    # Substring of the user ID or the display name.
    name: str | None = None
    guests: bool = True
    # None: deactivated accounts too; False: active ones only; True: deactivated only.
    deactivated: bool | None = False
    admins: bool | None = None
    order_by: str = "name"
    forwards: bool = True


@dataclass(frozen=True, slots=True)
class UserListEntry:
    name: str
    user_type: str | None
    is_guest: bool
    admin: bool
    deactivated: bool
    erased: bool
    creation_ts: int
    displayname: str | None
    avatar_url: str | None
    last_seen_ts: int | None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _list_users_txn(txn: Transaction, query: UserListQuery) -> tuple[list[UserListEntry], int]:
    clauses: list[str] = []
    args: list[Any] = []
    if query.user_id:
        clauses.append("lower(u.name) LIKE lower(?) ESCAPE '\\'")
        args.append(_like(query.user_id))
    if query.name:
        clauses.append(
            "(lower(u.name) LIKE lower(?) ESCAPE '\\' OR lower(p.displayname) LIKE lower(?) ESCAPE '\\')"
        )
        args += [_like(query.name), _like(query.name)]
    if not query.guests:
        clauses.append("u.is_guest = ?")
        args.append(False)
    if query.deactivated is not None:
        clauses.append("u.deactivated = ?")
        args.append(query.deactivated)
    if query.admins is not None:
        clauses.append("u.admin = ?")
        args.append(query.admins)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    base = f"FROM users AS u LEFT JOIN profiles AS p ON p.user_id = u.name {where}"
    txn.execute(f"SELECT COUNT(*) {base}", args)
    row = txn.fetchone()
    total = int(row[0]) if row else 0
    column = ORDER_COLUMNS[query.order_by]
    direction = "ASC" if query.forwards else "DESC"
    txn.execute(
        "SELECT u.name, u.user_type, u.is_guest, u.admin, u.deactivated, u.erased,"
        " u.creation_ts, p.displayname, p.avatar_url,"
        " (SELECT MAX(d.last_seen_ts) FROM devices AS d WHERE d.user_id = u.name) AS last_seen_ts"
        f" {base} ORDER BY {column} {direction}, u.name ASC LIMIT ? OFFSET ?",
        [*args, query.limit, query.start],
    )
    users = [
        UserListEntry(
            name=name,
            user_type=user_type,
            is_guest=bool(is_guest),
            admin=bool(admin),
            deactivated=bool(deactivated),
            erased=bool(erased),
            creation_ts=int(creation_ts),
            displayname=displayname,
            avatar_url=avatar_url,
            last_seen_ts=None if last_seen is None else int(last_seen),
        )
        for (
            name,
            user_type,
            is_guest,
            admin,
            deactivated,
            erased,
            creation_ts,
            displayname,
            avatar_url,
            last_seen,
        ) in txn.fetchall()
    ]
    return users, total


def _last_seen_txn(txn: Transaction, user_id: str) -> int | None:
    txn.execute("SELECT MAX(last_seen_ts) FROM devices WHERE user_id = ?", (user_id,))
    row = txn.fetchone()
    return None if row is None or row[0] is None else int(row[0])


class AdminUserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_users(self, query: UserListQuery) -> tuple[list[UserListEntry], int]:
        """One page of the accounts matching `query`, and how many match in all."""
        return await self._db.run_interaction("admin_list_users", _list_users_txn, query)

    async def last_seen(self, user_id: str) -> int | None:
        """When any device of the user last made a request (ms), if ever."""
        return await self._db.run_interaction("admin_user_last_seen", _last_seen_txn, user_id)
