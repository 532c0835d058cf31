"""Sending events to a room and reading single events, state and members.

PUT /rooms/{roomId}/send/{eventType}/{txnId}, GET and PUT
/rooms/{roomId}/state/{eventType}/{stateKey}, GET /rooms/{roomId}/state,
PUT /rooms/{roomId}/redact/{eventId}/{txnId}, GET /rooms/{roomId}/event/{eventId},
GET /rooms/{roomId}/members, GET /rooms/{roomId}/joined_members. The rules are
in homeserver.handlers.room_events.
"""

from __future__ import annotations

from typing import Any, Protocol

from homeserver.api.http import (
    Auth,
    JsonDict,
    Servlet,
    SiteRequest,
    client_patterns,
    parse_json_object,
)
from homeserver.api.params import body_str, query_str
from homeserver.handlers.auth import Requester
from homeserver.handlers.room_events import MEMBERSHIPS, RoomEventHandler
from homeserver.types.errors import Codes, MatrixError

_ROOM = "/rooms/(?P<room_id>[^/]+)"


class RoomSendServlet(Servlet):
    """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}: send a message event.

    Idempotent per transaction ID (and device): a retry answers the first event's ID.
    """

    PATTERNS = client_patterns(_ROOM + "/send/(?P<event_type>[^/]+)/(?P<txn_id>[^/]+)")
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, room_events: RoomEventHandler) -> None:
        self._room_events = room_events

    async def on_PUT(
        self,
        request: SiteRequest,
        requester: Requester,
        room_id: str,
        event_type: str,
        txn_id: str,
    ) -> tuple[int, JsonDict]:
        content = parse_json_object(request)
        event = await self._room_events.send_event(
            requester, room_id, event_type, content, txn_id=txn_id
        )
        return 200, {"event_id": event.event_id}


class MembershipUpdater(Protocol):
    """What PUT .../state/m.room.member/{userId} needs (homeserver.handlers.membership)."""

    async def update_membership(
        self,
        requester: Requester,
        target_user_id: str,
        room_id: str,
        action: str,
        *,
        reason: str | None = None,
        txn_id: str | None = None,
        content: JsonDict | None = None,
        third_party_signed: JsonDict | None = None,
    ) -> Any: ...


class RoomStateEventServlet(Servlet):
    """GET/PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}: one state event.

    The state key may be left out (with or without the trailing slash) for
    the empty key. GET answers the content, or with `?format=event` the
    whole event. PUT of an m.room.member event changes a membership through
    the membership handler, as Synapse does: its `membership` is the action
    (`leave` of someone else kicks them, or unbans them if they are banned).
    """

    PATTERNS = (
        *client_patterns(_ROOM + "/state/(?P<event_type>[^/]+)/(?P<state_key>[^/]*)"),
        *client_patterns(_ROOM + "/state/(?P<event_type>[^/]+)"),
    )
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, room_events: RoomEventHandler, membership: MembershipUpdater) -> None:
        self._room_events = room_events
        self._membership = membership

    async def on_GET(
        self,
        request: SiteRequest,
        requester: Requester,
        room_id: str,
        event_type: str,
        state_key: str = "",
    ) -> tuple[int, JsonDict]:
        response_format = query_str(request, "format") or "content"
        if response_format not in ("content", "event"):
            raise MatrixError(Codes.INVALID_PARAM, "'format' must be 'content' or 'event'")
        return 200, await self._room_events.get_state_event(
            requester, room_id, event_type, state_key, as_event=response_format == "event"
        )

    async def on_PUT(
        self,
        request: SiteRequest,
        requester: Requester,
        room_id: str,
        event_type: str,
        state_key: str = "",
    ) -> tuple[int, JsonDict]:
        content = parse_json_object(request)
        if event_type == "m.room.member":
            membership = body_str(content, "membership", required=True)
            if membership not in MEMBERSHIPS:
                raise MatrixError(
                    Codes.INVALID_PARAM, f"'membership' must be one of {', '.join(MEMBERSHIPS)}"
                )
            event = await self._membership.update_membership(
                requester,
                state_key,
                room_id,
                membership,
                reason=body_str(content, "reason"),
                content=content,
            )
        else:
            event = await self._room_events.send_event(
                requester, room_id, event_type, content, state_key=state_key
            )
        return 200, {"event_id": event.event_id}


