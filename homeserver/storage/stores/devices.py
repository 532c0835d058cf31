"""DeviceStore: local users' devices, their last-seen details, and sessions on them.

A device and its tokens live and die together: `add_session` creates the
device (if new) and its tokens in one transaction, and deleting a device
deletes its access and refresh tokens in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.tokens import (
    NewAccessToken,
    NewRefreshToken,
    delete_tokens_for_devices_txn,
    insert_tokens_txn,
)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None


@dataclass(frozen=True, slots=True)
class LastSeen:
    """One device's most recent request, as buffered by the client IP tracker."""

    user_id: str
    device_id: str
    ts: int
    ip: str
    user_agent: str | None


_COLUMNS = "user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent"


def ensure_device_txn(
    txn: Transaction, user_id: str, device_id: str, initial_display_name: str | None
) -> bool:
    """Create the device unless it exists (an existing one is left as it is); True if created."""
    txn.execute(
        "INSERT INTO devices (user_id, device_id, display_name) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, device_id) DO NOTHING",
        (user_id, device_id, initial_display_name),
    )
    return txn.rowcount > 0


def delete_devices_txn(txn: Transaction, user_id: str, device_ids: Sequence[str]) -> None:
    delete_tokens_for_devices_txn(txn, user_id, device_ids)
    txn.executemany(
        "DELETE FROM devices WHERE user_id = ? AND device_id = ?",
        [(user_id, device_id) for device_id in device_ids],
    )


def delete_all_devices_txn(
    txn: Transaction, user_id: str, except_device_id: str | None = None
) -> list[str]:
    """Delete every device of `user_id` (but one) with its tokens; the IDs deleted."""
    txn.execute("SELECT device_id FROM devices WHERE user_id = ?", (user_id,))
    device_ids = [row[0] for row in txn.fetchall() if row[0] != except_device_id]
    delete_devices_txn(txn, user_id, device_ids)
    return device_ids


def _add_session_txn(
    txn: Transaction,
    user_id: str,
    device_id: str,
    initial_display_name: str | None,
    now: int,
    access: NewAccessToken,
    refresh: NewRefreshToken | None,
) -> bool:
    created = ensure_device_txn(txn, user_id, device_id, initial_display_name)
    insert_tokens_txn(txn, user_id, device_id, now, access, refresh)
    return created


def _get_devices_txn(txn: Transaction, user_id: str) -> list[DeviceInfo]:
    txn.execute(
        f"SELECT {_COLUMNS} FROM devices WHERE user_id = ? ORDER BY device_id", (user_id,)
    )
    return [DeviceInfo(*row) for row in txn.fetchall()]


def _get_device_txn(txn: Transaction, user_id: str, device_id: str) -> DeviceInfo | None:
    txn.execute(
        f"SELECT {_COLUMNS} FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
    )
    row = txn.fetchone()
    return None if row is None else DeviceInfo(*row)


def _update_last_seen_txn(txn: Transaction, rows: Sequence[LastSeen]) -> None:
    # UPDATE, not upsert: a device deleted since the request stays deleted.
    txn.executemany(
        "UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?, last_seen_user_agent = ?"
        " WHERE user_id = ? AND device_id = ?",
        [(r.ts, r.ip, r.user_agent, r.user_id, r.device_id) for r in rows],
    )


class DeviceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_session(
        self,
        user_id: str,
        device_id: str,
        initial_display_name: str | None,
        now: int,
        access: NewAccessToken,
        refresh: NewRefreshToken | None = None,
    ) -> bool:
        """Create the device if it is new and give it tokens; True if the device is new."""
        return await self._db.run_interaction(
            "add_session",
            _add_session_txn,
            user_id,
            device_id,
            initial_display_name,
            now,
            access,
            refresh,
        )

    async def get_devices(self, user_id: str) -> list[DeviceInfo]:
        return await self._db.run_interaction("get_devices", _get_devices_txn, user_id)

    async def get_device(self, user_id: str, device_id: str) -> DeviceInfo | None:
        return await self._db.run_interaction("get_device", _get_device_txn, user_id, device_id)

    async def update_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> bool:
        """Rename a device; False if it does not exist."""

        def txn_fn(txn: Transaction) -> bool:
            txn.execute(
                "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                (display_name, user_id, device_id),
            )
            return txn.rowcount > 0

        return await self._db.run_interaction("update_device_display_name", txn_fn)

    async def delete_devices(self, user_id: str, device_ids: Iterable[str]) -> None:
        """Delete these devices (unknown ones are ignored) and all their tokens."""
        await self._db.run_interaction(
            "delete_devices", delete_devices_txn, user_id, sorted(set(device_ids))
        )

    async def delete_all_devices(
        self, user_id: str, except_device_id: str | None = None
    ) -> list[str]:
        """Delete every device of the user but `except_device_id`, with their tokens."""
        return await self._db.run_interaction(
            "delete_all_devices", delete_all_devices_txn, user_id, except_device_id
        )

    async def update_last_seen(self, rows: Sequence[LastSeen]) -> None:
        await self._db.run_interaction("update_devices_last_seen", _update_last_seen_txn, rows)
