"""GET /user/{userId}/rooms/{roomId}/tags and PUT/DELETE /user/{userId}/rooms/{roomId}/tags/{tag}."""

from __future__ import annotations

from homeserver.api.http import (
    Auth,
    JsonDict,
    Servlet,
    SiteRequest,
    client_patterns,
    parse_json_object,
)
from homeserver.handlers.account_data import AccountDataHandler
from homeserver.handlers.auth import Requester


class TagsServlet(Servlet):
    """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags: the user's tags on a room."""

    PATTERNS = client_patterns("/user/(?P<user_id>[^/]+)/rooms/(?P<room_id>[^/]+)/tags")
    AUTH = Auth.USER

    def __init__(self, account_data: AccountDataHandler) -> None:
        self._account_data = account_data

    async def on_GET(
        self, request: SiteRequest, requester: Requester, user_id: str, room_id: str
    ) -> tuple[int, JsonDict]:
        return 200, {"tags": await self._account_data.get_tags(requester, user_id, room_id)}


class TagServlet(Servlet):
    """PUT/DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}: add or remove a tag.

    PUT's body is the tag's data (`{"order": 0.5}`, or `{}`).
    """

    PATTERNS = client_patterns(
        "/user/(?P<user_id>[^/]+)/rooms/(?P<room_id>[^/]+)/tags/(?P<tag>[^/]+)"
    )
    AUTH = Auth.USER

    def __init__(self, account_data: AccountDataHandler) -> None:
        self._account_data = account_data

    async def on_PUT(
        self, request: SiteRequest, requester: Requester, user_id: str, room_id: str, tag: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        await self._account_data.add_tag(requester, user_id, room_id, tag, body)
        return 200, {}

    async def on_DELETE(
        self, request: SiteRequest, requester: Requester, user_id: str, room_id: str, tag: str
    ) -> tuple[int, JsonDict]:
        await self._account_data.remove_tag(requester, user_id, room_id, tag)
        return 200, {}
