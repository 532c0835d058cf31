"""GET /rooms/{roomId}/messages: paging through history, tokens, filters, visibility (both engines).

Rooms are made through the event persister (tests/room_helpers.py); users
register over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from homeserver.handlers import pagination as pagination_handler
from homeserver.server import HomeServer
from homeserver.types.stream_tokens import SyncToken
from tests.homeserver_harness import HomeServerFactory, TestClient
from tests.room_helpers import (
    User,
    invite,
    join,
    leave,
    make_room,
    register,
    room_path,
    send,
    set_state,
)


async def messages(client: TestClient, room_id: str, user: User | str, **query: Any) -> Any:
    """GET /messages with these query parameters (a `filter` dict is sent as JSON); asserts 200."""
    response = await messages_response(client, room_id, user, **query)
    assert response.status == 200, response
    return response.json


async def messages_response(
    client: TestClient, room_id: str, user: User | str, **query: Any
) -> Any:
    if isinstance(query.get("filter"), dict):
        query["filter"] = json.dumps(query["filter"])
    token = user if isinstance(user, str) else user.access_token
    return await client.get(
        room_path(room_id, "messages"),
        token=token,
        query={k: str(v) for k, v in query.items()},
    )


async def walk(client: TestClient, room_id: str, user: User, **query: Any) -> list[Any]:
    """Every page from `query`, following `end` until it is absent."""
    pages = [await messages(client, room_id, user, **query)]
    while "end" in pages[-1]:
        assert len(pages) < 200, "pagination does not end"
        pages.append(await messages(client, room_id, user, **{**query, "from": pages[-1]["end"]}))
    return pages


def ids(events: list[Any]) -> list[str]:
    return [e["event_id"] for e in events]


async def timeline(hs: HomeServer, room_id: str) -> list[str]:
    """The room's events, oldest first, as the store orders them."""
    events = await hs.room_storage.events.get_room_events_topological(
        room_id, None, 10_000, backwards=False
    )
    return [e.event_id for e in events]


async def text(hs: HomeServer, room_id: str, sender: str, body: str, **content: Any) -> str:
    sent = await send(
        hs, room_id, sender, "m.room.message", {"msgtype": "m.text", "body": body, **content}
    )
    return sent.event_id


# -- paging


async def test_backwards_then_forwards_through_the_whole_room(
    homeserver: HomeServer, client: TestClient
) -> None:
    """Pages chain exactly: every event once, in order, and no `end` on the last page."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    for i in range(55):
        await text(homeserver, room_id, alice.user_id, f"message {i}")
    everything = await timeline(homeserver, room_id)
    assert len(everything) == 59

    pages = await walk(client, room_id, alice, dir="b", limit=10)
    assert [len(p["chunk"]) for p in pages] == [10] * 5 + [9]
    assert [i for p in pages for i in ids(p["chunk"])] == everything[::-1]
    for previous, page in zip(pages, pages[1:], strict=False):
        assert page["start"] == previous["end"]
    assert "end" not in pages[-1]
    first = pages[0]["chunk"][0]
    assert first["content"]["body"] == "message 54"
    assert first["room_id"] == room_id and first["sender"] == alice.user_id

    pages = await walk(client, room_id, alice, dir="f", limit=20)
    assert [i for p in pages for i in ids(p["chunk"])] == everything
    # Forwards, the last page with events still gives an `end` for what comes later.
    assert [len(p["chunk"]) for p in pages] == [20, 20, 19, 0]
    later = await text(homeserver, room_id, alice.user_id, "later")
    page = await messages(client, room_id, alice, dir="f", **{"from": pages[-2]["end"]})
    assert ids(page["chunk"]) == [later] and "end" in page

    # Turning round at a page boundary: the events on the other side of it.
    page = await messages(client, room_id, alice, dir="b", limit=5)
    back = await messages(client, room_id, alice, dir="f", limit=3, **{"from": page["end"]})
    assert ids(back["chunk"]) == [*everything, later][-5:-2]


async def test_sync_stream_tokens_and_to(homeserver: HomeServer, client: TestClient) -> None:
    """`from` and `to` take /sync's stream tokens ("s{events}" or a whole sync token)."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    other_room = await make_room(homeserver, alice.user_id)
    sent = []
    for i in range(12):
        sent.append(await text(homeserver, room_id, alice.user_id, f"m{i}"))
        await text(homeserver, other_room, alice.user_id, f"elsewhere {i}")
    stored = await homeserver.room_storage.events.get_stored_events(sent)
    position = stored[sent[6]].stream_ordering

    # A sync prev_batch: the stream position just before the timeline's first event.
    prev_batch = str(SyncToken(position - 1, 7))
    page = await messages(client, room_id, alice, dir="b", limit=3, **{"from": prev_batch})
    assert ids(page["chunk"]) == sent[5:2:-1]
    assert page["start"] == prev_batch
    page = await messages(client, room_id, alice, dir="f", limit=3, **{"from": f"s{position}"})
    assert ids(page["chunk"]) == sent[7:10]

    # `to` stops the page: backwards before the event at `to`, forwards at it.
    page = await messages(
        client, room_id, alice, dir="b", limit=50, to=f"s{stored[sent[8]].stream_ordering}"
    )
    assert ids(page["chunk"]) == sent[:8:-1]
    assert "end" not in page
    pages = await walk(
        client, room_id, alice, dir="f", limit=50, to=str(SyncToken(position)), **{"from": "s0"}
    )
    assert ids(pages[0]["chunk"])[-1] == sent[6]
    assert len(pages) == 2 and pages[1]["chunk"] == []


