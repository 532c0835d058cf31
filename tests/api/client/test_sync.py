"""GET /sync: the state/timeline split, gaps, tokens, joined and newly joined rooms (both engines).

Rooms are made through the event persister (tests/room_helpers.py); users
register over HTTP.
"""

from __future__ import annotations

from homeserver.server import HomeServer
from tests.api.client.sync_helpers import (
    bodies,
    joined,
    state_keys,
    state_of,
    sync,
    timeline_ids,
)
from tests.homeserver_harness import TestClient
from tests.room_helpers import join, make_room, register, room_path, send, set_state

LIMIT_3 = {"room": {"timeline": {"limit": 3}}}


async def test_initial_sync_of_a_small_room_has_everything_in_the_timeline(
    homeserver: HomeServer, client: TestClient
) -> None:
    """A new room whose history fits in the timeline: state is empty (it is all in the timeline)."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "hi"})
    body = await sync(client, alice.access_token)
    assert body["next_batch"]
    room = joined(body, room_id)
    types = [e["type"] for e in room["timeline"]["events"]]
    assert types[0] == "m.room.create" and types[-1] == "m.room.message"
    assert room["timeline"]["limited"] is False
    assert room["state"]["events"] == []
    assert room["account_data"] == {"events": []}
    for event in room["timeline"]["events"]:
        assert "room_id" not in event and event["unsigned"]["age"] >= 0


async def test_initial_sync_state_is_the_state_at_the_start_of_the_timeline(
    homeserver: HomeServer, client: TestClient
) -> None:
    """With a limited timeline, `state` is the state before its first event, without the
    timeline's own events, and a state change in the timeline is not in `state`."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    old_topic = await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "old"})
    for n in range(3):
        await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": str(n)})
    new_topic = await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "new"})
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "last"})
    room = joined(await sync(client, alice.access_token, sync_filter=LIMIT_3), room_id)
    assert timeline_ids(room)[1] == new_topic.event_id
    assert bodies(room) == ["2", "last"]
    assert room["timeline"]["limited"] is True
    state = state_of(room)
    assert state[("m.room.topic", "")]["event_id"] == old_topic.event_id
    assert {("m.room.create", ""), ("m.room.member", alice.user_id)} <= set(state)
    assert not set(timeline_ids(room)) & {e["event_id"] for e in state.values()}


async def test_incremental_sync_without_gap(homeserver: HomeServer, client: TestClient) -> None:
    """New events since the token, not limited, empty state; nothing new: no room at all."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    first = await sync(client, alice.access_token, sync_filter=LIMIT_3)
    topic = await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "t"})
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "a"})
    second = await sync(client, alice.access_token, first["next_batch"], sync_filter=LIMIT_3)
    room = joined(second, room_id)
    assert timeline_ids(room)[0] == topic.event_id and bodies(room) == ["a"]
    assert room["timeline"]["limited"] is False
    assert room["state"]["events"] == []
    assert second["next_batch"] != first["next_batch"]
    third = await sync(client, alice.access_token, second["next_batch"], sync_filter=LIMIT_3)
    assert third == {"next_batch": second["next_batch"]}


async def test_gappy_incremental_sync_reports_state_changed_in_the_gap(
    homeserver: HomeServer, client: TestClient
) -> None:
    """limited=true, and `state` holds what changed between `since` and the timeline's start
    (the new topic, bob's join, his displayname), not what is unchanged or in the timeline."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "before"})
    first = await sync(client, alice.access_token, sync_filter=LIMIT_3)

    topic = await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "gap"})
    await join(homeserver, room_id, bob.user_id)
    bob_renamed = await join(homeserver, room_id, bob.user_id, displayname="Bob")
    for n in range(5):
        await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": str(n)})
    name = await set_state(homeserver, room_id, alice.user_id, "m.room.name", {"name": "N"})

    second = await sync(client, alice.access_token, first["next_batch"], sync_filter=LIMIT_3)
    room = joined(second, room_id)
    assert room["timeline"]["limited"] is True
    assert bodies(room) == ["3", "4"] and timeline_ids(room)[-1] == name.event_id
    state = state_of(room)
    assert set(state) == {("m.room.topic", ""), ("m.room.member", bob.user_id)}
    assert state[("m.room.topic", "")]["event_id"] == topic.event_id
    assert state[("m.room.member", bob.user_id)]["event_id"] == bob_renamed.event_id

    # The gap can be filled with /messages from prev_batch back to `since`.
    prev_batch = room["timeline"]["prev_batch"]
    messages = await client.get(
        room_path(room_id, "messages"),
        token=alice.access_token,
        query={"dir": "b", "from": prev_batch, "to": first["next_batch"], "limit": "20"},
    )
    assert messages.status == 200, messages
    gap = [e["content"].get("body") for e in messages.json["chunk"] if e["type"] == "m.room.message"]
    assert gap == ["2", "1", "0"]


