"""Reading room history: GET /rooms/{roomId}/messages, GET /rooms/{roomId}/context/{eventId},
GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event. The rules are in
homeserver.handlers.pagination.
"""

from __future__ import annotations

from urllib.parse import unquote

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest, client_patterns
from homeserver.api.params import query_int, query_str
from homeserver.handlers.auth import Requester
from homeserver.handlers.pagination import PaginationHandler
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.filters import RoomEventFilter, parse_room_event_filter

_ROOM = "/rooms/(?P<room_id>[^/]+)"
_DEFAULT_LIMIT = 10


def _direction_is_backwards(request: SiteRequest) -> bool:
    direction = query_str(request, "dir", required=True)
    if direction not in ("b", "f"):
        raise MatrixError(Codes.INVALID_PARAM, "Query parameter dir must be 'b' or 'f'")
    return direction == "b"


def _limit(request: SiteRequest) -> int:
    limit = query_int(request, "limit", _DEFAULT_LIMIT)
    if limit < 0:
        raise MatrixError(Codes.INVALID_PARAM, "Query parameter limit must be 0 or more")
    return limit


def _event_filter(request: SiteRequest) -> RoomEventFilter | None:
    text = query_str(request, "filter")
    if not text:
        return None
    # Some clients encode the filter twice; Synapse decodes it once more, and so do we.
    return parse_room_event_filter(unquote(text), parameter="filter")


class RoomMessagesServlet(Servlet):
    """GET /_matrix/client/v3/rooms/{roomId}/messages: a page of the room's history.

    Query: `dir` (b|f, required), `from`, `to`, `limit` (default 10), `filter`
    (a RoomEventFilter as JSON).
    """

    PATTERNS = client_patterns(_ROOM + "/messages")
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, pagination: PaginationHandler) -> None:
        self._pagination = pagination

    async def on_GET(
        self, request: SiteRequest, requester: Requester, room_id: str
    ) -> tuple[int, JsonDict]:
        backwards = _direction_is_backwards(request)
        limit = _limit(request)
        event_filter = _event_filter(request)
        return 200, await self._pagination.get_messages(
            requester,
            room_id,
            backwards=backwards,
            from_token=query_str(request, "from"),
            to_token=query_str(request, "to"),
            limit=limit,
            event_filter=event_filter,
        )


class RoomEventContextServlet(Servlet):
    """GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}: an event with the events around it.

    Query: `limit` (default 10, shared between before and after), `filter`.
    """

    PATTERNS = client_patterns(_ROOM + "/context/(?P<event_id>[^/]+)")
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, pagination: PaginationHandler) -> None:
        self._pagination = pagination

    async def on_GET(
        self, request: SiteRequest, requester: Requester, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        limit = _limit(request)
        event_filter = _event_filter(request)
        return 200, await self._pagination.get_event_context(
            requester, room_id, event_id, limit=limit, event_filter=event_filter
        )


class TimestampToEventServlet(Servlet):
    """GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event: the event closest to a time.

    Query: `ts` (milliseconds since the epoch, required), `dir` (f|b, required).
    """

    PATTERNS = client_patterns(_ROOM + "/timestamp_to_event", versions=("v1",))
    AUTH = Auth.USER

    def __init__(self, pagination: PaginationHandler) -> None:
        self._pagination = pagination

    async def on_GET(
        self, request: SiteRequest, requester: Requester, room_id: str
    ) -> tuple[int, JsonDict]:
        if query_str(request, "ts") is None:
            raise MatrixError(Codes.MISSING_PARAM, "Missing query parameter: ts")
        timestamp = query_int(request, "ts", 0)
        backwards = _direction_is_backwards(request)
        return 200, await self._pagination.get_event_for_timestamp(
            requester, room_id, timestamp, backwards=backwards
        )
