"""GET/POST /publicRooms: what a published room shows, which rooms are listed, filters,
pagination both ways, and the speed of the listing over thousands of rooms."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from homeserver.server import HomeServer
from homeserver.storage.database import Transaction
from homeserver.storage.stores.room_stats import RoomStats
from tests.homeserver_harness import TestClient
from tests.room_helpers import User, join, leave, make_room, register, set_state


async def _published_room(hs: HomeServer, creator: User, *, members: int = 1, **kwargs: Any) -> str:
    room_id = await make_room(hs, creator.user_id, **kwargs)
    for i in range(members - 1):
        await join(hs, room_id, f"@member{i}:test")
    await hs.room_directory.set_visibility(room_id, "public")
    return room_id


async def _listed(client: TestClient, **query: str) -> list[str]:
    response = await client.get("/publicRooms", query=query or None)
    assert response.status == 200, response
    return [room["room_id"] for room in response.json["chunk"]]


async def test_an_empty_directory(client: TestClient) -> None:
    response = await client.get("/publicRooms")
    assert response.status == 200
    assert response.json == {"chunk": [], "total_room_count_estimate": 0}


async def test_a_published_room_shows_its_current_state(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    await homeserver.room_directory.create_alias(alice.user_id, "#cheese:test", room_id)
    for event_type, content in [
        ("m.room.name", {"name": "CHEESE"}),
        ("m.room.topic", {"topic": "Tasty tasty cheese"}),
        ("m.room.avatar", {"url": "mxc://test/cheddar"}),
        ("m.room.canonical_alias", {"alias": "#cheese:test"}),
        ("m.room.history_visibility", {"history_visibility": "world_readable"}),
        ("m.room.guest_access", {"guest_access": "can_join"}),
    ]:
        await set_state(homeserver, room_id, alice.user_id, event_type, content)
    # Not listed until published; listed at once when it is.
    assert await _listed(client) == []
    response = await client.put(
        "/directory/list/room/" + quote(room_id, safe=""), {}, token=alice.access_token
    )
    assert response.status == 200
    response = await client.get("/publicRooms")
    assert response.json == {
        "chunk": [
            {
                "room_id": room_id,
                "num_joined_members": 1,
                "name": "CHEESE",
                "topic": "Tasty tasty cheese",
                "avatar_url": "mxc://test/cheddar",
                "canonical_alias": "#cheese:test",
                "world_readable": True,
                "guest_can_join": True,
                "join_rule": "public",
            }
        ],
        "total_room_count_estimate": 1,
    }
    # Changes of state show at once too.
    await set_state(homeserver, room_id, alice.user_id, "m.room.name", {})
    await join(homeserver, room_id, "@bob:test")
    (entry,) = (await client.get("/publicRooms")).json["chunk"]
    assert "name" not in entry and entry["num_joined_members"] == 2


async def test_which_published_rooms_are_listed(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    public = await _published_room(homeserver, alice)
    knock = await _published_room(homeserver, alice, join_rule="knock")
    invite_only = await _published_room(homeserver, alice, join_rule="invite")
    readable = await _published_room(
        homeserver, alice, join_rule="invite", history_visibility="world_readable"
    )
    emptied = await _published_room(homeserver, alice)
    await leave(homeserver, emptied, alice.user_id)
    listed = await _listed(client)
    assert sorted(listed) == sorted([public, knock, readable])
    assert invite_only not in listed and emptied not in listed


async def test_larger_rooms_first(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    small = await _published_room(homeserver, alice)
    large = await _published_room(homeserver, alice, members=3)
    medium = await _published_room(homeserver, alice, members=2)
    assert await _listed(client) == [large, medium, small]
    response = await client.get("/publicRooms", query={"server": "test"})
    assert [r["room_id"] for r in response.json["chunk"]] == [large, medium, small]


async def test_paginating_forwards_and_backwards(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    stats = homeserver.room_storage.room_stats
    await homeserver.room_stats.wait_until_current()
    # Summaries written directly: seven rooms with ties in the member counts.
    rooms = [
        RoomStats(f"!r{i}:test", n, join_rules="public")
        for i, n in enumerate([3, 3, 3, 2, 2, 1, 1])
    ]
    await stats.write_stats(rooms, await stats.get_position())
    for room in rooms:
        await homeserver.room_storage.directory.set_published(room.room_id, True)
    order = [r.room_id for r in rooms]

    first = (await client.get("/publicRooms", query={"limit": "3"})).json
    assert [r["room_id"] for r in first["chunk"]] == order[:3]
    assert "prev_batch" not in first and first["total_room_count_estimate"] == 7
    second = (
        await client.get("/publicRooms", query={"limit": "3", "since": first["next_batch"]})
    ).json
    assert [r["room_id"] for r in second["chunk"]] == order[3:6]
    third = (
        await client.get("/publicRooms", query={"limit": "3", "since": second["next_batch"]})
    ).json
    assert [r["room_id"] for r in third["chunk"]] == order[6:]
    assert "next_batch" not in third
    back = (
        await client.get("/publicRooms", query={"limit": "3", "since": third["prev_batch"]})
    ).json
    assert [r["room_id"] for r in back["chunk"]] == order[3:6]
    assert "prev_batch" in back and "next_batch" in back
    start = (
        await client.get("/publicRooms", query={"limit": "3", "since": back["prev_batch"]})
    ).json
    assert [r["room_id"] for r in start["chunk"]] == order[:3]
    assert "prev_batch" not in start
    assert start["next_batch"] == first["next_batch"]

    # POST pages the same way, with the token in the body.
    response = await client.post(
        "/publicRooms", {"limit": 4, "since": first["next_batch"]}, token=alice.access_token
    )
    assert [r["room_id"] for r in response.json["chunk"]] == order[3:7]
    # limit 0 or none: everything.
    assert await _listed(client, limit="0") == order


async def test_bad_paging_parameters(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    for query in ({"since": "garbage"}, {"since": "bjE="}, {"limit": "-1"}, {"limit": "x"}):
        response = await client.get("/publicRooms", query=query)
        assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM"), query
    for body in ({"limit": "3"}, {"limit": True}, {"since": 3}, {"filter": []}):
        response = await client.post("/publicRooms", body, token=alice.access_token)
        assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM"), body


async def test_searching_and_filtering_by_type(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    token = alice.access_token
    named = await _published_room(homeserver, alice, members=3)
    await set_state(homeserver, named, alice.user_id, "m.room.name", {"name": "Rust Gamedev"})
    topical = await _published_room(homeserver, alice, members=2)
    await set_state(
        homeserver, topical, alice.user_id, "m.room.topic", {"topic": "all about GAMES"}
    )
    space = await homeserver.event_persister.create_room(alice.user_id, content={"type": "m.space"})
    await join(homeserver, space.room_id, alice.user_id)
    await set_state(
        homeserver, space.room_id, alice.user_id, "m.room.join_rules", {"join_rule": "public"}
    )
    await homeserver.room_directory.set_visibility(space.room_id, "public")

    async def search(filter: Any, **extra: Any) -> list[str]:
        response = await client.post("/publicRooms", {"filter": filter, **extra}, token=token)
        assert response.status == 200, response
        return [room["room_id"] for room in response.json["chunk"]]

    assert await search({"generic_search_term": "game"}) == [named, topical]
    assert await search({"generic_search_term": "gamedev"}) == [named]
    assert await search({"generic_search_term": space.room_id}) == [space.room_id]
    assert await search({"generic_search_term": ""}) == [named, topical, space.room_id]
    assert await search({"room_types": ["m.space"]}) == [space.room_id]
    assert await search({"room_types": [None]}) == [named, topical]
    assert await search({"room_types": [None], "generic_search_term": "rust"}) == [named]
    assert await search(None) == [named, topical, space.room_id]
    assert await search({}, include_all_networks=True) == [named, topical, space.room_id]
    (entry,) = (
        await client.post("/publicRooms", {"filter": {"room_types": ["m.space"]}}, token=token)
    ).json["chunk"]
    assert entry["room_type"] == "m.space"

    # No room is published to any application service's network here.
    response = await client.post("/publicRooms", {"third_party_instance_id": "irc"}, token=token)
    assert response.json == {"chunk": [], "total_room_count_estimate": 0}
    response = await client.post(
        "/publicRooms",
        {"third_party_instance_id": "irc", "include_all_networks": True},
        token=token,
    )
    assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM")
    for bad in ({"generic_search_term": 1}, {"room_types": "m.space"}, {"room_types": [1]}):
        response = await client.post("/publicRooms", {"filter": bad}, token=token)
        assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM"), bad


async def test_who_may_list(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(allow_guest_access=True)
    client = homeserver_factory.client(hs)
    guest = await client.register_guest()
    response = await client.post("/publicRooms", {}, token=guest["access_token"])
    assert response.status == 200
    response = await client.post("/publicRooms", {})
    assert (response.status, response.json["errcode"]) == (401, "M_MISSING_TOKEN")
    response = await client.get("/publicRooms", token="not-a-token")
    assert response.status == 401
    # Another server's directory is asked over federation, for users only (as Synapse).
    response = await client.get("/publicRooms", query={"server": "elsewhere.example"})
    assert (response.status, response.json["errcode"]) == (401, "M_MISSING_TOKEN")
    response = await client.get("/publicRooms", query={"server": "not a server"})
    assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM")


async def test_a_switched_off_directory_lists_nothing(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(enable_room_list_search=False)
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    await _published_room(hs, alice)
    response = await client.get("/publicRooms")
    assert response.json == {"chunk": [], "total_room_count_estimate": 0}


async def test_stats_survive_a_restart(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    room_id = await _published_room(hs, alice)
    await set_state(hs, room_id, alice.user_id, "m.room.name", {"name": "Kept"})
    await homeserver_factory.stop(hs)
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    (entry,) = (await client.get("/publicRooms")).json["chunk"]
    assert (entry["room_id"], entry["name"]) == (room_id, "Kept")


ROOMS = 2500


def _insert_rooms_txn(txn: Transaction, rooms: list[RoomStats]) -> None:
    txn.executemany(
        "INSERT INTO published_rooms (room_id) VALUES (?)", [(r.room_id,) for r in rooms]
    )


async def test_listing_thousands_of_rooms_is_fast(
    homeserver: HomeServer, client: TestClient
) -> None:
    """2,500 published rooms: a page, a search and the whole list each well under a second."""
    alice = await register(client, "alice")
    await homeserver.room_stats.wait_until_current()
    rooms = [
        RoomStats(
            f"!room{i:05d}:test",
            1 + (i * 7919) % 500,
            name=f"Room number {i}",
            topic=f"Topic {i} " + "lorem ipsum " * 10,
            canonical_alias=f"#room{i}:test",
            join_rules="public",
            history_visibility="shared",
        )
        for i in range(ROOMS)
    ]
    stats = homeserver.room_storage.room_stats
    await stats.write_stats(rooms, await stats.get_position())
    await homeserver.database.run_interaction("publish_rooms", _insert_rooms_txn, rooms)

    timings: dict[str, float] = {}

    async def timed(name: str, request: Any) -> Any:
        started = time.perf_counter()
        response = await request
        timings[name] = time.perf_counter() - started
        assert response.status == 200, response
        return response.json

    page = await timed("page of 20", client.get("/publicRooms", query={"limit": "20"}))
    assert len(page["chunk"]) == 20 and page["total_room_count_estimate"] == ROOMS
    assert page["chunk"][0]["num_joined_members"] == 500
    await timed(
        "next page", client.get("/publicRooms", query={"limit": "20", "since": page["next_batch"]})
    )
    found = await timed(
        "search",
        client.post(
            "/publicRooms",
            {"limit": 20, "filter": {"generic_search_term": "number 123"}},
            token=alice.access_token,
        ),
    )
    assert {r["name"] for r in found["chunk"]} == {"Room number 123"} | {
        f"Room number {i}" for i in range(1230, 1240)
    }
    everything = await timed("all rooms", client.get("/publicRooms"))
    assert len(everything["chunk"]) == ROOMS
    print(
        "publicRooms over", ROOMS, "rooms:", {k: f"{v * 1000:.0f} ms" for k, v in timings.items()}
    )
    assert max(timings.values()) < 2.0, timings


async def test_a_room_created_public_is_listed_at_once(client: TestClient) -> None:
    alice = await register(client, "alice")
    response = await client.post(
        "/createRoom",
        {"visibility": "public", "preset": "public_chat", "room_alias_name": "new", "name": "New"},
        token=alice.access_token,
    )
    assert response.status == 200, response
    room_id = response.json["room_id"]
    (entry,) = (await client.get("/publicRooms")).json["chunk"]
    assert entry == {
        "room_id": room_id,
        "num_joined_members": 1,
        "name": "New",
        "canonical_alias": "#new:test",
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
    }
