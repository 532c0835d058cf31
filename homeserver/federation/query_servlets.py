"""Servlets answering other homeservers' queries: aliases, profiles, the room directory, OpenID.

Spec: server-server API "Querying for information" (GET /query/directory,
GET /query/profile), "Public Room Directory" (GET/POST /publicRooms) and
"OpenID" (GET /openid/userinfo, which third parties call without X-Matrix).
"""

from __future__ import annotations

from typing import Any

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest, parse_json_object
from homeserver.api.params import body_bool, body_str, query_bool, query_int, query_str
from homeserver.handlers.openid import OpenIdHandler
from homeserver.handlers.profile import ProfileHandler
from homeserver.handlers.room_directory import RoomDirectoryHandler, parse_alias
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import InvalidIdentifier, parse_user_id

FED_V1 = "^/_matrix/federation/v1"


class QueryDirectoryServlet(Servlet):
    """GET /_matrix/federation/v1/query/directory?room_alias=: the room one of our aliases names.

    Answers `{room_id, servers}`; 404 M_NOT_FOUND for an alias we do not
    have, another server's included.
    """

    PATTERNS = (f"{FED_V1}/query/directory$",)
    AUTH = Auth.SERVER

    def __init__(self, server_name: str, directory: RoomDirectoryHandler) -> None:
        self._server_name = server_name
        self._directory = directory

    async def on_GET(self, request: SiteRequest, origin: str) -> tuple[int, JsonDict]:
        alias = query_str(request, "room_alias", required=True)
        assert alias is not None
        # Only ours: resolving another server's alias here would make us its proxy.
        if parse_alias(alias).domain != self._server_name:
            raise MatrixError(Codes.NOT_FOUND, "Room alias not found.")
        resolved = await self._directory.resolve_alias(alias)
        if resolved is None:
            raise MatrixError(Codes.NOT_FOUND, "Room alias not found.")
        room_id, servers = resolved
        return 200, {"room_id": room_id, "servers": servers}


class QueryProfileServlet(Servlet):
    """GET /_matrix/federation/v1/query/profile?user_id=&field=: one of our users' profile.

    Without `field`, every field set; with it, only that one (404
    M_NOT_FOUND when unset). 404 for unknown users, 400 M_INVALID_PARAM for
    another server's users.
    """

    PATTERNS = (f"{FED_V1}/query/profile$",)
    AUTH = Auth.SERVER

    def __init__(self, server_name: str, profiles: ProfileHandler) -> None:
        self._server_name = server_name
        self._profiles = profiles

    async def on_GET(self, request: SiteRequest, origin: str) -> tuple[int, JsonDict]:
        user_id = query_str(request, "user_id", required=True)
        assert user_id is not None
        try:
            domain = parse_user_id(user_id).domain
        except InvalidIdentifier as e:
            raise MatrixError(Codes.INVALID_PARAM, f"Invalid user ID: {e}") from e
        if domain != self._server_name:
            raise MatrixError(Codes.INVALID_PARAM, "User is not hosted on this homeserver")
        field = query_str(request, "field")
        if field is None:
            return 200, await self._profiles.get_profile(user_id)
        return 200, {field: await self._profiles.get_field(user_id, field)}


class FederationPublicRoomsServlet(Servlet):
    """GET/POST /_matrix/federation/v1/publicRooms: our published room directory.

    The same pages as the client API's /publicRooms. GET takes `limit`,
    `since`, `include_all_networks` and `third_party_instance_id` in the
    query; POST the same in its body, plus `filter`.
    """

    PATTERNS = (f"{FED_V1}/publicRooms$",)
    AUTH = Auth.SERVER

    def __init__(self, directory: RoomDirectoryHandler) -> None:
        self._directory = directory

    async def on_GET(self, request: SiteRequest, origin: str) -> tuple[int, JsonDict]:
        limit = query_int(request, "limit", 0)
        include_all_networks = query_bool(request, "include_all_networks", False)
        instance_id = query_str(request, "third_party_instance_id")
        _check_networks(bool(include_all_networks), instance_id)
        return 200, await self._directory.get_public_rooms(
            limit=limit or None,
            since=query_str(request, "since"),
            include_all_networks=bool(include_all_networks),
            third_party_instance_id=instance_id,
        )

    async def on_POST(self, request: SiteRequest, origin: str) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise MatrixError(Codes.INVALID_PARAM, "'limit' must be an integer")
        search_term, room_types = _parse_filter(body.get("filter"))
        include_all_networks = body_bool(body, "include_all_networks", False)
        instance_id = body_str(body, "third_party_instance_id")
        _check_networks(include_all_networks, instance_id)
        return 200, await self._directory.get_public_rooms(
            limit=limit or None,
            since=body_str(body, "since"),
            search_term=search_term,
            room_types=room_types,
            include_all_networks=include_all_networks,
            third_party_instance_id=instance_id,
        )


def _check_networks(include_all_networks: bool, instance_id: str | None) -> None:
    if include_all_networks and instance_id is not None:
        raise MatrixError(
            Codes.INVALID_PARAM,
            "include_all_networks and third_party_instance_id cannot be used together",
        )


def _parse_filter(value: Any) -> tuple[str | None, list[str | None] | None]:
    """(generic_search_term, room_types) of a /publicRooms filter; M_INVALID_PARAM if malformed."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise MatrixError(Codes.INVALID_PARAM, "'filter' must be an object")
    room_types = value.get("room_types")
    if room_types is not None and (
        not isinstance(room_types, list)
        or not all(t is None or isinstance(t, str) for t in room_types)
    ):
        raise MatrixError(
            Codes.INVALID_PARAM, "'room_types' must be a list of room types (strings or null)"
        )
    return body_str(value, "generic_search_term"), room_types


class OpenIdUserInfoServlet(Servlet):
    """GET /_matrix/federation/v1/openid/userinfo?access_token=: whom an OpenID token stands for.

    Called by third parties, not homeservers: no X-Matrix. 401
    M_UNKNOWN_TOKEN for a token unknown or expired, M_MISSING_TOKEN without one.
    """

    PATTERNS = (f"{FED_V1}/openid/userinfo$",)
    AUTH = Auth.NONE

    def __init__(self, openid: OpenIdHandler) -> None:
        self._openid = openid

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        token = query_str(request, "access_token")
        if token is None:
            raise MatrixError(Codes.MISSING_TOKEN, "Access Token required")
        return 200, {"sub": await self._openid.get_user_for_token(token)}


def query_servlets(
    server_name: str,
    directory: RoomDirectoryHandler,
    profiles: ProfileHandler,
    openid: OpenIdHandler,
) -> list[Servlet]:
    return [
        QueryDirectoryServlet(server_name, directory),
        QueryProfileServlet(server_name, profiles),
        FederationPublicRoomsServlet(directory),
        OpenIdUserInfoServlet(openid),
    ]
