"""Our users joining, leaving, knocking and being invited across two real servers (both engines).

Server A's alice deals with rooms of server B's bob, over real federation on
loopback (tests/federation_two_servers.py): the joining side is A's
(homeserver.handlers.remote_membership), the resident side B's.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.handlers.auth import Requester
from homeserver.server import HomeServer
from homeserver.types.errors import MatrixError
from tests.conftest import run_on_reactor
from tests.federation_two_servers import Peer, TwoServers, eventually


@pytest.fixture
def servers(reactor: Any, tmp_path: Any, make_db_config: Any) -> Iterator[TwoServers]:
    two = TwoServers(reactor, tmp_path, make_db_config)
    try:
        yield two
    finally:
        run_on_reactor(two.stop())


@pytest.fixture
def peers(servers: TwoServers) -> tuple[Peer, Peer]:
    return run_on_reactor(servers.start())


def q(part: str) -> str:
    return quote(part, safe="")


async def membership(hs: HomeServer, room_id: str, user_id: str) -> str | None:
    """The user's latest membership in the room as the server knows it (outliers included)."""
    history = await hs.room_storage.rooms.get_membership_history(room_id, user_id)
    return history[-1][1] if history else None


async def create_room(peer: Peer, token: str, **body: Any) -> str:
    response = await peer.client.post("/createRoom", body, token=token)
    assert response.status == 200, response
    return str(response.json["room_id"])


async def send_text(peer: Peer, token: str, room_id: str, text: str) -> str:
    response = await peer.client.put(
        f"/rooms/{q(room_id)}/send/m.room.message/{q(text)}",
        {"msgtype": "m.text", "body": text},
        token=token,
    )
    assert response.status == 200, response
    return str(response.json["event_id"])


async def bodies(peer: Peer, token: str, room_id: str) -> list[str]:
    response = await peer.client.get(
        f"/rooms/{q(room_id)}/messages", token=token, query={"dir": "b", "limit": "50"}
    )
    assert response.status == 200, response
    return [
        e["content"].get("body") for e in response.json["chunk"] if e["type"] == "m.room.message"
    ]


async def sync_rooms(peer: Peer, token: str) -> dict[str, Any]:
    response = await peer.client.get("/sync", token=token)
    assert response.status == 200, response
    return response.json.get("rooms", {})  # type: ignore[no-any-return]


