"""The admin API for accounts, as Synapse's (so existing tools such as synadm work).

Synapse's "User Admin API": list and query accounts, create or modify one
(PUT /_synapse/admin/v2/users/{userId}), deactivate, reset a password, list
a user's devices. Every caller must be a server admin (the per-user `admin`
flag): anyone else gets 403 M_FORBIDDEN (`require_admin`). Quirks kept for
compatibility: the list shows `creation_ts` in milliseconds, the single-user
answer in seconds; creating a user answers 201, modifying one 200.
"""

from __future__ import annotations

from typing import Any

from homeserver.clock import Clock
from homeserver.handlers.account import AccountHandler
from homeserver.handlers.auth import Requester
from homeserver.handlers.devices import DeviceHandler
from homeserver.handlers.passwords import PasswordHasher, check_password_field
from homeserver.handlers.profile import check_field_value
from homeserver.handlers.registration import RegistrationHandler
from homeserver.handlers.shared_secret_registration import USER_TYPES
from homeserver.handlers.threepids import ThreepidHandler, ValidatedThreepid
from homeserver.storage.stores import Storage
from homeserver.storage.stores.admin_users import UserListEntry, UserListQuery
from homeserver.storage.stores.devices import DeviceInfo
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import InvalidIdentifier, parse_user_id
from homeserver.types.threepids import MEDIA, InvalidThreepid, canonicalise_address

JsonDict = dict[str, Any]


def list_entry_json(user: UserListEntry) -> JsonDict:
    """An account as GET /_synapse/admin/v2/users lists it."""
    return {
        "name": user.name,
        "user_type": user.user_type,
        "is_guest": user.is_guest,
        "admin": user.admin,
        "deactivated": user.deactivated,
        "shadow_banned": False,
        "displayname": user.displayname,
        "avatar_url": user.avatar_url,
        "creation_ts": user.creation_ts,
        "erased": user.erased,
        "last_seen_ts": user.last_seen_ts,
        "locked": False,
    }


