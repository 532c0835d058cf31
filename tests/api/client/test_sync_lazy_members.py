"""GET /sync with lazy-loaded members (spec "Lazy-loading room members"), both engines."""

from __future__ import annotations

from homeserver.server import HomeServer
from tests.api.client.sync_helpers import bodies, joined, members_in, state_of, sync
from tests.homeserver_harness import TestClient
from tests.room_helpers import User, join, make_room, register, send, set_state

LAZY = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
LAZY_REDUNDANT = {
    "room": {
        "state": {"lazy_load_members": True, "include_redundant_members": True},
        "timeline": {"limit": 2},
    }
}


async def _room_with_members(
    homeserver: HomeServer, client: TestClient
) -> tuple[str, User, User, User, User]:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    dave = await register(client, "dave")
    room_id = await make_room(homeserver, alice.user_id)
    for user in (bob, carol, dave):
        await join(homeserver, room_id, user.user_id)
    await set_state(homeserver, room_id, alice.user_id, "m.room.name", {"name": "Lazy"})
    return room_id, alice, bob, carol, dave


async def test_initial_sync_sends_only_senders_and_own_member(
    homeserver: HomeServer, client: TestClient
) -> None:
    """Only the members of the timeline's senders, plus the syncing user's own; other state whole."""
    room_id, alice, bob, carol, dave = await _room_with_members(homeserver, client)
    await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b1"})
    await send(homeserver, room_id, carol.user_id, "m.room.message", {"body": "c1"})
    body = await sync(client, dave.access_token, sync_filter=LAZY)
    room = joined(body, room_id)
    assert bodies(room) == ["b1", "c1"]
    assert members_in(room) == {bob.user_id, carol.user_id, dave.user_id}
    assert ("m.room.name", "") in state_of(room)
    assert ("m.room.power_levels", "") in state_of(room)
    # Without lazy loading, everyone.
    not_lazy = {"room": {"timeline": {"limit": 2}}}
    full = joined(await sync(client, dave.access_token, sync_filter=not_lazy), room_id)
    assert members_in(full) == {alice.user_id, bob.user_id, carol.user_id, dave.user_id}


async def test_incremental_sync_skips_members_already_sent(
    homeserver: HomeServer, client: TestClient
) -> None:
    """A sender whose member event this device already has is not sent again, a new one is;
    include_redundant_members sends them all."""
    room_id, alice, bob, carol, dave = await _room_with_members(homeserver, client)
    await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b0"})
    await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b1"})
    first = await sync(client, dave.access_token, sync_filter=LAZY)
    assert members_in(joined(first, room_id)) == {bob.user_id, dave.user_id}

    await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b2"})
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "a1"})
    second = await sync(client, dave.access_token, first["next_batch"], sync_filter=LAZY)
    room = joined(second, room_id)
    assert bodies(room) == ["b2", "a1"] and room["timeline"]["limited"] is False
    assert members_in(room) == {alice.user_id}

    await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b3"})
    third = await sync(
        client, dave.access_token, second["next_batch"], sync_filter=LAZY_REDUNDANT
    )
    assert members_in(joined(third, room_id)) == {bob.user_id}


async def test_each_device_has_its_own_record(homeserver: HomeServer, client: TestClient) -> None:
    """What one device was sent says nothing about another device of the same user."""
    room_id, alice, bob, _, dave = await _room_with_members(homeserver, client)
    other_device = (await client.login("dave"))["access_token"]
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "a0"})
    other_first = await sync(client, other_device, sync_filter=LAZY)
    assert bob.user_id not in members_in(joined(other_first, room_id))
    await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b0"})
    await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b1"})
    first = await sync(client, dave.access_token, sync_filter=LAZY)
    assert bob.user_id in members_in(joined(first, room_id))
    await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b2"})
    later = await sync(client, dave.access_token, first["next_batch"], sync_filter=LAZY)
    assert members_in(joined(later, room_id)) == set()
    other_later = await sync(client, other_device, other_first["next_batch"], sync_filter=LAZY)
    other_room = joined(other_later, room_id)
    assert other_room["timeline"]["limited"] is True
    assert bob.user_id in members_in(other_room)


async def test_gappy_sync_sends_member_changes_in_the_gap(
    homeserver: HomeServer, client: TestClient
) -> None:
    """"When a sync is limited, the server MUST return membership events for events in the gap"
    even for users who sent nothing in the timeline, and even if redundant."""
    room_id, alice, bob, carol, dave = await _room_with_members(homeserver, client)
    first = await sync(client, dave.access_token, sync_filter=LAZY)
    eve = await register(client, "eve")
    eve_join = await join(homeserver, room_id, eve.user_id)
    carol_renamed = await join(homeserver, room_id, carol.user_id, displayname="Carol")
    for n in range(4):
        await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": str(n)})
    second = await sync(client, dave.access_token, first["next_batch"], sync_filter=LAZY)
    room = joined(second, room_id)
    assert room["timeline"]["limited"] is True and bodies(room) == ["2", "3"]
    state = state_of(room)
    assert state[("m.room.member", eve.user_id)]["event_id"] == eve_join.event_id
    assert state[("m.room.member", carol.user_id)]["event_id"] == carol_renamed.event_id
    assert members_in(room) == {eve.user_id, carol.user_id, bob.user_id}
    assert alice.user_id not in members_in(room)


async def test_summary_with_heroes(homeserver: HomeServer, client: TestClient) -> None:
    """With lazy loading, a room summary: member counts, and heroes (whose members are sent)
    when the room has no name."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    room_id = await make_room(homeserver, alice.user_id)
    await join(homeserver, room_id, bob.user_id)
    await set_state(
        homeserver, room_id, alice.user_id, "m.room.member", {"membership": "invite"}, carol.user_id
    )
    for n in range(3):
        await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": str(n)})
    room = joined(await sync(client, bob.access_token, sync_filter=LAZY), room_id)
    summary = room["summary"]
    assert summary["m.joined_member_count"] == 2 and summary["m.invited_member_count"] == 1
    assert summary["m.heroes"] == [alice.user_id, carol.user_id]
    assert members_in(room) == {alice.user_id, bob.user_id, carol.user_id}

    await set_state(homeserver, room_id, alice.user_id, "m.room.name", {"name": "Named"})
    named = await sync(client, bob.access_token, sync_filter=LAZY)
    summary = joined(named, room_id)["summary"]
    assert "m.heroes" not in summary and summary["m.joined_member_count"] == 2
