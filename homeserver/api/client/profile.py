"""GET /profile/{userId} and GET/PUT/DELETE /profile/{userId}/{keyName}."""

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
from homeserver.handlers.profile import ProfileHandler


class ProfileServlet(Servlet):
    """GET /_matrix/client/v3/profile/{userId}: every field of a user's profile."""

    PATTERNS = client_patterns("/profile/(?P<user_id>[^/]+)")
    AUTH = Auth.NONE

    def __init__(self, profiles: ProfileHandler) -> None:
        self._profiles = profiles

    async def on_GET(self, request: SiteRequest, user_id: str) -> tuple[int, JsonDict]:
        return 200, await self._profiles.get_profile(user_id)


class ProfileFieldServlet(Servlet):
    """GET/PUT/DELETE /_matrix/client/v3/profile/{userId}/{keyName}: one profile field.

    GET needs no token; PUT and DELETE change the requester's own profile
    (guests: their displayname only). PUT's body is `{keyName: value}`.
    """

    PATTERNS = client_patterns("/profile/(?P<user_id>[^/]+)/(?P<key_name>[^/]+)")
    AUTH = {"GET": Auth.NONE, "PUT": Auth.USER_OR_GUEST, "DELETE": Auth.USER_OR_GUEST}

    def __init__(self, profiles: ProfileHandler) -> None:
        self._profiles = profiles

    async def on_GET(
        self, request: SiteRequest, user_id: str, key_name: str
    ) -> tuple[int, JsonDict]:
        return 200, {key_name: await self._profiles.get_field(user_id, key_name)}

    async def on_PUT(
        self, request: SiteRequest, requester: Requester, user_id: str, key_name: str
    ) -> tuple[int, JsonDict]:
        await self._profiles.set_field(requester, user_id, key_name, parse_json_object(request))
        return 200, {}

    async def on_DELETE(
        self, request: SiteRequest, requester: Requester, user_id: str, key_name: str
    ) -> tuple[int, JsonDict]:
        await self._profiles.delete_field(requester, user_id, key_name)
        return 200, {}
