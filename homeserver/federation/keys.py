"""Servlets under /_matrix/key/v2: this server's keys, and the notary API.

Spec: server-server API, "Retrieving server keys" (keys_server.yaml,
keys_query.yaml). None of them needs authentication.
"""

from __future__ import annotations

import re
from typing import Any

from homeserver.api.http import Auth, JsonDict, Servlet, SiteRequest, parse_json_object
from homeserver.api.params import query_str
from homeserver.crypto.notary import KeyNotary
from homeserver.crypto.server_keys import LocalServerKeys
from homeserver.types.canonical_json import CANONICALJSON_MAX_INT
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import InvalidIdentifier, parse_server_name

# The most servers one POST /query may ask about.
MAX_SERVERS_PER_QUERY = 1000


class ServerKeyServlet(Servlet):
    """GET /_matrix/key/v2/server: this server's keys, signed by each current key.

    The deprecated `/_matrix/key/v2/server/{keyId}` form gets the same answer,
    as Synapse gives it.
    """

    PATTERNS = ("^/_matrix/key/v2/server(?:/[^/]*)?$",)
    AUTH = Auth.NONE

    def __init__(self, local_keys: LocalServerKeys) -> None:
        self._keys = local_keys

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return 200, self._keys.server_keys_response()


def _server_name(value: Any) -> str:
    if not isinstance(value, str):
        raise MatrixError(Codes.INVALID_PARAM, "Server names must be strings")
    try:
        parse_server_name(value)
    except InvalidIdentifier as e:
        raise MatrixError(Codes.INVALID_PARAM, str(e)) from None
    return value


def _timestamp(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,16}", value):
            raise MatrixError(Codes.INVALID_PARAM, f"{what} must be an integer")
        value = int(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value <= CANONICALJSON_MAX_INT
    ):
        raise MatrixError(Codes.INVALID_PARAM, f"{what} must be a non-negative integer")
    return value


class KeyQueryServlet(Servlet):
    """GET /_matrix/key/v2/query/{serverName}: another server's keys, re-signed by us.

    `minimum_valid_until_ts` (query) asks for keys valid until at least then.
    """

    PATTERNS = ("^/_matrix/key/v2/query/(?P<server_name>[^/]+)$",)
    AUTH = Auth.NONE

    def __init__(self, notary: KeyNotary) -> None:
        self._notary = notary

    async def on_GET(self, request: SiteRequest, server_name: str) -> tuple[int, JsonDict]:
        minimum = _timestamp(query_str(request, "minimum_valid_until_ts"), "minimum_valid_until_ts")
        server_keys = await self._notary.query_server(_server_name(server_name), minimum)
        return 200, {"server_keys": server_keys}


class BulkKeyQueryServlet(Servlet):
    """POST /_matrix/key/v2/query: several servers' keys, re-signed by us.

    Body: `{"server_keys": {serverName: {keyId: {"minimum_valid_until_ts": ts}}}}`;
    no key IDs asks for every key of that server.
    """

    PATTERNS = ("^/_matrix/key/v2/query$",)
    AUTH = Auth.NONE

    def __init__(self, notary: KeyNotary) -> None:
        self._notary = notary

    async def on_POST(self, request: SiteRequest) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        query = body.get("server_keys")
        if query is None:
            raise MatrixError(Codes.MISSING_PARAM, "Missing server_keys")
        if not isinstance(query, dict):
            raise MatrixError(Codes.BAD_JSON, "server_keys must be an object")
        if len(query) > MAX_SERVERS_PER_QUERY:
            raise MatrixError(
                Codes.INVALID_PARAM, f"At most {MAX_SERVERS_PER_QUERY} servers per query"
            )
        criteria: dict[str, dict[str, int | None]] = {}
        for server_name, keys in query.items():
            if not isinstance(keys, dict):
                raise MatrixError(Codes.BAD_JSON, f"server_keys.{server_name} must be an object")
            wanted: dict[str, int | None] = {}
            for key_id, criterion in keys.items():
                if not isinstance(criterion, dict):
                    raise MatrixError(
                        Codes.BAD_JSON, f"server_keys.{server_name}.{key_id} must be an object"
                    )
                wanted[key_id] = _timestamp(
                    criterion.get("minimum_valid_until_ts"), "minimum_valid_until_ts"
                )
            criteria[_server_name(server_name)] = wanted
        return 200, {"server_keys": await self._notary.query(criteria)}
