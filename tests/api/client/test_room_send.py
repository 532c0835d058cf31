"""PUT /rooms/{roomId}/send/{eventType}/{txnId} and GET /rooms/{roomId}/event/{eventId} (both engines).

Rooms are made through the event persister (tests/room_helpers.py); users
register over HTTP.
"""

from __future__ import annotations

from typing import Any

from homeserver.server import HomeServer
from homeserver.types.room_versions import V10, V11
from tests.homeserver_harness import NO_LIMIT, HomeServerFactory, TestClient
from tests.room_helpers import join, make_room, register, room_path, send

MESSAGE = {"msgtype": "m.text", "body": "hello"}


async def put_message(
    client: TestClient, room_id: str, token: str, txn_id: str, body: Any = MESSAGE
) -> Any:
    return await client.put(room_path(room_id, "send", "m.room.message", txn_id), body, token=token)


async def test_send_and_read_back(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    sent = await put_message(client, room_id, alice.access_token, "txn1")
    assert sent.status == 200, sent
    event_id = sent.json["event_id"]
    assert event_id.startswith("$")
    read = await client.get(room_path(room_id, "event", event_id), token=alice.access_token)
    assert read.status == 200, read
    event = read.json
    assert event["content"] == MESSAGE
    assert (event["type"], event["sender"], event["room_id"]) == (
        "m.room.message",
        alice.user_id,
        room_id,
    )
    assert event["unsigned"]["transaction_id"] == "txn1"
    assert event["unsigned"]["age"] >= 0
    # Also under r0.
    legacy = await client.put(
        "/_matrix/client/r0" + room_path(room_id, "send", "m.room.message", "txn2"),
        MESSAGE,
        token=alice.access_token,
    )
    assert legacy.status == 200


async def test_retry_gives_the_same_event_and_other_devices_new_ones(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    first = (await put_message(client, room_id, alice.access_token, "same")).json["event_id"]
    again = await put_message(client, room_id, alice.access_token, "same", {"body": "changed"})
    assert again.json["event_id"] == first
    other_txn = (await put_message(client, room_id, alice.access_token, "other")).json["event_id"]
    assert other_txn != first
    laptop = await client.login("alice")
    from_laptop = await put_message(client, room_id, laptop["access_token"], "same")
    assert from_laptop.status == 200
    assert from_laptop.json["event_id"] not in (first, other_txn)
    # The transaction ID is shown only to the device that sent the event.
    seen_by_laptop = await client.get(
        room_path(room_id, "event", first), token=laptop["access_token"]
    )
    assert "transaction_id" not in seen_by_laptop.json["unsigned"]
    # The same transaction ID in another room is another transaction.
    other_room = await make_room(homeserver, alice.user_id)
    elsewhere = await put_message(client, other_room, alice.access_token, "same")
    assert elsewhere.json["event_id"] != first
    timeline = await homeserver.room_storage.events.get_room_events_stream(
        room_id, 0, homeserver.room_storage.events.current_token()
    )
    assert [e.event.content.get("body") for e in timeline if e.event.type == "m.room.message"] == [
        "hello",
        "hello",
        "hello",
    ]


async def test_retry_after_a_restart(homeserver_factory: HomeServerFactory) -> None:
    """The transaction ID is stored with the event: a retry after a restart finds it."""
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    room_id = await make_room(hs, alice.user_id)
    first = (await put_message(client, room_id, alice.access_token, "t")).json["event_id"]
    await homeserver_factory.stop(hs)
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    retried = await put_message(client, room_id, alice.access_token, "t")
    assert (retried.status, retried.json["event_id"]) == (200, first)
    fresh = await put_message(client, room_id, alice.access_token, "t2")
    assert fresh.json["event_id"] != first


async def test_only_members_send(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    for target in (room_id, "!unknown:test"):
        refused = await put_message(client, target, bob.access_token, "x")
        assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN"), target
    no_token = await put_message(client, room_id, None, "x")  # type: ignore[arg-type]
    assert (no_token.status, no_token.json["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_power_levels_are_enforced(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(
        homeserver, alice.user_id, power_levels={"events": {"org.example.loud": 50}}
    )
    await join(homeserver, room_id, bob.user_id)
    path = room_path(room_id, "send", "org.example.loud", "1")
    refused = await client.put(path, {"x": 1}, token=bob.access_token)
    assert (refused.status, refused.json["errcode"]) == (403, "M_FORBIDDEN")
    assert "power level" in refused.json["error"]
    assert (await client.put(path, {"x": 1}, token=alice.access_token)).status == 200


async def test_bad_bodies(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id, version=V11)
    head = await homeserver.room_storage.events.get_forward_extremities(room_id)
    for body, status, errcode in (
        ([1, 2], 400, "M_BAD_JSON"),
        ("text", 400, "M_BAD_JSON"),
        (b"{not json", 400, "M_NOT_JSON"),
        ({"body": 1.5}, 400, "M_BAD_JSON"),
        ({"body": 2**60}, 400, "M_BAD_JSON"),
        ({"body": "x" * 70_000}, 413, "M_TOO_LARGE"),
        # Fits as content, but not once made an event.
        ({"body": "x" * 65_400}, 413, "M_TOO_LARGE"),
    ):
        response = await put_message(client, room_id, alice.access_token, "bad", body)
        assert (response.status, response.json["errcode"]) == (status, errcode), body
    long_type = await client.put(
        room_path(room_id, "send", "x" * 300, "t"), {}, token=alice.access_token
    )
    assert (long_type.status, long_type.json["errcode"]) == (413, "M_TOO_LARGE")
    # Nothing was stored.
    assert await homeserver.room_storage.events.get_forward_extremities(room_id) == head


async def test_rate_limit(homeserver_factory: HomeServerFactory) -> None:
    hs = await homeserver_factory.start(rc_message={"per_second": 0.5, "burst_count": 2})
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    for txn in ("1", "2"):
        assert (await put_message(client, room_id, alice.access_token, txn)).status == 200
    limited = await put_message(client, room_id, alice.access_token, "3")
    assert (limited.status, limited.json["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert limited.json["retry_after_ms"] > 0
    assert limited.headers["retry-after"] == ["2"]
    # A retry of a sent transaction is answered, and other users are not limited.
    assert (await put_message(client, room_id, alice.access_token, "1")).status == 200
    assert (await put_message(client, room_id, bob.access_token, "1")).status == 200
    hs.clock.advance(2)  # type: ignore[attr-defined]
    assert (await put_message(client, room_id, alice.access_token, "3")).status == 200


async def test_refused_sends_do_not_count(homeserver_factory: HomeServerFactory) -> None:
    hs = await homeserver_factory.start(rc_message={"per_second": 0.001, "burst_count": 1})
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(hs, alice.user_id, power_levels={"events": {"org.example.x": 100}})
    await join(hs, room_id, bob.user_id)
    refused = await client.put(
        room_path(room_id, "send", "org.example.x", "1"), {}, token=bob.access_token
    )
    assert refused.status == 403
    assert (await put_message(client, room_id, bob.access_token, "2")).status == 200


async def test_redaction_through_send(homeserver_factory: HomeServerFactory) -> None:
    """Spec v1.18: m.room.redaction may be sent with /send in every room version."""
    hs = await homeserver_factory.start(rc_message=NO_LIMIT)
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    for version in (V10, V11):
        room_id = await make_room(hs, alice.user_id, version=version)
        target = (await put_message(client, room_id, alice.access_token, "m")).json["event_id"]
        sent = await client.put(
            room_path(room_id, "send", "m.room.redaction", "r"),
            {"redacts": target, "reason": "oops"},
            token=alice.access_token,
        )
        assert sent.status == 200, sent
        redaction = (
            await client.get(
                room_path(room_id, "event", sent.json["event_id"]), token=alice.access_token
            )
        ).json
        if version.event_format.redacts_in_content:
            assert redaction["content"] == {"redacts": target, "reason": "oops"}
        else:
            assert redaction["redacts"] == target
            assert redaction["content"] == {"reason": "oops"}
        redacted = (
            await client.get(room_path(room_id, "event", target), token=alice.access_token)
        ).json
        assert redacted["content"] == {}
        assert redacted["unsigned"]["redacted_because"]["event_id"] == sent.json["event_id"]
        missing = await client.put(
            room_path(room_id, "send", "m.room.redaction", "r2"), {}, token=alice.access_token
        )
        assert (missing.status, missing.json["errcode"]) == (400, "M_MISSING_PARAM")


async def test_get_event_not_found_or_not_visible(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id, history_visibility="joined")
    early = await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "early"})
    await join(homeserver, room_id, bob.user_id)
    late = await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "late"})
    other_room = await make_room(homeserver, alice.user_id)

    async def get(room: str, event_id: str, token: str) -> Any:
        return await client.get(room_path(room, "event", event_id), token=token)

    assert (await get(room_id, late.event_id, bob.access_token)).status == 200
    for room, event_id in (
        (room_id, early.event_id),  # before bob joined a `joined` room
        (room_id, "$nonexistent"),
        (other_room, late.event_id),  # the event is in another room
    ):
        response = await get(room, event_id, bob.access_token)
        assert (response.status, response.json["errcode"]) == (404, "M_NOT_FOUND")
    assert (await get(room_id, early.event_id, alice.access_token)).status == 200
