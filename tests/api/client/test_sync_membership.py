"""GET /sync: invited, left, banned, knocked and forgotten rooms (both engines)."""

from __future__ import annotations

from homeserver.handlers.sync import SyncRequest
from homeserver.server import HomeServer
from homeserver.types.filters import DEFAULT_FILTER
from homeserver.types.stream_tokens import SyncToken
from tests.api.client.sync_helpers import bodies, sync, timeline_ids
from tests.homeserver_harness import TestClient
from tests.room_helpers import (
    invite,
    join,
    leave,
    make_room,
    register,
    room_path,
    send,
    set_membership,
    set_state,
)

INCLUDE_LEAVE = {"room": {"include_leave": True}}
STRIPPED_KEYS = {"type", "state_key", "sender", "content"}


async def test_invite_with_stripped_state(homeserver: HomeServer, client: TestClient) -> None:
    """An invite comes with stripped state (create, join rules, name, topic, ..., the invite
    itself last), each event only type/state_key/sender/content; nothing else of the room."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, join_rule="invite")
    await set_state(homeserver, room_id, alice.user_id, "m.room.name", {"name": "Secret"})
    await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "shh"})
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "private"})
    first = await sync(client, bob.access_token)
    await invite(homeserver, room_id, alice.user_id, bob.user_id)
    body = await sync(client, bob.access_token, first["next_batch"])
    assert set(body["rooms"]) == {"invite"}
    events = body["rooms"]["invite"][room_id]["invite_state"]["events"]
    for event in events:
        assert set(event) == STRIPPED_KEYS, event
    by_type = {e["type"]: e for e in events}
    assert by_type["m.room.create"]["content"]["room_version"]
    assert by_type["m.room.name"]["content"] == {"name": "Secret"}
    assert by_type["m.room.topic"]["content"] == {"topic": "shh"}
    assert by_type["m.room.join_rules"]["content"] == {"join_rule": "invite"}
    assert "m.room.power_levels" not in by_type and "m.room.message" not in by_type
    assert events[-1] == {
        "type": "m.room.member",
        "state_key": bob.user_id,
        "sender": alice.user_id,
        "content": {"membership": "invite"},
    }
    # Initial syncs show pending invites too; once seen, an incremental sync does not repeat it.
    assert room_id in (await sync(client, bob.access_token))["rooms"]["invite"]
    assert "rooms" not in await sync(client, bob.access_token, body["next_batch"])


async def test_joining_moves_the_room_from_invite_to_join(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, join_rule="invite")
    await invite(homeserver, room_id, alice.user_id, bob.user_id)
    first = await sync(client, bob.access_token)
    await join(homeserver, room_id, bob.user_id)
    body = await sync(client, bob.access_token, first["next_batch"])
    assert set(body["rooms"]) == {"join"}
    assert ("m.room.create", "") in {
        (e["type"], e["state_key"]) for e in body["rooms"]["join"][room_id]["state"]["events"]
    }


async def test_left_rooms_need_include_leave_on_initial_sync(
    homeserver: HomeServer, client: TestClient
) -> None:
    """A room the user left: only with include_leave, its timeline ending at the leave."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "while there"})
    bob_leave = await leave(homeserver, room_id, bob.user_id)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "after"})
    without = await sync(client, bob.access_token)
    assert "rooms" not in without
    body = await sync(client, bob.access_token, sync_filter=INCLUDE_LEAVE)
    room = body["rooms"]["leave"][room_id]
    assert timeline_ids(room)[-1] == bob_leave.event_id
    assert bodies(room) == ["while there"]
    assert room["account_data"] == {"events": []}


