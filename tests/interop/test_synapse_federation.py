"""Federation with the real Synapse (1.163.2) on loopback: joins, messages, state, membership.

Synapse runs as a subprocess (tests/interop/synapse_peer.py), started once for
the module; our server runs in-process on the test reactor, a fresh one per
test, with a TLS federation listener and the name `localhost:<port>` (an
explicit port: neither side does .well-known or SRV lookups). Certificates
are self-signed and not checked on either side; keys are fetched from the
peer itself. Without a Synapse venv the tests fail, or skip with
HOMESERVER_TEST_SKIP_SYNAPSE=1 (the `synapse_venv` fixture of conftest.py).

Beyond single exchanges: both sides changing the topic and power levels at
once must converge on the same state (state resolution v2 on both), and our
server restarted on its database (same name, key and federation port) must
catch up on what Synapse sent while it was down.

Our server runs on both engines (the `make_db_config` fixture); Synapse stays
on SQLite, which is what matters for interop. Every wait is bounded
(`eventually`, WAIT seconds).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from signedjson.key import generate_signing_key
from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.web.client import Agent, HTTPConnectionPool

from homeserver.api.http import Router
from homeserver.crypto.server_keys import LocalServerKeys
from homeserver.crypto.tls import FederationTlsOptions, generate_self_signed_cert
from homeserver.crypto.x_matrix import sign_request
from homeserver.federation.keys import ServerKeyServlet
from homeserver.server import HomeServer
from homeserver.state.auth_rules import auth_types_from_fields
from homeserver.types.event_builder import build_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import run_on_reactor
from tests.federation_harness import HOUR_MS, TlsServer
from tests.homeserver_harness import HomeServerFactory, TestClient
from tests.interop.synapse_peer import LOOPBACK_RANGES, SHORT_BACKOFF, SynapsePeer, free_port

WAIT = 20.0


@pytest.fixture(scope="module")
def synapse(
    tmp_path_factory: pytest.TempPathFactory, synapse_venv: Path
) -> Iterator[SynapsePeer]:
    peer = SynapsePeer(tmp_path_factory.mktemp("synapse"), venv=synapse_venv)
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()


class Ours:
    """Our in-process server, its name and a client for it.

    `stop()` and `start()` restart it on the same database, signing key and
    federation port (the port is in the server name Synapse knows us by);
    `hs` and `client` then refer to the new server.
    """

    def __init__(
        self,
        factory: HomeServerFactory,
        start: Callable[[], Awaitable[HomeServer]],
        hs: HomeServer,
        name: str,
    ) -> None:
        self._factory = factory
        self._start = start
        self.hs = hs
        self.name = name
        self.client = factory.client(hs)

    async def stop(self) -> None:
        await self._factory.stop(self.hs)

    async def start(self) -> None:
        self.hs = await self._start()
        self.client = self._factory.client(self.hs)

    @property
    def port(self) -> int:
        return int(self.name.rsplit(":", 1)[1])

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    def unique(self, name: str) -> str:
        """`name` made unique: Synapse, shared by the module, keeps every user and alias."""
        return f"{name}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ours(reactor: Any, tmp_path: Path, make_db_config: Callable[[], Any]) -> Iterator[Ours]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    generate_self_signed_cert(str(cert), str(key), "localhost", overwrite=True)
    port = free_port()
    name = f"localhost:{port}"
    factory = HomeServerFactory(reactor, tmp_path, make_db_config())

    async def start() -> HomeServer:
        return await factory.start(
            server_name=name,
            tls_certificate_path=str(cert),
            tls_private_key_path=str(key),
            federation_verify_certificates=False,
            ip_range_allowlist=LOOPBACK_RANGES,
            trusted_key_servers=[],
            suppress_key_server_warning=True,
            federation=SHORT_BACKOFF,
            listeners=[
                {"port": 0, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]},
                {
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "tls": True,
                    "resources": [{"names": ["federation"]}],
                },
            ],
        )

    hs = run_on_reactor(start())
    try:
        yield Ours(factory, start, hs, name)
    finally:
        run_on_reactor(factory.stop_all())


@pytest.fixture
def synapse_client(reactor: Any, synapse: SynapsePeer) -> TestClient:
    return TestClient(reactor, synapse.base_url)


def q(part: str) -> str:
    return quote(part, safe="")


async def register(client: TestClient, localpart: str) -> tuple[str, str]:
    answer = await client.register(localpart)
    return str(answer["user_id"]), str(answer["access_token"])


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, synapse: SynapsePeer | None = None
) -> None:
    """Poll `check` until it holds; fail after WAIT seconds (with Synapse's log, if given)."""
    from twisted.internet import reactor

    waited = 0.0
    while not await check():
        if waited >= WAIT:
            log = f"\nSynapse log:\n{synapse.log_tail()}" if synapse is not None else ""
            raise AssertionError(f"not after {WAIT}s: {what}{log}")
        await task.deferLater(reactor, 0.1, lambda: None)
        waited += 0.1


async def create_room(client: TestClient, token: str, **body: Any) -> str:
    response = await client.post("/createRoom", body, token=token)
    assert response.status == 200, response
    return str(response.json["room_id"])


async def send_text(client: TestClient, token: str, room_id: str, text: str) -> str:
    response = await client.put(
        f"/rooms/{q(room_id)}/send/m.room.message/{q(text)}",
        {"msgtype": "m.text", "body": text},
        token=token,
    )
    assert response.status == 200, response
    return str(response.json["event_id"])


async def synced_timeline(client: TestClient, token: str, room_id: str) -> list[dict[str, Any]]:
    """The timeline events of the room in an initial /sync (joined or left section)."""
    response = await client.get("/sync", token=token)
    assert response.status == 200, response
    rooms = response.json.get("rooms", {})
    for section in ("join", "leave"):
        room = rooms.get(section, {}).get(room_id)
        if room is not None:
            return list(room["timeline"]["events"])
    return []


async def synced_bodies(client: TestClient, token: str, room_id: str) -> list[str]:
    return [
        e["content"].get("body")
        for e in await synced_timeline(client, token, room_id)
        if e["type"] == "m.room.message"
    ]


async def history(client: TestClient, token: str, room_id: str) -> list[str]:
    """The message bodies of the room's last 50 events, by /messages backwards."""
    response = await client.get(
        f"/rooms/{q(room_id)}/messages", token=token, query={"dir": "b", "limit": "50"}
    )
    assert response.status == 200, response
    return [e["content"].get("body") for e in response.json["chunk"] if e["type"] == "m.room.message"]


async def room_state(client: TestClient, token: str, room_id: str, event_type: str, key: str = "") -> Any:
    response = await client.get(f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(key)}", token=token)
    return response.json if response.status == 200 else None


# 12 is both servers' default; 10 has room IDs with a server part and the
# create event among the auth events; 1 has event IDs chosen by the origin
# and references with hashes.
ROOM_VERSIONS = ["12", "10", "1"]


@pytest.mark.parametrize("room_version", ROOM_VERSIONS)
async def test_our_user_joins_a_synapse_room_by_alias_and_they_talk(
    ours: Ours, synapse: SynapsePeer, synapse_client: TestClient, room_version: str
) -> None:
    sam, sam_token = await register(synapse_client, ours.unique("sam"))
    alias_name = ours.unique("lobby")
    room_id = await create_room(
        synapse_client,
        sam_token,
        preset="public_chat",
        room_alias_name=alias_name,
        room_version=room_version,
    )
    await send_text(synapse_client, sam_token, room_id, "before alice")
    alice, alice_token = await register(ours.client, "alice")

    alias = f"#{alias_name}:{synapse.server_name}"
    response = await ours.client.post(f"/join/{q(alias)}", {}, token=alice_token)
    assert response.status == 200, (response, synapse.log_tail())
    assert response.json == {"room_id": room_id}
    room = await ours.hs.room_storage.rooms.get_room(room_id)
    assert room is not None and room.room_version == room_version

    async def synapse_sees_alice_joined() -> bool:
        member = await room_state(synapse_client, sam_token, room_id, "m.room.member", alice)
        return member is not None and member.get("membership") == "join"

    await eventually(synapse_sees_alice_joined, "Synapse sees alice's join", synapse)

    await send_text(synapse_client, sam_token, room_id, "hello from synapse")

    async def alice_syncs_sams_message() -> bool:
        return "hello from synapse" in await synced_bodies(ours.client, alice_token, room_id)

    await eventually(alice_syncs_sams_message, "alice's /sync has sam's message", synapse)

    await send_text(ours.client, alice_token, room_id, "hello from ours")

    async def sam_syncs_alices_message() -> bool:
        return "hello from ours" in await synced_bodies(synapse_client, sam_token, room_id)

    await eventually(sam_syncs_alices_message, "sam's /sync has alice's message", synapse)

    # History from before alice's join ("shared" visibility) is backfilled from Synapse.
    assert "before alice" in await history(ours.client, alice_token, room_id)


@pytest.mark.parametrize("room_version", ROOM_VERSIONS)
async def test_a_synapse_user_joins_our_room_by_alias_and_they_talk(
    ours: Ours, synapse: SynapsePeer, synapse_client: TestClient, room_version: str
) -> None:
    alice, alice_token = await register(ours.client, "alice")
    room_id = await create_room(
        ours.client,
        alice_token,
        preset="public_chat",
        room_alias_name="garden",
        room_version=room_version,
    )
    await send_text(ours.client, alice_token, room_id, "before sam")
    sam, sam_token = await register(synapse_client, ours.unique("sam"))

    alias = f"#garden:{ours.name}"
    response = await synapse_client.post(f"/join/{q(alias)}", {}, token=sam_token)
    assert response.status == 200, (response, synapse.log_tail())
    assert response.json["room_id"] == room_id
    create = await room_state(synapse_client, sam_token, room_id, "m.room.create")
    assert create is not None and create.get("room_version", "1") == room_version

    async def we_see_sam_joined() -> bool:
        member = await room_state(ours.client, alice_token, room_id, "m.room.member", sam)
        return member is not None and member.get("membership") == "join"

    await eventually(we_see_sam_joined, "we see sam's join", synapse)

    await send_text(ours.client, alice_token, room_id, "hello from ours")

    async def sam_syncs_alices_message() -> bool:
        return "hello from ours" in await synced_bodies(synapse_client, sam_token, room_id)

    await eventually(sam_syncs_alices_message, "sam's /sync has alice's message", synapse)

    await send_text(synapse_client, sam_token, room_id, "hello from synapse")

    async def alice_syncs_sams_message() -> bool:
        return "hello from synapse" in await synced_bodies(ours.client, alice_token, room_id)

    await eventually(alice_syncs_sams_message, "alice's /sync has sam's message", synapse)

    # History from before sam's join ("shared" visibility) is backfilled from us.
    assert "before sam" in await history(synapse_client, sam_token, room_id)


async def our_membership(ours: Ours, room_id: str, user_id: str) -> str | None:
    membership = await ours.hs.room_storage.rooms.get_membership(room_id, user_id)
    return membership.membership if membership is not None else None


async def synapse_membership(
    synapse_client: TestClient, token: str, room_id: str, user_id: str
) -> str | None:
    member = await room_state(synapse_client, token, room_id, "m.room.member", user_id)
    return member.get("membership") if member is not None else None


# Anyone joined may set the topic: both sides set it in these rooms.
OPEN_TOPIC = {"events": {"m.room.topic": 0}}


async def test_topics_set_on_each_side_are_seen_on_the_other(
    ours: Ours, synapse: SynapsePeer, synapse_client: TestClient
) -> None:
    sam, sam_token = await register(synapse_client, ours.unique("sam"))
    alice, alice_token = await register(ours.client, "alice")
    alias_name = ours.unique("topics")
    room_id = await create_room(
        synapse_client,
        sam_token,
        preset="public_chat",
        room_alias_name=alias_name,
        power_level_content_override=OPEN_TOPIC,
    )
    response = await ours.client.post(
        f"/join/{q(f'#{alias_name}:{synapse.server_name}')}", {}, token=alice_token
    )
    assert response.status == 200, (response, synapse.log_tail())

    async def topic_is(client: TestClient, token: str, topic: str) -> bool:
        content = await room_state(client, token, room_id, "m.room.topic")
        return content is not None and content.get("topic") == topic

    response = await synapse_client.put(
        f"/rooms/{q(room_id)}/state/m.room.topic", {"topic": "set by sam"}, token=sam_token
    )
    assert response.status == 200, response
    await eventually(
        lambda: topic_is(ours.client, alice_token, "set by sam"), "we see sam's topic", synapse
    )

    response = await ours.client.put(
        f"/rooms/{q(room_id)}/state/m.room.topic", {"topic": "set by alice"}, token=alice_token
    )
    assert response.status == 200, response
    await eventually(
        lambda: topic_is(synapse_client, sam_token, "set by alice"),
        "Synapse sees alice's topic",
        synapse,
    )
    # Both sides agree on the room's current state.
    assert await topic_is(ours.client, alice_token, "set by alice")


async def test_invites_across_servers_both_ways(
    ours: Ours, synapse: SynapsePeer, synapse_client: TestClient
) -> None:
    sam, sam_token = await register(synapse_client, ours.unique("sam"))
    alice, alice_token = await register(ours.client, "alice")

    async def invited_in_sync(client: TestClient, token: str, room_id: str) -> bool:
        response = await client.get("/sync", token=token)
        assert response.status == 200, response
        return room_id in response.json.get("rooms", {}).get("invite", {})

    # Alice invites sam into a private room of ours; sam accepts.
    ours_room = await create_room(ours.client, alice_token, preset="private_chat", name="alice's")
    response = await ours.client.post(
        f"/rooms/{q(ours_room)}/invite", {"user_id": sam}, token=alice_token
    )
    assert response.status == 200, (response, synapse.log_tail())
    assert await our_membership(ours, ours_room, sam) == "invite"
    await eventually(
        lambda: invited_in_sync(synapse_client, sam_token, ours_room),
        "sam's /sync has the invite",
        synapse,
    )
    response = await synapse_client.post(f"/join/{q(ours_room)}", {}, token=sam_token)
    assert response.status == 200, (response, synapse.log_tail())

    async def sam_joined_ours() -> bool:
        return await our_membership(ours, ours_room, sam) == "join"

    await eventually(sam_joined_ours, "we see sam's join", synapse)

    # Sam invites alice into a private room of Synapse's; alice accepts.
    synapse_room = await create_room(synapse_client, sam_token, preset="private_chat", name="sam's")
    response = await synapse_client.post(
        f"/rooms/{q(synapse_room)}/invite", {"user_id": alice}, token=sam_token
    )
    assert response.status == 200, (response, synapse.log_tail())
    await eventually(
        lambda: invited_in_sync(ours.client, alice_token, synapse_room),
        "alice's /sync has the invite",
        synapse,
    )
    response = await ours.client.post(f"/join/{q(synapse_room)}", {}, token=alice_token)
    assert response.status == 200, (response, synapse.log_tail())

    async def alice_joined_synapses() -> bool:
        return await synapse_membership(synapse_client, sam_token, synapse_room, alice) == "join"

    await eventually(alice_joined_synapses, "Synapse sees alice's join", synapse)
    await send_text(ours.client, alice_token, synapse_room, "thanks sam")

    async def sam_has_thanks() -> bool:
        return "thanks sam" in await synced_bodies(synapse_client, sam_token, synapse_room)

    await eventually(sam_has_thanks, "sam's /sync has alice's message", synapse)


async def test_kick_ban_unban_and_leave_in_a_synapse_room(
    ours: Ours, synapse: SynapsePeer, synapse_client: TestClient
) -> None:
    sam, sam_token = await register(synapse_client, ours.unique("sam"))
    alice, alice_token = await register(ours.client, "alice")
    alias_name = ours.unique("strict")
    room_id = await create_room(
        synapse_client, sam_token, preset="public_chat", room_alias_name=alias_name
    )
    alias = q(f"#{alias_name}:{synapse.server_name}")

    async def alice_is(membership: str) -> bool:
        return await our_membership(ours, room_id, alice) == membership

    response = await ours.client.post(f"/join/{alias}", {}, token=alice_token)
    assert response.status == 200, (response, synapse.log_tail())

    response = await synapse_client.post(
        f"/rooms/{q(room_id)}/kick", {"user_id": alice, "reason": "out"}, token=sam_token
    )
    assert response.status == 200, response
    await eventually(lambda: alice_is("leave"), "we see alice kicked", synapse)

    response = await ours.client.post(f"/join/{alias}", {}, token=alice_token)
    assert response.status == 200, (response, synapse.log_tail())
    await eventually(lambda: alice_is("join"), "alice is back", synapse)

    response = await synapse_client.post(
        f"/rooms/{q(room_id)}/ban", {"user_id": alice}, token=sam_token
    )
    assert response.status == 200, response
    await eventually(lambda: alice_is("ban"), "we see alice banned", synapse)
    response = await ours.client.post(f"/join/{alias}", {}, token=alice_token)
    assert response.status == 403, response
    assert response.json["errcode"] == "M_FORBIDDEN"
    assert await alice_is("ban")

    response = await synapse_client.post(
        f"/rooms/{q(room_id)}/unban", {"user_id": alice}, token=sam_token
    )
    assert response.status == 200, response
    response = await ours.client.post(f"/join/{alias}", {}, token=alice_token)
    assert response.status == 200, (response, synapse.log_tail())
    await eventually(lambda: alice_is("join"), "alice rejoined after the unban", synapse)

    response = await ours.client.post(f"/rooms/{q(room_id)}/leave", {}, token=alice_token)
    assert response.status == 200, response

    async def synapse_sees_alice_leave() -> bool:
        return await synapse_membership(synapse_client, sam_token, room_id, alice) == "leave"

    await eventually(synapse_sees_alice_leave, "Synapse sees alice leave", synapse)


async def test_kick_ban_unban_and_leave_in_our_room(
    ours: Ours, synapse: SynapsePeer, synapse_client: TestClient
) -> None:
    sam, sam_token = await register(synapse_client, ours.unique("sam"))
    alice, alice_token = await register(ours.client, "alice")
    room_id = await create_room(
        ours.client, alice_token, preset="public_chat", room_alias_name="strict"
    )
    alias = q(f"#strict:{ours.name}")

    async def we_see_sam(membership: str) -> bool:
        return await our_membership(ours, room_id, sam) == membership

    async def sam_sees_himself(section: str) -> bool:
        response = await synapse_client.get("/sync", token=sam_token)
        assert response.status == 200, response
        return room_id in response.json.get("rooms", {}).get(section, {})

    response = await synapse_client.post(f"/join/{alias}", {}, token=sam_token)
    assert response.status == 200, (response, synapse.log_tail())
    await eventually(lambda: we_see_sam("join"), "we see sam's join", synapse)

    response = await ours.client.post(
        f"/rooms/{q(room_id)}/kick", {"user_id": sam, "reason": "out"}, token=alice_token
    )
    assert response.status == 200, response
    await eventually(lambda: sam_sees_himself("leave"), "sam's /sync has the kick", synapse)

    response = await synapse_client.post(f"/join/{alias}", {}, token=sam_token)
    assert response.status == 200, (response, synapse.log_tail())
    await eventually(lambda: we_see_sam("join"), "sam is back", synapse)

    response = await ours.client.post(f"/rooms/{q(room_id)}/ban", {"user_id": sam}, token=alice_token)
    assert response.status == 200, response
    await eventually(lambda: sam_sees_himself("leave"), "sam's /sync has the ban", synapse)
    response = await synapse_client.post(f"/join/{alias}", {}, token=sam_token)
    assert response.status == 403, response
    assert await we_see_sam("ban")

    response = await ours.client.post(
        f"/rooms/{q(room_id)}/unban", {"user_id": sam}, token=alice_token
    )
    assert response.status == 200, response
    response = await synapse_client.post(f"/join/{alias}", {}, token=sam_token)
    assert response.status == 200, (response, synapse.log_tail())
    await eventually(lambda: we_see_sam("join"), "sam rejoined after the unban", synapse)

    response = await synapse_client.post(f"/rooms/{q(room_id)}/leave", {}, token=sam_token)
    assert response.status == 200, response
    await eventually(lambda: we_see_sam("leave"), "we see sam leave", synapse)


async def put_over_tls(reactor: Any, port: int, uri: str, body: Any, authorization: str) -> Any:
    """PUT JSON to our federation listener (self-signed: not verified); the JSON answer."""
    agent = Agent(
        reactor,
        contextFactory=FederationTlsOptions(verify=False),
        pool=HTTPConnectionPool(reactor, persistent=False),
    )
    response = await HTTPClient(agent).put(
        f"https://127.0.0.1:{port}{uri}",
        data=json.dumps(body).encode(),
        headers={"Authorization": [authorization], "Content-Type": ["application/json"]},
    )
    content = await response.content()
    assert response.code == 200, (response.code, content)
    return json.loads(content)


async def test_an_event_forged_in_the_name_of_a_synapse_user_is_dropped(
    reactor: Any, ours: Ours, synapse: SynapsePeer, synapse_client: TestClient
) -> None:
    """A third server relays an event "from" sam, signed with a key that is not Synapse's.

    The relaying server authenticates correctly (X-Matrix with its own key),
    so only the event's signature can give the forgery away: it carries the
    key ID of Synapse's real key, which our server fetches from Synapse.
    """
    sam, sam_token = await register(synapse_client, ours.unique("sam"))
    alice, alice_token = await register(ours.client, "alice")
    alias_name = ours.unique("forged")
    room_id = await create_room(
        synapse_client, sam_token, preset="public_chat", room_alias_name=alias_name
    )
    response = await ours.client.post(
        f"/join/{q(f'#{alias_name}:{synapse.server_name}')}", {}, token=alice_token
    )
    assert response.status == 200, (response, synapse.log_tail())

    synapse_keys = await ours.hs.federation_client.get_json(
        synapse.server_name, "/_matrix/key/v2/server"
    )
    (synapse_key_id,) = synapse_keys["verify_keys"]
    forger_key = generate_signing_key(synapse_key_id.split(":", 1)[1])

    relay_key = generate_signing_key("relay")
    relay_router = Router()
    relay = TlsServer(reactor, relay_router, "localhost")
    relay_name = f"127.0.0.1:{relay.port}"
    relay_router.register(
        ServerKeyServlet(LocalServerKeys(relay_name, [relay_key], {}, HOUR_MS, ours.hs.clock))
    )
    try:
        events = ours.hs.room_storage.events
        state_store = ours.hs.room_storage.state
        room = await ours.hs.room_storage.rooms.get_room(room_id)
        assert room is not None
        version = KNOWN_ROOM_VERSIONS[room.room_version]
        heads = sorted(await events.get_forward_extremities(room_id))
        state_before = dict(await state_store.get_current_state_ids(room_id))
        depth = max(e.event.depth for e in (await events.get_stored_events(heads)).values())

        def forged(event_type: str, content: dict[str, Any], state_key: str | None) -> Any:
            needed = auth_types_from_fields(version, event_type, sam, state_key, content)
            return build_event(
                room_version=version,
                type=event_type,
                state_key=state_key,
                sender=sam,
                content=content,
                room_id=room_id,
                prev_event_ids=heads,
                auth_event_ids=[state_before[k] for k in sorted(needed) if k in state_before],
                depth=depth + 1,
                origin_server_ts=ours.hs.clock.time_msec(),
                server_name=synapse.server_name,
                signing_key=forger_key,
            )

        message = forged("m.room.message", {"msgtype": "m.text", "body": "forged"}, None)
        topic = forged("m.room.topic", {"topic": "forged topic"}, "")
        body = {
            "origin": relay_name,
            "origin_server_ts": ours.hs.clock.time_msec(),
            "pdus": [message.pdu_json(), topic.pdu_json()],
        }
        uri = "/_matrix/federation/v1/send/forged1"
        header = sign_request(relay_key, relay_name, ours.name, "PUT", uri, body)
        answer = await put_over_tls(reactor, ours.port, uri, body, header)
        assert set(answer["pdus"]) == {message.event_id, topic.event_id}, answer
        for event_id in (message.event_id, topic.event_id):
            assert "signature" in answer["pdus"][event_id].get("error", ""), answer

        assert await events.get_stored_events([message.event_id, topic.event_id]) == {}
        assert sorted(await events.get_forward_extremities(room_id)) == heads
        assert dict(await state_store.get_current_state_ids(room_id)) == state_before
        assert "forged" not in await synced_bodies(ours.client, alice_token, room_id)
        assert await room_state(ours.client, alice_token, room_id, "m.room.topic") is None
    finally:
        await relay.stop()


async def test_redactions_flow_both_ways(
    ours: Ours, synapse: SynapsePeer, synapse_client: TestClient
) -> None:
    sam, sam_token = await register(synapse_client, ours.unique("sam"))
    alice, alice_token = await register(ours.client, "alice")
    alias_name = ours.unique("redact")
    room_id = await create_room(
        synapse_client, sam_token, preset="public_chat", room_alias_name=alias_name
    )
    response = await ours.client.post(
        f"/join/{q(f'#{alias_name}:{synapse.server_name}')}", {}, token=alice_token
    )
    assert response.status == 200, (response, synapse.log_tail())

    async def event_seen(client: TestClient, token: str, event_id: str) -> dict[str, Any] | None:
        response = await client.get(f"/rooms/{q(room_id)}/event/{q(event_id)}", token=token)
        return response.json if response.status == 200 else None

    async def redacted(client: TestClient, token: str, event_id: str) -> bool:
        event = await event_seen(client, token, event_id)
        return event is not None and "redacted_because" in event.get("unsigned", {})

    sams = await send_text(synapse_client, sam_token, room_id, "sam's secret")
    alices = await send_text(ours.client, alice_token, room_id, "alice's secret")

    async def both_delivered() -> bool:
        return (
            await event_seen(ours.client, alice_token, sams) is not None
            and await event_seen(synapse_client, sam_token, alices) is not None
        )

    await eventually(both_delivered, "each side has the other's message", synapse)

    response = await synapse_client.put(
        f"/rooms/{q(room_id)}/redact/{q(sams)}/r1", {"reason": "oops"}, token=sam_token
    )
    assert response.status == 200, response
    await eventually(
        lambda: redacted(ours.client, alice_token, sams), "we see sam's message redacted", synapse
    )
    ours_view = await event_seen(ours.client, alice_token, sams)
    assert ours_view is not None and ours_view["content"] == {}

    response = await ours.client.put(
        f"/rooms/{q(room_id)}/redact/{q(alices)}/r1", {"reason": "oops"}, token=alice_token
    )
    assert response.status == 200, response
    await eventually(
        lambda: redacted(synapse_client, sam_token, alices),
        "Synapse sees alice's message redacted",
        synapse,
    )
    synapse_view = await event_seen(synapse_client, sam_token, alices)
    assert synapse_view is not None and synapse_view["content"] == {}


async def state_of(
    client: TestClient, token: str, room_id: str, event_types: tuple[str, ...]
) -> dict[str, tuple[str, Any]]:
    """(event ID, content) of the room's current state events of `event_types` (state key "")."""
    response = await client.get(f"/rooms/{q(room_id)}/state", token=token)
    assert response.status == 200, response
    return {
        e["type"]: (e["event_id"], e["content"])
        for e in response.json
        if e["type"] in event_types and e["state_key"] == ""
    }


async def settled(
    read: Callable[[], Awaitable[Any]], what: str, synapse: SynapsePeer, quiet: float = 2.0
) -> Any:
    """What `read` gives once it has stopped changing for `quiet` seconds (bounded by WAIT)."""
    from twisted.internet import reactor

    waited = 0.0
    last = await read()
    unchanged_for = 0.0
    while unchanged_for < quiet:
        if waited >= WAIT:
            raise AssertionError(f"not settled after {WAIT}s: {what}\nSynapse log:\n{synapse.log_tail()}")
        await task.deferLater(reactor, 0.2, lambda: None)
        waited += 0.2
        current = await read()
        unchanged_for = unchanged_for + 0.2 if current == last else 0.0
        last = current
    return last


async def test_concurrent_conflicting_power_level_and_topic_changes_converge(
    ours: Ours, synapse: SynapsePeer, synapse_client: TestClient
) -> None:
    """Both sides, at power 100, change the topic and the power levels at once, several rounds.

    Each server builds its events on its own view of the room, so the DAG
    forks and both servers resolve the conflicting state (state resolution
    v2): once everything is delivered, both must pick the same events.
    """
    sam, sam_token = await register(synapse_client, ours.unique("sam"))
    alice, alice_token = await register(ours.client, "alice")
    alias_name = ours.unique("conflict")
    room_id = await create_room(
        synapse_client,
        sam_token,
        preset="public_chat",
        room_alias_name=alias_name,
        power_level_content_override={"users": {alice: 100}},
    )
    response = await ours.client.post(
        f"/join/{q(f'#{alias_name}:{synapse.server_name}')}", {}, token=alice_token
    )
    assert response.status == 200, (response, synapse.log_tail())

    async def alice_joined_on_synapse() -> bool:
        return await synapse_membership(synapse_client, sam_token, room_id, alice) == "join"

    await eventually(alice_joined_on_synapse, "Synapse sees alice's join", synapse)
    watched = ("m.room.topic", "m.room.power_levels")

    async def change(client: TestClient, token: str, who: str, round_number: int) -> None:
        current = await state_of(client, token, room_id, ("m.room.power_levels",))
        power_levels = dict(current["m.room.power_levels"][1])
        power_levels["events"] = {**power_levels.get("events", {}), f"org.example.{who}": round_number}
        results = await defer.gatherResults(
            [
                defer.ensureDeferred(
                    client.put(
                        f"/rooms/{q(room_id)}/state/m.room.topic",
                        {"topic": f"{who} round {round_number}"},
                        token=token,
                    )
                ),
                defer.ensureDeferred(
                    client.put(
                        f"/rooms/{q(room_id)}/state/m.room.power_levels", power_levels, token=token
                    )
                ),
            ]
        )
        for response in results:
            assert response.status == 200, (response, synapse.log_tail())

    for round_number in range(4):
        await defer.gatherResults(
            [
                defer.ensureDeferred(change(synapse_client, sam_token, "sam", round_number)),
                defer.ensureDeferred(change(ours.client, alice_token, "alice", round_number)),
            ]
        )

    async def both_views() -> tuple[Any, Any]:
        return (
            await state_of(ours.client, alice_token, room_id, watched),
            await state_of(synapse_client, sam_token, room_id, watched),
        )

    async def views_agree() -> bool:
        ours_view, synapse_view = await both_views()
        return ours_view == synapse_view

    await eventually(views_agree, "both servers pick the same topic and power levels", synapse)
    ours_view, synapse_view = await settled(both_views, "both servers' current state", synapse)
    assert ours_view == synapse_view
    assert set(ours_view) == set(watched)
    # The changes overlapped: some event of the room merges a fork.
    stored = await ours.hs.room_storage.events.get_room_events_stream(room_id, 0, 2**62, 1000)
    assert any(len(e.event.prev_event_ids) > 1 for e in stored), "no fork: nothing was in conflict"
    # The winners are events of these rounds, and both users kept power 100.
    sent_topics = {f"{who} round {n}" for who in ("sam", "alice") for n in range(4)}
    assert ours_view["m.room.topic"][1]["topic"] in sent_topics
    assert set(ours_view["m.room.power_levels"][1]["events"]) & {
        "org.example.sam",
        "org.example.alice",
    }
    assert ours_view["m.room.power_levels"][1]["users"][alice] == 100


async def test_our_server_catches_up_after_a_restart_on_the_same_database(
    ours: Ours, synapse: SynapsePeer, synapse_client: TestClient
) -> None:
    """While we are down, sam keeps talking; after the restart alice sees everything, in order.

    Synapse's transactions to us fail meanwhile and it backs off (shortly:
    SHORT_BACKOFF). Our first event after the restart also tells Synapse we
    are back, and its prev_events make Synapse's later events refer to what
    we have, so whichever comes first (Synapse's retry, or our gap filling
    by get_missing_events) brings the missed events.
    """
    sam, sam_token = await register(synapse_client, ours.unique("sam"))
    alice, alice_token = await register(ours.client, "alice")
    alias_name = ours.unique("restart")
    room_id = await create_room(
        synapse_client,
        sam_token,
        preset="public_chat",
        room_alias_name=alias_name,
        power_level_content_override=OPEN_TOPIC,
    )
    response = await ours.client.post(
        f"/join/{q(f'#{alias_name}:{synapse.server_name}')}", {}, token=alice_token
    )
    assert response.status == 200, (response, synapse.log_tail())

    async def alice_joined_on_synapse() -> bool:
        return await synapse_membership(synapse_client, sam_token, room_id, alice) == "join"

    await eventually(alice_joined_on_synapse, "Synapse sees alice's join", synapse)

    await ours.stop()
    missed = [f"while down {n}" for n in range(10)]
    for text in missed[:5]:
        await send_text(synapse_client, sam_token, room_id, text)
    response = await synapse_client.put(
        f"/rooms/{q(room_id)}/state/m.room.topic", {"topic": "set while down"}, token=sam_token
    )
    assert response.status == 200, response
    for text in missed[5:]:
        await send_text(synapse_client, sam_token, room_id, text)

    await ours.start()
    back = await send_text(ours.client, alice_token, room_id, "alice is back")

    async def alice_sees_everything() -> bool:
        return [b for b in reversed(await history(ours.client, alice_token, room_id)) if b in missed] == missed

    await eventually(alice_sees_everything, "alice's /messages has every missed message, in order", synapse)
    topic = await room_state(ours.client, alice_token, room_id, "m.room.topic")
    assert topic == {"topic": "set while down"}

    # Not by /sync: alice's message was built on the room as we last saw it,
    # so its depth is below sam's missed events and a timeline of the last
    # 10 events by depth (Synapse's initial /sync) may leave it out.
    async def sam_sees_alice_back() -> bool:
        response = await synapse_client.get(f"/rooms/{q(room_id)}/event/{q(back)}", token=sam_token)
        return response.status == 200 and response.json["content"]["body"] == "alice is back"

    await eventually(sam_sees_alice_back, "Synapse has alice's message after the restart", synapse)
