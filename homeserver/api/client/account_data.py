"""GET/PUT /user/{userId}/account_data/{type} and /user/{userId}/rooms/{roomId}/account_data/{type}."""

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


class AccountDataServlet(Servlet):
    """GET/PUT /_matrix/client/v3/user/{userId}/account_data/{type}: global account data."""

    PATTERNS = client_patterns("/user/(?P<user_id>[^/]+)/account_data/(?P<data_type>[^/]+)")
    AUTH = Auth.USER

    def __init__(self, account_data: AccountDataHandler) -> None:
        self._account_data = account_data

    async def on_PUT(
        self, request: SiteRequest, requester: Requester, user_id: str, data_type: str
    ) -> tuple[int, JsonDict]:
        content = parse_json_object(request)
        await self._account_data.set_account_data(requester, user_id, None, data_type, content)
        return 200, {}

    async def on_GET(
        self, request: SiteRequest, requester: Requester, user_id: str, data_type: str
    ) -> tuple[int, JsonDict]:
        return 200, await self._account_data.get_account_data(requester, user_id, None, data_type)


class RoomAccountDataServlet(Servlet):
    """GET/PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}."""

    PATTERNS = client_patterns(
        "/user/(?P<user_id>[^/]+)/rooms/(?P<room_id>[^/]+)/account_data/(?P<data_type>[^/]+)"
    )
    AUTH = Auth.USER

    def __init__(self, account_data: AccountDataHandler) -> None:
        self._account_data = account_data

    async def on_PUT(
        self,
        request: SiteRequest,
        requester: Requester,
        user_id: str,
        room_id: str,
        data_type: str,
    ) -> tuple[int, JsonDict]:
        content = parse_json_object(request)
        await self._account_data.set_account_data(requester, user_id, room_id, data_type, content)
        return 200, {}

    async def on_GET(
        self,
        request: SiteRequest,
        requester: Requester,
        user_id: str,
        room_id: str,
        data_type: str,
    ) -> tuple[int, JsonDict]:
        return 200, await self._account_data.get_account_data(
            requester, user_id, room_id, data_type
        )
