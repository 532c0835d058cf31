"""POST /user/{userId}/filter, GET /user/{userId}/filter/{filterId}, and filters in /sync (both engines)."""

from __future__ import annotations

import json
from urllib.parse import quote

from homeserver.server import HomeServer
from tests.homeserver_harness import HomeServerFactory, TestClient
from tests.room_helpers import make_room, register, send

FILTER = {
    "room": {"timeline": {"limit": 2, "types": ["m.room.message"]}, "include_leave": True},
    "account_data": {"not_types": ["*"]},
}


def filter_path(user_id: str, *rest: str) -> str:
    return "/user/" + "/".join(quote(s, safe="") for s in (user_id, "filter", *rest))


async def test_upload_and_download(client: TestClient) -> None:
    """A filter comes back as uploaded; the same filter again gets the same ID."""
    alice = await register(client, "alice")
    created = await client.post(filter_path(alice.user_id), FILTER, token=alice.access_token)
    assert created.status == 200, created
    filter_id = created.json["filter_id"]
    assert isinstance(filter_id, str) and not filter_id.startswith("{")
    fetched = await client.get(filter_path(alice.user_id, filter_id), token=alice.access_token)
    assert fetched.status == 200 and fetched.json == FILTER
    again = await client.post(filter_path(alice.user_id), FILTER, token=alice.access_token)
    assert again.json["filter_id"] == filter_id
    other = await client.post(filter_path(alice.user_id), {}, token=alice.access_token)
    assert other.json["filter_id"] != filter_id


async def test_other_users_filters_are_forbidden(client: TestClient) -> None:
    """Uploading or reading another user's filters is 403 M_FORBIDDEN; the filter stays theirs."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    filter_id = (
        await client.post(filter_path(alice.user_id), FILTER, token=alice.access_token)
    ).json["filter_id"]
    for response in (
        await client.post(filter_path(alice.user_id), FILTER, token=bob.access_token),
        await client.get(filter_path(alice.user_id, filter_id), token=bob.access_token),
        await client.post(filter_path("@carol:elsewhere"), FILTER, token=bob.access_token),
    ):
        assert response.status == 403 and response.json["errcode"] == "M_FORBIDDEN", response
    # Bob asking for the same ID under his own name finds nothing.
    mine = await client.get(filter_path(bob.user_id, filter_id), token=bob.access_token)
    assert mine.status == 404 and mine.json["errcode"] == "M_NOT_FOUND"


async def test_unknown_filter_is_not_found(client: TestClient) -> None:
    alice = await register(client, "alice")
    for filter_id in ("12345", "abc", "-1"):
        response = await client.get(filter_path(alice.user_id, filter_id), token=alice.access_token)
        assert response.status == 404 and response.json["errcode"] == "M_NOT_FOUND", filter_id


async def test_invalid_user_id_is_invalid_param(client: TestClient) -> None:
    alice = await register(client, "alice")
    response = await client.post(filter_path("not-a-user"), FILTER, token=alice.access_token)
    assert response.status == 400 and response.json["errcode"] == "M_INVALID_PARAM"


async def test_invalid_filters_are_refused_naming_the_problem(client: TestClient) -> None:
    """Bad filters are 400 M_BAD_JSON saying which key is wrong, and nothing is stored."""
    alice = await register(client, "alice")
    cases = [
        ({"room": {"timeline": {"limit": "ten"}}}, "room.timeline.limit"),
        ({"event_format": "xml"}, "event_format"),
        ({"room": {"rooms": ["#alias:test"]}}, "room.rooms[0]"),
        ({"presence": {"senders": ["bob"]}}, "presence.senders[0]"),
    ]
    for body, where in cases:
        response = await client.post(filter_path(alice.user_id), body, token=alice.access_token)
        assert response.status == 400, (body, response)
        assert response.json["errcode"] == "M_BAD_JSON"
        assert where in response.json["error"], response.json
    not_object = await client.post(filter_path(alice.user_id), [1], token=alice.access_token)
    assert not_object.status == 400 and not_object.json["errcode"] == "M_BAD_JSON"
    not_json = await client.post(filter_path(alice.user_id), b"{nope", token=alice.access_token)
    assert not_json.status == 400 and not_json.json["errcode"] == "M_NOT_JSON"
    # Nothing was stored: the first valid filter gets the first ID.
    created = await client.post(filter_path(alice.user_id), {}, token=alice.access_token)
    assert created.json["filter_id"] == "1"


async def test_guests_cannot_upload_filters(homeserver_factory: HomeServerFactory) -> None:
    hs = await homeserver_factory.start(allow_guest_access=True)
    client = homeserver_factory.client(hs)
    guest = await client.register_guest()
    response = await client.post(
        filter_path(guest["user_id"]), FILTER, token=guest["access_token"]
    )
    assert response.status == 403 and response.json["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


async def test_sync_with_a_filter_id_and_inline(homeserver: HomeServer, client: TestClient) -> None:
    """/sync takes a filter ID or inline JSON; both select the same events."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    for n in range(3):
        await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": str(n)})
    filter_id = (
        await client.post(filter_path(alice.user_id), FILTER, token=alice.access_token)
    ).json["filter_id"]
    for value in (filter_id, json.dumps(FILTER)):
        response = await client.get("/sync", token=alice.access_token, query={"filter": value})
        assert response.status == 200, response
        timeline = response.json["rooms"]["join"][room_id]["timeline"]
        assert [e["content"]["body"] for e in timeline["events"]] == ["1", "2"]
        assert timeline["limited"] is True


async def test_sync_filter_errors(client: TestClient) -> None:
    """An unknown filter ID or a bad inline filter in /sync is 400 M_INVALID_PARAM, named."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    bobs = (await client.post(filter_path(bob.user_id), FILTER, token=bob.access_token)).json[
        "filter_id"
    ]
    for value, words in [
        ("999", "No such filter"),
        (bobs, "No such filter"),
        ('{"room": {"timeline": {"limit": -5}}}', "room.timeline.limit"),
        ('{"room": ', "filter"),
    ]:
        response = await client.get("/sync", token=alice.access_token, query={"filter": value})
        assert response.status == 400, (value, response)
        assert response.json["errcode"] == "M_INVALID_PARAM"
        assert words in response.json["error"]
