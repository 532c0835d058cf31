"""Room aliases and directory visibility over HTTP: /directory/room/{roomAlias},
/rooms/{roomId}/aliases, /directory/list/room/{roomId}, and the canonical alias checks the
room directory does for m.room.canonical_alias."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from homeserver.server import HomeServer
from homeserver.types.errors import MatrixError
from homeserver.types.room_versions import V11, V12, RoomVersion
from tests.homeserver_harness import TestClient, make_admin
from tests.room_helpers import (
    User,
    join,
    make_room,
    persist_remote,
    register,
    remote_event,
    room_path,
    set_state,
)


def alias_path(alias: str) -> str:
    return "/directory/room/" + quote(alias, safe="")


def visibility_path(room_id: str) -> str:
    return "/directory/list/room/" + quote(room_id, safe="")


async def _room(hs: HomeServer, client: TestClient, **kwargs: Any) -> tuple[User, str]:
    alice = await register(client, "alice")
    return alice, await make_room(hs, alice.user_id, **kwargs)


async def _canonical_alias(hs: HomeServer, room_id: str) -> dict[str, Any] | None:
    state = await hs.room_storage.state.get_current_state_ids(room_id)
    event_id = state.get(("m.room.canonical_alias", ""))
    if event_id is None:
        return None
    event = await hs.room_storage.events.get_event(event_id)
    assert event is not None
    return dict(event.content)


async def test_create_and_resolve_an_alias(homeserver: HomeServer, client: TestClient) -> None:
    alice, room_id = await _room(homeserver, client)
    response = await client.put(
        alias_path("#room:test"), {"room_id": room_id}, token=alice.access_token
    )
    assert response.status == 200 and response.json == {}
    # Resolving needs no token.
    response = await client.get(alias_path("#room:test"))
    assert response.status == 200
    assert response.json == {"room_id": room_id, "servers": ["test"]}
    assert await homeserver.room_directory.resolve_alias("#room:test") == (room_id, ["test"])

    response = await client.put(
        alias_path("#room:test"), {"room_id": room_id}, token=alice.access_token
    )
    assert response.status == 409 and response.json["errcode"] == "M_UNKNOWN"
    assert "already exists" in response.json["error"]


@pytest.mark.parametrize(
    ("alias", "status", "errcode"),
    [
        ("room:test", 400, "M_INVALID_PARAM"),
        ("#:test", 400, "M_INVALID_PARAM"),
        ("#room", 400, "M_INVALID_PARAM"),
        ("#" + "x" * 260 + ":test", 400, "M_INVALID_PARAM"),
        ("#room:elsewhere.example", 400, "M_UNKNOWN"),
        ("#two words:test", 400, "M_UNKNOWN"),
    ],
)
async def test_bad_aliases_are_refused(
    homeserver: HomeServer, client: TestClient, alias: str, status: int, errcode: str
) -> None:
    alice, room_id = await _room(homeserver, client)
    response = await client.put(alias_path(alias), {"room_id": room_id}, token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (status, errcode), response
    assert await homeserver.room_storage.directory.get_aliases_for_room(room_id) == []


async def test_bad_bodies_and_rooms_are_refused(homeserver: HomeServer, client: TestClient) -> None:
    alice, room_id = await _room(homeserver, client)
    token = alice.access_token
    response = await client.put(alias_path("#a:test"), {}, token=token)
    assert (response.status, response.json["errcode"]) == (400, "M_MISSING_PARAM")
    response = await client.put(alias_path("#a:test"), {"room_id": 5}, token=token)
    assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM")
    response = await client.put(alias_path("#a:test"), {"room_id": "!nowhere:test"}, token=token)
    assert (response.status, response.json["errcode"]) == (400, "M_UNKNOWN")
    response = await client.put(alias_path("#a:test"), {"room_id": room_id})
    assert (response.status, response.json["errcode"]) == (401, "M_MISSING_TOKEN")
    assert await homeserver.room_directory.resolve_alias("#a:test") is None


async def test_only_members_and_admins_make_aliases(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice, room_id = await _room(homeserver, client)
    bob = await register(client, "bob")
    response = await client.put(
        alias_path("#bob:test"), {"room_id": room_id}, token=bob.access_token
    )
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    admin_token = await make_admin(homeserver, client)
    response = await client.put(alias_path("#admin:test"), {"room_id": room_id}, token=admin_token)
    assert response.status == 200
    await join(homeserver, room_id, bob.user_id)
    response = await client.put(
        alias_path("#bob:test"), {"room_id": room_id}, token=bob.access_token
    )
    assert response.status == 200
    assert await homeserver.room_directory.get_local_aliases(room_id) == [
        "#admin:test",
        "#bob:test",
    ]


async def test_resolving_unknown_and_remote_aliases(client: TestClient) -> None:
    response = await client.get(alias_path("#nothing:test"))
    assert (response.status, response.json["errcode"]) == (404, "M_NOT_FOUND")
    response = await client.get(alias_path("#room:elsewhere.example"))
    assert (response.status, response.json["errcode"]) == (404, "M_NOT_FOUND")
    response = await client.get(alias_path("room:test"))
    assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM")


async def test_servers_are_those_of_the_members(homeserver: HomeServer, client: TestClient) -> None:
    alice, room_id = await _room(homeserver, client)
    await homeserver.room_directory.create_alias(alice.user_id, "#r:test", room_id)
    # A remote member joins: its server is a way in too, after ours.
    event = await remote_event(
        homeserver,
        room_id,
        "m.room.member",
        "@carol:remote.test",
        {"membership": "join"},
        state_key="@carol:remote.test",
    )
    await persist_remote(homeserver, event)
    response = await client.get(alias_path("#r:test"))
    assert response.json == {"room_id": room_id, "servers": ["test", "remote.test"]}


async def test_who_may_delete_an_alias(homeserver: HomeServer, client: TestClient) -> None:
    alice, room_id = await _room(homeserver, client)
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    await join(homeserver, room_id, bob.user_id)
    response = await client.put(
        alias_path("#bob:test"), {"room_id": room_id}, token=bob.access_token
    )
    assert response.status == 200
    await homeserver.room_directory.create_alias(alice.user_id, "#alice:test", room_id)

    # Carol is no member; Bob is one, without the power to set the canonical alias.
    response = await client.delete(alias_path("#bob:test"), token=carol.access_token)
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    response = await client.delete(alias_path("#alice:test"), token=bob.access_token)
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    assert await homeserver.room_directory.get_local_aliases(room_id) == [
        "#alice:test",
        "#bob:test",
    ]

    # Whoever made the alias may delete it; so may the room's moderators.
    response = await client.delete(alias_path("#bob:test"), token=bob.access_token)
    assert response.status == 200 and response.json == {}
    await homeserver.room_directory.create_alias(bob.user_id, "#bob2:test", room_id)
    response = await client.delete(alias_path("#bob2:test"), token=alice.access_token)
    assert response.status == 200
    # And server admins.
    admin_token = await make_admin(homeserver, client)
    response = await client.delete(alias_path("#alice:test"), token=admin_token)
    assert response.status == 200
    assert await homeserver.room_directory.get_local_aliases(room_id) == []

    response = await client.delete(alias_path("#alice:test"), token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (404, "M_NOT_FOUND")
    response = await client.delete(alias_path("#x:elsewhere.example"), token=alice.access_token)
    assert response.status == 400


async def test_deleting_an_alias_takes_it_out_of_the_canonical_alias(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice, room_id = await _room(homeserver, client)
    directory = homeserver.room_directory
    for alias in ("#main:test", "#alt1:test", "#alt2:test"):
        await directory.create_alias(alice.user_id, alias, room_id)
    await set_state(
        homeserver,
        room_id,
        alice.user_id,
        "m.room.canonical_alias",
        {"alias": "#main:test", "alt_aliases": ["#alt1:test", "#alt2:test"], "x": 1},
    )
    response = await client.delete(alias_path("#main:test"), token=alice.access_token)
    assert response.status == 200
    assert await _canonical_alias(homeserver, room_id) == {
        "alt_aliases": ["#alt1:test", "#alt2:test"],
        "x": 1,
    }
    await client.delete(alias_path("#alt1:test"), token=alice.access_token)
    await client.delete(alias_path("#alt2:test"), token=alice.access_token)
    assert await _canonical_alias(homeserver, room_id) == {"x": 1}


async def test_an_alias_goes_even_when_its_creator_cannot_edit_the_canonical_alias(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice, room_id = await _room(homeserver, client)
    bob = await register(client, "bob")
    await join(homeserver, room_id, bob.user_id)
    await homeserver.room_directory.create_alias(bob.user_id, "#bob:test", room_id)
    content = {"alias": "#bob:test"}
    await set_state(homeserver, room_id, alice.user_id, "m.room.canonical_alias", content)
    response = await client.delete(alias_path("#bob:test"), token=bob.access_token)
    assert response.status == 200
    assert await homeserver.room_directory.resolve_alias("#bob:test") is None
    assert await _canonical_alias(homeserver, room_id) == content


async def test_server_internal_deletion(homeserver: HomeServer, client: TestClient) -> None:
    alice, room_id = await _room(homeserver, client)
    directory = homeserver.room_directory
    await directory.create_alias(alice.user_id, "#moving:test", room_id)
    await set_state(
        homeserver, room_id, alice.user_id, "m.room.canonical_alias", {"alias": "#moving:test"}
    )
    assert await directory.delete_alias("#moving:test", None) == room_id
    # The caller (a room upgrade) handles the canonical alias event.
    assert await _canonical_alias(homeserver, room_id) == {"alias": "#moving:test"}


async def test_room_aliases_for_members_and_previews(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice, room_id = await _room(homeserver, client)
    bob = await register(client, "bob")
    await homeserver.room_directory.create_alias(alice.user_id, "#b:test", room_id)
    await homeserver.room_directory.create_alias(alice.user_id, "#a:test", room_id)
    path = room_path(room_id, "aliases")
    response = await client.get(path, token=alice.access_token)
    assert response.status == 200 and response.json == {"aliases": ["#a:test", "#b:test"]}
    response = await client.get(path, token=bob.access_token)
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    admin_token = await make_admin(homeserver, client)
    response = await client.get(path, token=admin_token)
    assert response.json == {"aliases": ["#a:test", "#b:test"]}
    await set_state(
        homeserver,
        room_id,
        alice.user_id,
        "m.room.history_visibility",
        {"history_visibility": "world_readable"},
    )
    response = await client.get(path, token=bob.access_token)
    assert response.status == 200 and response.json == {"aliases": ["#a:test", "#b:test"]}
    response = await client.get(room_path("not-a-room", "aliases"), token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize("version", [V11, V12], ids=["v11", "v12"])
async def test_directory_visibility(
    homeserver: HomeServer, client: TestClient, version: RoomVersion
) -> None:
    """Also in room v12, where room IDs have no server name and creators infinite power."""
    alice, room_id = await _room(homeserver, client, version=version)
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    await join(homeserver, room_id, bob.user_id)
    path = visibility_path(room_id)

    response = await client.get(path)
    assert response.status == 200 and response.json == {"visibility": "private"}
    response = await client.get(visibility_path("!unknown:test"))
    assert (response.status, response.json["errcode"]) == (404, "M_NOT_FOUND")

    # `visibility` defaults to public.
    response = await client.put(path, {}, token=alice.access_token)
    assert response.status == 200 and response.json == {}
    assert (await client.get(path)).json == {"visibility": "public"}

    for user in (bob, carol):  # a member without the power, a non-member
        response = await client.put(path, {"visibility": "private"}, token=user.access_token)
        assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    assert (await client.get(path)).json == {"visibility": "public"}

    admin_token = await make_admin(homeserver, client)
    response = await client.put(path, {"visibility": "private"}, token=admin_token)
    assert response.status == 200
    assert (await client.get(path)).json == {"visibility": "private"}

    response = await client.put(path, {"visibility": "hidden"}, token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM")
    response = await client.put(path, {"visibility": 1}, token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM")
    response = await client.put(visibility_path("!unknown:test"), {}, token=admin_token)
    assert (response.status, response.json["errcode"]) == (404, "M_NOT_FOUND")
    response = await client.put(path, {})
    assert response.status == 401
    assert (await client.get(path)).json == {"visibility": "private"}


async def test_publishing_can_be_switched_off(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(enable_room_list_search=False)
    client = homeserver_factory.client(hs)
    alice, room_id = await _room(hs, client)
    response = await client.put(visibility_path(room_id), {}, token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    response = await client.put(
        visibility_path(room_id), {"visibility": "private"}, token=alice.access_token
    )
    assert response.status == 200
    # The server itself (createRoom) still records a room's visibility.
    await hs.room_directory.set_visibility(room_id, "public")
    assert (await client.get(visibility_path(room_id))).json == {"visibility": "public"}


async def _expect_error(awaitable: Any, status: int, errcode: str) -> None:
    with pytest.raises(MatrixError) as caught:
        await awaitable
    assert (caught.value.status, caught.value.errcode) == (status, errcode)


async def test_canonical_alias_validation(homeserver: HomeServer, client: TestClient) -> None:
    alice, room_id = await _room(homeserver, client)
    other_room = await make_room(homeserver, alice.user_id)
    directory = homeserver.room_directory
    await directory.create_alias(alice.user_id, "#here:test", room_id)
    await directory.create_alias(alice.user_id, "#here2:test", room_id)
    await directory.create_alias(alice.user_id, "#there:test", other_room)
    validate = directory.validate_canonical_alias

    await validate(room_id, {"alias": "#here:test", "alt_aliases": ["#here2:test"]})
    await validate(room_id, {})
    await validate(room_id, {"alias": None, "alt_aliases": []})
    await validate(room_id, {"alias": ""})
    await _expect_error(validate(room_id, {"alias": "#there:test"}), 400, "M_BAD_ALIAS")
    await _expect_error(validate(room_id, {"alias": "#missing:test"}), 400, "M_BAD_ALIAS")
    await _expect_error(validate(room_id, {"alias": "#x:remote.test"}), 400, "M_BAD_ALIAS")
    await _expect_error(validate(room_id, {"alt_aliases": ["#there:test"]}), 400, "M_BAD_ALIAS")
    await _expect_error(validate(room_id, {"alias": "nope"}), 400, "M_INVALID_PARAM")
    await _expect_error(validate(room_id, {"alias": 3}), 400, "M_INVALID_PARAM")
    await _expect_error(validate(room_id, {"alt_aliases": "#here:test"}), 400, "M_INVALID_PARAM")
    await _expect_error(validate(room_id, {"alt_aliases": [None]}), 400, "M_INVALID_PARAM")
    await _expect_error(validate(room_id, {"alt_aliases": ["bad"]}), 400, "M_INVALID_PARAM")

    # Aliases already in the room's canonical alias event are not checked again.
    await set_state(
        homeserver,
        room_id,
        alice.user_id,
        "m.room.canonical_alias",
        {"alias": "#there:test", "alt_aliases": ["#gone:test"]},
    )
    await validate(room_id, {"alias": "#there:test", "alt_aliases": ["#gone:test", "#here:test"]})
    await _expect_error(
        validate(room_id, {"alias": "#there:test", "alt_aliases": ["#there:test"]}),
        400,
        "M_BAD_ALIAS",
    )


async def test_sending_a_canonical_alias_checks_it(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice, room_id = await _room(homeserver, client)
    await homeserver.room_directory.create_alias(alice.user_id, "#mine:test", room_id)
    path = room_path(room_id, "state", "m.room.canonical_alias", "")
    token = alice.access_token
    response = await client.put(path, {"alias": "#missing:test"}, token=token)
    assert (response.status, response.json["errcode"]) == (400, "M_BAD_ALIAS")
    response = await client.put(path, {"alt_aliases": ["not an alias"]}, token=token)
    assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM")
    assert await _canonical_alias(homeserver, room_id) is None
    response = await client.put(path, {"alias": "#mine:test"}, token=token)
    assert response.status == 200
    assert await _canonical_alias(homeserver, room_id) == {"alias": "#mine:test"}