async def test_the_peers_reach_each_other(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    answer = await a.hs.federation_client.get_json(b.name, "/_matrix/federation/v1/version")
    assert "server" in answer
    keys = await b.hs.keyring.get_server_keys(
        a.name, [f"ed25519:{a.hs.local_keys.signing_key.version}"], 0
    )
    assert keys


async def test_join_by_room_id_talk_both_ways_and_leave(
    reactor: Any, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    alice, alice_token = await a.register("alice")
    bob, bob_token = await b.register("bob")
    # A v11 room ID names its server, the one to join through.
    room_id = await create_room(
        b, bob_token, preset="public_chat", name="B's room", room_version="11"
    )
    await send_text(b, bob_token, room_id, "before alice")

    response = await a.client.post(f"/join/{q(room_id)}", {}, token=alice_token)
    assert response.status == 200, response
    assert response.json == {"room_id": room_id}

    # A holds the room with its full state, and alice's join at its head.
    state = await a.hs.room_storage.state.get_current_state_ids(room_id)
    assert ("m.room.create", "") in state and ("m.room.name", "") in state
    assert state[("m.room.member", bob)] and state[("m.room.member", alice)]
    assert await membership(a.hs, room_id, alice) == "join"
    assert await membership(b.hs, room_id, alice) == "join"
    rooms = await sync_rooms(a, alice_token)
    assert room_id in rooms.get("join", {})

    await send_text(b, bob_token, room_id, "hello from b")

    async def a_has_bobs_message() -> bool:
        return "hello from b" in await bodies(a, alice_token, room_id)

    await eventually(reactor, a_has_bobs_message)
    await send_text(a, alice_token, room_id, "hello from a")

    async def b_has_alices_message() -> bool:
        return "hello from a" in await bodies(b, bob_token, room_id)

    await eventually(reactor, b_has_alices_message)

    response = await a.client.post(f"/rooms/{q(room_id)}/leave", {}, token=alice_token)
    assert response.status == 200, response

    async def b_saw_alice_leave() -> bool:
        return await membership(b.hs, room_id, alice) == "leave"

    await eventually(reactor, b_saw_alice_leave)


async def test_join_through_an_alias_of_the_other_server(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    alice, alice_token = await a.register("alice")
    _, bob_token = await b.register("bob")
    room_id = await create_room(b, bob_token, preset="public_chat")
    alias = f"#lobby:{b.name}"
    response = await b.client.put(
        f"/directory/room/{q(alias)}", {"room_id": room_id}, token=bob_token
    )
    assert response.status == 200, response

    response = await a.client.post(f"/join/{q(alias)}", {}, token=alice_token)
    assert response.status == 200, response
    assert response.json == {"room_id": room_id}
    assert await membership(a.hs, room_id, alice) == "join"


async def test_an_invited_user_of_the_other_server_joins(
    reactor: Any, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    alice, alice_token = await a.register("alice")
    _, bob_token = await b.register("bob")
    room_id = await create_room(b, bob_token, preset="private_chat")

    response = await b.client.post(
        f"/rooms/{q(room_id)}/invite", {"user_id": alice}, token=bob_token
    )
    assert response.status == 200, response
    # B stored the invite only with A's signature on it.
    invite_id = (await b.hs.room_storage.state.get_current_state_ids(room_id))[
        ("m.room.member", alice)
    ]
    invite = await b.hs.room_storage.events.get_event(invite_id)
    assert invite is not None and a.name in invite.signatures

    rooms = await sync_rooms(a, alice_token)
    stripped = rooms["invite"][room_id]["invite_state"]["events"]
    assert any(e["type"] == "m.room.create" for e in stripped)
    assert stripped[-1]["content"]["membership"] == "invite"

    # A is in no room with B: the invite tells A where to join through.
    response = await a.client.post(f"/rooms/{q(room_id)}/join", {}, token=alice_token)
    assert response.status == 200, response
    assert await membership(a.hs, room_id, alice) == "join"

    async def b_saw_alice_join() -> bool:
        return await membership(b.hs, room_id, alice) == "join"

    await eventually(reactor, b_saw_alice_join)


async def test_a_user_rejects_an_invite_from_the_other_server(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    alice, alice_token = await a.register("alice")
    _, bob_token = await b.register("bob")
    room_id = await create_room(b, bob_token, preset="private_chat")
    response = await b.client.post(
        f"/rooms/{q(room_id)}/invite", {"user_id": alice}, token=bob_token
    )
    assert response.status == 200, response
    assert room_id in (await sync_rooms(a, alice_token)).get("invite", {})

    response = await a.client.post(f"/rooms/{q(room_id)}/leave", {}, token=alice_token)
    assert response.status == 200, response
    assert await membership(a.hs, room_id, alice) == "leave"
    assert await membership(b.hs, room_id, alice) == "leave"
    rooms = await sync_rooms(a, alice_token)
    assert room_id not in rooms.get("invite", {})


async def test_inviting_a_user_of_a_server_that_refuses_stores_nothing(
    peers: tuple[Peer, Peer],
) -> None:
    a, b = peers
    _, alice_token = await a.register("alice")
    room_id = await create_room(a, alice_token, preset="private_chat")
    before = await a.hs.room_storage.state.get_current_state_ids(room_id)
    # B has no such user: it refuses to sign the invite.
    nobody = b.user("nobody")
    response = await a.client.post(
        f"/rooms/{q(room_id)}/invite", {"user_id": nobody}, token=alice_token
    )
    assert response.status >= 400, response
    assert await a.hs.room_storage.state.get_current_state_ids(room_id) == before


async def test_knocking_on_a_room_of_the_other_server(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    alice, alice_token = await a.register("alice")
    _, bob_token = await b.register("bob")
    room_id = await create_room(
        b,
        bob_token,
        room_version="10",
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
        name="knock here",
    )
    response = await a.client.post(
        f"/knock/{q(room_id)}", {"reason": "let me in"}, token=alice_token
    )
    assert response.status == 200, response
    assert response.json == {"room_id": room_id}
    assert await membership(a.hs, room_id, alice) == "knock"
    assert await membership(b.hs, room_id, alice) == "knock"
    rooms = await sync_rooms(a, alice_token)
    knock_state = rooms["knock"][room_id]["knock_state"]["events"]
    assert any(e["type"] == "m.room.name" for e in knock_state)
    assert knock_state[-1]["content"]["membership"] == "knock"

    # Withdrawing the knock goes through B too.
    response = await a.client.post(f"/rooms/{q(room_id)}/leave", {}, token=alice_token)
    assert response.status == 200, response
    assert await membership(a.hs, room_id, alice) == "leave"
    assert await membership(b.hs, room_id, alice) == "leave"
    assert room_id not in (await sync_rooms(a, alice_token)).get("knock", {})


async def test_joining_an_unknown_room_on_a_server_that_does_not_have_it(
    peers: tuple[Peer, Peer],
) -> None:
    a, b = peers
    _, alice_token = await a.register("alice")
    response = await a.client.post(f"/join/{q('!nowhere:' + b.name)}", {}, token=alice_token)
    # B answers make_join with 404 M_NOT_FOUND: passed on.
    assert response.status == 404, response
    assert response.json["errcode"] == "M_NOT_FOUND"


def requester(user_id: str) -> Requester:
    return Requester(user_id, None, False, None)


async def test_a_v12_room_is_joined_through_the_servers_given_and_dead_ones_are_skipped(
    peers: tuple[Peer, Peer],
) -> None:
    """v12 room IDs name no server: the `via` servers are tried in turn, past an unreachable one."""
    a, b = peers
    alice, _ = await a.register("alice")
    _, bob_token = await b.register("bob")
    room_id = await create_room(b, bob_token, preset="public_chat", room_version="12")
    unreachable = f"127.0.0.1:{_closed_port()}"
    joined = await a.hs.membership.join(requester(alice), room_id, servers=[unreachable, b.name])
    assert joined == room_id
    assert await membership(a.hs, room_id, alice) == "join"
    assert await membership(b.hs, room_id, alice) == "join"


async def test_when_no_server_can_be_reached_the_join_fails_with_502_and_stores_nothing(
    peers: tuple[Peer, Peer],
) -> None:
    a, _ = peers
    alice, _ = await a.register("alice")
    room_id = f"!gone:127.0.0.1:{_closed_port()}"
    with pytest.raises(MatrixError) as caught:
        await a.hs.membership.join(requester(alice), room_id)
    assert (caught.value.status, caught.value.errcode) == (502, "M_UNKNOWN")
    assert await a.hs.room_storage.rooms.get_room(room_id) is None
    assert await membership(a.hs, room_id, alice) is None


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_invite_from_a_server_that_is_gone_is_rejected_locally(
    servers: TwoServers, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    alice, alice_token = await a.register("alice")
    _, bob_token = await b.register("bob")
    room_id = await create_room(b, bob_token, preset="private_chat")
    response = await b.client.post(
        f"/rooms/{q(room_id)}/invite", {"user_id": alice}, token=bob_token
    )
    assert response.status == 200, response
    await servers.stop_peer(b)

    response = await a.client.post(f"/rooms/{q(room_id)}/leave", {}, token=alice_token)
    assert response.status == 200, response
    assert await membership(a.hs, room_id, alice) == "leave"
    rooms = await sync_rooms(a, alice_token)
    assert room_id not in rooms.get("invite", {})
