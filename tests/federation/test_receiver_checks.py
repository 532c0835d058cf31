"""The checks on receipt of each PDU, in the spec's order, through the receiver (both engines).

Server-server API "Checks performed on receipt of a PDU": an invalid event
or a bad signature is dropped (an error, nothing stored), a content hash
mismatch is redacted, failing the auth events or the state before the event
rejects it (stored, never in the state or the extremities), failing the
current state soft-fails it (stored, no extremity, clients not told). After
each bad PDU the room's state and forward extremities are as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.handlers.event_persistence import PersistedEvent
from tests.federation.test_receiver_harness import ALICE, Harness, running_harness


@pytest.fixture
def fed(homeserver_factory: Any, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor)


async def _snapshot(fed: Harness) -> tuple[dict[Any, str], set[str]]:
    return await fed.state(), await fed.extremities()


async def test_an_invalid_event_is_dropped(fed: Harness) -> None:
    before = await _snapshot(fed)
    message = fed.remote.event("m.room.message", {"body": "x"}, sender=fed.bob, record=False)
    bad_depth = {**message.pdu_json(), "depth": "deep"}
    too_large = {**message.pdu_json(), "content": {"body": "x" * 70_000}}
    answer = await fed.send(bad_depth, too_large)
    assert len(answer) == 2
    for result in answer.values():
        assert result["error"].startswith("invalid event"), result
    assert await _snapshot(fed) == before


async def test_a_signature_that_does_not_verify_drops_the_event(fed: Harness) -> None:
    before = await _snapshot(fed)
    # Same key ID as the remote's real key, another key.
    impostor = generate_signing_key(fed.remote.signing_key.version)
    forged = fed.remote.event(
        "m.room.message", {"body": "x"}, sender=fed.bob, signing_key=impostor, record=False
    )
    answer = await fed.send(forged)
    assert "does not verify" in answer[forged.event_id]["error"]
    assert await fed.stored(forged.event_id) is None
    assert await _snapshot(fed) == before


async def test_a_key_the_origin_does_not_publish_drops_the_event(fed: Harness) -> None:
    before = await _snapshot(fed)
    unknown_key = generate_signing_key("not_published")
    forged = fed.remote.event(
        "m.room.message", {"body": "x"}, sender=fed.bob, signing_key=unknown_key, record=False
    )
    answer = await fed.send(forged)
    assert "under a known key" in answer[forged.event_id]["error"]
    assert await fed.stored(forged.event_id) is None
    assert await _snapshot(fed) == before


async def test_the_sender_server_must_have_signed(fed: Harness) -> None:
    """The remote can't send events of our users, nor of a third server, signed by itself."""
    before = await _snapshot(fed)
    as_alice = fed.remote.event(
        "m.room.power_levels",
        {"users": {fed.bob: 100}},
        sender=ALICE,
        state_key="",
        record=False,
    )
    as_third = fed.remote.event(
        "m.room.message", {"body": "x"}, sender="@mallory:127.0.0.1:1", record=False
    )
    answer = await fed.send(as_alice, as_third)
    assert answer[as_alice.event_id]["error"].endswith("is not signed by test")
    assert "is not signed by 127.0.0.1:1" in answer[as_third.event_id]["error"]
    assert await fed.stored(as_alice.event_id) is None
    assert await fed.stored(as_third.event_id) is None
    assert await _snapshot(fed) == before


async def test_a_content_hash_mismatch_stores_the_redacted_copy(fed: Harness) -> None:
    message = fed.remote.event("m.room.message", {"body": "original"}, sender=fed.bob)
    tampered = message.pdu_json()
    # Message content is not part of the redacted form: the ID and the
    # signature still hold, only the content hash fails.
    tampered["content"] = {"body": "tampered", "url": "mxc://evil/x"}
    answer = await fed.send(tampered)
    assert answer == {message.event_id: {}}
    stored = await fed.stored(message.event_id)
    assert stored is not None and stored.rejected_reason is None and not stored.outlier
    assert dict(stored.event.content) == {}
    assert await fed.extremities() == {message.event_id}


