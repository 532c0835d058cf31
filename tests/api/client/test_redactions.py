"""PUT /rooms/{roomId}/redact/{eventId}/{txnId}, and redacted events as clients read them (both engines).

Which redactions apply when served (the v3+ domain rule for remote
redactions) is tested in tests/handlers/test_event_serializer.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.server import HomeServer
from homeserver.types.room_versions import V1, V11, RoomVersion
from tests.homeserver_harness import HomeServerFactory, TestClient
from tests.room_helpers import User, join, make_room, register, room_path, send


async def redact(
    client: TestClient, room_id: str, event_id: str, user: User, txn_id: str, body: Any = None
) -> Any:
    return await client.put(
        room_path(room_id, "redact", event_id, txn_id),
        {} if body is None else body,
        token=user.access_token,
    )


@pytest.mark.parametrize("version", [V1, V11], ids=lambda v: f"v{v.identifier}")
async def test_redact_own_message(
    homeserver: HomeServer, client: TestClient, version: RoomVersion
) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, version=version)
    await join(homeserver, room_id, bob.user_id)
    message = await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "oops"})
    response = await redact(client, room_id, message.event_id, bob, "r1", {"reason": "typo"})
    assert response.status == 200, response
    redaction_id = response.json["event_id"]
    # Idempotent per transaction.
    assert (await redact(client, room_id, message.event_id, bob, "r1")).json[
        "event_id"
    ] == redaction_id
    for reader in (alice, bob):
        event = (
            await client.get(
                room_path(room_id, "event", message.event_id), token=reader.access_token
            )
        ).json
        assert event["content"] == {}
        because = event["unsigned"]["redacted_because"]
        assert (because["event_id"], because["sender"]) == (redaction_id, bob.user_id)
        assert because["content"]["reason"] == "typo"
    redaction = (
        await client.get(room_path(room_id, "event", redaction_id), token=alice.access_token)
    ).json
    if version.event_format.redacts_in_content:
        assert redaction["content"]["redacts"] == message.event_id
    else:
        assert redaction["redacts"] == message.event_id


async def test_who_may_redact(homeserver: HomeServer, client: TestClient) -> None:
    """Others' events need the redact level; one's own need only the m.room.redaction level."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    moderator = await register(client, "mod")
    room_id = await make_room(homeserver, alice.user_id, users={moderator.user_id: 50})
    await join(homeserver, room_id, bob.user_id)
    await join(homeserver, room_id, moderator.user_id)
    alice_message = await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "a"})
    bob_message = await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b"})
    refused = await redact(client, room_id, alice_message.event_id, bob, "1")
    assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN")
    assert (await redact(client, room_id, bob_message.event_id, moderator, "1")).status == 200
    assert (await redact(client, room_id, alice_message.event_id, moderator, "2")).status == 200
    # An unknown event: 404 without the redact level; allowed with it (as Synapse).
    missing = await redact(client, room_id, "$unknown", bob, "2")
    assert (missing.status, missing.json["errcode"]) == (404, "M_NOT_FOUND")
    assert (await redact(client, room_id, "$unknown", moderator, "3")).status == 200
    # Non-members cannot redact at all.
    carol = await register(client, "carol")
    stranger = await redact(client, room_id, bob_message.event_id, carol, "1")
    assert (stranger.status, stranger.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_redaction_level_for_own_events(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(
        homeserver, alice.user_id, power_levels={"events": {"m.room.redaction": 10}}
    )
    await join(homeserver, room_id, bob.user_id)
    message = await send(homeserver, room_id, bob.user_id, "m.room.message", {"body": "b"})
    refused = await redact(client, room_id, message.event_id, bob, "1")
    assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_redactions_that_are_never_allowed(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    other_room = await make_room(homeserver, alice.user_id)
    state = await homeserver.room_storage.state.get_current_state_ids(room_id)
    create_refused = await redact(client, room_id, state[("m.room.create", "")], alice, "1")
    assert (create_refused.status, create_refused.json["errcode"]) == (403, "M_FORBIDDEN")
    elsewhere = await send(homeserver, other_room, alice.user_id, "m.room.message", {"body": "x"})
    cross_room = await redact(client, room_id, elsewhere.event_id, alice, "2")
    assert (cross_room.status, cross_room.json["errcode"]) == (400, "M_INVALID_PARAM")
    bad_reason = await redact(client, room_id, elsewhere.event_id, alice, "3", {"reason": 5})
    assert (bad_reason.status, bad_reason.json["errcode"]) == (400, "M_INVALID_PARAM")


async def test_redacted_state_event_in_room_state(
    homeserver: HomeServer, client: TestClient
) -> None:
    """A redacted state event stays in the state, pruned: the topic's text is gone."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    topic = await client.put(
        room_path(room_id, "state", "m.room.topic"), {"topic": "secret"}, token=alice.access_token
    )
    await redact(client, room_id, topic.json["event_id"], alice, "1")
    got = await client.get(room_path(room_id, "state", "m.room.topic"), token=alice.access_token)
    assert (got.status, got.json) == (200, {})


async def test_guests_may_not_redact(homeserver_factory: HomeServerFactory) -> None:
    hs = await homeserver_factory.start(allow_guest_access=True)
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    guest = await client.register_guest()
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, guest["user_id"])
    message = await send(hs, room_id, guest["user_id"], "m.room.message", {"body": "x"})
    as_guest = await client.put(
        room_path(room_id, "redact", message.event_id, "g"), {}, token=guest["access_token"]
    )
    assert (as_guest.status, as_guest.json["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_redacted_state_can_be_set_again(homeserver: HomeServer, client: TestClient) -> None:
    """The same content as a redacted state event is a change, not a repeat."""
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    path = room_path(room_id, "state", "m.room.topic")
    first = (await client.put(path, {"topic": "again"}, token=alice.access_token)).json["event_id"]
    await redact(client, room_id, first, alice, "1")
    second = await client.put(path, {"topic": "again"}, token=alice.access_token)
    assert second.status == 200 and second.json["event_id"] != first
    assert (await client.get(path, token=alice.access_token)).json == {"topic": "again"}
