"""The KeyRing on both engines, fetching from twisted.web servers on 127.0.0.1 over TLS.

The remote server ("origin.test:<port>") serves its keys with the real
ServerKeyServlet; notaries are scripted, so their answers can be wrong in
chosen ways. Time is a task.Clock shared by every party.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from twisted.internet import defer

from homeserver.config.federation import OldSigningKey, TrustedKeyServer
from homeserver.crypto.keyring import KeyRing
from homeserver.crypto.server_keys import MAX_KEY_VALIDITY_MS, LocalServerKeys
from homeserver.federation.client import FederationClient
from homeserver.storage.stores.server_keys import ServerKeyStore
from homeserver.types.errors import MatrixError
from homeserver.types.signing import sign_json
from tests.federation_harness import (
    HOUR_MS,
    LOOPBACK,
    FakeDns,
    Origin,
    ScriptedResource,
    TlsServer,
    fake_clock,
    json_answer,
    local_keys,
    trust_root,
)


class World:
    """Us ("us.test"), the clock, DNS and a KeyRing; closes what it started."""

    def __init__(self, reactor: Any, database: Any) -> None:
        self.reactor = reactor
        self.clock_reactor, self.clock = fake_clock()
        self.dns = FakeDns(hosts={"origin.test": ["127.0.0.1"], "notary.test": ["127.0.0.1"]})
        self.us = local_keys("us.test", self.clock)
        self.client = FederationClient(
            reactor,
            self.clock,
            self.us,
            ip_blocklist=LOOPBACK,  # everything loopback is blocked...
            ip_allowlist=LOOPBACK,  # ...and allowed again, explicitly
            dns=self.dns,
            trust_root=trust_root("origin.test", "notary.test"),
        )
        self.store = ServerKeyStore(database)
        self.servers: list[TlsServer] = []

    def keyring(self, notaries: tuple[TrustedKeyServer, ...] = (), **kwargs: Any) -> KeyRing:
        return KeyRing(self.clock, self.store, self.client, self.us, notaries, **kwargs)

    def origin(self, **kwargs: Any) -> Origin:
        origin = Origin(self.reactor, self.clock, **kwargs)
        self.servers.append(origin.server)
        return origin

    def now(self) -> int:
        return self.clock.time_msec()

    def advance_ms(self, ms: int) -> None:
        self.clock_reactor.advance(ms / 1000)

    async def close(self) -> None:
        await self.client.close()
        for server in self.servers:
            await server.stop()


@pytest.fixture
def world(reactor: Any, database: Any) -> Any:
    from tests.conftest import run_on_reactor

    w = World(reactor, database)
    yield w
    run_on_reactor(w.close())


async def test_direct_fetch_is_stored_and_reused(world: World) -> None:
    origin = world.origin()
    keyring = world.keyring()
    key = await keyring.get_verify_key(origin.name, origin.key_id, world.now())
    assert key is not None
    assert encode_verify_key_base64(key.verify_key) == encode_verify_key_base64(
        get_verify_key(origin.keys.signing_key)
    )
    assert key.valid_until_ts == world.now() + HOUR_MS
    # Stored: a second KeyRing (another process, or after a restart) needs no fetch.
    assert (await world.store.get_server_keys(origin.name))[
        origin.key_id
    ].from_server == origin.name
    again = await world.keyring().get_verify_key(origin.name, origin.key_id, world.now())
    assert again == key
    assert origin.root.count == 1
    # And objects it signed verify.
    await keyring.verify_json_for_server(origin.name, origin.sign({"a": 1}), world.now())
    assert origin.root.count == 1


async def test_expired_key_is_fetched_again(world: World) -> None:
    origin = world.origin(refresh_ms=HOUR_MS)
    keyring = world.keyring()
    assert await keyring.get_verify_key(origin.name, origin.key_id, world.now())
    world.advance_ms(2 * HOUR_MS)
    # Valid until an hour ago: not enough for now; refetched, valid for another hour.
    key = await keyring.get_verify_key(origin.name, origin.key_id, world.now())
    assert key is not None and key.valid_until_ts == world.now() + HOUR_MS
    assert origin.root.count == 2
    # An older time is satisfied by the stored key without a fetch (room v1-v4 events).
    assert await keyring.get_verify_key(origin.name, origin.key_id, 0)
    assert origin.root.count == 2


async def test_unknown_key_is_fetched_and_then_not_asked_for_again_for_a_while(
    world: World,
) -> None:
    origin = world.origin()
    keyring = world.keyring(negative_cache_ms=30_000)
    assert await keyring.get_verify_key(origin.name, origin.key_id, world.now())
    # The server rotates: a new key, unknown to us although our cache is fresh.
    origin.set_keys(
        LocalServerKeys(origin.name, [generate_signing_key("new")], {}, HOUR_MS, world.clock)
    )
    assert await keyring.get_verify_key(origin.name, "ed25519:new", world.now())
    assert origin.root.count == 2
    # A key the server does not have: one fetch, then none for 30 s.
    assert await keyring.get_verify_key(origin.name, "ed25519:nope", world.now()) is None
    assert await keyring.get_verify_key(origin.name, "ed25519:nope", world.now()) is None
    assert origin.root.count == 3
    world.advance_ms(31_000)
    assert await keyring.get_verify_key(origin.name, "ed25519:nope", world.now()) is None
    assert origin.root.count == 4


async def test_validity_is_capped_at_seven_days(world: World) -> None:
    origin = world.origin(refresh_ms=365 * 24 * HOUR_MS)
    key = await world.keyring().get_verify_key(origin.name, origin.key_id, world.now())
    assert key is not None and key.valid_until_ts == world.now() + MAX_KEY_VALIDITY_MS


async def test_old_verify_keys_are_valid_until_they_expired(world: World) -> None:
    old_key = generate_signing_key("old")
    expired = world.now() - HOUR_MS
    origin = world.origin(old={"ed25519:old": OldSigningKey(get_verify_key(old_key), expired)})
    keyring = world.keyring()
    key = await keyring.get_verify_key(origin.name, "ed25519:old", expired - 1)
    assert key is not None and key.valid_until_ts == expired
    # An event signed with it before it expired verifies; a request now would not.
    signed = sign_json({"x": 1}, origin.name, old_key)
    await keyring.verify_json_for_server(origin.name, signed, expired - 1)
    with pytest.raises(MatrixError) as info:
        await keyring.verify_json_for_server(origin.name, signed, world.now())
    assert info.value.status == 401 and info.value.errcode == "M_UNAUTHORIZED"


async def test_concurrent_lookups_share_one_fetch(world: World) -> None:
    origin = world.origin()
    keyring = world.keyring()
    results = await defer.gatherResults(
        [
            defer.ensureDeferred(keyring.get_verify_key(origin.name, origin.key_id, world.now()))
            for _ in range(10)
        ]
    )
    assert all(r is not None for r in results)
    assert origin.root.count == 1
    assert keyring.fetch_counts["direct"] == 1


async def test_own_keys_need_no_fetch(world: World) -> None:
    keyring = world.keyring()
    key_id = f"ed25519:{world.us.signing_key.version}"
    assert await keyring.get_verify_key("us.test", key_id, world.now() + 10**9)
    await keyring.verify_json_for_server("us.test", world.us.sign({"a": 1}), world.now())
    assert keyring.fetch_counts == {"direct": 0, "notary": 0}


@pytest.mark.parametrize(
    "tamper",
    ["server_name", "signature", "unsigned", "valid_until_ts", "not_object"],
)
async def test_unusable_direct_answers_are_not_stored(world: World, tamper: str) -> None:
    root = ScriptedResource()
    srv = TlsServer(world.reactor, root, "origin.test")
    world.servers.append(srv)
    name = f"origin.test:{srv.port}"
    keys = local_keys(name, world.clock)
    answer = keys.server_keys_response()
    key_id = next(iter(answer["verify_keys"]))
    if tamper == "server_name":
        answer.pop("signatures")
        answer = keys.sign({**answer, "server_name": "someone.else"})
    elif tamper == "signature":
        answer["valid_until_ts"] += 1  # signature no longer matches
    elif tamper == "unsigned":
        answer.pop("signatures")
    elif tamper == "valid_until_ts":
        answer.pop("signatures")
        answer.pop("valid_until_ts")
        answer = keys.sign(answer)
    else:
        answer = [answer]
    root.routes["/_matrix/key/v2/server"] = json_answer(json.dumps(answer).encode())
    keyring = world.keyring()
    assert await keyring.get_verify_key(name, key_id, world.now()) is None
    assert await world.store.get_server_keys(name) == {}


async def test_unverifiable_json_is_refused_with_401(world: World) -> None:
    origin = world.origin()
    keyring = world.keyring()
    signed = origin.sign({"a": 1})
    with pytest.raises(MatrixError) as info:
        await keyring.verify_json_for_server(origin.name, {**signed, "a": 2}, world.now())
    assert (info.value.status, info.value.errcode) == (401, "M_UNAUTHORIZED")
    assert "Invalid signature" in info.value.message
    with pytest.raises(MatrixError) as info:
        await keyring.verify_json_for_server(origin.name, {"a": 1}, world.now())
    assert info.value.status == 401
    other = sign_json({"a": 1}, origin.name, generate_signing_key("unknown"))
    with pytest.raises(MatrixError) as info:
        await keyring.verify_json_for_server(origin.name, other, world.now())
    assert "Failed to find any key" in info.value.message


# --- notaries ------------------------------------------------------------------------


class Notary:
    """A scripted notary: answers POST /_matrix/key/v2/query with what the test sets."""

    def __init__(self, world: World) -> None:
        self.root = ScriptedResource()
        self.server = TlsServer(world.reactor, self.root, "notary.test")
        world.servers.append(self.server)
        self.name = f"notary.test:{self.server.port}"
        self.keys = local_keys(self.name, world.clock)

    def answer(self, server_keys: list[dict[str, Any]]) -> None:
        self.root.routes["/_matrix/key/v2/query"] = json_answer(
            json.dumps({"server_keys": server_keys}).encode()
        )

    def trusted(self, pinned: bool = True) -> TrustedKeyServer:
        keys = {f"ed25519:{k.version}": get_verify_key(k) for k in self.keys.signing_keys}
        return TrustedKeyServer(self.name, keys if pinned else None, False)


async def _origin_out_of_reach(world: World) -> LocalServerKeys:
    """Keys of a server whose own key endpoint cannot be reached (nothing listens on port 1)."""
    return local_keys("origin.test:1", world.clock)


async def test_notary_is_asked_when_the_server_cannot_be(world: World) -> None:
    origin = await _origin_out_of_reach(world)
    notary = Notary(world)
    notary.answer([notary.keys.sign(origin.server_keys_response())])
    keyring = world.keyring((notary.trusted(),))
    key_id = f"ed25519:{origin.signing_key.version}"
    minimum = world.now() + 60_000
    key = await keyring.get_verify_key("origin.test:1", key_id, minimum)
    assert key is not None
    assert keyring.fetch_counts == {"direct": 1, "notary": 1}
    (query,) = notary.root.requests
    assert json.loads(query.body) == {
        "server_keys": {"origin.test:1": {key_id: {"minimum_valid_until_ts": minimum}}}
    }
    assert (await world.store.get_server_keys("origin.test:1"))[key_id].from_server == notary.name
    # The notary's answer is kept, for our own notary API.
    (stored,) = await world.store.get_key_responses("origin.test:1")
    assert stored.from_server == notary.name


async def test_notary_answers_must_be_signed_by_the_pinned_key(world: World) -> None:
    origin = await _origin_out_of_reach(world)
    notary = Notary(world)
    impostor = local_keys(notary.name, world.clock)
    notary.answer([impostor.sign(origin.server_keys_response())])
    keyring = world.keyring((notary.trusted(),))
    key_id = f"ed25519:{origin.signing_key.version}"
    assert await keyring.get_verify_key("origin.test:1", key_id, world.now()) is None
    assert await world.store.get_server_keys("origin.test:1") == {}
    # Without pinned keys the notary's signature is not checked (TLS only).
    keyring = world.keyring((notary.trusted(pinned=False),))
    assert await keyring.get_verify_key("origin.test:1", key_id, world.now()) is not None


async def test_notary_cannot_forge_a_servers_keys(world: World) -> None:
    """What a notary relays must still be self-signed by the server, and about it."""
    origin = await _origin_out_of_reach(world)
    notary = Notary(world)
    forged = local_keys("origin.test:1", world.clock)  # same name, other keys
    wrong = forged.server_keys_response()
    wrong["signatures"] = origin.server_keys_response()["signatures"]
    other_server = local_keys("elsewhere.test", world.clock).server_keys_response()
    notary.answer([notary.keys.sign(wrong), notary.keys.sign(other_server)])
    keyring = world.keyring((notary.trusted(),))
    key_id = f"ed25519:{forged.signing_key.version}"
    assert await keyring.get_verify_key("origin.test:1", key_id, world.now()) is None
    assert await world.store.get_server_keys("elsewhere.test") == {}


async def test_notaries_are_tried_in_order_until_one_answers(world: World) -> None:
    origin = await _origin_out_of_reach(world)
    broken, good = Notary(world), Notary(world)
    broken.root.routes["/_matrix/key/v2/query"] = json_answer(
        b'{"errcode":"M_UNKNOWN"}', status=500
    )
    good.answer([good.keys.sign(origin.server_keys_response())])
    keyring = world.keyring((broken.trusted(), good.trusted()))
    key_id = f"ed25519:{origin.signing_key.version}"
    assert await keyring.get_verify_key("origin.test:1", key_id, world.now()) is not None
    assert keyring.fetch_counts == {"direct": 1, "notary": 2}


async def test_server_answer_first_notary_only_for_what_is_missing(world: World) -> None:
    origin = world.origin()
    notary = Notary(world)
    notary.answer([])
    keyring = world.keyring((notary.trusted(),))
    assert await keyring.get_verify_key(origin.name, origin.key_id, world.now())
    assert keyring.fetch_counts == {"direct": 1, "notary": 0}
    assert notary.root.requests == []
