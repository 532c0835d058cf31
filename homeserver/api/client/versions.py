"""GET /_matrix/client/versions: the spec versions and unstable features this server offers."""

from __future__ import annotations

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest

# A spec version is listed once every client-server endpoint it requires is
# served here; until accounts and rooms exist (issues 4 and 5) none is.
SPEC_VERSIONS: tuple[str, ...] = ()

# Unstable features (MSC flags) this server implements, each with its MSC number.
UNSTABLE_FEATURES: dict[str, bool] = {}


class VersionsServlet(Servlet):
    """GET /_matrix/client/versions (no authentication)."""

    PATTERNS = ("^/_matrix/client/versions$",)
    AUTH = Auth.NONE

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return 200, {"versions": list(SPEC_VERSIONS), "unstable_features": dict(UNSTABLE_FEATURES)}
