"""Room aliases and the published room directory: /directory/room, /directory/list/room,
/rooms/{roomId}/aliases and /publicRooms."""

from __future__ import annotations

from typing import Any

from homeserver.api.http import (
    Auth,
    JsonDict,
    Servlet,
    SiteRequest,
    client_patterns,
    parse_json_object,
)
from homeserver.api.params import body_bool, body_str, query_int, query_str
from homeserver.handlers.auth import Requester
from homeserver.handlers.room_directory import PUBLIC_VISIBILITY, RoomDirectoryHandler
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import is_valid_server_name


class RoomAliasServlet(Servlet):
    """GET/PUT/DELETE /_matrix/client/v3/directory/room/{roomAlias}: resolve, create, delete an alias.

    GET needs no token (spec); PUT's body is `{"room_id": ...}`.
    """

    PATTERNS = client_patterns("/directory/room/(?P<room_alias>[^/]+)")
    AUTH = {"GET": Auth.NONE, "PUT": Auth.USER, "DELETE": Auth.USER}

    def __init__(self, directory: RoomDirectoryHandler) -> None:
        self._directory = directory

    async def on_GET(self, request: SiteRequest, room_alias: str) -> tuple[int, JsonDict]:
        resolved = await self._directory.resolve_alias(room_alias)
        if resolved is None:
            raise MatrixError(Codes.NOT_FOUND, f"Room alias {room_alias} not found.")
        room_id, servers = resolved
        return 200, {"room_id": room_id, "servers": servers}

    async def on_PUT(
        self, request: SiteRequest, requester: Requester, room_alias: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        room_id = body_str(body, "room_id", required=True)
        assert room_id is not None
        await self._directory.create_alias(requester.user_id, room_alias, room_id)
        return 200, {}

    async def on_DELETE(
        self, request: SiteRequest, requester: Requester, room_alias: str
    ) -> tuple[int, JsonDict]:
        await self._directory.delete_alias(room_alias, requester.user_id)
        return 200, {}


class RoomAliasesServlet(Servlet):
    """GET /_matrix/client/v3/rooms/{roomId}/aliases: the room's aliases on this server."""

    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]+)/aliases")
    AUTH = Auth.USER

    def __init__(self, directory: RoomDirectoryHandler) -> None:
        self._directory = directory

    async def on_GET(
        self, request: SiteRequest, requester: Requester, room_id: str
    ) -> tuple[int, JsonDict]:
        return 200, {"aliases": await self._directory.get_aliases_for_client(requester, room_id)}


class RoomVisibilityServlet(Servlet):
    """GET/PUT /_matrix/client/v3/directory/list/room/{roomId}: the room's directory visibility.

    GET needs no token (spec). PUT's `visibility` defaults to "public".
    """

    PATTERNS = client_patterns("/directory/list/room/(?P<room_id>[^/]+)")
    AUTH = {"GET": Auth.NONE, "PUT": Auth.USER}

    def __init__(self, directory: RoomDirectoryHandler) -> None:
        self._directory = directory

    async def on_GET(self, request: SiteRequest, room_id: str) -> tuple[int, JsonDict]:
        return 200, {"visibility": await self._directory.get_visibility(room_id)}

    async def on_PUT(
        self, request: SiteRequest, requester: Requester, room_id: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        visibility = body_str(body, "visibility")
        await self._directory.change_visibility(
            requester, room_id, PUBLIC_VISIBILITY if visibility is None else visibility
        )
        return 200, {}


class PublicRoomsServlet(Servlet):
    """GET/POST /_matrix/client/v3/publicRooms: list (and, with POST, filter) the published rooms.

    GET needs no token, POST does (spec). `limit` 0 or absent lists every
    room. `server` names another server whose directory is fetched over
    federation; GET needs a token for that, as Synapse asks (the server
    would otherwise relay anyone's requests).
    """

    PATTERNS = client_patterns("/publicRooms")
    AUTH = {"GET": Auth.OPTIONAL, "POST": Auth.USER_OR_GUEST}

    def __init__(self, directory: RoomDirectoryHandler, server_name: str) -> None:
        self._directory = directory
        self._server_name = server_name

    def _server(self, request: SiteRequest) -> str | None:
        """The other server named by `server`, or None for this one."""
        server = query_str(request, "server")
        if server is None or server == self._server_name:
            return None
        if not is_valid_server_name(server):
            raise MatrixError(Codes.INVALID_PARAM, "'server' must be a server name")
        return server

    async def on_GET(
        self, request: SiteRequest, requester: Requester | None
    ) -> tuple[int, JsonDict]:
        server = self._server(request)
        if server is not None and requester is None:
            raise MatrixError(
                Codes.MISSING_TOKEN, "An access token is needed to list another server's rooms"
            )
        limit = query_int(request, "limit", 0)
        return 200, await self._directory.get_public_rooms(
            limit=limit or None, since=query_str(request, "since"), server=server
        )

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        server = self._server(request)
        body = parse_json_object(request)
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise MatrixError(Codes.INVALID_PARAM, "'limit' must be an integer")
        since = body_str(body, "since")
        search_term, room_types = _parse_filter(body.get("filter"))
        include_all_networks = body_bool(body, "include_all_networks", False)
        instance_id = body_str(body, "third_party_instance_id")
        if include_all_networks and instance_id is not None:
            raise MatrixError(
                Codes.INVALID_PARAM,
                "include_all_networks and third_party_instance_id cannot be used together",
            )
        return 200, await self._directory.get_public_rooms(
            limit=limit or None,
            since=since,
            search_term=search_term,
            room_types=room_types,
            third_party_instance_id=instance_id,
            include_all_networks=include_all_networks,
            server=server,
        )


def _parse_filter(value: Any) -> tuple[str | None, list[str | None] | None]:
    """(generic_search_term, room_types) of a /publicRooms filter; M_INVALID_PARAM if malformed."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise MatrixError(Codes.INVALID_PARAM, "'filter' must be an object")
    search_term = body_str(value, "generic_search_term")
    room_types = value.get("room_types")
    if room_types is not None and (
        not isinstance(room_types, list)
        or not all(t is None or isinstance(t, str) for t in room_types)
    ):
        raise MatrixError(
            Codes.INVALID_PARAM, "'room_types' must be a list of room types (strings or null)"
        )
    return search_term, room_types


def directory_servlets(directory: RoomDirectoryHandler, server_name: str) -> list[Servlet]:
    return [
        RoomAliasServlet(directory),
        RoomAliasesServlet(directory),
        RoomVisibilityServlet(directory),
        PublicRoomsServlet(directory, server_name),
    ]
