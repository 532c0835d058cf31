"""GET/PUT /rooms/{roomId}/state/{eventType}/{stateKey} and GET /rooms/{roomId}/state (both engines)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.server import HomeServer
from tests.homeserver_harness import HomeServerFactory, TestClient
from tests.room_helpers import User, join, leave, make_room, register, room_path, set_state


async def test_set_and_get_state(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    put = await client.put(
        room_path(room_id, "state", "m.room.topic", ""),
        {"topic": "hello"},
        token=alice.access_token,
    )
    assert put.status == 200, put
    event_id = put.json["event_id"]
    # The empty state key: with or without the trailing slash.
    for path in (
        room_path(room_id, "state", "m.room.topic"),
        room_path(room_id, "state", "m.room.topic", ""),
    ):
        got = await client.get(path, token=alice.access_token)
        assert (got.status, got.json) == (200, {"topic": "hello"}), path
    as_event = await client.get(
        room_path(room_id, "state", "m.room.topic"),
        token=alice.access_token,
        query={"format": "event"},
    )
    assert as_event.json["event_id"] == event_id
    assert (as_event.json["state_key"], as_event.json["sender"]) == ("", alice.user_id)
    assert as_event.json["content"] == {"topic": "hello"}
    full = await client.get(room_path(room_id, "state"), token=alice.access_token)
    assert full.status == 200
    by_key = {(e["type"], e["state_key"]): e for e in full.json}
    assert set(by_key) == {
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.topic", ""),
    }
    assert by_key[("m.room.topic", "")]["event_id"] == event_id


async def test_custom_state_keys(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    path = room_path(room_id, "state", "org.example.animal", alice.user_id)
    assert (await client.put(path, {"animal": "cat"}, token=alice.access_token)).status == 200
    assert (await client.get(path, token=alice.access_token)).json == {"animal": "cat"}
    # Another user's ID as the state key is refused by the auth rules.
    other = room_path(room_id, "state", "org.example.animal", "@bob:test")
    refused = await client.put(other, {"animal": "dog"}, token=alice.access_token)
    assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_identical_state_is_not_sent_twice(
    homeserver: HomeServer, client: TestClient
) -> None:
    """As Synapse: the same content from the same sender answers the current event."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, users={bob.user_id: 100})
    await join(homeserver, room_id, bob.user_id)
    path = room_path(room_id, "state", "m.room.name", "")
    first = (await client.put(path, {"name": "A"}, token=alice.access_token)).json["event_id"]
    assert (await client.put(path, {"name": "A"}, token=alice.access_token)).json[
        "event_id"
    ] == first
    changed = (await client.put(path, {"name": "B"}, token=alice.access_token)).json["event_id"]
    assert changed != first
    by_bob = (await client.put(path, {"name": "B"}, token=bob.access_token)).json["event_id"]
    assert by_bob != changed


