"""Filters: uploading and downloading a user's filters, and reading the `filter` of /sync.

Spec: client-server API "Filtering" (POST /user/{userId}/filter, GET
/user/{userId}/filter/{filterId}) and the `filter` parameter of GET /sync
("an ID or a JSON object, told apart by whether the first character is `{`").

Only the user uploads and reads their own filters (403 M_FORBIDDEN for
anyone else's, as Synapse). A filter is checked when it is uploaded
(400 M_BAD_JSON naming the problem) and stored as given.
"""

from __future__ import annotations

from typing import Any

from homeserver.handlers.auth import Requester
from homeserver.storage.lru import LruCache
from homeserver.storage.stores.filters import FilterStore
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.filters import Filter, parse_filter
from homeserver.types.identifiers import InvalidIdentifier, parse_user_id

JsonDict = dict[str, Any]


def _check_own(requester: Requester, user_id: str, verb: str) -> None:
    try:
        parse_user_id(user_id)
    except InvalidIdentifier as e:
        raise MatrixError(Codes.INVALID_PARAM, str(e)) from None
    if user_id != requester.user_id:
        raise MatrixError(Codes.FORBIDDEN, f"Cannot {verb} filters for other users")


def _parse_filter_id(filter_id: str) -> int | None:
    # IDs we hand out are decimal; anything else names no filter.
    if not filter_id.isascii() or not filter_id.isdigit() or len(filter_id) > 18:
        return None
    return int(filter_id)


class FilterHandler:
    def __init__(self, store: FilterStore, *, parsed_cache_size: int = 1000) -> None:
        self._store = store
        # Long-polling clients send the same `filter` with every /sync: keep
        # the parsed models (immutable), by user and parameter value.
        self._parsed: LruCache[tuple[str, str], Filter] = LruCache(parsed_cache_size)

    async def create_filter(self, requester: Requester, user_id: str, body: JsonDict) -> str:
        """Check and store a filter for the requester; its ID."""
        _check_own(requester, user_id, "create")
        parse_filter(body)
        return str(await self._store.add_filter(user_id, body))

    async def get_filter_json(self, requester: Requester, user_id: str, filter_id: str) -> JsonDict:
        """The filter as uploaded; 404 M_NOT_FOUND if the user has none with this ID."""
        _check_own(requester, user_id, "get")
        number = _parse_filter_id(filter_id)
        found = None if number is None else await self._store.get_filter(user_id, number)
        if found is None:
            raise MatrixError(Codes.NOT_FOUND, "No such filter")
        return found

    async def resolve_sync_filter(self, user_id: str, value: str) -> Filter:
        """The `filter` query parameter of /sync: inline JSON, or the ID of one of the user's filters.

        400 M_INVALID_PARAM for an unknown ID or an invalid inline filter.
        """
        parsed = self._parsed.get((user_id, value))
        if parsed is not None:
            return parsed
        if value.startswith("{"):
            parsed = parse_filter(value, parameter="filter")
        else:
            number = _parse_filter_id(value)
            found = None if number is None else await self._store.get_filter(user_id, number)
            if found is None:
                raise MatrixError(Codes.INVALID_PARAM, f"No such filter: {value}")
            parsed = parse_filter(found)
        self._parsed.set((user_id, value), parsed)
        return parsed
