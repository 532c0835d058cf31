"""Other servers' queries to us over HTTP, signed by a fake remote (both engines).

GET /query/directory, GET /query/profile, GET/POST /publicRooms (X-Matrix
required), and GET /openid/userinfo (no X-Matrix: third parties call it).
"""

from __future__ import annotations

from typing import Any

from tests.federation.test_queries_remote import FED, RemoteSetup, remote_setup
from tests.room_helpers import make_room, register, set_state

__all__ = ["remote_setup"]

DIRECTORY = f"{FED}/query/directory"
PROFILE = f"{FED}/query/profile"
PUBLIC_ROOMS = f"{FED}/publicRooms"


def _error(response: Any) -> tuple[int, str]:
    return response.status, response.json["errcode"]


async def test_directory_query_resolves_our_aliases(remote_setup: RemoteSetup) -> None:
    hs = remote_setup.hs
    alice = await register(remote_setup.client, "alice")
    room_id = await make_room(hs, alice.user_id)
    await hs.room_directory.create_alias(alice.user_id, "#cheese:test", room_id)

    response = await remote_setup.signed("GET", DIRECTORY, {"room_alias": "#cheese:test"})
    assert response.status == 200, response
    assert response.json == {"room_id": room_id, "servers": ["test"]}


async def test_directory_query_unknown_cases(remote_setup: RemoteSetup) -> None:
    signed = remote_setup.signed
    response = await signed("GET", DIRECTORY, {"room_alias": "#nothing:test"})
    assert _error(response) == (404, "M_NOT_FOUND")
    # Not ours: we answer for our aliases only, and ask nobody else.
    response = await signed("GET", DIRECTORY, {"room_alias": f"#x:{remote_setup.remote.name}"})
    assert _error(response) == (404, "M_NOT_FOUND")
    assert remote_setup.remote.requests == []
    response = await signed("GET", DIRECTORY, {"room_alias": "not-an-alias"})
    assert _error(response) == (400, "M_INVALID_PARAM")
    response = await signed("GET", DIRECTORY)
    assert _error(response) == (400, "M_MISSING_PARAM")


async def test_queries_need_a_server_signature(remote_setup: RemoteSetup) -> None:
    client = remote_setup.client
    for path in (f"{DIRECTORY}?room_alias=%23a:test", f"{PROFILE}?user_id=@a:test", PUBLIC_ROOMS):
        response = await client.get(path)
        assert _error(response) == (401, "M_UNAUTHORIZED"), path
    # Signed by a server whose key is not the one that signed.
    response = await remote_setup.signed(
        "GET", DIRECTORY, {"room_alias": "#a:test"}, origin="127.0.0.1:1"
    )
    assert response.status == 401


async def test_profile_query(remote_setup: RemoteSetup) -> None:
    client, signed = remote_setup.client, remote_setup.signed
    alice = await register(client, "alice")
    token = alice.access_token
    assert (await client.put("/profile/@alice:test/displayname", {"displayname": "Alice"}, token=token)).status == 200
    assert (await client.put("/profile/@alice:test/m.tz", {"m.tz": "Europe/Paris"}, token=token)).status == 200

    response = await signed("GET", PROFILE, {"user_id": "@alice:test"})
    assert response.status == 200, response
    assert response.json == {"displayname": "Alice", "m.tz": "Europe/Paris"}
    response = await signed("GET", PROFILE, {"user_id": "@alice:test", "field": "displayname"})
    assert response.json == {"displayname": "Alice"}
    response = await signed("GET", PROFILE, {"user_id": "@alice:test", "field": "m.tz"})
    assert response.json == {"m.tz": "Europe/Paris"}
    # Unset fields and unknown users are 404; other servers' users are not ours to answer for.
    response = await signed("GET", PROFILE, {"user_id": "@alice:test", "field": "avatar_url"})
    assert _error(response) == (404, "M_NOT_FOUND")
    response = await signed("GET", PROFILE, {"user_id": "@nobody:test"})
    assert _error(response) == (404, "M_NOT_FOUND")
    response = await signed("GET", PROFILE, {"user_id": "@nobody:test", "field": "displayname"})
    assert _error(response) == (404, "M_NOT_FOUND")
    response = await signed("GET", PROFILE, {"user_id": f"@bob:{remote_setup.remote.name}"})
    assert _error(response) == (400, "M_INVALID_PARAM")
    assert remote_setup.remote.requests_to(PROFILE) == []
    response = await signed("GET", PROFILE, {"user_id": "alice"})
    assert _error(response) == (400, "M_INVALID_PARAM")
    response = await signed("GET", PROFILE)
    assert _error(response) == (400, "M_MISSING_PARAM")


