"""PUT /_matrix/federation/v1/send/{txnId}: transactions as a whole (both engines).

Authentication over HTTP, the body's limits and shape, answering a retried
transaction from the stored answer, EDU dispatch, unknown rooms, server ACLs,
and the housekeeping of old answers. The per-PDU checks are in
test_receiver_checks.py, gap filling in test_receiver_gaps.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from signedjson.key import generate_signing_key
from twisted.internet import defer

from homeserver.handlers.event_persistence import PersistedEvent
from tests.federation.test_receiver_harness import FED, Harness, running_harness


@pytest.fixture
def fed(homeserver_factory: Any, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor)


async def test_a_signed_transaction_over_http_stores_its_event(fed: Harness) -> None:
    message = fed.remote.event("m.room.message", {"body": "hello"}, sender=fed.bob)
    response = await fed.put_transaction(fed.transaction([message]), "t1")
    assert response.status == 200, response
    assert response.json == {"pdus": {message.event_id: {}}}
    stored = await fed.stored(message.event_id)
    assert stored is not None and not stored.outlier and stored.rejected_reason is None
    assert stored.event.content == {"body": "hello"}
    assert await fed.extremities() == {message.event_id}


async def test_unsigned_or_wrongly_signed_requests_are_refused(fed: Harness) -> None:
    message = fed.remote.event("m.room.message", {"body": "x"}, sender=fed.bob)
    body = fed.transaction([message])
    unsigned = await fed.client.put(f"{FED}/send/t1", body)
    assert (unsigned.status, unsigned.json["errcode"]) == (401, "M_UNAUTHORIZED")
    forged = await fed.put_transaction(body, "t1", key=generate_signing_key("remote"))
    assert (forged.status, forged.json["errcode"]) == (401, "M_UNAUTHORIZED")
    assert await fed.stored(message.event_id) is None


async def test_the_body_origin_must_be_the_signing_server(fed: Harness) -> None:
    message = fed.remote.event("m.room.message", {"body": "x"}, sender=fed.bob)
    body = fed.transaction([message], origin="someone.else")
    response = await fed.put_transaction(body, "t1")
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    assert await fed.stored(message.event_id) is None
    # Not remembered: the same transaction ID, well formed, is processed.
    response = await fed.put_transaction(fed.transaction([message]), "t1")
    assert response.json == {"pdus": {message.event_id: {}}}


async def test_malformed_bodies_are_refused_with_m_bad_json(fed: Harness) -> None:
    message = fed.remote.event("m.room.message", {"body": "x"}, sender=fed.bob)
    good = fed.transaction([message])
    broken: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "origin"},
        {**good, "origin": 5},
        {k: v for k, v in good.items() if k != "origin_server_ts"},
        {**good, "origin_server_ts": "now"},
        {k: v for k, v in good.items() if k != "pdus"},
        {**good, "pdus": {"a": 1}},
        {**good, "edus": "typing"},
    ]
    for number, body in enumerate(broken):
        response = await fed.put_transaction(body, f"bad{number}")
        assert (response.status, response.json["errcode"]) == (400, "M_BAD_JSON"), body
    assert await fed.stored(message.event_id) is None


async def test_at_most_50_pdus_and_100_edus(fed: Harness) -> None:
    messages = fed.remote.chain(51, sender=fed.bob)
    response = await fed.put_transaction(fed.transaction(messages), "big")
    assert (response.status, response.json["errcode"]) == (400, "M_BAD_JSON")
    assert "50" in response.json["error"]
    assert await fed.stored(messages[0].event_id) is None
    edus = [{"edu_type": "m.typing", "content": {}}] * 101
    response = await fed.put_transaction(fed.transaction([], edus), "edus")
    assert (response.status, response.json["errcode"]) == (400, "M_BAD_JSON")
    assert "100" in response.json["error"]

    # Exactly at the limits is fine; the refused transaction ID was not remembered.
    seen: list[Any] = []
    fed.hs.federation_receiver.register_edu_handler("m.test", lambda o, c: seen.append(c))
    edus = [{"edu_type": "m.test", "content": {"n": n}} for n in range(100)]
    response = await fed.put_transaction(fed.transaction(messages[:50], edus), "big")
    assert response.status == 200
    assert response.json["pdus"] == {m.event_id: {} for m in messages[:50]}
    assert len(seen) == 100
    assert await fed.extremities() == {messages[49].event_id}


async def test_a_retried_transaction_gets_the_stored_answer_and_is_not_processed_again(
    fed: Harness, homeserver_factory: Any
) -> None:
    first = fed.remote.event("m.room.message", {"body": "first"}, sender=fed.bob)
    seen: list[Any] = []
    fed.hs.federation_receiver.register_edu_handler("m.test", lambda o, c: seen.append(c))
    edu = {"edu_type": "m.test", "content": {}}
    answer = await fed.send(first, edus=[edu], txn_id="T")
    assert answer == {first.event_id: {}}
    second = fed.remote.event("m.room.message", {"body": "second"}, sender=fed.bob)
    # The same ID again (whatever the body): the first answer, nothing processed.
    again = await fed.send(second, edus=[edu], txn_id="T")
    assert again == {first.event_id: {}}
    assert await fed.stored(second.event_id) is None
    assert len(seen) == 1

    # The answer is in the database: a restarted server gives it too.
    hs = fed.hs
    await homeserver_factory.stop(hs)
    restarted = await homeserver_factory.start(
        federation_verify_certificates=False,
        ip_range_whitelist=["127.0.0.0/8"],
        trusted_key_servers=[],
    )
    code, body = await restarted.federation_receiver.on_send_transaction(
        fed.remote.name, "T", fed.transaction([second])
    )
    assert (code, body) == (200, {"pdus": {first.event_id: {}}})
    assert (await restarted.room_storage.events.get_stored_events([second.event_id])) == {}
    # Another origin's transaction with the same ID is its own.
    code, body = await restarted.federation_receiver.on_send_transaction(
        "other.example", "T", {**fed.transaction([]), "origin": "other.example"}
    )
    assert (code, body) == (200, {"pdus": {}})


async def test_copies_of_a_transaction_arriving_together_are_processed_once(fed: Harness) -> None:
    message = fed.remote.event("m.room.message", {"body": "once"}, sender=fed.bob)
    notified: list[str] = []
    fed.hs.event_persister.add_listener(
        lambda room_id, events: notified.extend(e.event_id for e in events)
    )
    body = fed.transaction([message])
    receiver = fed.hs.federation_receiver
    answers = await defer.gatherResults(
        [
            defer.ensureDeferred(receiver.on_send_transaction(fed.remote.name, "same", body))
            for _ in range(3)
        ]
    )
    assert answers == [(200, {"pdus": {message.event_id: {}}})] * 3
    assert notified == [message.event_id]


async def test_edus_go_to_their_handlers_in_order_and_unknown_ones_are_ignored(
    fed: Harness,
) -> None:
    calls: list[tuple[str, str, Any]] = []

    async def typing(origin: str, content: Any) -> None:
        calls.append(("typing", origin, dict(content)))

    def receipt(origin: str, content: Any) -> None:
        calls.append(("receipt", origin, dict(content)))
        raise RuntimeError("a broken handler does not stop the others")

    receiver = fed.hs.federation_receiver
    receiver.register_edu_handler("m.typing", typing)
    receiver.register_edu_handler("m.receipt", receipt)
    message = fed.remote.event("m.room.message", {"body": "with edus"}, sender=fed.bob)
    edus = [
        {"edu_type": "m.typing", "content": {"n": 1}},
        {"edu_type": "m.receipt", "content": {"n": 2}},
        {"edu_type": "m.unknown", "content": {"n": 3}},
        {"edu_type": "m.typing"},  # no content: ignored
        "not an object",
        {"edu_type": "m.typing", "content": {"n": 4}},
    ]
    answer = await fed.send(message, edus=edus)
    assert answer == {message.event_id: {}}
    origin = fed.remote.name
    assert calls == [
        ("typing", origin, {"n": 1}),
        ("receipt", origin, {"n": 2}),
        ("typing", origin, {"n": 4}),
    ]
    try:
        receiver.register_edu_handler("m.typing", typing)
    except ValueError:
        pass
    else:
        raise AssertionError("a second handler for one EDU type was accepted")


async def test_pdus_of_unknown_rooms_are_ignored_with_an_error(fed: Harness) -> None:
    message = fed.remote.event("m.room.message", {"body": "known room"}, sender=fed.bob)
    unknown_v11 = {**message.pdu_json(), "room_id": "!unknown:elsewhere"}
    unknown_v1 = {**message.pdu_json(), "room_id": "!unknown:elsewhere", "event_id": "$v1:x"}
    no_room = {k: v for k, v in message.pdu_json().items() if k != "room_id"}
    answer = await fed.send(unknown_v11, unknown_v1, no_room, 7, message)
    # A v3+ PDU of a room we don't know has no ID we could compute: no entry.
    assert answer == {
        "$v1:x": {"error": "Unknown room !unknown:elsewhere"},
        message.event_id: {},
    }
    assert await fed.extremities() == {message.event_id}


async def test_an_origin_denied_by_the_room_acl_gets_its_pdus_refused(fed: Harness) -> None:
    state = await fed.state()
    # The remote's name is an IP literal: deny it by address (ports don't count).
    await fed.local("m.room.server_acl", {"allow": ["*"], "deny": ["127.0.0.1"]}, "")
    denied_state = await fed.state()
    heads = await fed.extremities()
    message = fed.remote.event("m.room.message", {"body": "denied"}, sender=fed.bob)
    topic = fed.remote.event("m.room.topic", {"topic": "denied"}, sender=fed.bob, state_key="")
    answer = await fed.send(message, topic)
    refused = {"errcode": "M_FORBIDDEN", "error": "Server is banned from room"}
    assert answer == {message.event_id: refused, topic.event_id: refused}
    assert await fed.stored(message.event_id) is None
    assert await fed.stored(topic.event_id) is None
    assert await fed.state() == denied_state != state
    assert await fed.extremities() == heads
    receiver = fed.hs.federation_receiver
    assert not await receiver.server_allowed_in_room(fed.remote.name, fed.room_id)
    assert await receiver.server_allowed_in_room("elsewhere.example:8448", fed.room_id)


async def test_an_acl_refusing_ip_literals_refuses_the_remote_too(fed: Harness) -> None:
    await fed.local("m.room.server_acl", {"allow": ["*"], "allow_ip_literals": False}, "")
    message = fed.remote.event("m.room.message", {"body": "denied"}, sender=fed.bob)
    answer = await fed.send(message)
    assert answer[message.event_id]["errcode"] == "M_FORBIDDEN"
    # Lifting the ACL lets the remote in again.
    await fed.local("m.room.server_acl", {"allow": ["*"]}, "")
    message = fed.remote.event("m.room.message", {"body": "allowed"}, sender=fed.bob)
    assert await fed.send(message) == {message.event_id: {}}


async def test_answers_older_than_a_day_are_deleted(fed: Harness) -> None:
    message = fed.remote.event("m.room.message", {"body": "old"}, sender=fed.bob)
    assert await fed.send(message, txn_id="old") == {message.event_id: {}}
    receiver = fed.hs.federation_receiver
    assert await receiver.delete_old_transactions() == 0
    fed.hs.clock.advance(24 * 3600 + 1)  # type: ignore[attr-defined]
    assert await receiver.delete_old_transactions() == 1
    # A day later the ID is new again; the event is held already, so nothing changes.
    later = fed.remote.event("m.room.message", {"body": "later"}, sender=fed.bob)
    answer = await fed.send(message, later, txn_id="old")
    assert answer == {message.event_id: {}, later.event_id: {}}
    assert await fed.extremities() == {later.event_id}


async def test_listeners_hear_of_received_events(fed: Harness) -> None:
    heard: list[PersistedEvent] = []
    fed.hs.event_persister.add_listener(lambda room_id, events: heard.extend(events))
    message = fed.remote.event("m.room.message", {"body": "tell"}, sender=fed.bob)
    await fed.send(message)
    assert [e.event_id for e in heard] == [message.event_id]


async def test_a_transaction_tells_the_origin_listeners_the_server_is_up(fed: Harness) -> None:
    heard: list[str] = []

    async def up(origin: str) -> None:
        heard.append(origin)

    fed.hs.federation_receiver.add_origin_listener(up)
    message = fed.remote.event("m.room.message", {"body": "i am back"}, sender=fed.bob)
    assert await fed.send(message) == {message.event_id: {}}
    assert heard == [fed.remote.name]