class RoomStateServlet(Servlet):
    """GET /_matrix/client/v3/rooms/{roomId}/state: every state event (current, or at the leave)."""

    PATTERNS = client_patterns(_ROOM + "/state")
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, room_events: RoomEventHandler) -> None:
        self._room_events = room_events

    async def on_GET(
        self, request: SiteRequest, requester: Requester, room_id: str
    ) -> tuple[int, list[JsonDict]]:
        return 200, await self._room_events.get_state(requester, room_id)


class RoomRedactServlet(Servlet):
    """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}: redact an event.

    The body (`reason`, and any other keys, as Synapse keeps them) is the
    redaction's content.
    """

    PATTERNS = client_patterns(_ROOM + "/redact/(?P<event_id>[^/]+)/(?P<txn_id>[^/]+)")
    AUTH = Auth.USER

    def __init__(self, room_events: RoomEventHandler) -> None:
        self._room_events = room_events

    async def on_PUT(
        self,
        request: SiteRequest,
        requester: Requester,
        room_id: str,
        event_id: str,
        txn_id: str,
    ) -> tuple[int, JsonDict]:
        content = parse_json_object(request)
        body_str(content, "reason")
        event = await self._room_events.send_event(
            requester, room_id, "m.room.redaction", content, txn_id=txn_id, redacts=event_id
        )
        return 200, {"event_id": event.event_id}


class RoomEventServlet(Servlet):
    """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}: one event, if the requester may see it."""

    PATTERNS = client_patterns(_ROOM + "/event/(?P<event_id>[^/]+)")
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, room_events: RoomEventHandler) -> None:
        self._room_events = room_events

    async def on_GET(
        self, request: SiteRequest, requester: Requester, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        return 200, await self._room_events.get_event(requester, room_id, event_id)


class RoomMembersServlet(Servlet):
    """GET /_matrix/client/v3/rooms/{roomId}/members: the room's m.room.member events.

    Query: `at` (a sync or pagination token), `membership`, `not_membership`.
    """

    PATTERNS = client_patterns(_ROOM + "/members")
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, room_events: RoomEventHandler) -> None:
        self._room_events = room_events

    async def on_GET(
        self, request: SiteRequest, requester: Requester, room_id: str
    ) -> tuple[int, JsonDict]:
        chunk = await self._room_events.get_members(
            requester,
            room_id,
            at=query_str(request, "at"),
            membership=query_str(request, "membership"),
            not_membership=query_str(request, "not_membership"),
        )
        return 200, {"chunk": chunk}


class JoinedMembersServlet(Servlet):
    """GET /_matrix/client/v3/rooms/{roomId}/joined_members: joined users with their profiles."""

    PATTERNS = client_patterns(_ROOM + "/joined_members")
    AUTH = Auth.USER

    def __init__(self, room_events: RoomEventHandler) -> None:
        self._room_events = room_events

    async def on_GET(
        self, request: SiteRequest, requester: Requester, room_id: str
    ) -> tuple[int, JsonDict]:
        return 200, {"joined": await self._room_events.get_joined_members(requester, room_id)}


def room_event_servlets(
    room_events: RoomEventHandler, membership: MembershipUpdater
) -> list[Servlet]:
    return [
        RoomSendServlet(room_events),
        RoomStateEventServlet(room_events, membership),
        RoomStateServlet(room_events),
        RoomRedactServlet(room_events),
        RoomEventServlet(room_events),
        RoomMembersServlet(room_events),
        JoinedMembersServlet(room_events),
    ]
