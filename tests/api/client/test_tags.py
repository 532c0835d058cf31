"""Room tags: GET /user/{userId}/rooms/{roomId}/tags, PUT/DELETE .../tags/{tag}, and m.tag in
/sync (both engines)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from homeserver.server import HomeServer
from tests.homeserver_harness import TestClient
from tests.room_helpers import make_room, register


def tags_path(user_id: str, room_id: str, *tag: str) -> str:
    return "/user/" + "/".join(quote(p, safe="") for p in (user_id, "rooms", room_id, "tags", *tag))


async def sync(client: TestClient, token: str, **query: str) -> Any:
    response = await client.get("/sync", token=token, query=query or None)
    assert response.status == 200, response
    return response.json


async def test_add_list_and_remove_tags(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    token = alice.access_token
    empty = await client.get(tags_path(alice.user_id, room_id), token=token)
    assert empty.status == 200 and empty.json == {"tags": {}}
    favourite = tags_path(alice.user_id, room_id, "m.favourite")
    assert (await client.put(favourite, {"order": 0.25}, token=token)).status == 200
    work = tags_path(alice.user_id, room_id, "u.work")
    assert (await client.put(work, {}, token=token)).status == 200
    listed = await client.get(tags_path(alice.user_id, room_id), token=token)
    assert listed.json == {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}
    # Replacing a tag's data.
    await client.put(tags_path(alice.user_id, room_id, "u.work"), {"order": 1}, token=token)
    deleted = await client.delete(tags_path(alice.user_id, room_id, "m.favourite"), token=token)
    assert deleted.status == 200 and deleted.json == {}
    listed = await client.get(tags_path(alice.user_id, room_id), token=token)
    assert listed.json == {"tags": {"u.work": {"order": 1}}}
    # Removing a tag the room does not have is fine.
    again = await client.delete(tags_path(alice.user_id, room_id, "m.favourite"), token=token)
    assert again.status == 200


async def test_tag_validation(homeserver: HomeServer, client: TestClient) -> None:
    """`order` must be a number in [0, 1]; tag names are at most 255 bytes; nothing is stored otherwise."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    token = alice.access_token
    for body in ({"order": 1.5}, {"order": -0.1}, {"order": "0.5"}, {"order": True}, {"order": None}):
        response = await client.put(tags_path(alice.user_id, room_id, "u.x"), body, token=token)
        assert response.status == 400 and response.json["errcode"] == "M_INVALID_PARAM", body
    long_tag = await client.put(tags_path(alice.user_id, room_id, "u." + "x" * 254), {}, token=token)
    assert long_tag.status == 400 and long_tag.json["errcode"] == "M_INVALID_PARAM"
    not_object = await client.put(tags_path(alice.user_id, room_id, "u.x"), [], token=token)
    assert not_object.status == 400 and not_object.json["errcode"] == "M_BAD_JSON"
    bad_room = await client.put(tags_path(alice.user_id, "room", "u.x"), {}, token=token)
    assert bad_room.status == 400 and bad_room.json["errcode"] == "M_INVALID_PARAM"
    listed = await client.get(tags_path(alice.user_id, room_id), token=token)
    assert listed.json == {"tags": {}}


async def test_other_users_tags_are_forbidden(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await client.put(tags_path(alice.user_id, room_id, "u.mine"), {}, token=alice.access_token)
    for response in (
        await client.get(tags_path(alice.user_id, room_id), token=bob.access_token),
        await client.put(tags_path(alice.user_id, room_id, "u.x"), {}, token=bob.access_token),
        await client.delete(tags_path(alice.user_id, room_id, "u.mine"), token=bob.access_token),
    ):
        assert response.status == 403 and response.json["errcode"] == "M_FORBIDDEN", response
    listed = await client.get(tags_path(alice.user_id, room_id), token=alice.access_token)
    assert listed.json == {"tags": {"u.mine": {}}}


async def test_tags_in_sync(homeserver: HomeServer, client: TestClient) -> None:
    """Tags are the room's m.tag account data event, in initial and incremental syncs."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    token = alice.access_token
    low = tags_path(alice.user_id, room_id, "m.lowpriority")
    await client.put(low, {"order": 0.5}, token=token)
    initial = await sync(client, token)
    room = initial["rooms"]["join"][room_id]
    assert room["account_data"]["events"] == [
        {"type": "m.tag", "content": {"tags": {"m.lowpriority": {"order": 0.5}}}}
    ]
    await client.delete(tags_path(alice.user_id, room_id, "m.lowpriority"), token=token)
    later = await sync(client, token, since=initial["next_batch"])
    assert later["rooms"]["join"][room_id]["account_data"]["events"] == [
        {"type": "m.tag", "content": {"tags": {}}}
    ]
    # A delete that changes nothing reports nothing.
    await client.delete(tags_path(alice.user_id, room_id, "m.lowpriority"), token=token)
    assert list(await sync(client, token, since=later["next_batch"])) == ["next_batch"]
