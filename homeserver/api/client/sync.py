"""GET /sync."""

from __future__ import annotations

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest, client_patterns
from homeserver.api.params import query_bool, query_int, query_str
from homeserver.handlers.auth import Requester
from homeserver.handlers.filtering import FilterHandler
from homeserver.handlers.sync import SyncHandler, SyncRequest
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.filters import DEFAULT_FILTER
from homeserver.types.stream_tokens import InvalidToken, SyncToken

PRESENCE_STATES = ("offline", "online", "unavailable")


class SyncServlet(Servlet):
    """GET /_matrix/client/v3/sync: the user's rooms and account data, since a token.

    Query: `since` (a `next_batch`), `timeout` (ms to wait for news, default
    0), `filter` (inline JSON or a filter ID), `full_state`, `use_state_after`,
    and `set_presence` (checked and accepted; presence does not exist yet).
    """

    PATTERNS = client_patterns("/sync")
    AUTH = Auth.USER_OR_GUEST
    # A long-poll left by its client stops waiting at once (it only reads).
    CANCELLABLE = frozenset({"GET"})

    def __init__(self, sync: SyncHandler, filters: FilterHandler) -> None:
        self._sync = sync
        self._filters = filters

    async def on_GET(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        since_text = query_str(request, "since")
        try:
            since = SyncToken.parse(since_text) if since_text else None
        except InvalidToken as e:
            raise MatrixError(Codes.INVALID_PARAM, f"since: {e}") from None
        timeout = query_int(request, "timeout", 0)
        if timeout < 0:
            raise MatrixError(Codes.INVALID_PARAM, "Query parameter timeout must not be negative")
        presence = query_str(request, "set_presence")
        if presence is not None and presence not in PRESENCE_STATES:
            raise MatrixError(
                Codes.INVALID_PARAM,
                f"Query parameter set_presence must be one of {', '.join(PRESENCE_STATES)}",
            )
        filter_param = query_str(request, "filter")
        sync_filter = (
            await self._filters.resolve_sync_filter(requester.user_id, filter_param)
            if filter_param
            else DEFAULT_FILTER
        )
        sync_request = SyncRequest(
            requester=requester,
            filter=sync_filter,
            since=since,
            timeout_ms=timeout,
            full_state=bool(query_bool(request, "full_state", False)),
            use_state_after=bool(query_bool(request, "use_state_after", False)),
        )
        return 200, await self._sync.sync(sync_request)
