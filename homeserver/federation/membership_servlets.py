"""Servlets of the membership handshakes other servers make with us as the resident server.

Spec: server-server API "Joining Rooms", "Knocking upon a room", "Inviting
to a room", "Leaving Rooms (Rejecting Invites)". Every request is signed
(X-Matrix); the rules are `homeserver.federation.resident`'s.
"""

from __future__ import annotations

from typing import Any

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest, parse_json_object
from homeserver.federation.resident import ResidentMembership
from homeserver.state.auth_common import JOIN, KNOCK, LEAVE
from homeserver.types.errors import Codes, MatrixError

_ROOM_USER = "(?P<room_id>[^/]+)/(?P<user_id>[^/]+)$"
_ROOM_EVENT = "(?P<room_id>[^/]+)/(?P<event_id>[^/]+)$"


def _versions(request: SiteRequest, *, required: bool) -> list[str] | None:
    """The `ver` query parameters (None when absent and not required)."""
    values = request.args.get(b"ver")
    if not values:
        if required:
            raise MatrixError(Codes.MISSING_PARAM, "Missing parameter: ver")
        return None
    try:
        return [v.decode("utf-8") for v in values]
    except UnicodeDecodeError:
        raise MatrixError(Codes.INVALID_PARAM, "'ver' must be UTF-8") from None


class MakeJoinServlet(Servlet):
    """GET /_matrix/federation/v1/make_join/{roomId}/{userId}?ver=...: a join template."""

    PATTERNS = ("^/_matrix/federation/v1/make_join/" + _ROOM_USER,)
    AUTH = Auth.SERVER

    def __init__(self, resident: ResidentMembership) -> None:
        self._resident = resident

    async def on_GET(
        self, request: SiteRequest, origin: str, room_id: str, user_id: str
    ) -> tuple[int, JsonDict]:
        # No `ver` means the joining server knows only version 1 (spec).
        versions = _versions(request, required=False) or ["1"]
        return 200, await self._resident.make_membership(origin, room_id, user_id, JOIN, versions)


class MakeLeaveServlet(Servlet):
    """GET /_matrix/federation/v1/make_leave/{roomId}/{userId}: a leave template."""

    PATTERNS = ("^/_matrix/federation/v1/make_leave/" + _ROOM_USER,)
    AUTH = Auth.SERVER

    def __init__(self, resident: ResidentMembership) -> None:
        self._resident = resident

    async def on_GET(
        self, request: SiteRequest, origin: str, room_id: str, user_id: str
    ) -> tuple[int, JsonDict]:
        return 200, await self._resident.make_membership(origin, room_id, user_id, LEAVE, None)


class MakeKnockServlet(Servlet):
    """GET /_matrix/federation/v1/make_knock/{roomId}/{userId}?ver=...: a knock template."""

    PATTERNS = ("^/_matrix/federation/v1/make_knock/" + _ROOM_USER,)
    AUTH = Auth.SERVER

    def __init__(self, resident: ResidentMembership) -> None:
        self._resident = resident

    async def on_GET(
        self, request: SiteRequest, origin: str, room_id: str, user_id: str
    ) -> tuple[int, JsonDict]:
        versions = _versions(request, required=True)
        return 200, await self._resident.make_membership(origin, room_id, user_id, KNOCK, versions)


class SendJoinServlet(Servlet):
    """PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}, and v1 (the answer in
    `[200, answer]`): accept a join, answer with the room's state and auth chain."""

    PATTERNS = ("^/_matrix/federation/(?P<version>v1|v2)/send_join/" + _ROOM_EVENT,)
    AUTH = Auth.SERVER

    def __init__(self, resident: ResidentMembership) -> None:
        self._resident = resident

    async def on_PUT(
        self, request: SiteRequest, origin: str, version: str, room_id: str, event_id: str
    ) -> tuple[int, Any]:
        answer = await self._resident.send_join(
            origin, room_id, event_id, parse_json_object(request)
        )
        if version == "v1":
            # v1 has neither the signed event nor the partial-state fields.
            return 200, [
                200,
                {
                    "origin": answer["origin"],
                    "state": answer["state"],
                    "auth_chain": answer["auth_chain"],
                },
            ]
        return 200, answer


class SendLeaveServlet(Servlet):
    """PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}, and v1 (`[200, {}]`)."""

    PATTERNS = ("^/_matrix/federation/(?P<version>v1|v2)/send_leave/" + _ROOM_EVENT,)
    AUTH = Auth.SERVER

    def __init__(self, resident: ResidentMembership) -> None:
        self._resident = resident

    async def on_PUT(
        self, request: SiteRequest, origin: str, version: str, room_id: str, event_id: str
    ) -> tuple[int, Any]:
        await self._resident.send_leave(origin, room_id, event_id, parse_json_object(request))
        return 200, ([200, {}] if version == "v1" else {})


class SendKnockServlet(Servlet):
    """PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}: accept a knock."""

    PATTERNS = ("^/_matrix/federation/v1/send_knock/" + _ROOM_EVENT,)
    AUTH = Auth.SERVER

    def __init__(self, resident: ResidentMembership) -> None:
        self._resident = resident

    async def on_PUT(
        self, request: SiteRequest, origin: str, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        return 200, await self._resident.send_knock(origin, room_id, event_id, body)


class InviteServlet(Servlet):
    """PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: sign an invite of one of our users."""

    PATTERNS = ("^/_matrix/federation/v2/invite/" + _ROOM_EVENT,)
    AUTH = Auth.SERVER

    def __init__(self, resident: ResidentMembership) -> None:
        self._resident = resident

    async def on_PUT(
        self, request: SiteRequest, origin: str, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        return 200, await self._resident.on_invite(origin, room_id, event_id, body)


def resident_membership_servlets(resident: ResidentMembership) -> list[Servlet]:
    return [
        MakeJoinServlet(resident),
        MakeLeaveServlet(resident),
        MakeKnockServlet(resident),
        SendJoinServlet(resident),
        SendLeaveServlet(resident),
        SendKnockServlet(resident),
        InviteServlet(resident),
    ]
