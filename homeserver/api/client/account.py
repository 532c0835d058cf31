"""GET /account/whoami, POST /account/password and POST /account/deactivate."""

from __future__ import annotations

from homeserver.api.client._base import client_info
from homeserver.api.http import (
    Auth,
    JsonDict,
    Servlet,
    SiteRequest,
    client_patterns,
    parse_json_object,
)
from homeserver.handlers.account import AccountHandler
from homeserver.handlers.auth import Requester


class WhoamiServlet(Servlet):
    """GET /_matrix/client/v3/account/whoami: the requester's user ID, device ID and guest flag."""

    PATTERNS = client_patterns("/account/whoami")
    AUTH = Auth.USER_OR_GUEST

    async def on_GET(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        answer: JsonDict = {"user_id": requester.user_id, "is_guest": requester.is_guest}
        if requester.device_id is not None:
            answer["device_id"] = requester.device_id
        return 200, answer


class PasswordServlet(Servlet):
    """POST /_matrix/client/v3/account/password: set a new password (user-interactive auth).

    `logout_devices` (default true) ends every other session of the user.
    """

    PATTERNS = client_patterns("/account/password")
    # Optional: a password reset by email comes without an access token.
    AUTH = Auth.OPTIONAL

    def __init__(self, account: AccountHandler) -> None:
        self._account = account

    async def on_POST(
        self, request: SiteRequest, requester: Requester | None
    ) -> tuple[int, JsonDict]:
        await self._account.change_password(requester, parse_json_object(request), client_info(request))
        return 200, {}


class DeactivateServlet(Servlet):
    """POST /_matrix/client/v3/account/deactivate: deactivate the account (user-interactive auth)."""

    PATTERNS = client_patterns("/account/deactivate")
    AUTH = Auth.USER

    def __init__(self, account: AccountHandler) -> None:
        self._account = account

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        result = await self._account.deactivate(
            requester, parse_json_object(request), client_info(request)
        )
        return 200, {"id_server_unbind_result": result}
