"""Filling the gaps of received PDUs from the origin: missing prev_events, state, auth events.

Against the fake remote of test_receiver_harness (both engines):
POST /get_missing_events for prev_events we lack (its events handled first,
oldest first, through the same checks), GET /state_ids (and GET /event for
the events it names) when prev_events are still missing, GET /event for
missing auth events; what can't be had drops the PDU, and the bounds hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from signedjson.key import generate_signing_key

from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import V1, V12
from homeserver.types.signing import sign_json
from tests.federation.test_receiver_harness import Harness, Remote, running_harness


@pytest.fixture
def fed(homeserver_factory: Any, reactor: Any) -> Iterator[Harness]:
    # Bob may set state (state_default 50), so gaps can hold state changes.
    yield from running_harness(homeserver_factory, reactor, bob_power=50)


def badly_signed(remote: Remote, event: EventBase) -> EventBase:
    """The same event (same ID: signatures are not hashed) with a signature that does not verify."""
    pdu = event.pdu_json()
    impostor = generate_signing_key(remote.signing_key.version)
    pdu["signatures"] = sign_json({"not": "the event"}, remote.name, impostor)["signatures"]
    return make_event(pdu, event.room_version)


def missing_events_requests(remote: Remote) -> list[dict[str, Any]]:
    return [json.loads(body) for _, _, body in remote.requests_to("get_missing_events")]


def state_ids_requests(remote: Remote) -> list[str]:
    return [unquote(uri.split("event_id=", 1)[1]) for _, uri, _ in remote.requests_to("state_ids")]


def fetched(remote: Remote) -> list[str]:
    return [unquote(uri.rsplit("/", 1)[1]) for _, uri, _ in remote.requests_to("event")]


async def test_missing_prev_events_come_from_get_missing_events(fed: Harness) -> None:
    remote = fed.remote
    (join,) = await fed.extremities()
    heard: list[str] = []
    fed.hs.event_persister.add_listener(lambda r, events: heard.extend(e.event_id for e in events))
    first, second, last = remote.chain(3, sender=fed.bob)
    assert await fed.send(last) == {last.event_id: {}}

    (asked,) = missing_events_requests(remote)
    assert asked == {
        "earliest_events": [join],
        "latest_events": [last.event_id],
        "limit": 10,
        "min_depth": 1,
    }
    assert heard == [first.event_id, second.event_id, last.event_id]
    for event in (first, second, last):
        stored = await fed.stored(event.event_id)
        assert stored is not None and not stored.outlier and stored.rejected_reason is None
    assert await fed.extremities() == {last.event_id}
    assert state_ids_requests(remote) == [] and fetched(remote) == []


async def test_a_gap_wider_than_one_request_is_bridged_with_state_ids(fed: Harness) -> None:
    remote = fed.remote
    (join,) = await fed.extremities()
    topic = remote.event("m.room.topic", {"topic": "set in the gap"}, sender=fed.bob, state_key="")
    messages = remote.chain(12, sender=fed.bob)
    last = remote.event("m.room.message", {"body": "last"}, sender=fed.bob)
    assert await fed.send(last) == {last.event_id: {}}

    # /get_missing_events gave the 10 newest; the state at the prev_event of
    # the oldest of them came from /state_ids, with the events we lacked.
    assert len(missing_events_requests(remote)) == 1
    assert state_ids_requests(remote) == [messages[1].event_id]
    assert set(fetched(remote)) == {messages[1].event_id, topic.event_id}
    for event in [*messages[2:], last]:
        stored = await fed.stored(event.event_id)
        assert stored is not None and not stored.outlier and stored.rejected_reason is None
    for event in (topic, messages[1]):
        stored = await fed.stored(event.event_id)
        assert stored is not None and stored.outlier
    assert await fed.stored(messages[0].event_id) is None
    # The gap stays a gap: our old head and the new one are both extremities,
    # and the room's state has the topic set in the gap.
    assert await fed.extremities() == {join, last.event_id}
    assert (await fed.state())[("m.room.topic", "")] == topic.event_id


async def test_without_get_missing_events_the_state_comes_from_state_ids(fed: Harness) -> None:
    remote = fed.remote
    remote.failing.add("get_missing_events")
    (join,) = await fed.extremities()
    topic = remote.event("m.room.topic", {"topic": "from state_ids"}, sender=fed.bob, state_key="")
    last = remote.event("m.room.message", {"body": "last"}, sender=fed.bob)
    assert await fed.send(last) == {last.event_id: {}}
    assert state_ids_requests(remote) == [topic.event_id]
    stored = await fed.stored(last.event_id)
    assert stored is not None and not stored.outlier and stored.rejected_reason is None
    before = await fed.hs.room_storage.state.get_state_ids_for_event(last.event_id)
    assert before is not None and before[("m.room.topic", "")] == topic.event_id
    assert await fed.extremities() == {join, last.event_id}


async def test_an_event_whose_gap_cannot_be_filled_is_dropped(fed: Harness) -> None:
    remote = fed.remote
    remote.failing.update({"get_missing_events", "state_ids"})
    state, heads = await fed.state(), await fed.extremities()
    remote.event("m.room.topic", {"topic": "unseen"}, sender=fed.bob, state_key="")
    last = remote.event("m.room.message", {"body": "last"}, sender=fed.bob)
    answer = await fed.send(last)
    assert answer[last.event_id]["error"].startswith("cannot get the state at")
    assert await fed.stored(last.event_id) is None
    assert (await fed.state(), await fed.extremities()) == (state, heads)


async def test_events_from_get_missing_events_go_through_the_checks(fed: Harness) -> None:
    remote = fed.remote
    state, heads = await fed.state(), await fed.extremities()
    first, second, last = remote.chain(3, sender=fed.bob)
    remote.served[second.event_id] = badly_signed(remote, second)
    answer = await fed.send(last)
    # The forged copy was dropped, from /get_missing_events and from /event alike.
    assert await fed.stored(second.event_id) is None
    assert fetched(remote) == [second.event_id]
    assert "cannot get the prev_event" in answer[last.event_id]["error"]
    assert await fed.stored(last.event_id) is None
    stored = await fed.stored(first.event_id)
    assert stored is not None and not stored.outlier
    assert await fed.extremities() == {first.event_id} != heads
    assert await fed.state() == state


async def _auth(fed: Harness, member: EventBase) -> list[str]:
    """Auth events for a message of `member`'s sender: create, power levels, that member event."""
    state = await fed.state()
    return [state[("m.room.create", "")], state[("m.room.power_levels", "")], member.event_id]


