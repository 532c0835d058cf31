"""Synapse's registration token admin API: /_synapse/admin/v1/registration_tokens."""

from __future__ import annotations

from homeserver.api.admin._base import AdminServlet, admin_patterns
from homeserver.api.http import JsonDict, SiteRequest, parse_json_object
from homeserver.api.params import query_bool
from homeserver.handlers.admin_users import AdminUsersHandler
from homeserver.handlers.auth import Requester
from homeserver.handlers.registration_tokens import RegistrationTokenHandler


class _TokenServlet(AdminServlet):
    def __init__(self, admin: AdminUsersHandler, tokens: RegistrationTokenHandler) -> None:
        super().__init__(admin)
        self._tokens = tokens


class RegistrationTokensServlet(_TokenServlet):
    """GET /_synapse/admin/v1/registration_tokens: every token (`?valid=true|false` filters)."""

    PATTERNS = admin_patterns("/registration_tokens")

    async def on_GET(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        tokens = await self._tokens.list_tokens(query_bool(request, "valid", None))
        return 200, {"registration_tokens": [token.as_dict() for token in tokens]}


class NewRegistrationTokenServlet(_TokenServlet):
    """POST /_synapse/admin/v1/registration_tokens/new: `token` or `length`, `uses_allowed`, `expiry_time`."""

    PATTERNS = admin_patterns("/registration_tokens/new")

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        token = await self._tokens.create(parse_json_object(request))
        return 200, token.as_dict()


class RegistrationTokenServlet(_TokenServlet):
    """GET/PUT/DELETE /_synapse/admin/v1/registration_tokens/{token}: read, change, delete one."""

    PATTERNS = admin_patterns("/registration_tokens/(?P<token>[^/]+)")

    async def on_GET(
        self, request: SiteRequest, requester: Requester, token: str
    ) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        return 200, (await self._tokens.get(token)).as_dict()

    async def on_PUT(
        self, request: SiteRequest, requester: Requester, token: str
    ) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        updated = await self._tokens.update(token, parse_json_object(request))
        return 200, updated.as_dict()

    async def on_DELETE(
        self, request: SiteRequest, requester: Requester, token: str
    ) -> tuple[int, JsonDict]:
        await self._require_admin(requester)
        await self._tokens.delete(token)
        return 200, {}
