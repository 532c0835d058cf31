"""Servlets for other servers' reads of our rooms (X-Matrix signed; see homeserver.federation.reads).

GET /_matrix/federation/v1/event/{eventId}, /state/{roomId}, /state_ids/{roomId},
/backfill/{roomId}, /event_auth/{roomId}/{eventId}, and
POST /_matrix/federation/v1/get_missing_events/{roomId}.
"""

from __future__ import annotations

from typing import Any

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest, parse_json_object
from homeserver.api.params import query_int, query_str
from homeserver.federation.reads import FederationReadHandler
from homeserver.types.errors import Codes, MatrixError

_PREFIX = "^/_matrix/federation/v1"


def _query_str_list(request: SiteRequest, name: str) -> list[str]:
    """Every value of a repeated query parameter; M_MISSING_PARAM if there is none."""
    values = request.args.get(name.encode("ascii"), []) if request.args else []
    if not values:
        raise MatrixError(Codes.MISSING_PARAM, f"Missing query parameter: {name}")
    try:
        decoded = [v.decode("utf-8") for v in values]
    except UnicodeDecodeError as e:
        raise MatrixError(Codes.INVALID_PARAM, f"Query parameter {name} is not UTF-8") from e
    return decoded


def _body_str_list(body: JsonDict, key: str, *, required: bool) -> list[str]:
    value: Any = body.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MatrixError(Codes.BAD_JSON, f"'{key}' must be a list of event IDs")
    return value


def _body_int(body: JsonDict, key: str, default: int) -> int:
    value: Any = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MatrixError(Codes.BAD_JSON, f"'{key}' must be an integer")
    return value


def _positive_limit(limit: int) -> int:
    if limit < 1:
        raise MatrixError(Codes.INVALID_PARAM, "'limit' must be a positive integer")
    return limit


class FederationEventServlet(Servlet):
    """GET /event/{eventId}: one event, as a transaction of one PDU."""

    PATTERNS = (f"{_PREFIX}/event/(?P<event_id>[^/]+)$",)
    AUTH = Auth.SERVER

    def __init__(self, reads: FederationReadHandler) -> None:
        self._reads = reads

    async def on_GET(
        self, request: SiteRequest, origin: str, event_id: str
    ) -> tuple[int, JsonDict]:
        return 200, await self._reads.get_event(origin, event_id)


class FederationStateServlet(Servlet):
    """GET /state/{roomId}?event_id=: the room's state before an event, and its auth chain."""

    PATTERNS = (f"{_PREFIX}/state/(?P<room_id>[^/]+)$",)
    AUTH = Auth.SERVER

    def __init__(self, reads: FederationReadHandler) -> None:
        self._reads = reads

    async def on_GET(self, request: SiteRequest, origin: str, room_id: str) -> tuple[int, JsonDict]:
        event_id = query_str(request, "event_id", required=True)
        assert event_id is not None
        return 200, await self._reads.get_state(origin, room_id, event_id)


class FederationStateIdsServlet(Servlet):
    """GET /state_ids/{roomId}?event_id=: the IDs /state would give."""

    PATTERNS = (f"{_PREFIX}/state_ids/(?P<room_id>[^/]+)$",)
    AUTH = Auth.SERVER

    def __init__(self, reads: FederationReadHandler) -> None:
        self._reads = reads

    async def on_GET(self, request: SiteRequest, origin: str, room_id: str) -> tuple[int, JsonDict]:
        event_id = query_str(request, "event_id", required=True)
        assert event_id is not None
        return 200, await self._reads.get_state_ids(origin, room_id, event_id)


class FederationBackfillServlet(Servlet):
    """GET /backfill/{roomId}?v=...&limit=: history before the given events."""

    PATTERNS = (f"{_PREFIX}/backfill/(?P<room_id>[^/]+)$",)
    AUTH = Auth.SERVER

    def __init__(self, reads: FederationReadHandler) -> None:
        self._reads = reads

    async def on_GET(self, request: SiteRequest, origin: str, room_id: str) -> tuple[int, JsonDict]:
        event_ids = _query_str_list(request, "v")
        if query_str(request, "limit") is None:
            raise MatrixError(Codes.MISSING_PARAM, "Missing query parameter: limit")
        limit = _positive_limit(query_int(request, "limit", 0))
        return 200, await self._reads.backfill(origin, room_id, event_ids, limit)


class FederationMissingEventsServlet(Servlet):
    """POST /get_missing_events/{roomId}: the events between two sets of events."""

    PATTERNS = (f"{_PREFIX}/get_missing_events/(?P<room_id>[^/]+)$",)
    AUTH = Auth.SERVER

    def __init__(self, reads: FederationReadHandler) -> None:
        self._reads = reads

    async def on_POST(
        self, request: SiteRequest, origin: str, room_id: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        earliest = _body_str_list(body, "earliest_events", required=True)
        latest = _body_str_list(body, "latest_events", required=True)
        # The spec's default limit and min_depth.
        limit = _positive_limit(_body_int(body, "limit", 10))
        min_depth = _body_int(body, "min_depth", 0)
        return 200, await self._reads.get_missing_events(
            origin, room_id, earliest, latest, limit, min_depth
        )


class FederationEventAuthServlet(Servlet):
    """GET /event_auth/{roomId}/{eventId}: the event's auth chain."""

    PATTERNS = (f"{_PREFIX}/event_auth/(?P<room_id>[^/]+)/(?P<event_id>[^/]+)$",)
    AUTH = Auth.SERVER

    def __init__(self, reads: FederationReadHandler) -> None:
        self._reads = reads

    async def on_GET(
        self, request: SiteRequest, origin: str, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        return 200, await self._reads.get_event_auth(origin, room_id, event_id)


def federation_read_servlets(reads: FederationReadHandler) -> list[Servlet]:
    """Every servlet of this module, for the federation resource."""
    return [
        FederationEventServlet(reads),
        FederationStateServlet(reads),
        FederationStateIdsServlet(reads),
        FederationBackfillServlet(reads),
        FederationMissingEventsServlet(reads),
        FederationEventAuthServlet(reads),
    ]
