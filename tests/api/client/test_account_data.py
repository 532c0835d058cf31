"""Account data: PUT/GET /user/{userId}/account_data/{type} and the per-room form, and in /sync
(both engines)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from homeserver.server import HomeServer
from tests.homeserver_harness import TestClient
from tests.room_helpers import make_room, register

ROOM = "!someroom:test"


def data_path(user_id: str, data_type: str, room_id: str | None = None) -> str:
    parts = [user_id] + (["rooms", room_id] if room_id is not None else []) + ["account_data"]
    return "/user/" + "/".join(quote(p, safe="") for p in [*parts, data_type])


async def sync(client: TestClient, token: str, **query: str) -> Any:
    response = await client.get("/sync", token=token, query=query or None)
    assert response.status == 200, response
    return response.json


async def test_global_account_data_round_trip(client: TestClient) -> None:
    """PUT stores the object as given, GET returns it, a second PUT replaces it."""
    alice = await register(client, "alice")
    path = data_path(alice.user_id, "org.example.settings")
    missing = await client.get(path, token=alice.access_token)
    assert missing.status == 404 and missing.json["errcode"] == "M_NOT_FOUND"
    content = {"theme": "dark", "nested": {"list": [1, 2.5, None, "ü"]}}
    put = await client.put(path, content, token=alice.access_token)
    assert put.status == 200 and put.json == {}
    assert (await client.get(path, token=alice.access_token)).json == content
    await client.put(path, {"theme": "light"}, token=alice.access_token)
    assert (await client.get(path, token=alice.access_token)).json == {"theme": "light"}
    empty = await client.put(path, {}, token=alice.access_token)
    assert empty.status == 200
    assert (await client.get(path, token=alice.access_token)).json == {}


async def test_room_account_data_is_separate(client: TestClient) -> None:
    """Room account data does not fall back to global data of the same type, nor the reverse."""
    alice = await register(client, "alice")
    room_path = data_path(alice.user_id, "org.example.x", ROOM)
    global_path = data_path(alice.user_id, "org.example.x")
    assert (await client.put(room_path, {"in": "room"}, token=alice.access_token)).status == 200
    assert (await client.get(room_path, token=alice.access_token)).json == {"in": "room"}
    missing = await client.get(global_path, token=alice.access_token)
    assert missing.status == 404 and missing.json["errcode"] == "M_NOT_FOUND"
    other_room = data_path(alice.user_id, "org.example.x", "!other:test")
    assert (await client.get(other_room, token=alice.access_token)).status == 404


async def test_other_users_account_data_is_forbidden(client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    await client.put(data_path(alice.user_id, "org.example.x"), {"a": 1}, token=alice.access_token)
    for path in (data_path(alice.user_id, "org.example.x"), data_path(alice.user_id, "t", ROOM)):
        read = await client.get(path, token=bob.access_token)
        write = await client.put(path, {"b": 2}, token=bob.access_token)
        for response in (read, write):
            assert response.status == 403 and response.json["errcode"] == "M_FORBIDDEN", response
    # Nothing changed.
    mine = await client.get(data_path(alice.user_id, "org.example.x"), token=alice.access_token)
    assert mine.json == {"a": 1}


async def test_server_managed_types_are_refused(client: TestClient) -> None:
    """m.fully_read and m.push_rules: 405 M_BAD_JSON, globally and per room; still readable (404)."""
    alice = await register(client, "alice")
    for data_type in ("m.fully_read", "m.push_rules"):
        for room_id in (None, ROOM):
            path = data_path(alice.user_id, data_type, room_id)
            put = await client.put(path, {"event_id": "$x"}, token=alice.access_token)
            assert put.status == 405 and put.json["errcode"] == "M_BAD_JSON", put
            read = await client.get(path, token=alice.access_token)
            assert read.status == 404


async def test_bad_requests(client: TestClient) -> None:
    alice = await register(client, "alice")
    bad_room = data_path(alice.user_id, "org.example.x", "not-a-room")
    for response in (
        await client.put(bad_room, {}, token=alice.access_token),
        await client.get(bad_room, token=alice.access_token),
    ):
        assert response.status == 400 and response.json["errcode"] == "M_INVALID_PARAM", response
    path = data_path(alice.user_id, "org.example.x")
    not_object = await client.put(path, [1, 2], token=alice.access_token)
    assert not_object.status == 400 and not_object.json["errcode"] == "M_BAD_JSON"
    not_json = await client.put(path, b"{", token=alice.access_token)
    assert not_json.status == 400 and not_json.json["errcode"] == "M_NOT_JSON"
    too_long = await client.put(data_path(alice.user_id, "x" * 256), {}, token=alice.access_token)
    assert too_long.status == 400 and too_long.json["errcode"] == "M_INVALID_PARAM"
    assert (await client.get(path, token=alice.access_token)).status == 404


async def test_account_data_in_sync(homeserver: HomeServer, client: TestClient) -> None:
    """Initial sync has all account data; incremental only what changed since."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    token = alice.access_token
    await client.put(data_path(alice.user_id, "org.example.a"), {"v": 1}, token=token)
    await client.put(data_path(alice.user_id, "org.example.b"), {"v": 2}, token=token)
    await client.put(data_path(alice.user_id, "org.example.r", room_id), {"v": 3}, token=token)
    initial = await sync(client, token)
    assert sorted(
        (e["type"], e["content"]["v"]) for e in initial["account_data"]["events"]
    ) == [("org.example.a", 1), ("org.example.b", 2)]
    room = initial["rooms"]["join"][room_id]
    assert room["account_data"]["events"] == [{"type": "org.example.r", "content": {"v": 3}}]

    await client.put(data_path(alice.user_id, "org.example.b"), {"v": 20}, token=token)
    later = await sync(client, token, since=initial["next_batch"])
    assert later["account_data"]["events"] == [{"type": "org.example.b", "content": {"v": 20}}]
    assert "rooms" not in later

    await client.put(data_path(alice.user_id, "org.example.r", room_id), {"v": 30}, token=token)
    room_only = await sync(client, token, since=later["next_batch"])
    assert "account_data" not in room_only
    entry = room_only["rooms"]["join"][room_id]
    assert entry["account_data"]["events"] == [{"type": "org.example.r", "content": {"v": 30}}]
    assert entry["timeline"]["events"] == []

    nothing = await sync(client, token, since=room_only["next_batch"])
    assert nothing == {"next_batch": room_only["next_batch"]}