async def test_leaving_shows_in_incremental_sync(homeserver: HomeServer, client: TestClient) -> None:
    """Leaving (or being kicked) moves the room to `leave` in the next sync, whatever include_leave,
    with what happened up to the leave and nothing after."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    first = await sync(client, bob.access_token)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "bye"})
    kick = await set_membership(homeserver, room_id, alice.user_id, bob.user_id, "leave")
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "secret"})
    body = await sync(client, bob.access_token, first["next_batch"])
    assert set(body["rooms"]) == {"leave"}
    room = body["rooms"]["leave"][room_id]
    assert bodies(room) == ["bye"] and timeline_ids(room)[-1] == kick.event_id
    # Later messages in the room do not reach bob any more.
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "more"})
    assert "rooms" not in await sync(client, bob.access_token, body["next_batch"])


async def test_ban_is_reported_as_leave(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    first = await sync(client, bob.access_token)
    ban = await set_membership(homeserver, room_id, alice.user_id, bob.user_id, "ban")
    body = await sync(client, bob.access_token, first["next_batch"])
    assert timeline_ids(body["rooms"]["leave"][room_id])[-1] == ban.event_id


async def test_rejected_invite_shows_only_the_leave(
    homeserver: HomeServer, client: TestClient
) -> None:
    """A room never joined: the leave event alone, and no state of the room."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, join_rule="invite")
    await set_state(homeserver, room_id, alice.user_id, "m.room.name", {"name": "Secret"})
    await invite(homeserver, room_id, alice.user_id, bob.user_id)
    first = await sync(client, bob.access_token)
    assert room_id in first["rooms"]["invite"]
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "private"})
    rejection = await leave(homeserver, room_id, bob.user_id)
    body = await sync(client, bob.access_token, first["next_batch"])
    room = body["rooms"]["leave"][room_id]
    assert timeline_ids(room) == [rejection.event_id]
    assert room["state"]["events"] == []
    initial = await sync(client, bob.access_token, sync_filter=INCLUDE_LEAVE)
    assert timeline_ids(initial["rooms"]["leave"][room_id]) == [rejection.event_id]


async def test_forgotten_rooms_are_left_out(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    first = await sync(client, bob.access_token)
    await leave(homeserver, room_id, bob.user_id)
    forget = await client.post(room_path(room_id, "forget"), {}, token=bob.access_token)
    assert forget.status == 200, forget
    assert "rooms" not in await sync(client, bob.access_token, sync_filter=INCLUDE_LEAVE)
    assert "rooms" not in await sync(client, bob.access_token, first["next_batch"])


async def test_knock_with_stripped_state(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, join_rule="knock")
    await set_state(homeserver, room_id, alice.user_id, "m.room.name", {"name": "Knock knock"})
    first = await sync(client, bob.access_token)
    await set_membership(homeserver, room_id, bob.user_id, bob.user_id, "knock")
    body = await sync(client, bob.access_token, first["next_batch"])
    events = body["rooms"]["knock"][room_id]["knock_state"]["events"]
    name = {
        "type": "m.room.name",
        "state_key": "",
        "sender": alice.user_id,
        "content": {"name": "Knock knock"},
    }
    assert name in events
    assert events[-1]["type"] == "m.room.member"
    assert events[-1]["content"]["membership"] == "knock"


async def test_rejoining_gives_full_state_again(homeserver: HomeServer, client: TestClient) -> None:
    """Leaving and joining again between two syncs: the room is in `join` with its full state."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    first = await sync(client, bob.access_token)
    await leave(homeserver, room_id, bob.user_id)
    await set_state(homeserver, room_id, alice.user_id, "m.room.topic", {"topic": "missed"})
    await join(homeserver, room_id, bob.user_id)
    body = await sync(client, bob.access_token, first["next_batch"])
    room = body["rooms"]["join"][room_id]
    keys = {(e["type"], e["state_key"]) for e in room["state"]["events"]}
    assert ("m.room.create", "") in keys


async def test_membership_after_the_token_waits_for_the_next_sync(
    homeserver: HomeServer, client: TestClient
) -> None:
    """A join committed after the sync took its `next_batch` is not half-reported by that sync
    (it goes by the membership at the token); the next sync reports the room as newly joined."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    first = await sync(client, bob.access_token)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "before"})
    bob_join = await join(homeserver, room_id, bob.user_id)

    notifier = homeserver.notifier
    real_token = notifier.current_token
    at_token = SyncToken(bob_join.stream_ordering - 1, real_token().account_data)
    notifier.current_token = lambda: at_token  # type: ignore[method-assign]
    try:
        requester = await homeserver.auth.authenticate(bob.access_token)
        early = await homeserver.sync.sync(
            SyncRequest(requester, DEFAULT_FILTER, SyncToken.parse(first["next_batch"]))
        )
    finally:
        notifier.current_token = real_token  # type: ignore[method-assign]
    assert early == {"next_batch": str(at_token)}

    later = await sync(client, bob.access_token, early["next_batch"])
    room = later["rooms"]["join"][room_id]
    assert timeline_ids(room) == [bob_join.event_id]
    assert ("m.room.create", "") in {(e["type"], e["state_key"]) for e in room["state"]["events"]}
