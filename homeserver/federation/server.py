"""Servlets under /_matrix/federation and /_matrix/key, for other homeservers."""

from __future__ import annotations

from homeserver import __version__
from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest


class FederationVersionServlet(Servlet):
    """GET /_matrix/federation/v1/version (no authentication): this server's name and version."""

    PATTERNS = ("^/_matrix/federation/v1/version$",)
    AUTH = Auth.NONE

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return 200, {"server": {"name": "homeserver", "version": __version__}}