async def test_missing_auth_events_are_fetched_with_get_event(fed: Harness) -> None:
    remote = fed.remote
    (head,) = remote.heads()
    carol = remote.user("carol")
    carol_join = remote.event(
        "m.room.member", {"membership": "join"}, sender=carol, state_key=carol
    )
    # Carol's message cites her join, which we never got, but points at our
    # head: her join is fetched as an outlier for step 4, and step 5 (she is
    # not in the room's state there) rejects the message.
    message = remote.event(
        "m.room.message",
        {"body": "hi"},
        sender=carol,
        prevs=[head],
        auth=await _auth(fed, carol_join),
    )
    assert await fed.send(message) == {message.event_id: {}}
    assert fetched(remote) == [carol_join.event_id]
    join_stored = await fed.stored(carol_join.event_id)
    assert join_stored is not None and join_stored.outlier and join_stored.rejected_reason is None
    stored = await fed.stored(message.event_id)
    assert stored is not None and stored.rejected_reason is not None
    assert stored.rejected_reason.startswith("auth:")
    assert missing_events_requests(remote) == []


async def test_auth_events_that_cannot_be_had_drop_the_event(fed: Harness) -> None:
    remote = fed.remote
    (head,) = remote.heads()
    carol = remote.user("carol")
    carol_join = remote.event(
        "m.room.member", {"membership": "join"}, sender=carol, state_key=carol
    )
    message = remote.event(
        "m.room.message",
        {"body": "hi"},
        sender=carol,
        prevs=[head],
        auth=await _auth(fed, carol_join),
    )
    remote.failing.add("event")
    answer = await fed.send(message)
    assert (
        f"cannot get the auth events ['{carol_join.event_id}']" in answer[message.event_id]["error"]
    )
    assert await fed.stored(message.event_id) is None

    # A forged copy of the auth event is no better than none.
    remote.failing.clear()
    remote.served[carol_join.event_id] = badly_signed(remote, carol_join)
    answer = await fed.send(message)
    assert "cannot get the auth events" in answer[message.event_id]["error"]
    assert await fed.stored(carol_join.event_id) is None

    # Nor is another event served under its ID.
    other = remote.event("m.room.message", {"body": "other"}, sender=fed.bob, record=False)
    remote.served[carol_join.event_id] = other
    answer = await fed.send(message)
    assert "cannot get the auth events" in answer[message.event_id]["error"]
    assert await fed.stored(carol_join.event_id) is None
    assert await fed.stored(other.event_id) is None


