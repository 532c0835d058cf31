"""POST /rooms/{roomId}/upgrade: the new room, what moves to it, and what the old room keeps."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.server import HomeServer
from homeserver.types.events import EventBase
from homeserver.types.identifiers import parse_room_id
from tests.conftest import run_on_reactor
from tests.homeserver_harness import NO_LIMIT, TestClient
from tests.room_helpers import User, register, room_path

JsonDict = dict[str, Any]

TRANSFERRED_STATE = [
    {"type": "m.room.name", "content": {"name": "Old"}},
    {"type": "m.room.topic", "content": {"topic": "Things"}},
    {"type": "m.room.avatar", "content": {"url": "mxc://test/avatar"}},
    {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
    {"type": "m.room.server_acl", "content": {"allow": ["*"], "deny": ["evil.example"]}},
    {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
    {"type": "m.room.guest_access", "content": {"guest_access": "forbidden"}},
]


@pytest.fixture
def hs(homeserver_factory: Any) -> HomeServer:
    server: HomeServer = run_on_reactor(homeserver_factory.start(rc_message=NO_LIMIT))
    return server


@pytest.fixture
def http(homeserver_factory: Any, hs: HomeServer) -> TestClient:
    client: TestClient = homeserver_factory.client(hs)
    return client


async def create(http: TestClient, user: User, body: JsonDict) -> str:
    response = await http.post("/createRoom", body, token=user.access_token)
    assert response.status == 200, response
    return str(response.json["room_id"])


async def upgrade(http: TestClient, user: User, room_id: str, body: JsonDict) -> str:
    response = await http.post(room_path(room_id, "upgrade"), body, token=user.access_token)
    assert response.status == 200, response
    return str(response.json["replacement_room"])


async def state_of(hs: HomeServer, room_id: str) -> dict[tuple[str, str], EventBase]:
    ids = await hs.room_storage.state.get_current_state_ids(room_id)
    found = await hs.room_storage.events.get_events(list(ids.values()))
    return {key: found[event_id] for key, event_id in ids.items()}


async def timeline(hs: HomeServer, room_id: str) -> list[EventBase]:
    events = hs.room_storage.events
    stored = await events.get_room_events_stream(room_id, 0, events.current_token(), 1000)
    return [s.event for s in stored]


def contents(state: dict[tuple[str, str], EventBase], event_type: str) -> dict[str, Any]:
    return {key[1]: dict(event.content) for key, event in state.items() if key[0] == event_type}


async def test_upgrade_moves_the_room(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    old = await create(
        http,
        alice,
        {
            "room_version": "10",
            "preset": "public_chat",
            "visibility": "public",
            "room_alias_name": "main",
            "initial_state": [
                *TRANSFERRED_STATE,
                {"type": "org.example.custom", "content": {"stays": True}},
                {
                    "type": "m.room.canonical_alias",
                    "content": {"alias": "#main:test", "alt_aliases": ["#main:test"]},
                },
            ],
            "creation_content": {"m.federate": False},
        },
    )
    await http.put("/directory/room/%23second:test", {"room_id": old}, token=alice.access_token)
    await http.post(room_path(old, "join"), {}, token=bob.access_token)
    await http.post(
        room_path(old, "ban"),
        {"user_id": "@spammer:test", "reason": "spam"},
        token=alice.access_token,
    )
    last_event = (await timeline(hs, old))[-1].event_id
    old_state = await state_of(hs, old)

    new = await upgrade(http, alice, old, {"new_version": "11"})

    new_state = await state_of(hs, new)
    create_event = new_state[("m.room.create", "")]
    assert create_event.sender == alice.user_id
    assert create_event.content == {
        "room_version": "11",
        "predecessor": {"room_id": old, "event_id": last_event},
        "m.federate": False,
    }
    for entry in TRANSFERRED_STATE:
        key = (entry["type"], "")
        assert new_state[key].content == entry["content"], key
    assert new_state[("m.room.join_rules", "")].content == {"join_rule": "public"}
    assert ("org.example.custom", "") not in new_state
    # Members stay behind, bans come along.
    assert contents(new_state, "m.room.member") == {
        alice.user_id: {"membership": "join", "displayname": "alice"},
        "@spammer:test": {"membership": "ban", "reason": "spam"},
    }
    assert (
        new_state[("m.room.power_levels", "")].content
        == old_state[("m.room.power_levels", "")].content
    )
    # Aliases and the canonical alias now belong to the new room, and so does publication.
    assert new_state[("m.room.canonical_alias", "")].content == {
        "alias": "#main:test",
        "alt_aliases": ["#main:test"],
    }
    for alias in ("#main:test", "#second:test"):
        resolved = await hs.room_directory.resolve_alias(alias)
        assert resolved is not None and resolved[0] == new, alias
    assert await hs.room_directory.get_visibility(new) == "public"
    assert await hs.room_directory.get_visibility(old) == "private"

    after = await state_of(hs, old)
    assert after[("m.room.tombstone", "")].content == {
        "body": "This room has been replaced",
        "replacement_room": new,
    }
    assert after[("m.room.tombstone", "")].sender == alice.user_id
    assert after[("m.room.canonical_alias", "")].content == {}
    levels = after[("m.room.power_levels", "")].content
    assert (levels["events_default"], levels["invite"]) == (50, 50)
    # Members stay in the old room; they may leave, not talk.
    assert after[("m.room.member", bob.user_id)].content["membership"] == "join"


async def test_upgrade_to_v12(hs: HomeServer, http: TestClient) -> None:
    """No predecessor event ID (the room ID hashes the create event), creators never listed."""
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    old = await create(
        http,
        alice,
        {
            "room_version": "11",
            "power_level_content_override": {"users": {alice.user_id: 100, bob.user_id: 100}},
        },
    )
    new = await upgrade(
        http, alice, old, {"new_version": "12", "additional_creators": [bob.user_id]}
    )
    assert parse_room_id(new).domain is None
    state = await state_of(hs, new)
    assert state[("m.room.create", "")].content == {
        "room_version": "12",
        "predecessor": {"room_id": old},
        "additional_creators": [bob.user_id],
    }
    assert state[("m.room.power_levels", "")].content["users"] == {}
    # The old room's creator power is gone; bob's 100 moved to creatorship.
    events = await timeline(hs, new)
    assert [e.type for e in events].count("m.room.power_levels") == 1


async def test_upgrade_from_v12_keeps_the_upgrader_at_the_top(
    hs: HomeServer, http: TestClient
) -> None:
    alice = await register(http, "alice")
    old = await create(http, alice, {"room_version": "12"})
    # additional_creators mean nothing to v11, and are ignored.
    new = await upgrade(
        http, alice, old, {"new_version": "11", "additional_creators": ["@bob:test"]}
    )
    state = await state_of(hs, new)
    assert "additional_creators" not in state[("m.room.create", "")].content
    levels = state[("m.room.power_levels", "")].content
    # As high as anything in the room needs: she can still upgrade it again.
    assert levels["users"] == {alice.user_id: 150}
    assert levels["events"]["m.room.tombstone"] == 150


async def test_upgrader_is_raised_while_copying_then_put_back(
    hs: HomeServer, http: TestClient
) -> None:
    """bob may send the tombstone (100) but not the server ACL (150) he must copy."""
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    levels = {
        "users": {alice.user_id: 150, bob.user_id: 100},
        "events": {"m.room.server_acl": 150, "m.room.tombstone": 100},
    }
    old = await create(
        http,
        alice,
        {
            "room_version": "11",
            "preset": "public_chat",
            "power_level_content_override": levels,
            "initial_state": [
                {"type": "m.room.server_acl", "content": {"allow": ["*"]}},
            ],
        },
    )
    await http.post(room_path(old, "join"), {}, token=bob.access_token)
    old_levels = (await state_of(hs, old))[("m.room.power_levels", "")].content

    new = await upgrade(http, bob, old, {"new_version": "11"})

    events = await timeline(hs, new)
    power = [e for e in events if e.type == "m.room.power_levels"]
    assert len(power) == 2
    assert power[0].content["users"] == {alice.user_id: 150, bob.user_id: 150}
    assert power[1].content == old_levels
    state = await state_of(hs, new)
    assert state[("m.room.server_acl", "")].content == {"allow": ["*"]}
    assert state[("m.room.create", "")].sender == bob.user_id


async def test_space_children_and_type_move(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    child = {"via": ["test"]}
    old = await create(
        http,
        alice,
        {
            "room_version": "11",
            "creation_content": {"type": "m.space"},
            "initial_state": [
                {"type": "m.space.child", "state_key": "!a:test", "content": child},
                {"type": "m.space.child", "state_key": "!gone:test", "content": {}},
            ],
        },
    )
    new = await upgrade(http, alice, old, {"new_version": "11"})
    state = await state_of(hs, new)
    assert state[("m.room.create", "")].content["type"] == "m.space"
    assert contents(state, "m.space.child") == {"!a:test": child}


async def test_string_power_levels_become_integers(hs: HomeServer, http: TestClient) -> None:
    """v1 rooms accept "50"; v10+ do not, so the copy holds integers."""
    alice = await register(http, "alice")
    old = await create(
        http,
        alice,
        {
            "room_version": "1",
            "initial_state": [
                {
                    "type": "m.room.power_levels",
                    "content": {
                        "users": {alice.user_id: "100"},
                        "ban": " 60 ",
                        "events": {"m.room.name": "+25"},
                    },
                }
            ],
        },
    )
    new = await upgrade(http, alice, old, {"new_version": "11"})
    levels = (await state_of(hs, new))[("m.room.power_levels", "")].content
    assert levels == {"users": {alice.user_id: 100}, "ban": 60, "events": {"m.room.name": 25}}


async def test_who_may_upgrade_and_bad_requests(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    carol = await register(http, "carol")
    old = await create(http, alice, {"room_version": "11", "preset": "public_chat"})
    await http.post(room_path(old, "join"), {}, token=bob.access_token)
    before = await state_of(hs, old)

    cases: list[tuple[User, str, Any, int, str]] = [
        (bob, old, {"new_version": "12"}, 403, "M_FORBIDDEN"),  # too little power
        (carol, old, {"new_version": "12"}, 403, "M_FORBIDDEN"),  # not in the room
        (alice, old, {"new_version": "99"}, 400, "M_UNSUPPORTED_ROOM_VERSION"),
        (alice, old, {}, 400, "M_MISSING_PARAM"),
        (alice, old, {"new_version": 12}, 400, "M_INVALID_PARAM"),
        (alice, old, {"new_version": "12", "additional_creators": "x"}, 400, "M_BAD_JSON"),
        (alice, old, {"new_version": "12", "additional_creators": ["x"]}, 400, "M_INVALID_PARAM"),
        (alice, "!unknown:test", {"new_version": "12"}, 404, "M_NOT_FOUND"),
    ]
    for user, room_id, body, status, errcode in cases:
        response = await http.post(room_path(room_id, "upgrade"), body, token=user.access_token)
        assert (response.status, response.json["errcode"]) == (status, errcode), body
    assert await state_of(hs, old) == before
    for user in (alice, bob, carol):
        rooms = await hs.room_storage.rooms.get_rooms_for_user(user.user_id, None)
        assert [m.room_id for m in rooms] == ([] if user is carol else [old])


async def test_a_repeated_upgrade_answers_with_the_first_room(
    hs: HomeServer, http: TestClient
) -> None:
    alice = await register(http, "alice")
    old = await create(http, alice, {"room_version": "10"})
    first = await upgrade(http, alice, old, {"new_version": "11"})
    assert await upgrade(http, alice, old, {"new_version": "11"}) == first
    hs.clock.advance(301)
    second = await upgrade(http, alice, old, {"new_version": "11"})
    assert second != first
    tombstone = (await state_of(hs, old))[("m.room.tombstone", "")]
    assert tombstone.content["replacement_room"] == second


async def test_concurrent_upgrades(hs: HomeServer, http: TestClient) -> None:
    """The same user's concurrent requests share one upgrade; another user's is refused."""
    from twisted.internet import defer

    alice = await register(http, "alice")
    bob = await register(http, "bob")
    old = await create(
        http,
        alice,
        {
            "room_version": "11",
            "preset": "public_chat",
            "power_level_content_override": {"users": {alice.user_id: 100, bob.user_id: 100}},
        },
    )
    await http.post(room_path(old, "join"), {}, token=bob.access_token)
    path = room_path(old, "upgrade")
    responses = await defer.gatherResults(
        [
            defer.ensureDeferred(http.post(path, {"new_version": "12"}, token=alice.access_token)),
            defer.ensureDeferred(http.post(path, {"new_version": "12"}, token=alice.access_token)),
        ]
    )
    assert [r.status for r in responses] == [200, 200]
    assert responses[0].json == responses[1].json

    # While bob's upgrade is held up, alice's is refused.
    handler = hs.room_upgrade
    gate: defer.Deferred[None] = defer.Deferred()
    original = handler._upgrade

    async def held(*args: Any) -> str:
        await gate
        return await original(*args)

    handler._upgrade = held  # type: ignore[method-assign]
    bobs = defer.ensureDeferred(http.post(path, {"new_version": "11"}, token=bob.access_token))
    while old not in handler._in_progress:
        await hs.clock.sleep(0.01)
    response = await http.post(path, {"new_version": "11"}, token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (400, "M_UNKNOWN")
    gate.callback(None)
    assert (await bobs).status == 200
