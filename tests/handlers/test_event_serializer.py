"""Tests for homeserver.handlers.event_serializer: client format, unsigned, redaction on read.

Every async test runs a HomeServer on each database engine; rooms are built
through the event persister (tests/room_helpers.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.handlers.auth import Requester
from homeserver.handlers.event_serializer import only_fields, parse_field_path
from homeserver.server import HomeServer
from homeserver.storage.stores.event_batch import ClientTxn
from homeserver.types.room_versions import V1, V10, V11, V12, RoomVersion
from tests.room_helpers import (
    REMOTE,
    join,
    make_room,
    persist_remote,
    remote_event,
    send,
    set_state,
)

ALICE = "@alice:test"
BOB = "@bob:test"
CAROL = "@carol:test"
DAVE = f"@dave:{REMOTE}"
ERIN = f"@erin:{REMOTE}"


def requester(
    user_id: str, device_id: str | None = "DEVICE", token: str = "tokenhash"
) -> Requester:
    return Requester(user_id, device_id, False, token)


async def serialize(hs: HomeServer, *event_ids: str, **kwargs: Any) -> list[dict[str, Any]]:
    found = await hs.room_storage.events.get_stored_events(event_ids)
    return await hs.event_serializer.serialize_events([found[i] for i in event_ids], **kwargs)


async def serialize_one(hs: HomeServer, event_id: str, **kwargs: Any) -> dict[str, Any]:
    (event,) = await serialize(hs, event_id, **kwargs)
    return event


async def test_client_format_and_age(homeserver: HomeServer) -> None:
    """Federation keys are dropped, `age` counts on our clock and is never negative."""
    hs = homeserver
    room_id = await make_room(hs, ALICE)
    message = await send(hs, room_id, ALICE, "m.room.message", {"body": "hi", "msgtype": "m.text"})
    hs.clock.advance(5)  # type: ignore[attr-defined]
    event = await serialize_one(hs, message.event_id)
    assert set(event) == {
        "event_id",
        "type",
        "sender",
        "origin_server_ts",
        "content",
        "room_id",
        "unsigned",
    }
    assert event["content"] == {"body": "hi", "msgtype": "m.text"}
    assert event["room_id"] == room_id
    assert 5000 <= event["unsigned"]["age"] < 60_000
    without_room = await serialize_one(hs, message.event_id, include_room_id=False)
    assert "room_id" not in without_room
    hs.clock.advance(-3600)  # type: ignore[attr-defined]
    assert (await serialize_one(hs, message.event_id))["unsigned"]["age"] == 0


async def test_transaction_id_only_for_the_sending_device_or_token(
    homeserver: HomeServer,
) -> None:
    hs = homeserver
    room_id = await make_room(hs, ALICE)
    by_device = await hs.event_persister.create_and_persist(
        room_id, "m.room.message", None, ALICE, {"body": "a"}, txn=ClientTxn(ALICE, "d:PHONE", "t1")
    )
    by_token = await hs.event_persister.create_and_persist(
        room_id, "m.room.message", None, ALICE, {"body": "b"}, txn=ClientTxn(ALICE, "t:abc", "t2")
    )

    async def txn_id(event_id: str, who: Requester | None) -> Any:
        return (
            (await serialize_one(hs, event_id, requester=who))
            .get("unsigned", {})
            .get("transaction_id")
        )

    assert await txn_id(by_device.event_id, requester(ALICE, "PHONE")) == "t1"
    assert await txn_id(by_device.event_id, requester(ALICE, "LAPTOP")) is None
    assert await txn_id(by_device.event_id, requester(BOB, "PHONE")) is None
    assert await txn_id(by_device.event_id, None) is None
    assert await txn_id(by_token.event_id, requester(ALICE, None, "abc")) == "t2"
    assert await txn_id(by_token.event_id, requester(ALICE, None, "other")) is None
    assert await txn_id(by_token.event_id, requester(ALICE, "abc")) is None


async def test_prev_content_of_replaced_state(homeserver: HomeServer) -> None:
    hs = homeserver
    room_id = await make_room(hs, ALICE, users={BOB: 100})
    await join(hs, room_id, BOB)
    first = await set_state(hs, room_id, ALICE, "m.room.topic", {"topic": "one"})
    second = await set_state(hs, room_id, BOB, "m.room.topic", {"topic": "two"})
    first_json, second_json = await serialize(hs, first.event_id, second.event_id)
    assert first_json["state_key"] == ""
    assert not {"prev_content", "replaces_state", "prev_sender"} & set(first_json["unsigned"])
    assert second_json["unsigned"]["replaces_state"] == first.event_id
    assert second_json["unsigned"]["prev_content"] == {"topic": "one"}
    assert second_json["unsigned"]["prev_sender"] == ALICE
    message = await send(hs, room_id, ALICE, "m.room.message", {"body": "x"})
    assert "prev_content" not in (await serialize_one(hs, message.event_id))["unsigned"]


async def test_membership_of_the_requester_at_each_event(homeserver: HomeServer) -> None:
    hs = homeserver
    room_id = await make_room(hs, ALICE)
    before = await send(hs, room_id, ALICE, "m.room.message", {"body": "before bob"})
    joined = await join(hs, room_id, BOB)
    after = await send(hs, room_id, ALICE, "m.room.message", {"body": "with bob"})
    events = await serialize(
        hs, before.event_id, joined.event_id, after.event_id, requester=requester(BOB)
    )
    assert [e["unsigned"]["membership"] for e in events] == ["leave", "join", "join"]
    assert "membership" not in (await serialize_one(hs, after.event_id))["unsigned"]


@pytest.mark.parametrize("version", [V1, V10, V11, V12], ids=lambda v: f"v{v.identifier}")
async def test_redacted_event_is_pruned_with_redacted_because(
    homeserver: HomeServer, version: RoomVersion
) -> None:
    hs = homeserver
    room_id = await make_room(hs, ALICE, version=version)
    message = await send(
        hs, room_id, ALICE, "m.room.message", {"body": "oops", "msgtype": "m.text"}
    )
    redaction = await hs.event_persister.create_and_persist(
        room_id, "m.room.redaction", None, ALICE, {"reason": "typo"}, redacts=message.event_id
    )
    redacted = await serialize_one(hs, message.event_id, include_room_id=False)
    assert redacted["content"] == {}
    because = redacted["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction.event_id
    assert because["type"] == "m.room.redaction"
    assert because["content"]["reason"] == "typo"
    assert "room_id" not in because and "age" in because["unsigned"]
    # Top level in every version (v11+ also in the content, for older clients).
    assert because["redacts"] == message.event_id
    if version.event_format.redacts_in_content:
        assert because["content"]["redacts"] == message.event_id
    # The redaction itself is served as it is.
    assert "redacted_because" not in (await serialize_one(hs, redaction.event_id)).get(
        "unsigned", {}
    )


async def test_redacted_state_keeps_protocol_keys(homeserver: HomeServer) -> None:
    """A redacted member event keeps `membership`; a redacted event's prev_content is pruned."""
    hs = homeserver
    room_id = await make_room(hs, ALICE)
    joined = await join(hs, room_id, BOB, displayname="Bob")
    topic = await set_state(hs, room_id, ALICE, "m.room.topic", {"topic": "secret"})
    for target in (joined, topic):
        await hs.event_persister.create_and_persist(
            room_id, "m.room.redaction", None, ALICE, {}, redacts=target.event_id
        )
    new_topic = await set_state(hs, room_id, ALICE, "m.room.topic", {"topic": "fine"})
    member_json, topic_json = await serialize(hs, joined.event_id, new_topic.event_id)
    assert member_json["content"] == {"membership": "join"}
    assert topic_json["content"] == {"topic": "fine"}
    assert topic_json["unsigned"]["prev_content"] == {}
    assert topic_json["unsigned"]["replaces_state"] == topic.event_id


