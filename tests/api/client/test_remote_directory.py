"""Other servers' aliases and room directories, asked of a fake remote over federation (both engines).

GET /directory/room/{alias} and m.room.canonical_alias for another server's
alias go to its GET /query/directory; GET/POST /publicRooms?server= to its
POST /publicRooms.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.federation.test_queries_remote import FED, Recorded, RemoteSetup, remote_setup
from tests.room_helpers import make_room, register, room_path

__all__ = ["remote_setup"]

DIRECTORY = f"{FED}/query/directory"
PUBLIC_ROOMS = f"{FED}/publicRooms"
UNREACHABLE = "127.0.0.1:1"


def alias_path(alias: str) -> str:
    return "/directory/room/" + quote(alias, safe="")


def _error(response: Any) -> tuple[int, str]:
    return response.status, response.json["errcode"]


def _serve_aliases(setup: RemoteSetup, aliases: dict[str, str]) -> None:
    """The remote answers directory queries for `aliases` (alias -> room), 404 otherwise."""

    def answer(request: Recorded) -> tuple[int, Any]:
        room_id = aliases.get(request.args.get("room_alias", ""))
        if room_id is None:
            return 404, {"errcode": "M_NOT_FOUND", "error": "Room alias not found."}
        return 200, {"room_id": room_id, "servers": ["zzz.example", setup.remote.name]}

    setup.remote.answers[DIRECTORY] = answer


async def test_a_remote_alias_resolves_through_its_server(remote_setup: RemoteSetup) -> None:
    remote, client = remote_setup.remote, remote_setup.client
    alias = f"#cheese:{remote.name}"
    _serve_aliases(remote_setup, {alias: "!cheese:elsewhere"})

    response = await client.get(alias_path(alias))
    assert response.status == 200, response
    assert response.json == {"room_id": "!cheese:elsewhere", "servers": sorted([remote.name, "zzz.example"])}
    (request,) = remote.requests_to(DIRECTORY)
    assert request.args == {"room_alias": alias}
    assert request.authorization is not None
    assert 'origin="test"' in request.authorization or "origin=test" in request.authorization

    response = await client.get(alias_path(f"#nothing:{remote.name}"))
    assert _error(response) == (404, "M_NOT_FOUND")


async def test_remote_answers_are_cached_briefly(remote_setup: RemoteSetup) -> None:
    remote, client = remote_setup.remote, remote_setup.client
    alias = f"#cheese:{remote.name}"
    _serve_aliases(remote_setup, {alias: "!cheese:elsewhere"})
    assert (await client.get(alias_path(alias))).status == 200
    assert (await client.get(alias_path(alias))).status == 200
    assert len(remote.requests_to(DIRECTORY)) == 1
    remote_setup.hs.clock.advance(31)
    _serve_aliases(remote_setup, {alias: "!moved:elsewhere"})
    response = await client.get(alias_path(alias))
    assert response.json["room_id"] == "!moved:elsewhere"
    assert len(remote.requests_to(DIRECTORY)) == 2


async def test_no_usable_answer_is_not_found(remote_setup: RemoteSetup) -> None:
    remote, client = remote_setup.remote, remote_setup.client
    alias = f"#cheese:{remote.name}"
    for answer in [
        (500, {"errcode": "M_UNKNOWN", "error": "Internal server error"}),
        (403, {"errcode": "M_FORBIDDEN", "error": "No"}),
        (200, {"room_id": "!r:elsewhere"}),
        (200, {"room_id": "not a room", "servers": []}),
        (200, ["!r:elsewhere"]),
    ]:
        remote.answers[DIRECTORY] = answer
        response = await client.get(alias_path(alias))
        assert _error(response) == (404, "M_NOT_FOUND"), answer
    response = await client.get(alias_path(f"#cheese:{UNREACHABLE}"))
    assert _error(response) == (404, "M_NOT_FOUND")
    # Servers the remote names that are no server names are dropped.
    remote.answers[DIRECTORY] = (200, {"room_id": "!r:elsewhere", "servers": ["ok.example", "not a server", 3]})
    response = await client.get(alias_path(alias))
    assert response.json == {"room_id": "!r:elsewhere", "servers": ["ok.example"]}


async def test_canonical_alias_checks_remote_aliases(remote_setup: RemoteSetup) -> None:
    hs, remote, client = remote_setup.hs, remote_setup.remote, remote_setup.client
    alice = await register(client, "alice")
    room_id = await make_room(hs, alice.user_id)
    ours, theirs = f"#ours:{remote.name}", f"#theirs:{remote.name}"
    _serve_aliases(remote_setup, {ours: room_id, theirs: "!other:elsewhere"})
    path = room_path(room_id, "state", "m.room.canonical_alias", "")

    response = await client.put(path, {"alias": ours}, token=alice.access_token)
    assert response.status == 200, response
    response = await client.put(path, {"alias": ours, "alt_aliases": [theirs]}, token=alice.access_token)
    assert _error(response) == (400, "M_BAD_ALIAS")
    response = await client.put(
        path, {"alias": ours, "alt_aliases": [f"#x:{UNREACHABLE}"]}, token=alice.access_token
    )
    assert _error(response) == (400, "M_BAD_ALIAS")


def _serve_room_list(setup: RemoteSetup) -> None:
    def answer(request: Recorded) -> tuple[int, Any]:
        return 200, {
            "chunk": [
                {
                    "room_id": "!r:elsewhere",
                    "num_joined_members": 4,
                    "world_readable": False,
                    "guest_can_join": False,
                }
            ],
            "next_batch": "remote-token",
            "total_room_count_estimate": 7,
        }

    setup.remote.answers[PUBLIC_ROOMS] = answer


async def test_listing_another_server_s_directory(remote_setup: RemoteSetup) -> None:
    remote, client = remote_setup.remote, remote_setup.client
    alice = await register(client, "alice")
    _serve_room_list(remote_setup)

    response = await client.get(
        "/publicRooms",
        query={"server": remote.name, "limit": "5", "since": "abc"},
        token=alice.access_token,
    )
    assert response.status == 200, response
    assert response.json["chunk"][0]["room_id"] == "!r:elsewhere"
    assert response.json["next_batch"] == "remote-token"
    (request,) = remote.requests_to(PUBLIC_ROOMS)
    assert (request.method, request.body) == ("POST", {"limit": 5, "since": "abc"})

    body = {
        "limit": 2,
        "filter": {"generic_search_term": "cheese", "room_types": [None, "m.space"]},
        "third_party_instance_id": "irc",
    }
    response = await client.request(
        "POST", "/publicRooms", body, query={"server": remote.name}, token=alice.access_token
    )
    assert response.status == 200, response
    assert remote.requests_to(PUBLIC_ROOMS)[-1].body == body
    response = await client.request(
        "POST",
        "/publicRooms",
        {"include_all_networks": True},
        query={"server": remote.name},
        token=alice.access_token,
    )
    assert response.status == 200
    assert remote.requests_to(PUBLIC_ROOMS)[-1].body == {"include_all_networks": True}

    # The same page again within 30 s comes from the cache.
    count = len(remote.requests_to(PUBLIC_ROOMS))
    await client.request("POST", "/publicRooms", body, query={"server": remote.name}, token=alice.access_token)
    assert len(remote.requests_to(PUBLIC_ROOMS)) == count
    remote_setup.hs.clock.advance(31)
    await client.request("POST", "/publicRooms", body, query={"server": remote.name}, token=alice.access_token)
    assert len(remote.requests_to(PUBLIC_ROOMS)) == count + 1


async def test_remote_directory_failures(remote_setup: RemoteSetup) -> None:
    remote, client = remote_setup.remote, remote_setup.client
    alice = await register(client, "alice")
    token = alice.access_token
    _serve_room_list(remote_setup)

    # Without a token we list our own directory only.
    response = await client.get("/publicRooms", query={"server": remote.name})
    assert _error(response) == (401, "M_MISSING_TOKEN")
    assert remote.requests_to(PUBLIC_ROOMS) == []
    assert (await client.get("/publicRooms", query={"server": "test"})).status == 200

    cases = [
        ((403, {"errcode": "M_FORBIDDEN", "error": "Not for you"}), (403, "M_FORBIDDEN")),
        ((500, {"errcode": "M_UNKNOWN", "error": "Oops"}), (502, "M_UNKNOWN")),
        ((200, {"rooms": []}), (502, "M_UNKNOWN")),
    ]
    for index, (answer, expected) in enumerate(cases):
        remote.answers[PUBLIC_ROOMS] = answer
        response = await client.get(
            "/publicRooms", query={"server": remote.name, "limit": str(index + 1)}, token=token
        )
        assert _error(response) == expected, answer
    response = await client.get("/publicRooms", query={"server": UNREACHABLE}, token=token)
    assert _error(response) == (502, "M_UNKNOWN")
    response = await client.get("/publicRooms", query={"server": "not a server"}, token=token)
    assert _error(response) == (400, "M_INVALID_PARAM")
