"""What receiving stores: transaction answers, and soft-failed events through the persister.

FederationReceivedStore on both engines, and the persister's handling of
`EventToPersist(soft_failed=True)`: stored with the flag, no forward
extremity, no listener told, the current state unchanged; a rejected event
is never flagged.
"""

from __future__ import annotations

from typing import Any

from homeserver.handlers.event_persistence import EventToPersist, PersistedEvent
from homeserver.storage.database import Database
from homeserver.types.room_versions import V11
from tests.storage.events_helpers import (
    ALICE,
    BOB,
    local_room,
    remote_event,
    setup_persister,
)


async def test_transaction_answers_are_kept_per_origin_and_deleted_by_age(
    database: Database, reactor: Any
) -> None:
    storage, _ = await setup_persister(database, reactor)
    store = storage.federation_received
    assert await store.get_transaction_response("a.example", "t", not_before_ts=0) is None
    answer = {"pdus": {"$e": {}, "$f": {"error": "nope ☃"}}}
    await store.set_transaction_response("a.example", "t", 200, answer, 1000)
    await store.set_transaction_response("b.example", "t", 200, {"pdus": {}}, 2000)
    assert await store.get_transaction_response("a.example", "t", not_before_ts=0) == (200, answer)
    assert await store.get_transaction_response("b.example", "t", not_before_ts=0) == (
        200,
        {"pdus": {}},
    )
    # Older than asked for: as if never answered.
    assert await store.get_transaction_response("a.example", "t", not_before_ts=1001) is None
    # A new answer for a forgotten (too old) one replaces it.
    await store.set_transaction_response("a.example", "t", 200, {"pdus": {}}, 3000)
    assert await store.get_transaction_response("a.example", "t", not_before_ts=2500) == (
        200,
        {"pdus": {}},
    )
    assert await store.delete_transactions_before(2500) == 1
    assert await store.get_transaction_response("b.example", "t", not_before_ts=0) is None
    assert await store.get_transaction_response("a.example", "t", not_before_ts=0) is not None


async def test_soft_failed_events_are_stored_flagged_and_kept_out_of_the_head(
    database: Database, reactor: Any
) -> None:
    storage, persister = await setup_persister(database, reactor)
    store = storage.federation_received
    room_id = await local_room(persister)
    heard: list[PersistedEvent] = []
    persister.add_listener(lambda r, events: heard.extend(events))
    assert await store.get_min_depth(room_id) == 1
    assert await store.get_min_depth("!unknown:x") is None

    heads = await storage.events.get_forward_extremities(room_id)
    state = await storage.state.get_current_state_ids(room_id)
    join = remote_event(
        V11,
        room_id,
        "m.room.member",
        BOB,
        {"membership": "join"},
        state_key=BOB,
        prevs=list(heads),
        auth=[
            state[("m.room.create", "")],
            state[("m.room.power_levels", "")],
            state[("m.room.join_rules", "")],
        ],
        depth=max(heads.values()) + 1,
    )
    (soft,) = await persister.persist([EventToPersist(join, soft_failed=True)])
    assert soft.soft_failed and soft.rejected_reason is None and not soft.outlier
    assert await store.get_soft_failed([join.event_id, "$other"]) == {join.event_id}
    assert await storage.events.get_forward_extremities(room_id) == heads
    assert dict(await storage.state.get_current_state_ids(room_id)) == dict(state)
    assert heard == []

    # A rejected event asked to be soft-failed is just rejected.
    intruder = remote_event(
        join.room_version,
        room_id,
        "m.room.message",
        "@carol:remote.test",
        {"body": "x"},
        prevs=list(heads),
        auth=[state[("m.room.create", "")], state[("m.room.power_levels", "")]],
        depth=max(heads.values()) + 1,
    )
    (rejected,) = await persister.persist([EventToPersist(intruder, soft_failed=True)])
    assert rejected.rejected_reason is not None and not rejected.soft_failed
    assert await store.get_soft_failed([intruder.event_id]) == set()
    heard.clear()  # listeners hear of rejected events (and skip them)

    # An event that is not soft-failed moves the head on, and is heard of.
    message = await persister.create_and_persist(room_id, "m.room.message", None, ALICE, {})
    assert set(await storage.events.get_forward_extremities(room_id)) == {message.event_id}
    assert [e.event_id for e in heard] == [message.event_id]
    assert await store.get_soft_failed([]) == set()
