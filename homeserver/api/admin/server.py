"""Shared-secret registration and the server version, at Synapse's admin paths."""

from __future__ import annotations

from homeserver import __version__
from homeserver.api.admin._base import AdminServlet, admin_patterns
from homeserver.api.client._base import session_body
from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest, parse_json_object
from homeserver.handlers.admin_registration import SharedSecretRegistrar
from homeserver.handlers.auth import Requester


class SharedSecretRegisterServlet(Servlet):
    """GET/POST /_synapse/admin/v1/register: a nonce; an account made with the shared secret.

    No access token: the MAC over the nonce and the details, keyed with
    `registration_shared_secret`, is the authority (see
    homeserver.handlers.shared_secret_registration).
    """

    PATTERNS = admin_patterns("/register")
    AUTH = Auth.NONE

    def __init__(self, registrar: SharedSecretRegistrar, server_name: str) -> None:
        self._registrar = registrar
        self._server_name = server_name

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return 200, {"nonce": self._registrar.new_nonce()}

    async def on_POST(self, request: SiteRequest) -> tuple[int, JsonDict]:
        result = await self._registrar.register(parse_json_object(request))
        answer: JsonDict = {"user_id": result.user_id, "home_server": self._server_name}
        if result.login is not None:
            answer.update(session_body(result.login))
        return 200, answer


class ServerVersionServlet(AdminServlet):
    """GET /_synapse/admin/v1/server_version: `{"server_version": ...}` (admins only).

    Synapse answers anyone here; this server keeps every admin path to admins.
    """

    PATTERNS = admin_patterns("/server_version")

    async def on_GET(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        return 200, {"server_version": __version__}
