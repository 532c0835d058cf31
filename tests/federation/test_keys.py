"""The /_matrix/key/v2 servlets: our key answer, checked against the spec's rules, and the notary API.

GET /server and request validation run in memory (tests/http_harness.py). The
notary runs for real: a Router with the key servlets on 127.0.0.1 over TLS,
with its own database, KeyRing and federation client, fetching from a remote
server ("origin") and asked by our federation client and our KeyRing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from twisted.internet import task

from homeserver.api.http import Router, Site
from homeserver.config.federation import OldSigningKey, TrustedKeyServer
from homeserver.crypto.keyring import KeyRing
from homeserver.crypto.notary import KeyNotary
from homeserver.crypto.server_keys import LocalServerKeys, parse_key_response
from homeserver.federation.client import FederationClient
from homeserver.federation.keys import BulkKeyQueryServlet, KeyQueryServlet, ServerKeyServlet
from homeserver.storage.database import Database
from homeserver.storage.stores.server_keys import ServerKeyStore
from homeserver.types.signing import verify_signed_by
from tests.conftest import run_on_reactor
from tests.federation_harness import (
    HOUR_MS,
    LOOPBACK,
    FakeDns,
    Origin,
    TlsServer,
    fake_clock,
    local_keys,
    trust_root,
)
from tests.http_harness import request

# --- GET /_matrix/key/v2/server --------------------------------------------------------


def key_site(keys: LocalServerKeys, notary: Any = None) -> Site:
    router = Router()
    router.register(ServerKeyServlet(keys))
    if notary is not None:
        router.register(KeyQueryServlet(notary))
        router.register(BulkKeyQueryServlet(notary))
    return Site(router, 1024 * 1024, name="test", reactor=task.Clock())


def test_server_keys_answer_follows_the_spec() -> None:
    """Signed by every current key, old keys listed with expired_ts, valid for key_refresh_interval."""
    _, clock = fake_clock()
    current = [generate_signing_key("a"), generate_signing_key("b")]
    old_key = generate_signing_key("old")
    keys = LocalServerKeys(
        "example.com",
        current,
        {"ed25519:old": OldSigningKey(get_verify_key(old_key), 1_600_000_000_000)},
        24 * HOUR_MS,
        clock,
    )
    response = request(key_site(keys), "GET", "/_matrix/key/v2/server")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert set(answer) == {
        "server_name",
        "verify_keys",
        "old_verify_keys",
        "valid_until_ts",
        "signatures",
    }
    assert answer["server_name"] == "example.com"
    assert answer["valid_until_ts"] == clock.time_msec() + 24 * HOUR_MS
    assert answer["verify_keys"] == {
        f"ed25519:{k.version}": {"key": encode_verify_key_base64(get_verify_key(k))}
        for k in current
    }
    assert answer["old_verify_keys"] == {
        "ed25519:old": {
            "key": encode_verify_key_base64(get_verify_key(old_key)),
            "expired_ts": 1_600_000_000_000,
        }
    }
    # Each current key signed it; each signature verifies.
    assert set(answer["signatures"]["example.com"]) == {"ed25519:a", "ed25519:b"}
    for k in current:
        verify_signed_by(answer, "example.com", {f"ed25519:{k.version}": get_verify_key(k)})
    # And a remote server accepts it as our key answer.
    parsed = parse_key_response(answer, "example.com", clock.time_msec())
    assert set(parsed.keys) == {"ed25519:a", "ed25519:b", "ed25519:old"}


def test_deprecated_key_id_path_gets_the_same_answer() -> None:
    _, clock = fake_clock()
    keys = local_keys("example.com", clock)
    site = key_site(keys)
    assert request(site, "GET", "/_matrix/key/v2/server/ed25519:whatever").json() == (
        request(site, "GET", "/_matrix/key/v2/server").json()
    )
    assert request(site, "POST", "/_matrix/key/v2/server", b"{}").status == 405


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "errcode"),
    [
        ("POST", "/_matrix/key/v2/query", b"not json", 400, "M_NOT_JSON"),
        ("POST", "/_matrix/key/v2/query", b"[]", 400, "M_BAD_JSON"),
        ("POST", "/_matrix/key/v2/query", b"{}", 400, "M_MISSING_PARAM"),
        ("POST", "/_matrix/key/v2/query", b'{"server_keys": []}', 400, "M_BAD_JSON"),
        ("POST", "/_matrix/key/v2/query", b'{"server_keys": {"a.example": []}}', 400, "M_BAD_JSON"),
        (
            "POST",
            "/_matrix/key/v2/query",
            b'{"server_keys": {"a.example": {"ed25519:x": 1}}}',
            400,
            "M_BAD_JSON",
        ),
        (
            "POST",
            "/_matrix/key/v2/query",
            b'{"server_keys": {"not a name": {}}}',
            400,
            "M_INVALID_PARAM",
        ),
        (
            "POST",
            "/_matrix/key/v2/query",
            b'{"server_keys": {"a.example": {"ed25519:x": {"minimum_valid_until_ts": "soon"}}}}',
            400,
            "M_INVALID_PARAM",
        ),
        (
            "GET",
            "/_matrix/key/v2/query/a.example?minimum_valid_until_ts=soon",
            b"",
            400,
            "M_INVALID_PARAM",
        ),
        ("GET", "/_matrix/key/v2/query/bad%20name", b"", 400, "M_INVALID_PARAM"),
        ("GET", "/_matrix/key/v2/query", b"", 405, "M_UNRECOGNIZED"),
    ],
)
def test_notary_requests_are_checked(
    method: str, path: str, body: bytes, status: int, errcode: str
) -> None:
    _, clock = fake_clock()
    keys = local_keys("example.com", clock)
    notary = KeyNotary(clock, None, None, keys)  # type: ignore[arg-type]  # never reached
    response = request(key_site(keys, notary), method, path, body)
    assert (response.status, response.json()["errcode"]) == (status, errcode)


def test_an_empty_query_gets_an_empty_answer() -> None:
    _, clock = fake_clock()
    keys = local_keys("example.com", clock)
    notary = KeyNotary(clock, None, None, keys)  # type: ignore[arg-type]
    response = request(
        key_site(keys, notary), "POST", "/_matrix/key/v2/query", b'{"server_keys": {}}'
    )
    assert (response.status, response.json()) == (200, {"server_keys": []})


# --- the notary, for real ------------------------------------------------------------------


class NotaryWorld:
    """Origin, a notary ("notary.test:<port>") and us, sharing one task.Clock."""

    def __init__(self, reactor: Any, our_db: Database, notary_db: Database) -> None:
        self.reactor = reactor
        self.clock_reactor, self.clock = fake_clock()
        self.origin = Origin(reactor, self.clock)
        # The notary: its keys, store, KeyRing and client (it can reach origin.test).
        notary_dns = FakeDns(hosts={"origin.test": ["127.0.0.1"]})
        self.router = Router()
        self.server = TlsServer(reactor, self.router, "notary.test")
        self.notary_name = f"notary.test:{self.server.port}"
        self.notary_keys = local_keys(self.notary_name, self.clock)
        self.notary_client = FederationClient(
            reactor,
            self.clock,
            self.notary_keys,
            ip_blocklist=LOOPBACK,
            ip_allowlist=LOOPBACK,
            dns=notary_dns,
            trust_root=trust_root("origin.test"),
        )
        self.notary_store = ServerKeyStore(notary_db)
        self.notary_keyring = KeyRing(
            self.clock, self.notary_store, self.notary_client, self.notary_keys
        )
        notary = KeyNotary(self.clock, self.notary_store, self.notary_keyring, self.notary_keys)
        for servlet in (
            ServerKeyServlet(self.notary_keys),
            KeyQueryServlet(notary),
            BulkKeyQueryServlet(notary),
        ):
            self.router.register(servlet)
        # Us: we reach the notary but not origin (our DNS does not know origin.test).
        self.our_keys = local_keys("us.test", self.clock)
        self.client = FederationClient(
            reactor,
            self.clock,
            self.our_keys,
            ip_blocklist=LOOPBACK,
            ip_allowlist=LOOPBACK,
            dns=FakeDns(hosts={"notary.test": ["127.0.0.1"]}),
            trust_root=trust_root("notary.test"),
        )
        self.our_store = ServerKeyStore(our_db)

    def check_notary_answer(
        self, answer: dict[str, Any], server_name: str, keys: LocalServerKeys
    ) -> None:
        """Signed by the server itself and by the notary."""
        verify_signed_by(
            answer,
            server_name,
            {f"ed25519:{k.version}": get_verify_key(k) for k in keys.signing_keys},
        )
        verify_signed_by(
            answer,
            self.notary_name,
            {f"ed25519:{k.version}": get_verify_key(k) for k in self.notary_keys.signing_keys},
        )

    async def query(self, criteria: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await self.client.post_json(
            self.notary_name, "/_matrix/key/v2/query", {"server_keys": criteria}
        )
        return answer["server_keys"]

    async def close(self) -> None:
        await self.client.close()
        await self.notary_client.close()
        await self.server.stop()
        await self.origin.server.stop()


@pytest.fixture
def notary_world(reactor: Any, database: Database, make_db_config: Any) -> Iterator[NotaryWorld]:
    engine, args = make_db_config()
    notary_db = Database(reactor, engine, args, cp_min=1, cp_max=3)
    run_on_reactor(notary_db.start())
    world = NotaryWorld(reactor, database, notary_db)
    yield world
    run_on_reactor(world.close())
    run_on_reactor(notary_db.close())


async def test_notary_fetches_caches_and_resigns(notary_world: NotaryWorld) -> None:
    w = notary_world
    (answer,) = await w.query({w.origin.name: {}})
    w.check_notary_answer(answer, w.origin.name, w.origin.keys)
    assert answer["verify_keys"] == w.origin.keys.server_keys_response()["verify_keys"]
    assert w.origin.root.count == 1
    # Cached: asked again (for the key by ID this time), no new fetch.
    (again,) = await w.query({w.origin.name: {w.origin.key_id: {}}})
    assert again["valid_until_ts"] == answer["valid_until_ts"]
    assert w.origin.root.count == 1


async def test_notary_get_form_and_minimum_valid_until_ts(notary_world: NotaryWorld) -> None:
    w = notary_world
    path = f"/_matrix/key/v2/query/{w.origin.name}"
    (answer,) = (await w.client.get_json(w.notary_name, path))["server_keys"]
    w.check_notary_answer(answer, w.origin.name, w.origin.keys)
    assert w.origin.root.count == 1
    # Asking for validity beyond what is cached makes the notary refetch (after
    # its 30 s minimum between fetches of one server).
    w.clock_reactor.advance(31)
    beyond = answer["valid_until_ts"] + 1
    (answer,) = (
        await w.client.get_json(w.notary_name, path, {"minimum_valid_until_ts": str(beyond)})
    )["server_keys"]
    assert w.origin.root.count == 2
    assert answer["valid_until_ts"] == w.clock.time_msec() + HOUR_MS


async def test_notary_refreshes_after_half_the_lifetime_and_serves_stale_when_down(
    notary_world: NotaryWorld,
) -> None:
    w = notary_world
    await w.query({w.origin.name: {}})
    w.clock_reactor.advance(HOUR_MS / 1000 / 2 - 60)
    await w.query({w.origin.name: {}})
    assert w.origin.root.count == 1  # less than half the lifetime: cached
    w.clock_reactor.advance(120)
    await w.query({w.origin.name: {}})
    assert w.origin.root.count == 2  # past half the lifetime: refreshed
    # The server goes away and its keys expire: the last answer is still served.
    await w.origin.server.stop()
    w.clock_reactor.advance(2 * HOUR_MS / 1000)
    (answer,) = await w.query({w.origin.name: {}})
    w.check_notary_answer(answer, w.origin.name, w.origin.keys)
    assert answer["valid_until_ts"] < w.clock.time_msec()


async def test_notary_answers_for_itself_and_leaves_out_unknown_servers(
    notary_world: NotaryWorld,
) -> None:
    w = notary_world
    answers = await w.query({w.notary_name: {}, "unknown.test:1": {}})
    (own,) = answers
    assert own["server_name"] == w.notary_name
    parse_key_response(own, w.notary_name, w.clock.time_msec())


async def test_our_keyring_gets_keys_through_the_notary(notary_world: NotaryWorld) -> None:
    """End to end: origin unreachable for us, the notary (pinned key) vouches for it."""
    w = notary_world
    pinned = {f"ed25519:{k.version}": get_verify_key(k) for k in w.notary_keys.signing_keys}
    keyring = KeyRing(
        w.clock,
        w.our_store,
        w.client,
        w.our_keys,
        (TrustedKeyServer(w.notary_name, pinned, False),),
    )
    key = await keyring.get_verify_key(w.origin.name, w.origin.key_id, w.clock.time_msec())
    assert key is not None
    assert keyring.fetch_counts == {"direct": 1, "notary": 1}
    await keyring.verify_json_for_server(
        w.origin.name, w.origin.sign({"x": 1}), w.clock.time_msec()
    )
    (stored,) = await w.our_store.get_key_responses(w.origin.name)
    assert stored.from_server == w.notary_name
    assert json.loads(stored.response_json)["server_name"] == w.origin.name
