"""The KeyRing: other servers' verify keys, from the cache, the server itself, or a notary.

Spec: server-server API, "Retrieving server keys", and room versions 5+
("Servers missing a copy of the signing key MUST try to obtain one via
GET /_matrix/key/v2/server or POST /_matrix/key/v2/query"; "When using the
/query endpoint, servers MUST set the minimum_valid_until_ts property").

`get_server_keys(server, key_ids, minimum_valid_until_ts)` answers with the
keys that are valid until at least that time. In order:

1. this server's own keys come from `LocalServerKeys`, never from the network;
2. keys known well enough come from memory, else the database;
3. otherwise the server is asked (GET /_matrix/key/v2/server; the answer must
   name it, be signed by it and say until when it holds, see
   `homeserver.crypto.server_keys.parse_key_response`);
4. if that fails or still leaves keys missing, each of `trusted_key_servers`
   in turn is asked (POST /_matrix/key/v2/query with the key IDs and
   minimum_valid_until_ts); its answer must be signed by it with one of its
   configured `verify_keys` (when configured), and each relayed answer must
   pass the same checks as a direct one.

Every usable answer is stored. Lookups for one server that overlap in time
share one fetch: a lookup that misses waits for the fetch under way for that
server (one at a time per server), then looks at the cache again, and only
fetches itself if that fetch did not bring what it needs. A key still missing
after a full fetch is not fetched again for `negative_cache_ms` (30 s) unless
a later validity is asked for, so a flood of requests naming unknown keys
does not become a flood of fetches. `refresh_server_keys` (the notary's
refresh) asks a server at most once per `min_refresh_interval_ms` (30 s).

`verify_json_for_server` checks a signed object with those keys, failing with
401 M_UNAUTHORIZED as Synapse does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Coroutine, Mapping, Sequence
from typing import Any, Protocol

from signedjson.key import decode_verify_key_bytes, encode_verify_key_base64
from twisted.internet import defer
from twisted.python.failure import Failure
from unpaddedbase64 import decode_base64

from homeserver.clock import Clock
from homeserver.config.federation import TrustedKeyServer
from homeserver.crypto.server_keys import (
    FetchedKey,
    KeyResponseError,
    LocalServerKeys,
    ParsedKeyResponse,
    parse_key_response,
)
from homeserver.storage.lru import LruCache
from homeserver.storage.stores.server_keys import ServerKeyStore, StoredServerKey
from homeserver.types.canonical_json import encode_canonical_json
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.signing import SignatureError, verify_signed_by

logger = logging.getLogger(__name__)

KEY_SERVER_PATH = "/_matrix/key/v2/server"
KEY_QUERY_PATH = "/_matrix/key/v2/query"

FETCH_TIMEOUT_MS = 10_000
MAX_KEY_RESPONSE_BYTES = 1024 * 1024


class KeyFetchClient(Protocol):
    """What the KeyRing needs of the federation client (homeserver.federation.client)."""

    async def get_json(
        self,
        destination: str,
        path: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout_ms: int | None = None,
        max_response_size: int | None = None,
    ) -> Any: ...

    async def post_json(
        self,
        destination: str,
        path: str,
        data: Any,
        args: Mapping[str, Any] | None = None,
        *,
        timeout_ms: int | None = None,
        max_response_size: int | None = None,
    ) -> Any: ...


class KeyRing:
    """Verify keys of any server, fetched and cached (see the module docstring)."""

    def __init__(
        self,
        clock: Clock,
        store: ServerKeyStore,
        client: KeyFetchClient,
        local_keys: LocalServerKeys,
        trusted_key_servers: Sequence[TrustedKeyServer] = (),
        *,
        fetch_timeout_ms: int = FETCH_TIMEOUT_MS,
        negative_cache_ms: int = 30_000,
        min_refresh_interval_ms: int = 30_000,
        cache_size: int = 10_000,
    ) -> None:
        self._clock = clock
        self._store = store
        self._client = client
        self._local = local_keys
        self._server_name = local_keys.server_name
        self._notaries = tuple(trusted_key_servers)
        self._timeout_ms = fetch_timeout_ms
        self._negative_cache_ms = negative_cache_ms
        self._min_refresh_ms = min_refresh_interval_ms
        self._cache: LruCache[tuple[str, str], FetchedKey] = LruCache(cache_size)
        # (server, key_id) -> (until when not to fetch again, the minimum it was wanted for).
        self._missing: dict[tuple[str, str], tuple[int, int]] = {}
        self._max_missing = cache_size
        # One fetch per server at a time; lookups that miss queue on the lock
        # and look at the cache again when they get it.
        self._locks: dict[str, tuple[defer.DeferredLock, int]] = {}
        # server -> when the server itself was last asked (ms), for refresh_server_keys.
        self._last_direct: dict[str, int] = {}
        # Counted for tests and metrics: fetches actually started, by kind.
        self.fetch_counts = {"direct": 0, "notary": 0}

    # --- lookups ----------------------------------------------------------------

    async def get_server_keys(
        self, server_name: str, key_ids: Collection[str], minimum_valid_until_ts: int
    ) -> dict[str, FetchedKey]:
        """The keys among `key_ids` valid until at least `minimum_valid_until_ts` (ms).

        Keys that cannot be found (or not with that validity) are left out;
        network and answer errors are logged, never raised.
        """
        wanted = frozenset(key_ids)
        if server_name == self._server_name:
            return _usable(self._local.verify_keys(), wanted, minimum_valid_until_ts)
        found = await self._cached(server_name, wanted, minimum_valid_until_ts)
        if len(found) == len(wanted):
            return found
        async with self._lock(server_name):
            # Whoever held the lock before us may have fetched what we need.
            found = await self._cached(server_name, wanted, minimum_valid_until_ts)
            missing = wanted - found.keys()
            if not missing or self._recently_missing(server_name, missing, minimum_valid_until_ts):
                return found
            await self._detached(
                self._fetch(server_name, missing, minimum_valid_until_ts, use_notaries=True)
            )
            return await self._cached(server_name, wanted, minimum_valid_until_ts)

    async def get_verify_key(
        self, server_name: str, key_id: str, minimum_valid_until_ts: int
    ) -> FetchedKey | None:
        """One key (see get_server_keys), or None."""
        keys = await self.get_server_keys(server_name, [key_id], minimum_valid_until_ts)
        return keys.get(key_id)

    async def refresh_server_keys(self, server_name: str) -> None:
        """Fetch `server_name`'s keys from the server itself (for the notary API).

        Not if it was asked less than `min_refresh_interval_ms` ago (or while
        this call waited for another fetch of the same server), so callers
        can ask as often as they like. Errors are logged: the caller looks at
        what is stored afterwards.
        """
        if server_name == self._server_name:
            return
        asked_at = self._clock.time_msec()
        async with self._lock(server_name):
            last = self._last_direct.get(server_name)
            if last is not None and (last >= asked_at or asked_at - last < self._min_refresh_ms):
                return
            await self._detached(
                self._fetch(server_name, frozenset(), asked_at, use_notaries=False)
            )

    async def verify_json_for_server(
        self, server_name: str, obj: Mapping[str, Any], minimum_valid_until_ts: int
    ) -> None:
        """Check `server_name`'s signature on `obj` with keys valid until the given time.

        Raises MatrixError 401 M_UNAUTHORIZED when the object is not signed by
        the server, when none of the keys it was signed with can be found, or
        when a signature does not verify.
        """
        signatures = obj.get("signatures")
        by_server = signatures.get(server_name) if isinstance(signatures, Mapping) else None
        key_ids = [k for k in by_server or () if isinstance(k, str) and k.startswith("ed25519:")]
        if not key_ids:
            raise MatrixError(
                Codes.UNAUTHORIZED, f"Not signed by {server_name} with a supported key", status=401
            )
        keys = await self.get_server_keys(server_name, key_ids, minimum_valid_until_ts)
        if not keys:
            raise MatrixError(
                Codes.UNAUTHORIZED,
                f"Failed to find any key to satisfy: server {server_name}, key ids"
                f" {sorted(key_ids)}, valid until at least {minimum_valid_until_ts}",
                status=401,
            )
        try:
            verify_signed_by(obj, server_name, {k: v.verify_key for k, v in keys.items()})
        except SignatureError as e:
            raise MatrixError(
                Codes.UNAUTHORIZED, f"Invalid signature for server {server_name}: {e}", status=401
            ) from None

    # --- the cache ----------------------------------------------------------------

    async def _cached(
        self, server_name: str, wanted: frozenset[str], minimum: int
    ) -> dict[str, FetchedKey]:
        found, missing = self._cache.get_many((server_name, key_id) for key_id in wanted)
        result = {key_id: key for (_, key_id), key in found.items()}
        if missing:
            stored = await self._store.get_server_keys(server_name)
            for key_id, row in stored.items():
                key = _from_stored(key_id, row)
                if key is not None:
                    self._cache.set((server_name, key_id), key)
                    if key_id in wanted:
                        result[key_id] = key
        return _usable(result, wanted, minimum)

    def _recently_missing(self, server_name: str, key_ids: Collection[str], minimum: int) -> bool:
        now = self._clock.time_msec()
        for key_id in key_ids:
            entry = self._missing.get((server_name, key_id))
            if entry is None or entry[0] <= now or entry[1] < minimum:
                return False
        return bool(key_ids)

    def _note_missing(self, server_name: str, key_ids: Collection[str], minimum: int) -> None:
        if len(self._missing) >= self._max_missing:
            self._missing.clear()
        until = self._clock.time_msec() + self._negative_cache_ms
        for key_id in key_ids:
            self._missing[(server_name, key_id)] = (until, minimum)

    # --- fetching -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lock(self, server_name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(server_name) or (defer.DeferredLock(), 0)
        self._locks[server_name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[server_name]
            if users == 1:
                del self._locks[server_name]
            else:
                self._locks[server_name] = (lock, users - 1)

    @staticmethod
    async def _detached(work: Coroutine[Any, Any, None]) -> None:
        """Run `work` to the end even if our caller is cancelled (others may rely on it)."""
        done: defer.Deferred[None] = defer.Deferred()

        def finished(result: Any) -> None:
            if isinstance(result, Failure):
                logger.error("Fetching keys failed", exc_info=result.value)
            if not done.called:
                done.callback(None)

        defer.ensureDeferred(work).addBoth(finished)
        await done

    async def _fetch(
        self, server_name: str, key_ids: frozenset[str], minimum: int, use_notaries: bool
    ) -> None:
        found: set[str] = set()
        try:
            found |= await self._fetch_direct(server_name, minimum)
        except Exception as e:
            logger.warning("Cannot get the keys of %s from it: %s", server_name, e)
        if key_ids.issubset(found) or not use_notaries:
            return
        for notary in self._notaries:
            if notary.server_name == server_name:
                continue
            try:
                found |= await self._fetch_from_notary(
                    notary, server_name, key_ids - found, minimum
                )
            except Exception as e:
                logger.warning(
                    "Cannot get the keys of %s from notary %s: %s",
                    server_name,
                    notary.server_name,
                    e,
                )
            if key_ids.issubset(found):
                return
        if key_ids - found:
            self._note_missing(server_name, key_ids - found, minimum)
            logger.info(
                "No key of %s found for %s (valid until %d)",
                server_name,
                sorted(key_ids - found),
                minimum,
            )

    async def _fetch_direct(self, server_name: str, minimum: int) -> set[str]:
        """Ask the server; the IDs of its keys valid until `minimum`."""
        self.fetch_counts["direct"] += 1
        if len(self._last_direct) >= self._max_missing:
            self._last_direct.clear()
        self._last_direct[server_name] = self._clock.time_msec()
        response = await self._client.get_json(
            server_name,
            KEY_SERVER_PATH,
            timeout_ms=self._timeout_ms,
            max_response_size=MAX_KEY_RESPONSE_BYTES,
        )
        received = self._clock.time_msec()
        parsed = parse_key_response(response, server_name, received)
        await self._store_response(server_name, server_name, received, response, parsed)
        return {k for k, v in parsed.keys.items() if v.valid_until_ts >= minimum}

    async def _fetch_from_notary(
        self, notary: TrustedKeyServer, server_name: str, key_ids: frozenset[str], minimum: int
    ) -> set[str]:
        """Ask one notary about `server_name`; the IDs of keys it gave that are valid until `minimum`."""
        self.fetch_counts["notary"] += 1
        criteria = {key_id: {"minimum_valid_until_ts": minimum} for key_id in sorted(key_ids)}
        answer = await self._client.post_json(
            notary.server_name,
            KEY_QUERY_PATH,
            {"server_keys": {server_name: criteria}},
            timeout_ms=self._timeout_ms,
            max_response_size=MAX_KEY_RESPONSE_BYTES,
        )
        responses = answer.get("server_keys") if isinstance(answer, Mapping) else None
        if not isinstance(responses, list):
            raise KeyResponseError("the notary's answer has no server_keys list")
        received = self._clock.time_msec()
        found: set[str] = set()
        for response in responses:
            if not isinstance(response, Mapping) or response.get("server_name") != server_name:
                logger.warning(
                    "Notary %s answered about a server not asked for; ignored", notary.server_name
                )
                continue
            try:
                if notary.verify_keys is not None:
                    try:
                        verify_signed_by(response, notary.server_name, notary.verify_keys)
                    except SignatureError as e:
                        raise KeyResponseError(f"not signed by the notary: {e}") from None
                parsed = parse_key_response(response, server_name, received)
            except KeyResponseError as e:
                logger.warning(
                    "Notary %s's answer about %s is unusable: %s",
                    notary.server_name,
                    server_name,
                    e,
                )
                continue
            await self._store_response(server_name, notary.server_name, received, response, parsed)
            found |= {k for k, v in parsed.keys.items() if v.valid_until_ts >= minimum}
        return found

    async def _store_response(
        self,
        server_name: str,
        from_server: str,
        received: int,
        response: Any,
        parsed: ParsedKeyResponse,
    ) -> None:
        await self._store.store_server_keys(
            server_name,
            from_server,
            received,
            encode_canonical_json(response).decode("utf-8"),
            parsed.valid_until_ts,
            {
                key_id: (encode_verify_key_base64(key.verify_key), key.valid_until_ts)
                for key_id, key in parsed.keys.items()
            },
        )
        # What the store decided (a notary cannot shorten a key's validity) is
        # read back on the next lookup.
        for key_id in parsed.keys:
            self._cache.pop((server_name, key_id))
            self._missing.pop((server_name, key_id), None)


def _usable(
    keys: Mapping[str, FetchedKey], wanted: Collection[str], minimum: int
) -> dict[str, FetchedKey]:
    return {
        key_id: key
        for key_id, key in keys.items()
        if key_id in wanted and key.valid_until_ts >= minimum
    }


def _from_stored(key_id: str, row: StoredServerKey) -> FetchedKey | None:
    try:
        verify_key = decode_verify_key_bytes(key_id, decode_base64(row.verify_key))
    except Exception:
        logger.warning("Stored key %s is not a valid ed25519 key; ignored", key_id)
        return None
    return FetchedKey(verify_key, row.valid_until_ts)
