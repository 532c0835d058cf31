"""POST /createRoom: the events it makes, in the spec's order, and every way a request fails."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.server import HomeServer
from homeserver.types.events import EventBase
from homeserver.types.identifiers import parse_room_id
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import run_on_reactor
from tests.homeserver_harness import NO_LIMIT, TestClient
from tests.room_helpers import User, register

JsonDict = dict[str, Any]


@pytest.fixture
def hs(homeserver_factory: Any) -> HomeServer:
    server: HomeServer = run_on_reactor(homeserver_factory.start(rc_message=NO_LIMIT))
    return server


@pytest.fixture
def http(homeserver_factory: Any, hs: HomeServer) -> TestClient:
    client: TestClient = homeserver_factory.client(hs)
    return client


async def timeline(hs: HomeServer, room_id: str) -> list[EventBase]:
    events = hs.room_storage.events
    stored = await events.get_room_events_stream(room_id, 0, events.current_token(), 1000)
    return [s.event for s in stored]


async def current_state(hs: HomeServer, room_id: str) -> dict[tuple[str, str], EventBase]:
    ids = await hs.room_storage.state.get_current_state_ids(room_id)
    found = await hs.room_storage.events.get_events(list(ids.values()))
    return {key: found[event_id] for key, event_id in ids.items()}


async def create(http: TestClient, user: User, body: JsonDict) -> str:
    response = await http.post("/createRoom", body, token=user.access_token)
    assert response.status == 200, response
    return str(response.json["room_id"])


async def rooms_of(hs: HomeServer, user_id: str) -> list[str]:
    return [m.room_id for m in await hs.room_storage.rooms.get_rooms_for_user(user_id, None)]


async def test_default_room_is_private_in_the_spec_order(hs: HomeServer, http: TestClient) -> None:
    """No options: the default version (v12), private_chat, and the events in the spec's order."""
    alice = await register(http, "alice")
    await http.put(
        "/profile/@alice:test/displayname", {"displayname": "Alice"}, token=alice.access_token
    )
    room_id = await create(http, alice, {})

    assert parse_room_id(room_id).domain is None  # v12: the create event's hash
    events = await timeline(hs, room_id)
    assert [(e.type, e.state_key) for e in events] == [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
    ]
    create_event, join, levels, join_rules, history, guests = events
    assert create_event.content == {"room_version": "12"}
    assert create_event.sender == alice.user_id
    assert join.content == {"membership": "join", "displayname": "Alice"}
    # v12: the creator has infinite power and is not listed; tombstones need more than 100.
    assert levels.content["users"] == {}
    assert levels.content["events"]["m.room.tombstone"] == 150
    assert levels.content["invite"] == 0  # private_chat
    assert join_rules.content == {"join_rule": "invite"}
    assert history.content == {"history_visibility": "shared"}
    assert guests.content == {"guest_access": "can_join"}
    assert await hs.room_directory.get_visibility(room_id) == "private"
    joined = await http.get("/joined_rooms", token=alice.access_token)
    assert joined.json == {"joined_rooms": [room_id]}


async def test_public_visibility_publishes_with_the_public_preset(
    hs: HomeServer, http: TestClient
) -> None:
    alice = await register(http, "alice")
    room_id = await create(http, alice, {"visibility": "public", "room_version": "10"})

    state = await current_state(hs, room_id)
    assert state[("m.room.join_rules", "")].content == {"join_rule": "public"}
    # public_chat sets no guest access: its absence means "forbidden".
    assert ("m.room.guest_access", "") not in state
    levels = state[("m.room.power_levels", "")].content
    assert levels["users"] == {alice.user_id: 100}
    assert levels["invite"] == 50
    assert levels["events"]["m.room.tombstone"] == 100
    assert await hs.room_directory.get_visibility(room_id) == "public"
    # v1..v10 name the creator in the create event.
    assert state[("m.room.create", "")].content["creator"] == alice.user_id


