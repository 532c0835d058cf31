"""What the client-server servlets share: the request as UIA sees it, login answers."""

from __future__ import annotations

from typing import Any

from homeserver.api.http import SiteRequest
from homeserver.handlers.login import LoginResult
from homeserver.handlers.ui_auth import ClientInfo


def client_info(request: SiteRequest) -> ClientInfo:
    """The request's path, method, address and user agent (UIA sessions are bound to them)."""
    return ClientInfo(
        uri=request.path.decode("ascii", errors="replace"),
        method=request.method.decode("ascii", errors="replace"),
        ip=request.client_ip(),
        user_agent=request.user_agent(),
    )


def session_body(login: LoginResult) -> dict[str, Any]:
    """The session members of a /login or /register answer."""
    body: dict[str, Any] = {
        "user_id": login.user_id,
        "access_token": login.tokens.access_token,
        "device_id": login.device_id,
    }
    if login.tokens.refresh_token is not None:
        body["refresh_token"] = login.tokens.refresh_token
    if login.tokens.expires_in_ms is not None:
        body["expires_in_ms"] = login.tokens.expires_in_ms
    return body
