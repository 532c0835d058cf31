"""GET /_matrix/client/versions: the spec versions and unstable features this server offers."""

from __future__ import annotations

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest

# The spec versions whose core a client relies on is served: accounts, rooms,
# messages, state, /sync, pagination and the directory (as each version
# defines them). Clients decide from this list which paths and behaviours to
# use; without it, Element and other clients refuse the server outright.
# Feature modules not built yet (end-to-end encryption, push rules, receipts,
# typing, presence, media) answer 404 M_UNRECOGNIZED, which clients treat as
# a feature the server lacks.
SPEC_VERSIONS: tuple[str, ...] = tuple(f"v1.{minor}" for minor in range(1, 13))

# Unstable features (MSC flags) this server implements, each with its MSC number.
UNSTABLE_FEATURES: dict[str, bool] = {}


class VersionsServlet(Servlet):
    """GET /_matrix/client/versions (no authentication)."""

    PATTERNS = ("^/_matrix/client/versions$",)
    AUTH = Auth.NONE

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return 200, {"versions": list(SPEC_VERSIONS), "unstable_features": dict(UNSTABLE_FEATURES)}