async def test_v3_plus_redactions_need_same_domain_or_redact_power(
    homeserver: HomeServer,
) -> None:
    """From room v3 the auth rules accept any redaction; it applies only when valid."""
    hs = homeserver
    room_id = await make_room(hs, ALICE, version=V10)
    await join(hs, room_id, CAROL)
    for remote_user in (DAVE, ERIN):
        joined = await persist_remote(
            hs,
            await remote_event(
                hs,
                room_id,
                "m.room.member",
                remote_user,
                {"membership": "join"},
                state_key=remote_user,
            ),
        )
        assert joined.rejected_reason is None
    dave_message = await persist_remote(
        hs, await remote_event(hs, room_id, "m.room.message", DAVE, {"body": "from dave"})
    )
    dave_other = await persist_remote(
        hs, await remote_event(hs, room_id, "m.room.message", DAVE, {"body": "again"})
    )
    alice_message = await send(hs, room_id, ALICE, "m.room.message", {"body": "from alice"})

    async def redact(sender: str, target: str) -> None:
        if sender.endswith(":test"):
            await hs.event_persister.create_and_persist(
                room_id, "m.room.redaction", None, sender, {}, redacts=target
            )
        else:
            event = await remote_event(hs, room_id, "m.room.redaction", sender, {}, redacts=target)
            assert (await persist_remote(hs, event)).rejected_reason is None

    # Carol (power 0, other domain): accepted by the rules, not applied.
    await redact(CAROL, dave_message.event_id)
    # Dave (power 0, other domain) on alice's message: not applied.
    await redact(DAVE, alice_message.event_id)
    assert (await serialize_one(hs, dave_message.event_id))["content"] == {"body": "from dave"}
    assert (await serialize_one(hs, alice_message.event_id))["content"] == {"body": "from alice"}
    # Erin shares dave's domain: applied.
    await redact(ERIN, dave_message.event_id)
    assert (await serialize_one(hs, dave_message.event_id))["content"] == {}
    # Alice has the redact level: applied across domains.
    await redact(ALICE, dave_other.event_id)
    assert (await serialize_one(hs, dave_other.event_id))["content"] == {}