async def test_failing_its_auth_events_rejects_the_event(fed: Harness) -> None:
    before = await _snapshot(fed)
    carol = fed.remote.user("carol")  # never joined
    state = await fed.state()
    auth = [state[("m.room.create", "")], state[("m.room.power_levels", "")]]
    message = fed.remote.event(
        "m.room.message", {"body": "x"}, sender=carol, auth=auth, record=False
    )
    name = fed.remote.event(
        "m.room.name", {"name": "carol's"}, sender=carol, state_key="", auth=auth, record=False
    )
    answer = await fed.send(message, name)
    assert answer == {message.event_id: {}, name.event_id: {}}
    for event in (message, name):
        stored = await fed.stored(event.event_id)
        assert stored is not None and not stored.outlier
        assert stored.rejected_reason is not None
        assert stored.rejected_reason.startswith("auth_events:"), stored.rejected_reason
    assert await _snapshot(fed) == before


async def test_auth_events_outside_the_selection_reject_the_event(fed: Harness) -> None:
    before = await _snapshot(fed)
    state = await fed.state()
    auth = [
        state[("m.room.create", "")],
        state[("m.room.power_levels", "")],
        state[("m.room.member", fed.bob)],
        state[("m.room.join_rules", "")],  # not selected for a message
    ]
    message = fed.remote.event(
        "m.room.message", {"body": "x"}, sender=fed.bob, auth=auth, record=False
    )
    assert await fed.send(message) == {message.event_id: {}}
    stored = await fed.stored(message.event_id)
    assert stored is not None and stored.rejected_reason is not None
    assert "does not match the auth events selection" in stored.rejected_reason
    assert await _snapshot(fed) == before


async def test_failing_the_state_before_rejects_the_event(fed: Harness) -> None:
    # Bob may set state under the first power levels, not under the second.
    first = await fed.local(
        "m.room.power_levels", {"users": {ALICE: 100, fed.bob: 50}, "state_default": 50}, ""
    )
    await fed.local("m.room.power_levels", {"users": {ALICE: 100}, "state_default": 50}, "")
    before = await _snapshot(fed)
    state = await fed.state()
    auth = [state[("m.room.create", "")], first.event_id, state[("m.room.member", fed.bob)]]
    topic = fed.remote.event(
        "m.room.topic", {"topic": "bob's"}, sender=fed.bob, state_key="", auth=auth, record=False
    )
    assert await fed.send(topic) == {topic.event_id: {}}
    stored = await fed.stored(topic.event_id)
    assert stored is not None and not stored.outlier
    assert stored.rejected_reason is not None and stored.rejected_reason.startswith("auth:")
    assert await _snapshot(fed) == before
    assert ("m.room.topic", "") not in await fed.state()


async def test_an_event_failing_only_the_current_state_is_soft_failed(fed: Harness) -> None:
    await fed.local(
        "m.room.power_levels", {"users": {ALICE: 100, fed.bob: 50}, "state_default": 50}, ""
    )
    dave = fed.remote.user("dave")
    dave_join = fed.remote.event(
        "m.room.member", {"membership": "join"}, sender=dave, state_key=dave
    )
    assert await fed.send(dave_join) == {dave_join.event_id: {}}
    (before_ban,) = fed.remote.heads()
    ban = await fed.local("m.room.member", {"membership": "ban"}, fed.bob)
    state_after_ban = await fed.state()
    heard: list[PersistedEvent] = []
    fed.hs.event_persister.add_listener(lambda room_id, events: heard.extend(events))

    # Bob's server "didn't see" the ban: his topic points at the DAG before it.
    topic = fed.remote.event(
        "m.room.topic", {"topic": "evading"}, sender=fed.bob, state_key="", prevs=[before_ban]
    )
    assert await fed.send(topic) == {topic.event_id: {}}
    stored = await fed.stored(topic.event_id)
    assert stored is not None and not stored.outlier and stored.rejected_reason is None
    assert await fed.soft_failed(topic.event_id) == {topic.event_id}
    assert await fed.extremities() == {ban.event_id}
    assert await fed.state() == state_after_ban
    assert heard == []
    # The state after it is stored as for any accepted event: it takes part in
    # state resolution if a later event points at it.
    after = await fed.hs.room_storage.state.get_state_ids_for_event(topic.event_id, after=True)
    assert after is not None and after[("m.room.topic", "")] == topic.event_id

    # The spec's example: D, from a server that got the topic before the ban,
    # points at both. D is handled as normal; state resolution (v2) puts the
    # ban first, so the topic of the banned user does not make it into the state.
    d = fed.remote.event(
        "m.room.message", {"body": "D"}, sender=dave, prevs=[ban.event_id, topic.event_id]
    )
    assert await fed.send(d) == {d.event_id: {}}
    assert await fed.soft_failed(d.event_id) == set()
    assert await fed.extremities() == {d.event_id}
    assert [e.event_id for e in heard] == [d.event_id]
    assert await fed.state() == state_after_ban


