"""Devices of local users: listing, renaming, deleting, logging out.

Spec: client-server API "Device Management" and "Logout". A device is a
session: deleting it deletes its access and refresh tokens (in the same
transaction, see DeviceStore). Deleting devices will also have to delete
their end-to-end keys and announce device-list changes once those exist.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable
from typing import Any

from homeserver.handlers.auth import AuthHandler, Requester
from homeserver.handlers.client_ips import ClientIpTracker
from homeserver.storage.stores import Storage
from homeserver.storage.stores.devices import DeviceInfo
from homeserver.types.errors import Codes, MatrixError

# Synapse's limits.
MAX_DEVICE_DISPLAY_NAME_LEN = 100
MAX_DEVICE_ID_LEN = 255


def generate_device_id() -> str:
    """Ten random upper-case letters, like Synapse's device IDs."""
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


def check_device_id(device_id: Any) -> str | None:
    """A client-chosen device ID: None (let the server pick) or a non-empty string."""
    if device_id is None:
        return None
    if not isinstance(device_id, str) or not device_id or len(device_id) > MAX_DEVICE_ID_LEN:
        raise MatrixError(
            Codes.INVALID_PARAM,
            f"'device_id' must be a string of 1 to {MAX_DEVICE_ID_LEN} characters",
        )
    return device_id


def check_device_display_name(name: Any, key: str = "initial_device_display_name") -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise MatrixError(Codes.INVALID_PARAM, f"'{key}' must be a string")
    if len(name) > MAX_DEVICE_DISPLAY_NAME_LEN:
        raise MatrixError(
            Codes.TOO_LARGE,
            f"Device display name is too long (max {MAX_DEVICE_DISPLAY_NAME_LEN})",
            status=400,
        )
    return name


class DeviceHandler:
    def __init__(self, storage: Storage, client_ips: ClientIpTracker, auth: AuthHandler) -> None:
        self._storage = storage
        self._client_ips = client_ips
        self._auth = auth

    async def get_devices(self, user_id: str) -> list[DeviceInfo]:
        devices = await self._storage.devices.get_devices(user_id)
        return [self._client_ips.with_pending(device) for device in devices]

    async def get_device(self, user_id: str, device_id: str) -> DeviceInfo:
        device = await self._storage.devices.get_device(user_id, device_id)
        if device is None:
            raise MatrixError(Codes.NOT_FOUND, "Device not found")
        return self._client_ips.with_pending(device)

    async def update_display_name(self, user_id: str, device_id: str, display_name: Any) -> None:
        """PUT /devices/{deviceId}: None leaves the name as it is."""
        if display_name is None:
            if await self._storage.devices.get_device(user_id, device_id) is None:
                raise MatrixError(Codes.NOT_FOUND, "Device not found")
            return
        name = check_device_display_name(display_name, "display_name")
        if not await self._storage.devices.update_display_name(user_id, device_id, name):
            raise MatrixError(Codes.NOT_FOUND, "Device not found")

    async def delete_devices(self, user_id: str, device_ids: Iterable[str]) -> None:
        """Delete these devices of the user with their tokens; unknown IDs are ignored."""
        await self._storage.devices.delete_devices(user_id, device_ids)

    async def delete_other_devices(self, user_id: str, except_device_id: str | None) -> None:
        await self._storage.devices.delete_all_devices(user_id, except_device_id)

    async def logout(self, requester: Requester) -> None:
        """POST /logout: the requester's device goes, and with it its tokens."""
        if requester.device_id is not None:
            await self._storage.devices.delete_devices(requester.user_id, [requester.device_id])
        else:
            await self._auth.logout_token(requester)

    async def logout_all(self, requester: Requester) -> None:
        """POST /logout/all: every device and token of the user."""
        await self._storage.devices.delete_all_devices(requester.user_id)
        await self._storage.tokens.delete_tokens_for_user(requester.user_id)