async def test_every_option_in_the_spec_order(hs: HomeServer, http: TestClient) -> None:
    """Alias, preset, initial_state, name, topic and invites land in the order the spec gives."""
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    await http.put("/profile/@bob:test/displayname", {"displayname": "Bob"}, token=bob.access_token)
    response = await http.post(
        "/createRoom",
        {
            "room_version": "11",
            "preset": "public_chat",
            "room_alias_name": "pub",
            "name": "The Pub",
            "topic": "Happy hour",
            "invite": [bob.user_id],
            "is_direct": True,
            "initial_state": [
                {"type": "m.room.name", "content": {"name": "overridden by name"}},
                {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
                {"type": "org.example.custom", "state_key": "k", "content": {"x": 1}},
            ],
            "creation_content": {"m.federate": False, "room_version": "1", "type": "m.space"},
            "power_level_content_override": {"events_default": 10},
        },
        token=alice.access_token,
    )
    assert response.status == 200, response
    room_id = response.json["room_id"]
    assert response.json["room_alias"] == "#pub:test"

    events = await timeline(hs, room_id)
    assert [(e.type, e.state_key) for e in events] == [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        ("m.room.name", ""),
        ("m.room.history_visibility", ""),
        ("org.example.custom", "k"),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", bob.user_id),
    ]
    by_key = {(e.type, e.state_key): e for e in events}
    create_event = events[0]
    # room_version is the server's to set; the other keys are kept.
    assert create_event.content == {
        "room_version": "11",
        "m.federate": False,
        "type": "m.space",
    }
    assert events[2].content["events_default"] == 10
    assert by_key[("m.room.canonical_alias", "")].content == {"alias": "#pub:test"}
    assert events[-3].content == {"name": "The Pub"}
    assert by_key[("m.room.history_visibility", "")].content == {"history_visibility": "joined"}
    assert by_key[("m.room.topic", "")].content == {
        "topic": "Happy hour",
        "m.topic": {"m.text": [{"body": "Happy hour", "mimetype": "text/plain"}]},
    }
    assert by_key[("m.room.member", bob.user_id)].content == {
        "membership": "invite",
        "displayname": "Bob",
        "is_direct": True,
    }
    assert await hs.room_directory.resolve_alias("#pub:test") == (room_id, ["test"])
    assert await hs.room_directory.get_visibility(room_id) == "private"


async def test_initial_state_power_levels_replace_the_generated_ones(
    hs: HomeServer, http: TestClient
) -> None:
    alice = await register(http, "alice")
    levels = {"users": {"@alice:test": 100}, "state_default": 100}
    room_id = await create(
        http,
        alice,
        {
            "room_version": "10",
            "initial_state": [{"type": "m.room.power_levels", "content": levels}],
            "power_level_content_override": {"ban": 1},
        },
    )
    state = await current_state(hs, room_id)
    assert state[("m.room.power_levels", "")].content == levels
    # It still comes third, before the preset's events.
    events = await timeline(hs, room_id)
    assert events[2].type == "m.room.power_levels"


async def test_trusted_private_chat_gives_invitees_the_creators_power(
    hs: HomeServer, http: TestClient
) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    carol = await register(http, "carol")
    body: JsonDict = {"preset": "trusted_private_chat", "invite": [bob.user_id]}

    v11 = await create(http, alice, {**body, "room_version": "11"})
    levels = (await current_state(hs, v11))[("m.room.power_levels", "")].content
    assert levels["users"] == {alice.user_id: 100, bob.user_id: 100}

    # v12: invitees become additional creators (with those given), and are not listed.
    v12 = await create(
        http,
        alice,
        {
            **body,
            "room_version": "12",
            "creation_content": {"additional_creators": [carol.user_id]},
        },
    )
    state = await current_state(hs, v12)
    assert state[("m.room.create", "")].content["additional_creators"] == [
        carol.user_id,
        bob.user_id,
    ]
    assert state[("m.room.power_levels", "")].content["users"] == {}


async def test_every_room_version_can_be_created(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    for identifier in KNOWN_ROOM_VERSIONS:
        room_id = await create(
            http, alice, {"room_version": identifier, "name": identifier, "invite": []}
        )
        room = await hs.room_storage.rooms.get_room(room_id)
        assert room is not None and room.room_version == identifier
        state = await current_state(hs, room_id)
        assert state[("m.room.name", "")].content == {"name": identifier}
        assert state[("m.room.member", alice.user_id)].content["membership"] == "join"


async def test_default_room_version_comes_from_the_config(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(default_room_version="9")
    http = homeserver_factory.client(hs)
    alice = await register(http, "alice")
    room_id = await create(http, alice, {})
    room = await hs.room_storage.rooms.get_room(room_id)
    assert room is not None and room.room_version == "9"


async def test_taken_alias_is_refused_before_anything_is_made(
    hs: HomeServer, http: TestClient
) -> None:
    alice = await register(http, "alice")
    first = await create(http, alice, {"room_alias_name": "taken"})
    response = await http.post(
        "/createRoom", {"room_alias_name": "taken"}, token=alice.access_token
    )
    assert response.status == 400
    assert response.json["errcode"] == "M_ROOM_IN_USE"
    assert await rooms_of(hs, alice.user_id) == [first]


async def test_canonical_alias_in_initial_state(hs: HomeServer, http: TestClient) -> None:
    """It may name the alias being made; any other alias does not point at the new room."""
    alice = await register(http, "alice")
    room_id = await create(
        http,
        alice,
        {
            "room_alias_name": "mine",
            "initial_state": [
                {"type": "m.room.canonical_alias", "content": {"alias": "#mine:test"}}
            ],
        },
    )
    canonical = (await current_state(hs, room_id))[("m.room.canonical_alias", "")]
    assert canonical.content == {"alias": "#mine:test"}

    response = await http.post(
        "/createRoom",
        {
            "room_alias_name": "other",
            "initial_state": [
                {"type": "m.room.canonical_alias", "content": {"alias": "#mine:test"}}
            ],
        },
        token=alice.access_token,
    )
    assert response.status == 400
    assert response.json["errcode"] == "M_BAD_ALIAS"
    assert await rooms_of(hs, alice.user_id) == [room_id]
    assert await hs.room_directory.resolve_alias("#other:test") is None


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"room_version": "999"}, "M_UNSUPPORTED_ROOM_VERSION"),
        ({"room_version": 11}, "M_BAD_JSON"),
        ({"preset": "party"}, "M_BAD_JSON"),
        ({"visibility": "secret"}, "M_BAD_JSON"),
        ({"name": 5}, "M_BAD_JSON"),
        ({"topic": ["x"]}, "M_BAD_JSON"),
        ({"is_direct": "yes"}, "M_BAD_JSON"),
        ({"invite": "@bob:test"}, "M_BAD_JSON"),
        ({"invite": [5]}, "M_BAD_JSON"),
        ({"invite": ["bob"]}, "M_INVALID_PARAM"),
        ({"invite": ["@bob:elsewhere.example"]}, "M_INVALID_PARAM"),
        (
            {
                "invite_3pid": [
                    {
                        "medium": "email",
                        "address": "bob@example.com",
                        "id_server": "id.example.com",
                        "id_access_token": "x",
                    }
                ]
            },
            "M_INVALID_PARAM",
        ),
        ({"initial_state": {"type": "m.room.name"}}, "M_BAD_JSON"),
        ({"initial_state": [{"type": "m.room.name"}]}, "M_BAD_JSON"),
        ({"initial_state": [{"content": {}}]}, "M_BAD_JSON"),
        ({"initial_state": [{"type": "x", "state_key": 1, "content": {}}]}, "M_BAD_JSON"),
        ({"creation_content": []}, "M_BAD_JSON"),
        ({"power_level_content_override": "high"}, "M_BAD_JSON"),
        ({"room_alias_name": "a b"}, "M_INVALID_PARAM"),
        ({"room_alias_name": "#a:test"}, "M_INVALID_PARAM"),
        ({"room_alias_name": "a" * 300}, "M_INVALID_PARAM"),
        # Before v12 the override's `users` must keep the creator.
        (
            {"room_version": "11", "power_level_content_override": {"users": {"@x:test": 50}}},
            "M_INVALID_ROOM_STATE",
        ),
        # The creator can no longer send the name they asked for.
        (
            {
                "room_version": "11",
                "name": "x",
                "power_level_content_override": {"users": {"@alice:test": 10}},
            },
            "M_INVALID_ROOM_STATE",
        ),
        # v12 creators cannot be listed in power levels.
        (
            {"room_version": "12", "power_level_content_override": {"users": {"@alice:test": 1}}},
            "M_INVALID_ROOM_STATE",
        ),
        # Nobody can send a second create event.
        ({"initial_state": [{"type": "m.room.create", "content": {}}]}, "M_INVALID_ROOM_STATE"),
        ({"initial_state": [{"type": "x", "content": {"big": "a" * 70000}}]}, "M_TOO_LARGE"),
        ({"room_version": "11", "creation_content": {"n": 1.5}}, "M_BAD_JSON"),
    ],
)
async def test_bad_requests_make_nothing(
    hs: HomeServer, http: TestClient, body: JsonDict, errcode: str
) -> None:
    alice = await register(http, "alice")
    response = await http.post("/createRoom", body, token=alice.access_token)
    assert response.json["errcode"] == errcode, response
    assert response.status == (413 if errcode == "M_TOO_LARGE" else 400)
    assert await rooms_of(hs, alice.user_id) == []
    assert await hs.room_directory.resolve_alias("#a:test") is None


async def test_not_json_and_guests(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(allow_guest_access=True)
    http = homeserver_factory.client(hs)
    alice = await register(http, "alice")
    response = await http.post("/createRoom", b"{nope", token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (400, "M_NOT_JSON")
    guest = await http.register_guest()
    response = await http.post("/createRoom", {}, token=guest["access_token"])
    assert (response.status, response.json["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    response = await http.post("/createRoom", {})
    assert (response.status, response.json["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_room_creation_is_rate_limited(homeserver_factory: Any) -> None:
    """One rc_message action per room, however many events it takes."""
    hs = await homeserver_factory.start(rc_message={"per_second": 0.1, "burst_count": 2})
    http = homeserver_factory.client(hs)
    alice = await register(http, "alice")
    for _ in range(2):
        await create(http, alice, {"name": "x", "topic": "y"})
    response = await http.post("/createRoom", {}, token=alice.access_token)
    assert response.status == 429
    assert response.json["errcode"] == "M_LIMIT_EXCEEDED"
    assert response.json["retry_after_ms"] > 0
    hs.clock.advance(10)
    await create(http, alice, {})
    assert len(await rooms_of(hs, alice.user_id)) == 3