async def test_limit(
    homeserver: HomeServer, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    for i in range(5):
        await text(homeserver, room_id, alice.user_id, f"m{i}")

    # Ten by default.
    page = await messages(client, room_id, alice, dir="b")
    assert len(page["chunk"]) == 9 and "end" not in page
    # Nothing asked for: no events, and an `end` since there are some.
    page = await messages(client, room_id, alice, dir="b", limit=0)
    assert page["chunk"] == [] and "end" in page
    # More than the cap: the cap.
    monkeypatch.setattr(pagination_handler, "MAX_LIMIT", 3)
    page = await messages(client, room_id, alice, dir="b", limit=5000)
    assert len(page["chunk"]) == 3 and "end" in page


@pytest.mark.parametrize(
    ("query", "errcode"),
    [
        ({}, "M_MISSING_PARAM"),
        ({"dir": "up"}, "M_INVALID_PARAM"),
        ({"dir": "b", "limit": "-1"}, "M_INVALID_PARAM"),
        ({"dir": "b", "limit": "ten"}, "M_INVALID_PARAM"),
        ({"dir": "b", "from": "x12"}, "M_INVALID_PARAM"),
        ({"dir": "b", "from": "t1-"}, "M_INVALID_PARAM"),
        ({"dir": "b", "to": "sfoo"}, "M_INVALID_PARAM"),
        ({"dir": "b", "from": "t9999999999999999999-1"}, "M_INVALID_PARAM"),
        ({"dir": "f", "to": "s9999999999999999999"}, "M_INVALID_PARAM"),
        ({"dir": "b", "filter": "{not json"}, "M_INVALID_PARAM"),
        ({"dir": "b", "filter": '{"types": "m.room.message"}'}, "M_INVALID_PARAM"),
        ({"dir": "b", "filter": '{"senders": ["not a user"]}'}, "M_INVALID_PARAM"),
    ],
)
async def test_bad_parameters(
    homeserver: HomeServer, client: TestClient, query: dict[str, str], errcode: str
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    response = await messages_response(client, room_id, alice, **query)
    assert response.status == 400, response
    assert response.json["errcode"] == errcode


# -- filters


async def test_filters(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    files = []
    for i in range(4):
        await text(homeserver, room_id, alice.user_id, f"alice {i}")
        await text(homeserver, room_id, bob.user_id, f"bob {i}")
        files.append(await text(homeserver, room_id, bob.user_id, f"f{i}", url=f"mxc://test/{i}"))
        await send(homeserver, room_id, alice.user_id, "org.example.ping", {"n": i})

    async def bodies(event_filter: dict[str, Any]) -> list[str]:
        pages = await walk(client, room_id, alice, dir="b", limit=3, filter=event_filter)
        return [e["content"].get("body", e["type"]) for p in pages for e in p["chunk"]]

    assert await bodies(
        {"senders": [bob.user_id], "contains_url": False, "types": ["m.room.message"]}
    ) == [
        "bob 3", "bob 2", "bob 1", "bob 0",
    ]  # fmt: skip
    assert await bodies({"types": ["org.*"]}) == ["org.example.ping"] * 4
    assert await bodies({"not_types": ["m.*"]}) == ["org.example.ping"] * 4
    assert await bodies({"contains_url": True}) == ["f3", "f2", "f1", "f0"]
    assert await bodies({"not_senders": [alice.user_id], "types": ["m.room.message"]}) == [
        "f3", "bob 3", "f2", "bob 2", "f1", "bob 1", "f0", "bob 0",
    ]  # fmt: skip
    assert await bodies({"rooms": ["!elsewhere:test"]}) == []
    # A filter twice percent-encoded is understood, as Synapse does.
    twice = json.dumps({"types": ["org.example.ping"]}).replace('"', "%22")
    page = await messages(client, room_id, alice, dir="b", filter=twice)
    assert [e["type"] for e in page["chunk"]] == ["org.example.ping"] * 4


async def test_lazy_loaded_members(homeserver: HomeServer, client: TestClient) -> None:
    """With lazy_load_members, `state` has the member events of the chunk's senders only."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id, displayname="Bob")
    await join(homeserver, room_id, carol.user_id)
    for i in range(3):
        await text(homeserver, room_id, alice.user_id, f"alice {i}")
    await join(homeserver, room_id, bob.user_id, displayname="Robert")
    await text(homeserver, room_id, bob.user_id, "bob")

    lazy = {"lazy_load_members": True, "types": ["m.room.message"]}
    page = await messages(client, room_id, carol, dir="b", limit=2, filter=lazy)
    assert [e["sender"] for e in page["chunk"]] == [bob.user_id, alice.user_id]
    members = {e["state_key"]: e for e in page["state"]}
    assert set(members) == {alice.user_id, bob.user_id}
    assert all(e["type"] == "m.room.member" for e in page["state"])
    assert members[bob.user_id]["content"]["displayname"] == "Robert"
    # Each page names its own senders, whether or not an earlier page did.
    page = await messages(
        client, room_id, carol, dir="b", limit=2, filter=lazy, **{"from": page["end"]}
    )
    assert {e["state_key"] for e in page["state"]} == {alice.user_id}
    page = await messages(
        client, room_id, carol, dir="b", filter={**lazy, "include_redundant_members": True}
    )
    assert {e["state_key"] for e in page["state"]} == {alice.user_id, bob.user_id}
    # Not asked for: no state.
    page = await messages(client, room_id, carol, dir="b", filter={"types": ["m.room.message"]})
    assert "state" not in page


# -- who sees what


@pytest.mark.parametrize(
    ("visibility", "first_seen"),
    [
        ("shared", "created"),
        ("invited", "invited"),
        ("joined", "joined"),
        ("world_readable", "created"),
    ],
)
async def test_history_visibility(
    homeserver: HomeServer, client: TestClient, visibility: str, first_seen: str
) -> None:
    """A late joiner sees history from where the room's visibility lets them (and what came
    before the visibility was set, which was `shared`)."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, history_visibility=visibility)
    await text(homeserver, room_id, alice.user_id, "before the invite")
    invited = (await invite(homeserver, room_id, alice.user_id, bob.user_id)).event_id
    await text(homeserver, room_id, alice.user_id, "while invited")
    joined = (await join(homeserver, room_id, bob.user_id)).event_id
    await text(homeserver, room_id, alice.user_id, "after the join")
    everything = await timeline(homeserver, room_id)
    state = await homeserver.room_storage.state.get_current_state_ids(room_id)
    setting = everything.index(state[("m.room.history_visibility", "")])
    start = {
        "created": 0,
        "invited": everything.index(invited),
        "joined": everything.index(joined),
    }[first_seen]

    pages = await walk(client, room_id, bob, dir="b", limit=4)
    seen = [i for p in pages for i in ids(p["chunk"])]
    expected = everything if start == 0 else everything[: setting + 1] + everything[start:]
    assert seen == expected[::-1]


async def test_readers_outside_the_room(homeserver_factory: HomeServerFactory) -> None:
    """Non-members may read a world_readable room, guests too; otherwise 403."""
    homeserver = await homeserver_factory.start(allow_guest_access=True)
    client = homeserver_factory.client(homeserver)
    alice = await register(client, "alice")
    stranger = await register(client, "stranger")
    guest = await client.register_guest()
    public = await make_room(homeserver, alice.user_id, history_visibility="world_readable")
    private = await make_room(homeserver, alice.user_id, history_visibility="shared")
    await text(homeserver, public, alice.user_id, "hello world")
    await text(homeserver, private, alice.user_id, "hello friends")

    for token in (stranger.access_token, guest["access_token"]):
        page = await messages(client, public, token, dir="b", limit=1)
        assert page["chunk"][0]["content"]["body"] == "hello world"
        response = await messages_response(client, private, token, dir="b")
        assert response.status == 403 and response.json["errcode"] == "M_FORBIDDEN"
    response = await messages_response(client, "!nowhere:test", stranger, dir="b")
    assert response.status == 403 and response.json["errcode"] == "M_FORBIDDEN"
    response = await client.get(room_path(public, "messages"), query={"dir": "b"})
    assert response.status == 401 and response.json["errcode"] == "M_MISSING_TOKEN"


async def test_user_who_left_reads_up_to_their_leave(
    homeserver: HomeServer, client: TestClient
) -> None:
    """After leaving, history ends at the leave: backwards from anywhere later starts there,
    forwards stops there, with no `end` leading past it."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, history_visibility="shared")
    await join(homeserver, room_id, bob.user_id)
    before = [await text(homeserver, room_id, alice.user_id, f"before {i}") for i in range(3)]
    left = (await leave(homeserver, room_id, bob.user_id)).event_id
    for i in range(4):
        await text(homeserver, room_id, alice.user_id, f"after {i}")
    everything = await timeline(homeserver, room_id)
    up_to_leave = everything[: everything.index(left) + 1]

    pages = await walk(client, room_id, bob, dir="b", limit=4)
    assert [i for p in pages for i in ids(p["chunk"])] == up_to_leave[::-1]
    # From a token past the leave (Alice's newest), still from the leave.
    newest = (await messages(client, room_id, alice, dir="b", limit=1))["end"]
    page = await messages(client, room_id, bob, dir="b", limit=2, **{"from": newest})
    assert ids(page["chunk"]) == [left, before[-1]]

    pages = await walk(client, room_id, bob, dir="f", limit=3)
    assert [i for p in pages for i in ids(p["chunk"])] == up_to_leave
    page = await messages(client, room_id, bob, dir="f", **{"from": newest})
    assert page["chunk"] == [] and "end" not in page

    # Back in the room, they read on.
    await join(homeserver, room_id, bob.user_id)
    page = await messages(client, room_id, bob, dir="b", limit=100)
    assert len(page["chunk"]) == len(everything) + 1


async def test_user_who_left_a_world_readable_room_reads_on(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, history_visibility="world_readable")
    await join(homeserver, room_id, bob.user_id)
    await leave(homeserver, room_id, bob.user_id)
    after = await text(homeserver, room_id, alice.user_id, "after")
    page = await messages(client, room_id, bob, dir="b", limit=1)
    assert ids(page["chunk"]) == [after]


async def test_events_are_served_as_clients_see_them(
    homeserver: HomeServer, client: TestClient
) -> None:
    """Chunk events are serialized for the requester: redactions applied, unsigned filled in."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    secret = await text(homeserver, room_id, alice.user_id, "secret")
    await send(homeserver, room_id, alice.user_id, "m.room.redaction", {"redacts": secret})
    topic = await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "a"})
    await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "b"})
    page = await messages(client, room_id, alice, dir="b", limit=4)
    by_id = {e["event_id"]: e for e in page["chunk"]}
    assert by_id[secret]["content"] == {}
    assert by_id[secret]["unsigned"]["redacted_because"]["type"] == "m.room.redaction"
    newest_topic = page["chunk"][0]
    assert newest_topic["unsigned"]["prev_content"] == {"topic": "a"}
    assert newest_topic["unsigned"]["replaces_state"] == topic.event_id
    assert all(e["unsigned"]["age"] >= 0 for e in page["chunk"])
