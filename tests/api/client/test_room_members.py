"""GET /rooms/{roomId}/members and GET /rooms/{roomId}/joined_members (both engines)."""

from __future__ import annotations

from typing import Any

from homeserver.server import HomeServer
from homeserver.types.stream_tokens import RoomToken, SyncToken
from tests.homeserver_harness import HomeServerFactory, TestClient
from tests.room_helpers import (
    User,
    invite,
    join,
    leave,
    make_room,
    register,
    room_path,
    set_membership,
)


async def members(client: TestClient, room_id: str, user: User, **query: str) -> Any:
    return await client.get(room_path(room_id, "members"), token=user.access_token, query=query)


def memberships(response: Any) -> dict[str, str]:
    assert response.status == 200, response
    return {e["state_key"]: e["content"]["membership"] for e in response.json["chunk"]}


async def test_members_and_filters(homeserver: HomeServer, client: TestClient) -> None:
    hs = homeserver
    alice = await register(client, "alice")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, "@bob:test")
    await invite(hs, room_id, alice.user_id, "@carol:test")
    await join(hs, room_id, "@dan:test")
    await leave(hs, room_id, "@dan:test")
    await join(hs, room_id, "@erin:test")
    await set_membership(hs, room_id, alice.user_id, "@erin:test", "ban")
    everyone = {
        alice.user_id: "join",
        "@bob:test": "join",
        "@carol:test": "invite",
        "@dan:test": "leave",
        "@erin:test": "ban",
    }
    response = await members(client, room_id, alice)
    assert memberships(response) == everyone
    assert all(e["type"] == "m.room.member" for e in response.json["chunk"])
    assert memberships(await members(client, room_id, alice, membership="join")) == {
        alice.user_id: "join",
        "@bob:test": "join",
    }
    assert memberships(await members(client, room_id, alice, not_membership="join")) == {
        "@carol:test": "invite",
        "@dan:test": "leave",
        "@erin:test": "ban",
    }
    # Both: the spec's 'or' (membership is `invite`, or is not `join`).
    both = await members(client, room_id, alice, membership="invite", not_membership="join")
    assert memberships(both) == {
        "@carol:test": "invite",
        "@dan:test": "leave",
        "@erin:test": "ban",
    }
    both = await members(client, room_id, alice, membership="join", not_membership="ban")
    assert memberships(both) == {k: v for k, v in everyone.items() if v != "ban"}
    for name in ("membership", "not_membership"):
        bad = await members(client, room_id, alice, **{name: "joined"})
        assert (bad.status, bad.json["errcode"]) == (400, "M_INVALID_PARAM")


async def test_members_for_departed_and_strangers(
    homeserver: HomeServer, client: TestClient
) -> None:
    hs = homeserver
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    await leave(hs, room_id, bob.user_id)
    await join(hs, room_id, "@later:test")
    assert memberships(await members(client, room_id, bob)) == {
        alice.user_id: "join",
        bob.user_id: "leave",
    }
    refused = await members(client, room_id, carol)
    assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_members_at_a_token(homeserver: HomeServer, client: TestClient) -> None:
    hs = homeserver
    alice = await register(client, "alice")
    room_id = await make_room(hs, alice.user_id, history_visibility="joined")
    await join(hs, room_id, "@bob:test")
    then = hs.room_storage.events.current_token()
    await join(hs, room_id, "@carol:test")
    await leave(hs, room_id, "@bob:test")
    expected_then = {alice.user_id: "join", "@bob:test": "join"}
    for token in (str(SyncToken(then)), str(RoomToken(then))):
        assert memberships(await members(client, room_id, alice, at=token)) == expected_then
    # Carol was not in the room then, and the room shows history to members only.
    carol = await register(client, "carol")
    refused = await members(client, room_id, carol, at=str(SyncToken(then)))
    assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN")
    invalid = await members(client, room_id, alice, at="nonsense")
    assert (invalid.status, invalid.json["errcode"]) == (400, "M_INVALID_PARAM")
    before_room = await members(client, room_id, alice, at="s0")
    assert (before_room.status, before_room.json["errcode"]) == (404, "M_NOT_FOUND")


async def test_joined_members(homeserver: HomeServer, client: TestClient) -> None:
    hs = homeserver
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id, displayname="Bob", avatar_url="mxc://test/bob")
    await invite(hs, room_id, alice.user_id, "@carol:test")
    response = await client.get(room_path(room_id, "joined_members"), token=alice.access_token)
    assert response.status == 200, response
    assert response.json == {
        "joined": {
            alice.user_id: {},
            bob.user_id: {"display_name": "Bob", "avatar_url": "mxc://test/bob"},
        }
    }
    await leave(hs, room_id, bob.user_id)
    for user in (bob, await register(client, "dan")):
        refused = await client.get(room_path(room_id, "joined_members"), token=user.access_token)
        assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_guests_may_list_members(homeserver_factory: HomeServerFactory) -> None:
    homeserver = await homeserver_factory.start(allow_guest_access=True)
    client = homeserver_factory.client(homeserver)
    alice = await register(client, "alice")
    guest = await client.register_guest()
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, guest["user_id"])
    response = await client.get(room_path(room_id, "members"), token=guest["access_token"])
    assert response.status == 200
    joined = await client.get(room_path(room_id, "joined_members"), token=guest["access_token"])
    assert (joined.status, joined.json["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_members_of_a_room_made_over_http(client: TestClient) -> None:
    """With /createRoom and /join, member events carry the users' profiles."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    created = await client.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert created.status == 200, created
    room_id = created.json["room_id"]
    assert (await client.post(room_path(room_id, "join"), {}, token=bob.access_token)).status == 200
    joined = await client.get(room_path(room_id, "joined_members"), token=bob.access_token)
    assert joined.json == {
        "joined": {alice.user_id: {"display_name": "alice"}, bob.user_id: {"display_name": "bob"}}
    }
    assert memberships(await members(client, room_id, bob)) == {
        alice.user_id: "join",
        bob.user_id: "join",
    }
