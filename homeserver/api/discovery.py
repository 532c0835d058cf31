"""GET /.well-known/matrix/client and GET /.well-known/matrix/server."""

from __future__ import annotations

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest
from homeserver.handlers.discovery import DiscoveryHandler
from homeserver.types.errors import Codes, MatrixError


class ClientWellKnownServlet(Servlet):
    """GET /.well-known/matrix/client: 404 M_NOT_FOUND when not configured."""

    PATTERNS = ("^/.well-known/matrix/client$",)
    AUTH = Auth.NONE

    def __init__(self, discovery: DiscoveryHandler) -> None:
        self._discovery = discovery

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        answer = self._discovery.client_well_known()
        if answer is None:
            raise MatrixError(Codes.NOT_FOUND, ".well-known not available")
        return 200, answer


class ServerWellKnownServlet(Servlet):
    """GET /.well-known/matrix/server: 404 M_NOT_FOUND when not configured."""

    PATTERNS = ("^/.well-known/matrix/server$",)
    AUTH = Auth.NONE

    def __init__(self, discovery: DiscoveryHandler) -> None:
        self._discovery = discovery

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        answer = self._discovery.server_well_known()
        if answer is None:
            raise MatrixError(Codes.NOT_FOUND, ".well-known not available")
        return 200, answer