async def test_newly_joined_room_gets_full_state(homeserver: HomeServer, client: TestClient) -> None:
    """A room joined since the last sync comes with its whole state at the timeline's start."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, history_visibility="joined")
    await set_state(homeserver, room_id, alice.user_id, "m.room.name", {"name": "Room"})
    for n in range(5):
        await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": str(n)})
    first = await sync(client, bob.access_token)
    assert "rooms" not in first
    bob_join = await join(homeserver, room_id, bob.user_id)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "welcome"})
    second = await sync(client, bob.access_token, first["next_batch"])
    room = joined(second, room_id)
    assert timeline_ids(room)[0] == bob_join.event_id and bodies(room) == ["welcome"]
    keys = state_keys(room["state"]["events"])
    assert {
        ("m.room.create", ""),
        ("m.room.name", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.member", alice.user_id),
    } <= keys
    assert ("m.room.member", bob.user_id) not in keys  # it is in the timeline


async def test_full_state_resends_the_state(homeserver: HomeServer, client: TestClient) -> None:
    """full_state=true: all state even with `since`; the timeline is still only what is new."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    first = await sync(client, alice.access_token)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "new"})
    body = await sync(client, alice.access_token, first["next_batch"], full_state="true")
    room = joined(body, room_id)
    assert bodies(room) == ["new"]
    assert ("m.room.create", "") in state_keys(room["state"]["events"])
    # Even with nothing new, every room is reported.
    again = await sync(client, alice.access_token, body["next_batch"], full_state="true")
    assert ("m.room.create", "") in state_keys(joined(again, room_id)["state"]["events"])
    assert joined(again, room_id)["timeline"]["events"] == []


async def test_timeline_filter_and_limit_zero(homeserver: HomeServer, client: TestClient) -> None:
    """The timeline filter picks events; limit 0 gives a token and no events."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "alice"})
    await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "bob"})
    await send(homeserver, room_id, alice.user_id, "org.example.custom", {"body": "custom"})
    only_bob = {"room": {"timeline": {"senders": [bob.user_id], "types": ["m.room.*"]}}}
    room = joined(await sync(client, alice.access_token, sync_filter=only_bob), room_id)
    assert [e["sender"] for e in room["timeline"]["events"]] == [bob.user_id, bob.user_id]
    assert bodies(room) == ["bob"]
    nothing = await sync(client, alice.access_token, sync_filter={"room": {"timeline": {"limit": 0}}})
    room = joined(nothing, room_id)
    assert room["timeline"]["events"] == [] and room["timeline"]["limited"] is True
    assert ("m.room.member", bob.user_id) in state_keys(room["state"]["events"])


async def test_room_filter_and_event_fields(homeserver: HomeServer, client: TestClient) -> None:
    """`room.not_rooms` hides a room; `event_fields` keeps only the named fields."""
    alice = await register(client, "alice")
    shown = await make_room(homeserver, alice.user_id)
    hidden = await make_room(homeserver, alice.user_id)
    await send(homeserver, shown, alice.user_id, "m.room.message", {"body": "x", "extra": 1})
    body = await sync(
        client,
        alice.access_token,
        sync_filter={
            "room": {"not_rooms": [hidden], "timeline": {"limit": 1}},
            "event_fields": ["type", "content.body"],
        },
    )
    assert set(body["rooms"]["join"]) == {shown}
    assert joined(body, shown)["timeline"]["events"] == [
        {"type": "m.room.message", "content": {"body": "x"}}
    ]


async def test_federation_event_format(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    body = await sync(
        client,
        alice.access_token,
        sync_filter={"event_format": "federation", "room": {"timeline": {"limit": 1}}},
    )
    (event,) = joined(body, room_id)["timeline"]["events"]
    assert event["room_id"] == room_id and "depth" in event and "auth_events" in event


async def test_use_state_after(homeserver: HomeServer, client: TestClient) -> None:
    """use_state_after: `state_after` replaces `state` and describes the end of the timeline."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    first = await sync(client, alice.access_token, use_state_after="true")
    room = joined(first, room_id)
    assert "state" not in room
    assert ("m.room.join_rules", "") in state_keys(room["state_after"]["events"])
    topic = await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "t"})
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "m"})
    second = await sync(client, alice.access_token, first["next_batch"], use_state_after="true")
    room = joined(second, room_id)
    # The topic is in the timeline and, since clients apply only state_after, there too.
    assert [e["event_id"] for e in room["state_after"]["events"]] == [topic.event_id]
    assert "state" not in room


