"""POST /logout and POST /logout/all."""

from __future__ import annotations

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest, client_patterns
from homeserver.handlers.auth import Requester
from homeserver.handlers.devices import DeviceHandler


class LogoutServlet(Servlet):
    """POST /_matrix/client/v3/logout: end this session (its device and tokens)."""

    PATTERNS = client_patterns("/logout")
    AUTH = Auth.USER

    def __init__(self, devices: DeviceHandler) -> None:
        self._devices = devices

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        await self._devices.logout(requester)
        return 200, {}


class LogoutAllServlet(Servlet):
    """POST /_matrix/client/v3/logout/all: end every session of the user."""

    PATTERNS = client_patterns("/logout/all")
    AUTH = Auth.USER

    def __init__(self, devices: DeviceHandler) -> None:
        self._devices = devices

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        await self._devices.logout_all(requester)
        return 200, {}
