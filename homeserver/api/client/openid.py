"""POST /user/{userId}/openid/request_token: an OpenID token for a third party."""

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
from homeserver.handlers.openid import OpenIdHandler


class OpenIdRequestTokenServlet(Servlet):
    """POST /_matrix/client/v3/user/{userId}/openid/request_token: a token standing for the user.

    The body is an empty object (the spec reserves it); the user must be the requester.
    """

    PATTERNS = client_patterns("/user/(?P<user_id>[^/]+)/openid/request_token")
    AUTH = Auth.USER

    def __init__(self, openid: OpenIdHandler) -> None:
        self._openid = openid

    async def on_POST(
        self, request: SiteRequest, requester: Requester, user_id: str
    ) -> tuple[int, JsonDict]:
        parse_json_object(request)
        return 200, await self._openid.request_token(requester, user_id)