def _bool(body: JsonDict, key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise MatrixError(Codes.BAD_JSON, f"'{key}' parameter is not of type boolean", status=400)
    return value


def _threepids(body: JsonDict) -> set[tuple[str, str]] | None:
    value = body.get("threepids")
    if value is None:
        return None
    if not isinstance(value, list):
        raise MatrixError(Codes.INVALID_PARAM, "'threepids' must be a list")
    found = set()
    for item in value:
        if not isinstance(item, dict) or "medium" not in item or "address" not in item:
            raise MatrixError(Codes.MISSING_PARAM, "Each threepid needs a medium and an address")
        medium, address = item["medium"], item["address"]
        if medium not in MEDIA or not isinstance(address, str):
            raise MatrixError(Codes.INVALID_PARAM, "Invalid threepid")
        try:
            found.add((medium, canonicalise_address(medium, address)))
        except InvalidThreepid as e:
            raise MatrixError(Codes.INVALID_PARAM, str(e)) from None
    return found


class AdminUsersHandler:
    def __init__(
        self,
        server_name: str,
        clock: Clock,
        storage: Storage,
        registration: RegistrationHandler,
        account: AccountHandler,
        devices: DeviceHandler,
        threepids: ThreepidHandler,
        hasher: PasswordHasher,
    ) -> None:
        self._server_name = server_name
        self._clock = clock
        self._storage = storage
        self._registration = registration
        self._account = account
        self._devices = devices
        self._threepids = threepids
        self._hasher = hasher

    async def require_admin(self, requester: Requester) -> None:
        user = await self._storage.users.get_user(requester.user_id)
        if user is None or not user.admin:
            raise MatrixError(Codes.FORBIDDEN, "You are not a server admin")

    def local_user(self, user_id: str) -> str:
        """`user_id` if it is a well-formed ID of this server; 400 otherwise."""
        try:
            parsed = parse_user_id(user_id)
        except InvalidIdentifier as e:
            raise MatrixError(Codes.INVALID_PARAM, f"Invalid user ID: {e}") from e
        if parsed.domain != self._server_name:
            raise MatrixError(Codes.UNKNOWN, "Can only manage local users", status=400)
        return user_id

    async def list_users(self, query: UserListQuery) -> JsonDict:
        users, total = await self._storage.admin_users.list_users(query)
        answer: JsonDict = {"users": [list_entry_json(user) for user in users], "total": total}
        if query.start + query.limit < total:
            answer["next_token"] = str(query.start + len(users))
        return answer

    async def get_user(self, user_id: str) -> JsonDict | None:
        """An account as GET /_synapse/admin/v2/users/{userId} shows it; None if unknown."""
        user = await self._storage.users.get_user(self.local_user(user_id))
        if user is None:
            return None
        profile = await self._storage.profiles.get_profile(user_id)
        threepids = await self._storage.threepids.get_user_threepids(user_id)
        return {
            "name": user.user_id,
            "admin": user.admin,
            "user_type": user.user_type,
            "is_guest": user.is_guest,
            "deactivated": user.deactivated,
            "erased": user.erased,
            "locked": False,
            "suspended": False,
            "shadow_banned": False,
            "creation_ts": user.creation_ts // 1000,
            "appservice_id": None,
            "consent_server_notice_sent": None,
            "consent_version": None,
            "consent_ts": None,
            "displayname": profile.displayname if profile else None,
            "avatar_url": profile.avatar_url if profile else None,
            "threepids": [
                {
                    "medium": t.medium,
                    "address": t.address,
                    "added_at": t.added_at,
                    "validated_at": t.validated_at,
                }
                for t in threepids
            ],
            "external_ids": [],
            "last_seen_ts": await self._storage.admin_users.last_seen(user_id),
        }

    async def put_user(self, requester: Requester, user_id: str, body: JsonDict) -> tuple[int, JsonDict]:
        """PUT /_synapse/admin/v2/users/{userId}: create (201) or modify (200) the account."""
        self.local_user(user_id)
        threepids = _threepids(body)
        user_type = body.get("user_type")
        if user_type is not None and user_type not in USER_TYPES:
            raise MatrixError(Codes.INVALID_PARAM, "Invalid user type")
        admin = _bool(body, "admin", False)
        password = body.get("password")
        if password is not None:
            password = check_password_field(password)
        logout_devices = _bool(body, "logout_devices", True)
        deactivate = _bool(body, "deactivated", False)
        if _bool(body, "locked", False):
            raise MatrixError(Codes.INVALID_PARAM, "Locking accounts is not supported")
        profile: dict[str, Any] = {}
        for key in ("displayname", "avatar_url"):
            if key in body and body[key] is not None:
                profile[key] = check_field_value(key, body[key])

        for medium, address in sorted(threepids or ()):
            owner = await self._storage.threepids.get_user_by_threepid(medium, address)
            if owner is not None and owner != user_id:
                raise MatrixError(Codes.THREEPID_IN_USE, f"{medium} is already in use")
        existing = await self._storage.users.get_user(user_id)
        if existing is None:
            password_hash = await self._hasher.hash(password) if password is not None else None
            created = await self._registration.register_user(
                parse_user_id(user_id).localpart,
                password_hash=password_hash,
                admin=admin,
                user_type=user_type,
                displayname=profile.get("displayname"),
            )
            if profile.get("avatar_url"):
                await self._storage.profiles.set_field(created, "avatar_url", profile["avatar_url"])
            await self._replace_threepids(created, threepids or set())
            if deactivate:
                await self._storage.users.deactivate(created, erase=False)
            return 201, await self._must_get(created)

        # Refusals first, so that a refused request changes nothing.
        change_admin = "admin" in body and admin != existing.admin
        if change_admin and user_id == requester.user_id and not admin:
            raise MatrixError(Codes.UNKNOWN, "You may not demote yourself.", status=400)
        reactivate = "deactivated" in body and existing.deactivated and not deactivate
        if reactivate and password is None:
            raise MatrixError(
                Codes.MISSING_PARAM, "Must provide a password to re-activate an account."
            )
        for key, value in profile.items():
            await self._storage.profiles.set_field(user_id, key, value)
        if threepids is not None:
            await self._replace_threepids(user_id, threepids)
        if change_admin:
            await self._storage.users.set_admin(user_id, admin)
        if "user_type" in body:
            await self._storage.users.set_user_type(user_id, user_type)
        if "deactivated" in body and deactivate and not existing.deactivated:
            await self._storage.users.deactivate(user_id, erase=False)
        if reactivate:
            assert password is not None
            await self._storage.users.reactivate(user_id, await self._hasher.hash(password))
            password = None
        if password is not None:
            await self._account.set_password(
                user_id, await self._hasher.hash(password), logout_devices, requester
            )
        return 200, await self._must_get(user_id)

    async def _must_get(self, user_id: str) -> JsonDict:
        user = await self.get_user(user_id)
        assert user is not None
        return user

    async def _replace_threepids(self, user_id: str, wanted: set[tuple[str, str]]) -> None:
        current = {(t.medium, t.address) for t in await self._storage.threepids.get_user_threepids(user_id)}
        for medium, address in current - wanted:
            await self._storage.threepids.remove_user_threepid(user_id, medium, address)
        now = self._clock.time_msec()
        for medium, address in sorted(wanted - current):
            await self._threepids.bind(user_id, ValidatedThreepid(medium, address, now))

    async def _existing(self, user_id: str) -> None:
        if await self._storage.users.get_user(self.local_user(user_id)) is None:
            raise MatrixError(Codes.NOT_FOUND, "User not found")

    async def deactivate(self, user_id: str, body: JsonDict) -> str:
        """POST /_synapse/admin/v1/deactivate/{userId}; the `id_server_unbind_result`."""
        await self._existing(user_id)
        erase = _bool(body, "erase", False)
        await self._storage.users.deactivate(user_id, erase=erase)
        return "success"

    async def reset_password(self, requester: Requester, user_id: str, body: JsonDict) -> None:
        """POST /_synapse/admin/v1/reset_password/{userId}."""
        if "new_password" not in body:
            raise MatrixError(Codes.MISSING_PARAM, "Missing params: new_password")
        new_password = check_password_field(body["new_password"], "new_password")
        logout_devices = _bool(body, "logout_devices", True)
        await self._existing(user_id)
        await self._account.set_password(
            user_id, await self._hasher.hash(new_password), logout_devices, requester
        )

    async def user_devices(self, user_id: str) -> list[DeviceInfo]:
        await self._existing(user_id)
        return await self._devices.get_devices(user_id)