async def test_fetching_stops_at_the_bound(fed: Harness) -> None:
    remote = fed.remote
    remote.failing.add("get_missing_events")
    state, heads = await fed.state(), await fed.extremities()
    remote.event("m.room.topic", {"topic": "a"}, sender=fed.bob, state_key="")
    remote.event("m.room.name", {"name": "b"}, sender=fed.bob, state_key="")
    last = remote.event("m.room.message", {"body": "last"}, sender=fed.bob)
    fed.hs.federation_receiver.gaps.max_fetched_events = 1
    answer = await fed.send(last)
    assert answer[last.event_id]["error"].startswith("more than 1 events missing")
    assert fetched(remote) == []
    assert (await fed.state(), await fed.extremities()) == (state, heads)


async def test_no_missing_events_are_asked_for_below_the_lowest_depth(fed: Harness) -> None:
    remote = fed.remote
    (head,) = remote.heads()
    earlier = remote.event("m.room.message", {"body": "earlier"}, sender=fed.bob)
    # Claims to be as deep as the room's first event: history we never had.
    old = remote.event(
        "m.room.message", {"body": "old"}, sender=fed.bob, prevs=[earlier.event_id], depth=1
    )
    assert await fed.send(old) == {old.event_id: {}}
    assert missing_events_requests(remote) == []
    assert state_ids_requests(remote) == [earlier.event_id]
    stored = await fed.stored(old.event_id)
    assert stored is not None and not stored.outlier and stored.rejected_reason is None
    assert await fed.extremities() == {head, old.event_id}


async def test_a_rejected_event_with_missing_prev_events_is_kept_as_an_outlier(
    fed: Harness,
) -> None:
    remote = fed.remote
    remote.failing.add("get_missing_events")
    state, heads = await fed.state(), await fed.extremities()
    remote.event("m.room.message", {"body": "unseen"}, sender=fed.bob)
    carol = remote.user("carol")  # never joined
    current = await fed.state()
    auth = [current[("m.room.create", "")], current[("m.room.power_levels", "")]]
    intruder = remote.event("m.room.message", {"body": "x"}, sender=carol, auth=auth, record=False)
    assert await fed.send(intruder) == {intruder.event_id: {}}
    stored = await fed.stored(intruder.event_id)
    assert stored is not None and stored.outlier
    assert stored.rejected_reason is not None and stored.rejected_reason.startswith("auth_events:")
    assert state_ids_requests(remote) == []
    assert (await fed.state(), await fed.extremities()) == (state, heads)


@pytest.fixture
def fed_v1(homeserver_factory: Any, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor, version=V1, bob_power=50)


async def test_room_version_1_events_and_gaps(fed_v1: Harness) -> None:
    """v1 events carry their IDs, signed by the ID's server too, and [id, hashes] references."""
    fed = fed_v1
    remote = fed.remote
    first, second, last = remote.chain(3, sender=fed.bob)
    assert first.event_id.endswith(f":{remote.name}")
    response = await fed.put_transaction(fed.transaction([last]), "v1")
    assert response.json == {"pdus": {last.event_id: {}}}
    for event in (first, second, last):
        stored = await fed.stored(event.event_id)
        assert stored is not None and not stored.outlier and stored.rejected_reason is None
    # An event whose ID names another server must carry that server's signature.
    stolen = {**last.pdu_json(), "event_id": "$stolen:127.0.0.1:1"}
    answer = await fed.send(stolen)
    assert "is not signed by 127.0.0.1:1" in answer["$stolen:127.0.0.1:1"]["error"]
    # An unknown room's v1 PDU carries its ID: it gets the error.
    elsewhere = {**last.pdu_json(), "room_id": "!elsewhere:x", "event_id": "$e:x"}
    assert (await fed.send(elsewhere)) == {"$e:x": {"error": "Unknown room !elsewhere:x"}}


@pytest.fixture
def fed_v12(homeserver_factory: Any, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor, version=V12, bob_power=50)


async def test_room_version_12_events_and_gaps(fed_v12: Harness) -> None:
    """v12 events don't list the create event in auth_events: it comes from the room ID."""
    fed = fed_v12
    remote = fed.remote
    remote.failing.add("get_missing_events")
    topic = remote.event("m.room.topic", {"topic": "v12"}, sender=fed.bob, state_key="")
    assert all(not a.startswith("$" + fed.room_id[1:]) for a in topic.auth_event_ids)
    last = remote.event("m.room.message", {"body": "last"}, sender=fed.bob)
    assert await fed.send(last) == {last.event_id: {}}
    stored = await fed.stored(last.event_id)
    assert stored is not None and not stored.outlier and stored.rejected_reason is None
    assert (await fed.state())[("m.room.topic", "")] == topic.event_id