async def test_prev_batch_paginates_back_from_the_timeline(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    for n in range(6):
        await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": str(n)})
    room = joined(await sync(client, alice.access_token, sync_filter=LIMIT_3), room_id)
    assert bodies(room) == ["3", "4", "5"]
    earlier = await client.get(
        room_path(room_id, "messages"),
        token=alice.access_token,
        query={"dir": "b", "from": room["timeline"]["prev_batch"], "limit": "2"},
    )
    assert earlier.status == 200, earlier
    assert [e["content"]["body"] for e in earlier.json["chunk"]] == ["2", "1"]


async def test_bad_parameters(client: TestClient) -> None:
    alice = await register(client, "alice")
    for query in (
        {"since": "garbage"},
        {"since": "s1_x"},
        {"timeout": "-1"},
        {"timeout": "soon"},
        {"full_state": "yes"},
        {"set_presence": "busy"},
    ):
        response = await client.get("/sync", token=alice.access_token, query=query)
        assert response.status == 400 and response.json["errcode"] == "M_INVALID_PARAM", query
    for presence in ("online", "offline", "unavailable"):
        ok = await client.get("/sync", token=alice.access_token, query={"set_presence": presence})
        assert ok.status == 200 and "presence" not in ok.json
    unauthenticated = await client.get("/sync")
    assert unauthenticated.status == 401


async def test_sync_token_survives_a_restart(homeserver_factory: object) -> None:
    """A next_batch from before a restart still reads exactly what came after it."""
    factory = homeserver_factory
    hs = await factory.start()  # type: ignore[attr-defined]
    client = factory.client(hs)  # type: ignore[attr-defined]
    alice = await register(client, "alice")
    room_id = await make_room(hs, alice.user_id)
    before = await sync(client, alice.access_token)
    await factory.stop(hs)  # type: ignore[attr-defined]
    hs = await factory.start()  # type: ignore[attr-defined]
    client = factory.client(hs)  # type: ignore[attr-defined]
    await send(hs, room_id, alice.user_id, "m.room.message", {"body": "after"})
    after = await sync(client, alice.access_token, before["next_batch"])
    assert bodies(joined(after, room_id)) == ["after"]


async def test_room_summary_when_membership_changes(
    homeserver: HomeServer, client: TestClient
) -> None:
    """Member counts come on the initial sync and when members change; heroes name an unnamed
    room (never the syncing user); a plain message brings no summary."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    first = await sync(client, alice.access_token)
    assert joined(first, room_id)["summary"] == {
        "m.joined_member_count": 1,
        "m.invited_member_count": 0,
        "m.heroes": [],
    }
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "alone"})
    second = await sync(client, alice.access_token, first["next_batch"])
    assert "summary" not in joined(second, room_id)
    await join(homeserver, room_id, bob.user_id)
    third = await sync(client, alice.access_token, second["next_batch"])
    assert joined(third, room_id)["summary"] == {
        "m.joined_member_count": 2,
        "m.invited_member_count": 0,
        "m.heroes": [bob.user_id],
    }


async def test_state_the_timeline_filter_hides_is_still_sent(
    homeserver: HomeServer, client: TestClient
) -> None:
    """A state change among the returned events but left out by the timeline filter comes in
    `state`, so the client's room state stays right (initial and gappy incremental syncs)."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    only_messages = {"room": {"timeline": {"limit": 2, "types": ["m.room.message"]}}}
    first = await sync(client, alice.access_token, sync_filter=only_messages)
    for n in range(3):
        await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": str(n)})
    topic = await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "t"})
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "3"})
    for since in (first["next_batch"], None):
        body = await sync(client, alice.access_token, since, sync_filter=only_messages)
        room = joined(body, room_id)
        assert bodies(room) == ["2", "3"] and room["timeline"]["limited"] is True
        assert state_of(room)[("m.room.topic", "")]["event_id"] == topic.event_id