async def test_redaction_from_another_room_does_not_apply(homeserver: HomeServer) -> None:
    hs = homeserver
    room_id = await make_room(hs, ALICE)
    other_room = await make_room(hs, ALICE)
    message = await send(hs, room_id, ALICE, "m.room.message", {"body": "stays"})
    await hs.event_persister.create_and_persist(
        other_room, "m.room.redaction", None, ALICE, {}, redacts=message.event_id
    )
    assert (await serialize_one(hs, message.event_id))["content"] == {"body": "stays"}


async def test_event_fields(homeserver: HomeServer) -> None:
    hs = homeserver
    room_id = await make_room(hs, ALICE)
    message = await send(
        hs, room_id, ALICE, "m.room.message", {"body": "hi", "a.b": 1, "nested": {"x": 1, "y": 2}}
    )
    event = await serialize_one(
        hs,
        message.event_id,
        event_fields=[
            "type",
            "content.body",
            "content.a\\.b",
            "content.nested.y",
            "unsigned.age",
            "nope.x",
        ],
    )
    assert set(event) == {"type", "content", "unsigned"}
    assert event["content"] == {"body": "hi", "a.b": 1, "nested": {"y": 2}}
    assert set(event["unsigned"]) == {"age"}


def test_parse_field_path() -> None:
    assert parse_field_path("content.body") == ["content", "body"]
    assert parse_field_path("content.m\\.relates_to") == ["content", "m.relates_to"]
    assert parse_field_path("a\\\\.b") == ["a\\", "b"]
    assert parse_field_path("type") == ["type"]


def test_only_fields_without_paths_keeps_everything() -> None:
    event = {"type": "t", "content": {"a": 1}}
    assert only_fields(event, []) == event
    assert only_fields(event, [["content", "a", "deeper"]]) == {"content": {}}
