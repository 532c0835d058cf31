"""POST /register, GET /register/available and the registration token validity check."""

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
from homeserver.api.params import query_str
from homeserver.handlers.ratelimit import Ratelimiter
from homeserver.handlers.registration import RegistrationHandler
from homeserver.handlers.registration_tokens import RegistrationTokenHandler
from homeserver.types.errors import Codes, MatrixError


class RegisterServlet(Servlet):
    """POST /_matrix/client/v3/register: a new account (or guest), through user-interactive auth.

    `?kind=user` (the default) or `?kind=guest`. The answer has `user_id` and,
    unless `inhibit_login`, the new session's `access_token`, `device_id` and,
    when asked for, `refresh_token` and `expires_in_ms`; `home_server` too, as
    Synapse still sends it.
    """

    PATTERNS = client_patterns("/register")
    AUTH = Auth.NONE

    def __init__(self, registration: RegistrationHandler, server_name: str) -> None:
        self._registration = registration
        self._server_name = server_name

    async def on_POST(self, request: SiteRequest) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        kind = query_str(request, "kind") or "user"
        result = await self._registration.register(kind, body, client_info(request))
        answer: JsonDict = {"user_id": result.user_id, "home_server": self._server_name}
        if result.login is not None:
            answer.update(session_body(result.login))
        return 200, answer


class RegisterAvailableServlet(Servlet):
    """GET /_matrix/client/v3/register/available?username=...: whether a username can be registered."""

    PATTERNS = client_patterns("/register/available")
    AUTH = Auth.NONE

    def __init__(self, registration: RegistrationHandler) -> None:
        self._registration = registration

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        username = query_str(request, "username", required=True)
        assert username is not None
        await self._registration.check_username_available(username)
        return 200, {"available": True}


class RegistrationTokenValidityServlet(Servlet):
    """GET /_matrix/client/v1/register/m.login.registration_token/validity?token=...

    Whether a registration token can be used now (`{"valid": bool}`); limited
    per client address by `rc_registration_token_validity`.
    """

    PATTERNS = client_patterns("/register/m\\.login\\.registration_token/validity", versions=("v1",))
    AUTH = Auth.NONE

    def __init__(
        self, tokens: RegistrationTokenHandler, limiter: Ratelimiter, registration_enabled: bool
    ) -> None:
        self._tokens = tokens
        self._limiter = limiter
        self._registration_enabled = registration_enabled

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        self._limiter.check(request.client_ip())
        if not self._registration_enabled:
            raise MatrixError(Codes.FORBIDDEN, "Registration has been disabled")
        token = query_str(request, "token", required=True)
        assert token is not None
        return 200, {"valid": await self._tokens.is_valid(token)}