async def _published_rooms(remote_setup: RemoteSetup) -> list[str]:
    """Three published rooms, of 3, 2 and 1 members; their IDs, largest first."""
    hs, client = remote_setup.hs, remote_setup.client
    alice = await register(client, "alice")
    rooms = []
    for index, extra_members in enumerate((2, 1, 0)):
        room_id = await make_room(hs, alice.user_id)
        await set_state(hs, room_id, alice.user_id, "m.room.name", {"name": f"room {index}"})
        for n in range(extra_members):
            user_id = f"@u{index}_{n}:test"
            await hs.event_persister.create_and_persist(
                room_id, "m.room.member", user_id, user_id, {"membership": "join"}
            )
        await hs.room_directory.set_visibility(room_id, "public")
        rooms.append(room_id)
    return rooms


async def test_public_rooms_are_the_client_api_s(remote_setup: RemoteSetup) -> None:
    rooms = await _published_rooms(remote_setup)
    signed, client = remote_setup.signed, remote_setup.client

    local = (await client.get("/publicRooms")).json
    response = await signed("GET", PUBLIC_ROOMS)
    assert response.status == 200, response
    assert response.json == local
    assert [r["room_id"] for r in response.json["chunk"]] == rooms

    # Paging with GET's query parameters.
    first = (await signed("GET", PUBLIC_ROOMS, {"limit": "2"})).json
    assert [r["room_id"] for r in first["chunk"]] == rooms[:2]
    second = (await signed("GET", PUBLIC_ROOMS, {"limit": "2", "since": first["next_batch"]})).json
    assert [r["room_id"] for r in second["chunk"]] == rooms[2:]
    assert "next_batch" not in second

    # POST with a filter.
    response = await signed("POST", PUBLIC_ROOMS, body={"filter": {"generic_search_term": "room 1"}})
    assert response.status == 200, response
    assert [r["room_id"] for r in response.json["chunk"]] == [rooms[1]]
    response = await signed("POST", PUBLIC_ROOMS, body={"limit": 1})
    assert [r["room_id"] for r in response.json["chunk"]] == rooms[:1]
    # No room is published to a third-party network here.
    response = await signed("POST", PUBLIC_ROOMS, body={"third_party_instance_id": "irc"})
    assert response.json["chunk"] == []
    response = await signed("GET", PUBLIC_ROOMS, {"include_all_networks": "true"})
    assert [r["room_id"] for r in response.json["chunk"]] == rooms


async def test_public_rooms_bad_requests(remote_setup: RemoteSetup) -> None:
    signed = remote_setup.signed
    for body in (
        {"limit": "3"},
        {"filter": "cheese"},
        {"filter": {"room_types": "m.space"}},
        {"include_all_networks": True, "third_party_instance_id": "irc"},
        {"since": "not a token"},
    ):
        response = await signed("POST", PUBLIC_ROOMS, body=body)
        assert _error(response) == (400, "M_INVALID_PARAM"), body
    for query in ({"limit": "x"}, {"include_all_networks": "maybe"}, {"since": "nope"}):
        response = await signed("GET", PUBLIC_ROOMS, query)
        assert _error(response) == (400, "M_INVALID_PARAM"), query
