"""Room membership endpoints: join, knock, invite, leave, kick, ban, unban, forget, joined_rooms."""

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
from homeserver.api.params import body_str
from homeserver.handlers.auth import Requester
from homeserver.handlers.membership import MembershipHandler
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import InvalidIdentifier, parse_room_id


def _body(request: SiteRequest) -> JsonDict:
    """The JSON body, where an empty one counts as `{}` (the spec's bodies are all optional keys)."""
    if request.content is not None:
        start = request.content.tell()
        empty = not request.content.read(1)
        request.content.seek(start)
        if not empty:
            return parse_json_object(request)
    return {}


def _third_party_signed(body: JsonDict) -> dict[str, Any] | None:
    value = body.get("third_party_signed")
    if value is not None and not isinstance(value, dict):
        raise MatrixError(Codes.BAD_JSON, "'third_party_signed' must be an object")
    return value


def _via(request: SiteRequest) -> list[str]:
    """The `via` servers to join or knock through (and `server_name`, its deprecated name)."""
    values = [*request.args.get(b"via", []), *request.args.get(b"server_name", [])]
    try:
        return [v.decode("utf-8") for v in values]
    except UnicodeDecodeError:
        raise MatrixError(Codes.INVALID_PARAM, "'via' must be UTF-8") from None


def _room_id(room_id: str) -> str:
    try:
        return str(parse_room_id(room_id))
    except InvalidIdentifier as e:
        raise MatrixError(Codes.INVALID_PARAM, f"Invalid room ID: {e}") from e


class JoinServlet(Servlet):
    """POST /_matrix/client/v3/join/{roomIdOrAlias}: join a room; {room_id}.

    `via` (and the deprecated `server_name`) query parameters name servers
    to join through when the room is on other servers only.
    """

    PATTERNS = client_patterns("/join/(?P<room_id_or_alias>[^/]+)")
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, membership: MembershipHandler) -> None:
        self._membership = membership

    async def on_POST(
        self, request: SiteRequest, requester: Requester, room_id_or_alias: str
    ) -> tuple[int, JsonDict]:
        body = _body(request)
        room_id = await self._membership.join(
            requester,
            room_id_or_alias,
            reason=body_str(body, "reason"),
            third_party_signed=_third_party_signed(body),
            servers=_via(request),
        )
        return 200, {"room_id": room_id}


class KnockServlet(Servlet):
    """POST /_matrix/client/v3/knock/{roomIdOrAlias}: ask to join a room; {room_id}."""

    PATTERNS = client_patterns("/knock/(?P<room_id_or_alias>[^/]+)")
    AUTH = Auth.USER

    def __init__(self, membership: MembershipHandler) -> None:
        self._membership = membership

    async def on_POST(
        self, request: SiteRequest, requester: Requester, room_id_or_alias: str
    ) -> tuple[int, JsonDict]:
        body = _body(request)
        room_id = await self._membership.knock(
            requester, room_id_or_alias, reason=body_str(body, "reason"), servers=_via(request)
        )
        return 200, {"room_id": room_id}


# Guests may join and leave rooms, and do nothing else to memberships (as Synapse).
_GUEST_ACTIONS = ("join", "leave")


class RoomMembershipServlet(Servlet):
    """POST /_matrix/client/v3/rooms/{roomId}/{join,leave,invite,kick,ban,unban}.

    join and leave act on the requester; the others on `user_id` in the body.
    Each takes an optional `reason`. join answers {room_id}, the others {}.
    """

    PATTERNS = client_patterns(
        "/rooms/(?P<room_id>[^/]+)/(?P<action>join|leave|invite|kick|ban|unban)"
    )
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, membership: MembershipHandler) -> None:
        self._membership = membership

    async def on_POST(
        self, request: SiteRequest, requester: Requester, room_id: str, action: str
    ) -> tuple[int, JsonDict]:
        if requester.is_guest and action not in _GUEST_ACTIONS:
            raise MatrixError(Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")
        room_id = _room_id(room_id)
        body = _body(request)
        reason = body_str(body, "reason")
        if action == "join":
            await self._membership.join(
                requester, room_id, reason=reason, third_party_signed=_third_party_signed(body)
            )
            return 200, {"room_id": room_id}
        target = requester.user_id
        if action != "leave":
            target = body_str(body, "user_id", required=True) or ""
        await self._membership.update_membership(
            requester, target, room_id, action, reason=reason
        )
        return 200, {}


class ForgetServlet(Servlet):
    """POST /_matrix/client/v3/rooms/{roomId}/forget: stop remembering a room one has left."""

    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]+)/forget")
    AUTH = Auth.USER

    def __init__(self, membership: MembershipHandler) -> None:
        self._membership = membership

    async def on_POST(
        self, request: SiteRequest, requester: Requester, room_id: str
    ) -> tuple[int, JsonDict]:
        await self._membership.forget(requester.user_id, _room_id(room_id))
        return 200, {}


class JoinedRoomsServlet(Servlet):
    """GET /_matrix/client/v3/joined_rooms: {joined_rooms: [room IDs]}."""

    PATTERNS = client_patterns("/joined_rooms")
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, membership: MembershipHandler) -> None:
        self._membership = membership

    async def on_GET(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        return 200, {"joined_rooms": await self._membership.get_joined_rooms(requester.user_id)}


def membership_servlets(membership: MembershipHandler) -> list[Servlet]:
    return [
        JoinServlet(membership),
        KnockServlet(membership),
        RoomMembershipServlet(membership),
        ForgetServlet(membership),
        JoinedRoomsServlet(membership),
    ]
