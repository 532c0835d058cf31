"""Synapse's user admin API: list and query accounts, create or modify, deactivate, reset, devices."""

from __future__ import annotations

from homeserver.api.admin._base import AdminServlet, admin_patterns
from homeserver.api.client.devices import device_json
from homeserver.api.http import JsonDict, SiteRequest, parse_json_object, parse_json_value
from homeserver.api.params import query_bool, query_int, query_str
from homeserver.handlers.auth import Requester
from homeserver.storage.stores.admin_users import ORDER_COLUMNS, UserListQuery
from homeserver.types.errors import Codes, MatrixError


class UsersServlet(AdminServlet):
    """GET /_synapse/admin/v2/users: one page of accounts.

    Query: `from` and `limit` (default 0 and 100), `user_id` (part of the
    ID), `name` (part of the ID or display name), `guests` (default true),
    `deactivated` (default false: only active accounts), `admins`,
    `order_by` and `dir` (`f` or `b`). The answer has `users`, `total` and,
    when more follow, `next_token` (the `from` of the next page).
    """

    PATTERNS = admin_patterns("/users", "v2")

    async def on_GET(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        start = query_int(request, "from", 0)
        limit = query_int(request, "limit", 100)
        for name, value in (("from", start), ("limit", limit)):
            if value < 0:
                raise MatrixError(
                    Codes.INVALID_PARAM,
                    f"Query parameter {name} must be a string representing a positive integer.",
                )
        order_by = query_str(request, "order_by") or "name"
        if order_by not in ORDER_COLUMNS:
            raise MatrixError(Codes.INVALID_PARAM, f"Unknown order_by: {order_by}")
        direction = query_str(request, "dir") or "f"
        if direction not in ("f", "b"):
            raise MatrixError(Codes.INVALID_PARAM, "Query parameter dir must be 'f' or 'b'")
        query = UserListQuery(
            start=start,
            limit=limit,
            user_id=query_str(request, "user_id"),
            name=query_str(request, "name"),
            guests=bool(query_bool(request, "guests", True)),
            deactivated=None if query_bool(request, "deactivated", False) else False,
            admins=query_bool(request, "admins", None),
            order_by=order_by,
            forwards=direction == "f",
        )
        return 200, await self._admin.list_users(query)


class UserServlet(AdminServlet):
    """GET/PUT /_synapse/admin/v2/users/{userId}: one account; PUT creates (201) or modifies (200).

    PUT takes `password`, `logout_devices`, `displayname`, `avatar_url`,
    `threepids` (the whole list), `admin`, `deactivated` and `user_type`.
    """

    PATTERNS = admin_patterns("/users/(?P<user_id>[^/]+)", "v2")

    async def on_GET(
        self, request: SiteRequest, requester: Requester, user_id: str
    ) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        user = await self._admin.get_user(user_id)
        if user is None:
            raise MatrixError(Codes.NOT_FOUND, "User not found")
        return 200, user

    async def on_PUT(
        self, request: SiteRequest, requester: Requester, user_id: str
    ) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        return await self._admin.put_user(requester, user_id, parse_json_object(request))


class UserDevicesServlet(AdminServlet):
    """GET /_synapse/admin/v2/users/{userId}/devices: the user's devices and how many."""

    PATTERNS = admin_patterns("/users/(?P<user_id>[^/]+)/devices", "v2")

    async def on_GET(
        self, request: SiteRequest, requester: Requester, user_id: str
    ) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        devices = await self._admin.user_devices(user_id)
        return 200, {"devices": [device_json(d) for d in devices], "total": len(devices)}


def _optional_body(request: SiteRequest) -> JsonDict:
    """The JSON object body, or `{}` when there is none (Synapse allows an empty body)."""
    if request.content is not None:
        position = request.content.tell()
        empty = not request.content.read()
        request.content.seek(position)
        if empty:
            return {}
    value = parse_json_value(request)
    if not isinstance(value, dict):
        raise MatrixError(Codes.BAD_JSON, "Content must be a JSON object.")
    return value


class DeactivateServlet(AdminServlet):
    """POST /_synapse/admin/v1/deactivate/{userId}: deactivate an account (`erase` optional)."""

    PATTERNS = admin_patterns("/deactivate/(?P<user_id>[^/]+)")

    async def on_POST(
        self, request: SiteRequest, requester: Requester, user_id: str
    ) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        result = await self._admin.deactivate(user_id, _optional_body(request))
        return 200, {"id_server_unbind_result": result}


class ResetPasswordServlet(AdminServlet):
    """POST /_synapse/admin/v1/reset_password/{userId}: `new_password`, `logout_devices` (default true)."""

    PATTERNS = admin_patterns("/reset_password/(?P<user_id>[^/]+)")

    async def on_POST(
        self, request: SiteRequest, requester: Requester, user_id: str
    ) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        await self._admin.reset_password(requester, user_id, parse_json_object(request))
        return 200, {}
