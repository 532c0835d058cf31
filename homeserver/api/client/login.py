"""GET/POST /login, POST /refresh and POST /login/get_token."""

from __future__ import annotations

from homeserver.api.client._base import client_info, session_body
from homeserver.api.http import (
    Auth,
    JsonDict,
    Servlet,
    SiteRequest,
    client_patterns,
    parse_json_object,
)
from homeserver.api.params import body_str
from homeserver.handlers.auth import AuthHandler, Requester
from homeserver.handlers.discovery import DiscoveryHandler
from homeserver.handlers.login import LoginHandler
from homeserver.handlers.ui_auth import UserInteractiveAuth


class LoginServlet(Servlet):
    """GET /_matrix/client/v3/login: the login types; POST: log in and open a session."""

    PATTERNS = client_patterns("/login")
    AUTH = Auth.NONE

    def __init__(self, login: LoginHandler, discovery: DiscoveryHandler, server_name: str) -> None:
        self._login = login
        self._discovery = discovery
        self._server_name = server_name

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return 200, {"flows": self._login.login_flows()}

    async def on_POST(self, request: SiteRequest) -> tuple[int, JsonDict]:
        result = await self._login.login(parse_json_object(request), request.client_ip())
        answer = session_body(result)
        answer["home_server"] = self._server_name
        well_known = self._discovery.client_well_known()
        if well_known is not None:
            answer["well_known"] = well_known
        return 200, answer


class RefreshServlet(Servlet):
    """POST /_matrix/client/v3/refresh: a new access and refresh token for a refresh token."""

    PATTERNS = client_patterns("/refresh")
    AUTH = Auth.NONE

    def __init__(self, auth: AuthHandler) -> None:
        self._auth = auth

    async def on_POST(self, request: SiteRequest) -> tuple[int, JsonDict]:
        refresh_token = body_str(parse_json_object(request), "refresh_token", required=True)
        assert refresh_token is not None
        tokens = await self._auth.refresh(refresh_token)
        answer: JsonDict = {"access_token": tokens.access_token}
        if tokens.refresh_token is not None:
            answer["refresh_token"] = tokens.refresh_token
        if tokens.expires_in_ms is not None:
            answer["expires_in_ms"] = tokens.expires_in_ms
        return 200, answer


class LoginTokenServlet(Servlet):
    """POST /_matrix/client/v1/login/get_token: a single-use m.login.token for another device.

    Served only with `login_via_existing_session.enabled`; confirmed with
    user-interactive auth unless `require_ui_auth` is false.
    """

    PATTERNS = client_patterns("/login/get_token", versions=("v1",))
    AUTH = Auth.USER

    def __init__(self, login: LoginHandler, uia: UserInteractiveAuth, require_ui_auth: bool) -> None:
        self._login = login
        self._uia = uia
        self._require_ui_auth = require_ui_auth

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        if self._require_ui_auth:
            await self._uia.validate_user(
                requester, client_info(request), body, "log in on another device"
            )
        token, lifetime = await self._login.create_login_token(requester.user_id)
        return 200, {"login_token": token, "expires_in_ms": lifetime}
