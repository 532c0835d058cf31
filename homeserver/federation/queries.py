"""FederationQueries: asking another homeserver about its aliases, profiles and room directory.

Spec: server-server API "Querying for information" (GET /query/directory,
GET /query/profile) and "Public Room Directory" (GET/POST /publicRooms).
The callers are the client API's handlers, for aliases, users and
directories of other servers; this module turns the remote's answer (or
silence) into what a client is told, as Synapse does:

- the remote says 404: "not found" (None), for the caller to answer 404;
- the remote cannot be reached, answers 5xx or answers nonsense: 502;
- the remote refuses (other 4xx, e.g. 403 M_FORBIDDEN): its error, passed on;
- except for aliases: an alias whose server gives no usable answer, for
  whatever reason, resolves to nothing (None). A client then gets 404 and a
  canonical alias naming it M_BAD_ALIAS, as for an alias that does not
  exist (Synapse answers 502 there; an alias that cannot be resolved is no
  way into a room either way).

Alias answers and room directory pages are cached for 30 seconds (the spec
invites caching; Synapse keeps room directory pages that long), so a client
typing into a directory search does not hit the remote on every keystroke.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Generic, TypeVar

from homeserver.clock import Clock
from homeserver.federation.client import (
    FederationClient,
    HttpResponseError,
    RequestSendFailed,
)
from homeserver.types.canonical_json import encode_canonical_json
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import InvalidIdentifier, is_valid_server_name, parse_room_id

logger = logging.getLogger(__name__)

FED_V1 = "/_matrix/federation/v1"
CACHE_TTL_MS = 30_000
CACHE_MAX_ENTRIES = 1000
QUERY_TIMEOUT_MS = 30_000

K = TypeVar("K")
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """Entries dropped after `ttl_ms` on the clock, and the oldest first beyond `max_entries`."""

    def __init__(self, clock: Clock, ttl_ms: int, max_entries: int) -> None:
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._max_entries = max_entries
        self._entries: OrderedDict[K, tuple[int, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_ms, value = entry
        if expires_ms <= self._clock.time_msec():
            del self._entries[key]
            return None
        return value

    def set(self, key: K, value: V) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (self._clock.time_msec() + self._ttl_ms, value)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


def _bad_gateway(what: str) -> MatrixError:
    return MatrixError(Codes.UNKNOWN, f"Failed to fetch {what}", status=502)


def _remote_error(error: HttpResponseError, what: str) -> MatrixError:
    """What a client is told of a remote's error answer: its 4xx as it is, else 502."""
    logger.info("Fetching %s: %s", what, error)
    if 400 <= error.code < 500:
        return error.to_matrix_error()
    return _bad_gateway(what)


class FederationQueries:
    """Queries to other homeservers for the client API (see the module docstring)."""

    def __init__(self, clock: Clock, client: FederationClient) -> None:
        self._client = client
        self._aliases: ExpiringCache[str, tuple[str, list[str]]] = ExpiringCache(
            clock, CACHE_TTL_MS, CACHE_MAX_ENTRIES
        )
        self._room_lists: ExpiringCache[tuple[str, bytes], dict[str, Any]] = ExpiringCache(
            clock, CACHE_TTL_MS, CACHE_MAX_ENTRIES
        )

    async def _get(self, destination: str, path: str, args: dict[str, str], what: str) -> Any:
        """GET from another server; None if it says 404, else its JSON object answer."""
        try:
            answer = await self._client.get_json(
                destination, path, args, timeout_ms=QUERY_TIMEOUT_MS
            )
        except HttpResponseError as e:
            if e.code == 404:
                return None
            raise _remote_error(e, what) from e
        except RequestSendFailed as e:
            logger.info("Could not fetch %s from %s: %s", what, destination, e)
            raise _bad_gateway(what) from e
        if not isinstance(answer, dict):
            logger.info("%s answered a query for %s with a non-object", destination, what)
            raise _bad_gateway(what)
        return answer

    async def query_directory(self, alias: str, server: str) -> tuple[str, list[str]] | None:
        """The room and resident servers `server` gives for its `alias`; None if it has none."""
        cached = self._aliases.get(alias)
        if cached is not None:
            return cached
        try:
            answer = await self._get(
                server, f"{FED_V1}/query/directory", {"room_alias": alias}, "room alias"
            )
        except MatrixError as e:
            logger.info("No answer from %s for %s: %s", server, alias, e.message)
            return None
        if answer is None:
            return None
        room_id, servers = answer.get("room_id"), answer.get("servers")
        if not isinstance(room_id, str) or not isinstance(servers, list):
            logger.info("%s answered a directory query without room_id and servers", server)
            return None
        try:
            parse_room_id(room_id)
        except InvalidIdentifier:
            logger.info("%s answered a directory query with a bad room ID %r", server, room_id)
            return None
        # A server name we could not use would only break a join later.
        valid_servers = [s for s in servers if isinstance(s, str) and is_valid_server_name(s)]
        result = (room_id, valid_servers)
        self._aliases.set(alias, result)
        return result

    async def query_profile(
        self, user_id: str, server: str, field: str | None = None
    ) -> dict[str, Any] | None:
        """The profile (or one `field` of it) of `server`'s user; None if it says 404.

        Fields the remote gives as null (the spec allows that for unset ones)
        are left out, as are others than `field` when one was asked for.
        """
        args = {"user_id": user_id}
        if field is not None:
            args["field"] = field
        answer = await self._get(server, f"{FED_V1}/query/profile", args, "profile")
        if answer is None:
            return None
        profile = {key: value for key, value in answer.items() if value is not None}
        if field is not None:
            profile = {field: profile[field]} if field in profile else {}
        return profile

    async def get_public_rooms(
        self,
        server: str,
        *,
        limit: int | None = None,
        since: str | None = None,
        search_term: str | None = None,
        room_types: list[str | None] | None = None,
        include_all_networks: bool = False,
        third_party_instance_id: str | None = None,
    ) -> dict[str, Any]:
        """One page of `server`'s published room directory (its federation /publicRooms)."""
        body: dict[str, Any] = {}
        if limit is not None:
            body["limit"] = limit
        if since is not None:
            body["since"] = since
        search_filter: dict[str, Any] = {}
        if search_term is not None:
            search_filter["generic_search_term"] = search_term
        if room_types is not None:
            search_filter["room_types"] = room_types
        if search_filter:
            body["filter"] = search_filter
        if include_all_networks:
            body["include_all_networks"] = True
        if third_party_instance_id is not None:
            body["third_party_instance_id"] = third_party_instance_id
        key = (server, encode_canonical_json(body))
        cached = self._room_lists.get(key)
        if cached is not None:
            return cached
        # POST, as it carries the filter that GET cannot.
        try:
            answer = await self._client.post_json(
                server, f"{FED_V1}/publicRooms", body, timeout_ms=QUERY_TIMEOUT_MS
            )
        except HttpResponseError as e:
            raise _remote_error(e, "room list") from e
        except RequestSendFailed as e:
            logger.info("Could not fetch the room list of %s: %s", server, e)
            raise _bad_gateway("room list") from e
        if not isinstance(answer, dict) or not isinstance(answer.get("chunk"), list):
            logger.info("%s answered /publicRooms without a chunk", server)
            raise _bad_gateway("room list")
        self._room_lists.set(key, answer)
        return answer