async def test_events_at_the_head_are_not_soft_failed(fed: Harness) -> None:
    message = fed.remote.event("m.room.message", {"body": "fine"}, sender=fed.bob)
    assert await fed.send(message) == {message.event_id: {}}
    assert await fed.soft_failed(message.event_id) == set()


async def test_the_checks_run_in_order(fed: Harness) -> None:
    """A PDU failing several checks is handled by the first: invalid before signature before auth."""
    before = await _snapshot(fed)
    carol = fed.remote.user("carol")  # not joined: would fail auth
    impostor = generate_signing_key(fed.remote.signing_key.version)
    badly_signed = fed.remote.event(
        "m.room.message", {"body": "x"}, sender=carol, signing_key=impostor, record=False
    )
    invalid = {**badly_signed.pdu_json(), "prev_events": "none"}
    answer = await fed.send(invalid, badly_signed)
    assert answer[badly_signed.event_id]["error"].startswith("signature check failed")
    (invalid_id,) = set(answer) - {badly_signed.event_id}
    assert answer[invalid_id]["error"].startswith("invalid event")
    assert await fed.stored(badly_signed.event_id) is None
    assert await _snapshot(fed) == before


async def test_forged_events_never_change_the_room_state(fed: Harness) -> None:
    before = await _snapshot(fed)
    state = await fed.state()
    create = state[("m.room.create", "")]
    grab = {"users": {fed.bob: 100}, "state_default": 0}
    forgeries = [
        # Power for bob, at the room's start, where bob was not in the room.
        fed.remote.event(
            "m.room.power_levels",
            grab,
            sender=fed.bob,
            state_key="",
            prevs=[create],
            auth=[create],
            record=False,
        ),
        # The same at the head, with a correct selection: bob has no power.
        fed.remote.event("m.room.power_levels", grab, sender=fed.bob, state_key="", record=False),
        # Closing the room, and a new name.
        fed.remote.event(
            "m.room.join_rules",
            {"join_rule": "invite"},
            sender=fed.bob,
            state_key="",
            record=False,
        ),
        fed.remote.event(
            "m.room.name", {"name": "ours"}, sender=fed.bob, state_key="", record=False
        ),
        # Bob's membership replaced by a forged ban of alice.
        fed.remote.event(
            "m.room.member",
            {"membership": "ban"},
            sender=fed.bob,
            state_key=ALICE,
            record=False,
        ),
    ]
    answer = await fed.send(*forgeries)
    assert answer == {f.event_id: {} for f in forgeries}
    for forged in forgeries:
        stored = await fed.stored(forged.event_id)
        assert stored is not None and stored.rejected_reason is not None, forged
    assert await _snapshot(fed) == before
    # An event citing a rejected event among its auth events is rejected too.
    message = fed.remote.event(
        "m.room.message",
        {"body": "x"},
        sender=fed.bob,
        auth=[create, forgeries[1].event_id, state[("m.room.member", fed.bob)]],
        record=False,
    )
    await fed.send(message)
    stored = await fed.stored(message.event_id)
    assert stored is not None and stored.rejected_reason is not None
    assert "was itself rejected" in stored.rejected_reason
    assert await _snapshot(fed) == before


async def test_an_event_we_hold_is_not_handled_again(fed: Harness) -> None:
    heard: list[str] = []
    fed.hs.event_persister.add_listener(
        lambda room_id, events: heard.extend(e.event_id for e in events)
    )
    message = fed.remote.event("m.room.message", {"body": "twice"}, sender=fed.bob)
    assert await fed.send(message) == {message.event_id: {}}
    assert await fed.send(message) == {message.event_id: {}}
    assert heard == [message.event_id]
