"""The notary: serving other servers' keys, re-signed by us (/_matrix/key/v2/query).

Spec: server-server API, "Querying Keys Through Another Server". For each
server asked about, the answers we hold (see ServerKeyStore) are returned,
each with this server's signature added. They are first refreshed from the
server itself when we hold none, when a requested key ID is in none of them,
when none is valid until the requested `minimum_valid_until_ts` (default:
now, as the spec says), or when the server's own answer is past half its
lifetime ("Intermediate notary servers should cache a response for half of
its lifetime"). If the refresh fails, what we hold is served anyway ("notary
servers should continue to return the last response they received"); a
server we know nothing about is left out.

The KeyRing asks a server at most once per 30 s however often it is told to
refresh (KeyRing.refresh_server_keys), so the (unauthenticated) notary API
cannot be used to make this server fetch keys in a loop.

Questions about this server itself are answered with our own key answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Any

from twisted.internet import defer

from homeserver.clock import Clock
from homeserver.crypto.keyring import KeyRing
from homeserver.crypto.server_keys import LocalServerKeys
from homeserver.storage.stores.server_keys import ServerKeyStore, StoredKeyResponse

logger = logging.getLogger(__name__)

# server name -> {key ID: minimum_valid_until_ts or None}; no key IDs: all keys.
KeyCriteria = Mapping[str, Mapping[str, int | None]]


class KeyNotary:
    def __init__(
        self,
        clock: Clock,
        store: ServerKeyStore,
        keyring: KeyRing,
        local_keys: LocalServerKeys,
    ) -> None:
        self._clock = clock
        self._store = store
        self._keyring = keyring
        self._local = local_keys

    async def query(self, criteria: KeyCriteria) -> list[dict[str, Any]]:
        """POST /query: the answers about every server in `criteria`, re-signed.

        A key ID's minimum validity defaults to now; a server asked about
        without key IDs gets all its keys, valid until at least now.
        """
        now = self._clock.time_msec()
        results = await defer.gatherResults(
            [
                defer.ensureDeferred(
                    self._query_server(
                        server_name,
                        keys.keys(),
                        max((now if m is None else m for m in keys.values()), default=now),
                    )
                )
                for server_name, keys in criteria.items()
            ],
            consumeErrors=True,
        )
        return [answer for answers in results for answer in answers]

    async def query_server(
        self, server_name: str, minimum_valid_until_ts: int | None
    ) -> list[dict[str, Any]]:
        """GET /query/{serverName}: the answers about one server, re-signed."""
        minimum = (
            self._clock.time_msec() if minimum_valid_until_ts is None else minimum_valid_until_ts
        )
        return await self._query_server(server_name, (), minimum)

    async def _query_server(
        self, server_name: str, key_ids: Collection[str], minimum: int
    ) -> list[dict[str, Any]]:
        if server_name == self._local.server_name:
            return [self._local.server_keys_response()]
        responses = await self._store.get_key_responses(server_name)
        if self._needs_refresh(server_name, responses, key_ids, minimum):
            await self._keyring.refresh_server_keys(server_name)
            responses = await self._store.get_key_responses(server_name)
        return [self._local.sign(json.loads(r.response_json)) for r in responses]

    def _needs_refresh(
        self,
        server_name: str,
        responses: list[StoredKeyResponse],
        key_ids: Collection[str],
        minimum: int,
    ) -> bool:
        now = self._clock.time_msec()
        if not responses or responses[0].valid_until_ts < minimum:
            return True
        direct = [r for r in responses if r.from_server == server_name]
        if not direct:
            return True
        newest = max(direct, key=lambda r: r.fetched_ts)
        if now > newest.fetched_ts + (newest.valid_until_ts - newest.fetched_ts) // 2:
            return True
        known: set[str] = set()
        for response in responses:
            answer = json.loads(response.response_json)
            for section in ("verify_keys", "old_verify_keys"):
                keys = answer.get(section)
                if isinstance(keys, Mapping):
                    known.update(keys)
        return not known.issuperset(key_ids)