async def test_account_data_filters(homeserver: HomeServer, client: TestClient) -> None:
    """The filter's `account_data` and `room.account_data` choose the types reported."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    token = alice.access_token
    for data_type in ("org.example.keep", "org.example.drop"):
        await client.put(data_path(alice.user_id, data_type), {}, token=token)
        await client.put(data_path(alice.user_id, data_type, room_id), {}, token=token)
    body = await sync(
        client,
        token,
        filter='{"account_data": {"types": ["*.keep"]},'
        ' "room": {"account_data": {"not_types": ["*.keep"]}}}',
    )
    assert [e["type"] for e in body["account_data"]["events"]] == ["org.example.keep"]
    room = body["rooms"]["join"][room_id]
    assert [e["type"] for e in room["account_data"]["events"]] == ["org.example.drop"]


async def test_account_data_survives_a_restart(homeserver_factory: Any) -> None:
    """Stored positions carry on after a restart: a sync token from before still works."""
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    await client.put(data_path(alice.user_id, "org.example.a"), {"v": 1}, token=alice.access_token)
    before = await sync(client, alice.access_token)
    await homeserver_factory.stop(hs)
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    await client.put(data_path(alice.user_id, "org.example.a"), {"v": 2}, token=alice.access_token)
    after = await sync(client, alice.access_token, since=before["next_batch"])
    assert after["account_data"]["events"] == [{"type": "org.example.a", "content": {"v": 2}}]
