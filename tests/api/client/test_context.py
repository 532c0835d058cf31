"""GET /rooms/{roomId}/context/{eventId}: the events around one, their tokens and the state (both engines)."""

from __future__ import annotations

import json
from typing import Any

from homeserver.server import HomeServer
from tests.homeserver_harness import TestClient
from tests.room_helpers import User, join, make_room, register, room_path, send, set_state


async def context_response(
    client: TestClient, room_id: str, event_id: str, user: User, **query: Any
) -> Any:
    if isinstance(query.get("filter"), dict):
        query["filter"] = json.dumps(query["filter"])
    return await client.get(
        room_path(room_id, "context", event_id),
        token=user.access_token,
        query={k: str(v) for k, v in query.items()},
    )


async def context(client: TestClient, room_id: str, event_id: str, user: User, **query: Any) -> Any:
    response = await context_response(client, room_id, event_id, user, **query)
    assert response.status == 200, response
    return response.json


async def text(hs: HomeServer, room_id: str, sender: str, body: str) -> str:
    sent = await send(hs, room_id, sender, "m.room.message", {"msgtype": "m.text", "body": body})
    return sent.event_id


def ids(events: list[Any]) -> list[str]:
    return [e["event_id"] for e in events]


async def test_events_around_and_tokens(homeserver: HomeServer, client: TestClient) -> None:
    """`limit` is split, the smaller half before; start/end continue with /messages."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    sent = [await text(homeserver, room_id, alice.user_id, f"m{i}") for i in range(10)]

    result = await context(client, room_id, sent[5], alice, limit=5)
    assert result["event"]["event_id"] == sent[5]
    assert result["event"]["content"]["body"] == "m5"
    assert ids(result["events_before"]) == [sent[4], sent[3]]
    assert ids(result["events_after"]) == [sent[6], sent[7], sent[8]]

    before = await client.get(
        room_path(room_id, "messages"),
        token=alice.access_token,
        query={"dir": "b", "limit": "2", "from": result["start"]},
    )
    assert ids(before.json["chunk"]) == [sent[2], sent[1]]
    after = await client.get(
        room_path(room_id, "messages"),
        token=alice.access_token,
        query={"dir": "f", "from": result["end"]},
    )
    assert ids(after.json["chunk"]) == [sent[9]]

    # Ten by default; at the newest event there is nothing after.
    result = await context(client, room_id, sent[9], alice)
    assert ids(result["events_before"]) == sent[8:3:-1]
    assert result["events_after"] == []
    # Nothing asked for: the event alone.
    result = await context(client, room_id, sent[0], alice, limit=0)
    assert result["events_before"] == [] and result["events_after"] == []
    assert result["event"]["event_id"] == sent[0]


async def test_state_is_after_the_last_event_returned(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "first"})
    target = await text(homeserver, room_id, alice.user_id, "target")
    await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "second"})
    await text(homeserver, room_id, alice.user_id, "later")
    await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "third"})

    def topic(result: Any) -> str:
        (event,) = [e for e in result["state"] if e["type"] == "m.room.topic"]
        return str(event["content"]["topic"])

    # limit 4: two after, the second topic and "later".
    result = await context(client, room_id, target, alice, limit=4)
    assert topic(result) == "second"
    assert {(e["type"], e["state_key"]) for e in result["state"]} == {
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.topic", ""),
    }
    # limit 1 goes after; with none, the state after the event itself.
    assert topic(await context(client, room_id, target, alice, limit=1)) == "second"
    assert topic(await context(client, room_id, target, alice, limit=0)) == "first"


async def test_filter_and_lazy_loaded_members(homeserver: HomeServer, client: TestClient) -> None:
    """The filter applies to the events around and to the state, not to the event itself;
    lazy-loading keeps only the members who sent the events returned."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    await join(homeserver, room_id, carol.user_id)
    await text(homeserver, room_id, bob.user_id, "bob")
    name = (
        await set_state(homeserver, room_id, alice.user_id, "m.room.name", {"name": "Room"})
    ).event_id
    await text(homeserver, room_id, alice.user_id, "alice")

    result = await context(
        client,
        room_id,
        name,
        carol,
        filter={"types": ["m.room.message"], "lazy_load_members": True},
    )
    assert result["event"]["event_id"] == name
    assert [e["content"]["body"] for e in result["events_before"]] == ["bob"]
    assert [e["content"]["body"] for e in result["events_after"]] == ["alice"]
    assert result["state"] == []

    result = await context(client, room_id, name, carol, filter={"lazy_load_members": True})
    members = {e["state_key"] for e in result["state"] if e["type"] == "m.room.member"}
    senders = {
        e["sender"] for e in [*result["events_before"], result["event"], *result["events_after"]]
    }
    assert members == senders
    assert carol.user_id in senders  # her join is among the events before
    types = {e["type"] for e in result["state"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name"} <= types

    result = await context(
        client, room_id, name, carol, limit=2, filter={"lazy_load_members": True}
    )
    members = {e["state_key"] for e in result["state"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}


async def test_unknown_and_invisible_events(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, history_visibility="joined")
    other_room = await make_room(homeserver, alice.user_id)
    hidden = await text(homeserver, room_id, alice.user_id, "before bob")
    await join(homeserver, room_id, bob.user_id)
    visible = await text(homeserver, room_id, alice.user_id, "after bob")
    elsewhere = await text(homeserver, other_room, alice.user_id, "elsewhere")

    for event_id in ("$unknown", hidden, elsewhere):
        response = await context_response(client, room_id, event_id, bob)
        assert response.status == 404, response
        assert response.json["errcode"] == "M_NOT_FOUND"
    # Around a visible event, the invisible ones are left out.
    result = await context(client, room_id, visible, bob)
    assert hidden not in ids(result["events_before"])
    assert ids(result["events_before"])[0] == (await join_event(homeserver, room_id, bob))

    # Not in the room at all.
    carol = await register(client, "carol")
    response = await context_response(client, room_id, visible, carol)
    assert response.status == 403 and response.json["errcode"] == "M_FORBIDDEN"
    response = await context_response(client, room_id, visible, bob, limit=-1)
    assert response.status == 400 and response.json["errcode"] == "M_INVALID_PARAM"


async def join_event(hs: HomeServer, room_id: str, user: User) -> str:
    state = await hs.room_storage.state.get_current_state_ids(room_id)
    return state[("m.room.member", user.user_id)]