async def test_under_powered_state_change_is_forbidden(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    before = await homeserver.room_storage.state.get_current_state_ids(room_id)
    for event_type, content in (
        ("m.room.name", {"name": "mine now"}),
        ("m.room.power_levels", {"users": {bob.user_id: 100}}),
    ):
        refused = await client.put(
            room_path(room_id, "state", event_type, ""), content, token=bob.access_token
        )
        assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN"), event_type
        assert "power level" in refused.json["error"]
    assert await homeserver.room_storage.state.get_current_state_ids(room_id) == before


async def test_missing_state_and_bad_requests(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    missing = await client.get(room_path(room_id, "state", "m.room.name"), token=alice.access_token)
    assert (missing.status, missing.json["errcode"]) == (404, "M_NOT_FOUND")
    bad_format = await client.get(
        room_path(room_id, "state", "m.room.create"),
        token=alice.access_token,
        query={"format": "pdu"},
    )
    assert (bad_format.status, bad_format.json["errcode"]) == (400, "M_INVALID_PARAM")
    not_object = await client.put(
        room_path(room_id, "state", "m.room.topic"), [1], token=alice.access_token
    )
    assert (not_object.status, not_object.json["errcode"]) == (400, "M_BAD_JSON")
    long_key = await client.put(
        room_path(room_id, "state", "org.example.x", "k" * 300), {}, token=alice.access_token
    )
    assert (long_key.status, long_key.json["errcode"]) == (413, "M_TOO_LARGE")


async def test_who_reads_state(homeserver: HomeServer, client: TestClient) -> None:
    """Members read the current state; a user who left, the state at their leave; others 403."""
    hs = homeserver
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    room_id = await make_room(hs, alice.user_id)
    await set_state(hs, room_id, alice.user_id, "m.room.topic", {"topic": "old"})
    await join(hs, room_id, bob.user_id)
    await leave(hs, room_id, bob.user_id)
    await set_state(hs, room_id, alice.user_id, "m.room.topic", {"topic": "new"})

    async def topic(token: str) -> Any:
        return await client.get(room_path(room_id, "state", "m.room.topic"), token=token)

    assert (await topic(alice.access_token)).json == {"topic": "new"}
    assert (await topic(bob.access_token)).json == {"topic": "old"}
    bob_state = (await client.get(room_path(room_id, "state"), token=bob.access_token)).json
    topics = [e["content"] for e in bob_state if e["type"] == "m.room.topic"]
    assert topics == [{"topic": "old"}]
    bob_member = [e for e in bob_state if e.get("state_key") == bob.user_id]
    assert bob_member[0]["content"]["membership"] == "leave"
    for path in (room_path(room_id, "state", "m.room.topic"), room_path(room_id, "state")):
        refused = await client.get(path, token=carol.access_token)
        assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN")
    # Once bob forgets the room, its history is gone for him too.
    forgot = await client.post(room_path(room_id, "forget"), {}, token=bob.access_token)
    assert forgot.status == 200, forgot
    assert (await topic(bob.access_token)).status == 403


@pytest.mark.parametrize("visibility", ["world_readable", "shared"])
async def test_world_readable_state_for_anyone(
    homeserver: HomeServer, client: TestClient, visibility: str
) -> None:
    alice = await register(client, "alice")
    carol = await register(client, "carol")
    room_id = await make_room(homeserver, alice.user_id, history_visibility=visibility)
    response = await client.get(room_path(room_id, "state"), token=carol.access_token)
    if visibility == "world_readable":
        assert response.status == 200
        assert {e["type"] for e in response.json} >= {"m.room.create", "m.room.history_visibility"}
    else:
        assert response.status == 403


async def test_guests_read_and_write_state(homeserver_factory: HomeServerFactory) -> None:
    """Spec "Guest access": guests may GET and (since v1.2) PUT state."""
    homeserver = await homeserver_factory.start(allow_guest_access=True)
    client = homeserver_factory.client(homeserver)
    alice = await register(client, "alice")
    guest = await client.register_guest()
    room_id = await make_room(
        homeserver, alice.user_id, power_levels={"events": {"org.example.guest": 0}}
    )
    await join(homeserver, room_id, guest["user_id"])
    path = room_path(room_id, "state", "org.example.guest", guest["user_id"])
    assert (await client.put(path, {"hi": 1}, token=guest["access_token"])).status == 200
    assert (await client.get(path, token=guest["access_token"])).json == {"hi": 1}


async def test_canonical_alias_must_point_at_the_room(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    other_room = await make_room(homeserver, alice.user_id)
    await homeserver.room_directory.create_alias(alice.user_id, "#here:test", room_id)
    await homeserver.room_directory.create_alias(alice.user_id, "#there:test", other_room)
    path = room_path(room_id, "state", "m.room.canonical_alias")
    for content, errcode in (
        ({"alias": "#nowhere:test"}, "M_BAD_ALIAS"),
        ({"alias": "#there:test"}, "M_BAD_ALIAS"),
        ({"alias": "#here:test", "alt_aliases": ["#there:test"]}, "M_BAD_ALIAS"),
        ({"alias": "not an alias"}, "M_INVALID_PARAM"),
        ({"alt_aliases": "#here:test"}, "M_INVALID_PARAM"),
    ):
        refused = await client.put(path, content, token=alice.access_token)
        assert (refused.status, refused.json["errcode"]) == (400, errcode), content
    assert ("m.room.canonical_alias", "") not in (
        await homeserver.room_storage.state.get_current_state_ids(room_id)
    )
    ok = await client.put(
        path, {"alias": "#here:test", "alt_aliases": ["#here:test"]}, token=alice.access_token
    )
    assert ok.status == 200, ok
    assert (await client.get(path, token=alice.access_token)).json["alias"] == "#here:test"


async def test_member_state_goes_through_the_membership_rules(
    homeserver: HomeServer, client: TestClient
) -> None:
    """PUT .../state/m.room.member/{userId}: `membership` is the action, as in Synapse."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, join_rule="invite")

    async def put_member(user: User, target: User, content: Any) -> Any:
        return await client.put(
            room_path(room_id, "state", "m.room.member", target.user_id),
            content,
            token=user.access_token,
        )

    async def membership_of(user: User) -> str | None:
        member = await homeserver.room_storage.rooms.get_membership(room_id, user.user_id)
        return None if member is None else member.membership

    uninvited = await put_member(bob, bob, {"membership": "join"})
    assert (uninvited.status, uninvited.json["errcode"]) == (403, "M_FORBIDDEN")
    assert (await put_member(alice, bob, {"membership": "invite"})).status == 200
    assert await membership_of(bob) == "invite"
    joined = await put_member(bob, bob, {"membership": "join", "displayname": "Bobby"})
    assert joined.status == 200, joined
    assert await membership_of(bob) == "join"
    assert (await put_member(alice, bob, {"membership": "leave", "reason": "bye"})).status == 200
    assert await membership_of(bob) == "leave"
    for content, errcode in (
        ({"membership": "dance"}, "M_INVALID_PARAM"),
        ({"membership": "kick"}, "M_INVALID_PARAM"),
        ({}, "M_MISSING_PARAM"),
        ({"membership": 1}, "M_INVALID_PARAM"),
    ):
        bad = await put_member(alice, bob, content)
        assert (bad.status, bad.json["errcode"]) == (400, errcode), content
