"""Profiles: reading any local user's profile, changing one's own.

Spec: client-server API "Profiles" (v1.16 and later: any field by key).
Rules, with Synapse's limits where the spec leaves them to the server:

- keys: `displayname`, `avatar_url`, `m.tz` or a namespaced custom key
  (400 M_INVALID_PARAM otherwise), at most 255 bytes (400 M_KEY_TOO_LARGE);
- displayname: a string of at most 256 characters; avatar_url: an mxc:// URI
  of at most 1000 characters; m.tz: a string; custom keys: any JSON value;
  an empty displayname or avatar_url clears the field (as Synapse does);
- the whole profile stays under 64 KiB of JSON (400 M_PROFILE_TOO_LARGE);
- only the user changes their own profile (403 M_FORBIDDEN), and guests only
  their displayname (403 M_GUEST_ACCESS_FORBIDDEN);
- unknown local users and unset fields are 404 M_NOT_FOUND. Other servers'
  users' profiles are asked of their server (GET /query/profile, through
  FederationQueries): its 404 is ours, and no answer is 502 (as Synapse).

A change of displayname or avatar_url is told to the change listeners
(`add_change_listener`) before the request is answered: the membership
handler updates the user's m.room.member event in every room they are in, as
Synapse does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.federation.queries import FederationQueries
from homeserver.handlers.auth import Requester
from homeserver.storage.stores import Storage
from homeserver.storage.stores.profiles import COLUMN_FIELDS
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import InvalidIdentifier, parse_user_id

ProfileChangeListener = Callable[[Requester, str], Awaitable[None]]
"""Called with the requester and the user whose displayname or avatar_url changed."""

# The fields m.room.member events copy; a change to them is told to the listeners.
MEMBER_EVENT_FIELDS = ("displayname", "avatar_url")

MAX_DISPLAYNAME_LEN = 256
MAX_AVATAR_URL_LEN = 1000
MAX_KEY_BYTES = 255
MAX_PROFILE_BYTES = 64 * 1024

_KEY_PATTERN = re.compile(r"^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")
_MXC_PATTERN = re.compile(r"^mxc://[^/?#]+/[^/?#]+$")


def check_key(key: str) -> None:
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise MatrixError(Codes.KEY_TOO_LARGE, f"Profile keys are at most {MAX_KEY_BYTES} bytes")
    if not _KEY_PATTERN.match(key):
        raise MatrixError(Codes.INVALID_PARAM, "Invalid profile key.")


def _check_value(key: str, value: Any) -> Any:
    """The value to store for `key` (None clears displayname/avatar_url)."""
    if key == "displayname":
        if not isinstance(value, str):
            raise MatrixError(Codes.INVALID_PARAM, "'displayname' must be a string")
        if len(value) > MAX_DISPLAYNAME_LEN:
            raise MatrixError(
                Codes.INVALID_PARAM, f"Displayname is too long (max {MAX_DISPLAYNAME_LEN})"
            )
        return value or None
    if key == "avatar_url":
        if not isinstance(value, str):
            raise MatrixError(Codes.INVALID_PARAM, "'avatar_url' must be a string")
        if len(value) > MAX_AVATAR_URL_LEN:
            raise MatrixError(
                Codes.INVALID_PARAM, f"Avatar URL is too long (max {MAX_AVATAR_URL_LEN})"
            )
        if value and not _MXC_PATTERN.match(value):
            raise MatrixError(Codes.INVALID_PARAM, "'avatar_url' must be an mxc:// URI")
        return value or None
    if key == "m.tz" and not isinstance(value, str):
        raise MatrixError(Codes.INVALID_PARAM, "'m.tz' must be a string")
    return value


def check_field_value(key: str, value: Any) -> Any:
    """The value to store for a profile field (None clears displayname/avatar_url); 400 if bad."""
    return _check_value(key, value)


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


class ProfileHandler:
    def __init__(self, server_name: str, storage: Storage) -> None:
        self._server_name = server_name
        self._storage = storage
        self._change_listeners: list[ProfileChangeListener] = []
        self._remote: FederationQueries | None = None

    def use_federation(self, queries: FederationQueries) -> None:
        """Read other servers' users' profiles through `queries`.

        Given after construction: the HomeServer builds the federation client
        after the accounts handlers.
        """
        self._remote = queries

    def _remote_server(self, user_id: str) -> str | None:
        """The server to ask for this user's profile; None for our own users."""
        try:
            parsed = parse_user_id(user_id)
        except InvalidIdentifier as e:
            raise MatrixError(Codes.INVALID_PARAM, f"Invalid user ID: {e}") from e
        if parsed.domain == self._server_name or self._remote is None:
            return None
        return parsed.domain

    async def _remote_profile(self, user_id: str, server: str, key: str | None) -> dict[str, Any]:
        assert self._remote is not None
        fields = await self._remote.query_profile(user_id, server, key)
        if fields is None:
            raise MatrixError(Codes.NOT_FOUND, "Profile was not found")
        return fields

    def add_change_listener(self, listener: ProfileChangeListener) -> None:
        self._change_listeners.append(listener)

    async def _changed(self, requester: Requester, user_id: str, key: str) -> None:
        if key in MEMBER_EVENT_FIELDS:
            for listener in self._change_listeners:
                await listener(requester, user_id)

    def _local_user(self, user_id: str) -> str:
        try:
            parsed = parse_user_id(user_id)
        except InvalidIdentifier as e:
            raise MatrixError(Codes.INVALID_PARAM, f"Invalid user ID: {e}") from e
        if parsed.domain != self._server_name:
            raise MatrixError(Codes.NOT_FOUND, "Profile lookup over federation is not supported yet")
        return user_id

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        """Every field set on the user's profile; 404 for unknown users."""
        server = self._remote_server(user_id)
        if server is not None:
            return await self._remote_profile(user_id, server, None)
        profile = await self._storage.profiles.get_profile(self._local_user(user_id))
        if profile is None:
            raise MatrixError(Codes.NOT_FOUND, "Profile was not found")
        return profile.as_dict()

    async def get_field(self, user_id: str, key: str) -> Any:
        check_key(key)
        server = self._remote_server(user_id)
        if server is not None:
            fields = await self._remote_profile(user_id, server, key)
        else:
            fields = await self.get_profile(user_id)
        if key not in fields:
            raise MatrixError(Codes.NOT_FOUND, "The requested profile field is not set")
        return fields[key]

    def _check_may_change(self, requester: Requester, user_id: str, key: str) -> None:
        check_key(key)
        if requester.user_id != user_id:
            raise MatrixError(Codes.FORBIDDEN, "Cannot change another user's profile")
        if requester.is_guest and key != "displayname":
            raise MatrixError(
                Codes.GUEST_ACCESS_FORBIDDEN, "Guests may only change their display name"
            )

    async def set_field(
        self, requester: Requester, user_id: str, key: str, body: dict[str, Any]
    ) -> None:
        """PUT /profile/{userId}/{keyName} with `body` = `{keyName: value}`."""
        self._check_may_change(requester, user_id, key)
        if key not in body:
            raise MatrixError(Codes.MISSING_PARAM, f"Missing key '{key}'")
        stored = _check_value(key, body[key])
        profile = await self._storage.profiles.get_profile(self._local_user(user_id))
        if profile is None:
            raise MatrixError(Codes.NOT_FOUND, "Profile was not found")
        # An empty displayname or avatar_url clears it; other fields store any value, null too.
        clears = key in COLUMN_FIELDS and stored is None
        fields = profile.as_dict()
        if clears:
            fields.pop(key, None)
        else:
            fields[key] = stored
        if _json_size(fields) > MAX_PROFILE_BYTES:
            raise MatrixError(
                Codes.PROFILE_TOO_LARGE, f"The profile would exceed {MAX_PROFILE_BYTES} bytes"
            )
        if clears:
            await self._storage.profiles.delete_field(user_id, key)
        elif not await self._storage.profiles.set_field(user_id, key, stored):
            raise MatrixError(Codes.NOT_FOUND, "Profile was not found")
        await self._changed(requester, user_id, key)

    async def delete_field(self, requester: Requester, user_id: str, key: str) -> None:
        """DELETE /profile/{userId}/{keyName}: fine if the field was not set."""
        self._check_may_change(requester, user_id, key)
        await self._storage.profiles.delete_field(self._local_user(user_id), key)
        await self._changed(requester, user_id, key)
