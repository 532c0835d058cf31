"""POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId}."""

from __future__ import annotations

from homeserver.api.http import (
    Auth,
    JsonDict,
    Servlet,
    SiteRequest,
    client_patterns,
    parse_json_object,
)
from homeserver.handlers.auth import Requester
from homeserver.handlers.filtering import FilterHandler


class CreateFilterServlet(Servlet):
    """POST /_matrix/client/v3/user/{userId}/filter: upload a filter, get its ID."""

    PATTERNS = client_patterns("/user/(?P<user_id>[^/]+)/filter")
    AUTH = Auth.USER

    def __init__(self, filters: FilterHandler) -> None:
        self._filters = filters

    async def on_POST(
        self, request: SiteRequest, requester: Requester, user_id: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        return 200, {"filter_id": await self._filters.create_filter(requester, user_id, body)}


class FilterServlet(Servlet):
    """GET /_matrix/client/v3/user/{userId}/filter/{filterId}: a filter as uploaded."""

    PATTERNS = client_patterns("/user/(?P<user_id>[^/]+)/filter/(?P<filter_id>[^/]+)")
    AUTH = Auth.USER

    def __init__(self, filters: FilterHandler) -> None:
        self._filters = filters

    async def on_GET(
        self, request: SiteRequest, requester: Requester, user_id: str, filter_id: str
    ) -> tuple[int, JsonDict]:
        return 200, await self._filters.get_filter_json(requester, user_id, filter_id)
