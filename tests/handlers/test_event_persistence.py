"""Tests for homeserver.handlers.event_persistence: local events, the DAG, batching, durability (both engines).

How state is computed for each event is tested in test_room_batch.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from twisted.internet import defer

from homeserver.handlers.event_persistence import EventToPersist, PersistedEvent
from homeserver.state.auth_rules import AuthError
from homeserver.storage.database import Database
from homeserver.storage.stores.event_batch import ClientTxn
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, V1, V10, V12, RoomVersion
from tests.conftest import DbConfig, run_on_reactor
from tests.storage.events_helpers import (
    ALICE,
    BOB,
    CAROL,
    LOCAL,
    NaiveRoom,
    count_rows,
    local_room,
    naive_remote_room,
    open_room_storage,
    setup_persister,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _persist_transactions() -> float:
    return (
        REGISTRY.get_sample_value(
            "homeserver_db_transactions_total", {"name": "persist_events", "outcome": "ok"}
        )
        or 0.0
    )


# -- basics


async def test_create_room_and_local_events(database: Database, reactor: Any) -> None:
    """A local room: events are linear, current state and memberships follow, positions increase."""
    storage, persister = await setup_persister(database, reactor)
    room_id = await local_room(persister)
    message = await persister.create_and_persist(
        room_id, "m.room.message", None, ALICE, {"msgtype": "m.text", "body": "hi"}
    )
    assert message.rejected_reason is None and not message.outlier
    state = await storage.state.get_current_state_ids(room_id)
    assert set(state) == {
        ("m.room.create", ""),
        ("m.room.member", ALICE),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
    }
    assert list(await storage.events.get_forward_extremities(room_id)) == [message.event_id]
    assert await storage.events.get_prev_event_ids(message.event_id) == [
        state[("m.room.join_rules", "")]
    ]
    assert [m.user_id for m in await storage.rooms.get_members(room_id)] == [ALICE]
    assert [m.room_id for m in await storage.rooms.get_rooms_for_user(ALICE)] == [room_id]
    assert await storage.rooms.get_room_version(room_id) == "11"
    timeline = await storage.events.get_room_events_stream(
        room_id, 0, storage.events.current_token()
    )
    assert [e.event.type for e in timeline] == [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.message",
    ]
    assert [e.stream_ordering for e in timeline] == sorted(e.stream_ordering for e in timeline)
    assert [e.event.depth for e in timeline] == [1, 2, 3, 4, 5]
    assert storage.events.current_token() == timeline[-1].stream_ordering


@pytest.mark.parametrize("version", [V1, V10, V12], ids=lambda v: f"v{v.identifier}")
async def test_local_events_in_other_room_versions(
    database: Database, reactor: Any, version: RoomVersion
) -> None:
    """v1 (reference hashes in references) and v12 (room ID from the create event) work too."""
    storage, persister = await setup_persister(database, reactor)
    room_id = await local_room(persister, version)
    if version is V12:
        create_id = (await storage.state.get_current_state_ids(room_id))[("m.room.create", "")]
        assert room_id == "!" + create_id[1:]
    event = await persister.create_and_persist(room_id, "m.room.topic", "", ALICE, {"topic": "t"})
    stored = await storage.events.get_event(event.event_id)
    assert stored is not None and stored.room_version is version


async def test_forbidden_local_event_is_refused_and_not_stored(
    database: Database, reactor: Any
) -> None:
    """A local event the rules forbid raises AuthError; nothing is stored and the head is unchanged."""
    storage, persister = await setup_persister(database, reactor)
    room_id = await local_room(persister)
    head = dict(await storage.events.get_forward_extremities(room_id))
    stranger = f"@stranger:{LOCAL}"
    with pytest.raises(AuthError):
        await persister.create_and_persist(room_id, "m.room.message", None, stranger, {"body": "x"})
    assert dict(await storage.events.get_forward_extremities(room_id)) == head
    # The next event still chains from the old head.
    ok = await persister.create_and_persist(room_id, "m.room.message", None, ALICE, {"body": "y"})
    assert ok.event.prev_event_ids == tuple(head)


async def test_unknown_room_is_not_found(database: Database, reactor: Any) -> None:
    _, persister = await setup_persister(database, reactor)
    with pytest.raises(Exception, match="unknown room"):
        await persister.create_and_persist("!nope:test.local", "m.room.message", None, ALICE, {})


async def test_duplicates_are_stored_once(database: Database, reactor: Any) -> None:
    """Persisting an event again answers with its first positions and stores nothing new."""
    storage, persister = await setup_persister(database, reactor)
    room, order = await naive_remote_room(storage, persister, V10)
    event = room.events[order[-1]]
    again = await persister.persist([EventToPersist(event), EventToPersist(event)])
    assert all(p.duplicate for p in again)
    stored = await storage.events.get_stored_events([event.event_id])
    assert {p.stream_ordering for p in again} == {stored[event.event_id].stream_ordering}
    assert await count_rows(database, "events") == len(order)


# -- the DAG


async def test_fork_and_merge_extremities(database: Database, reactor: Any) -> None:
    """Two branches give two forward extremities; a local event merges them; backward extremities track gaps."""
    storage, persister = await setup_persister(database, reactor)
    room, order = await naive_remote_room(storage, persister, V10)
    base = order[-1]
    a = room.make("m.room.message", BOB, {"body": "a"}, prevs=[base])
    b = room.make("m.room.message", BOB, {"body": "b"}, prevs=[base])
    room.add(a)
    room.add(b)
    await persister.persist([EventToPersist(a), EventToPersist(b)])
    assert set(await storage.events.get_forward_extremities(room.room_id)) == {
        a.event_id,
        b.event_id,
    }
    # ALICE can't send (not joined); join as a remote user's server would, then a local user joins.
    carol_join = room.make(
        "m.room.member", CAROL, {"membership": "join"}, state_key=CAROL, prevs=[a.event_id]
    )
    room.add(carol_join)
    await persister.persist([EventToPersist(carol_join)])
    assert set(await storage.events.get_forward_extremities(room.room_id)) == {
        carol_join.event_id,
        b.event_id,
    }
    alice_join = await persister.create_and_persist(
        room.room_id, "m.room.member", ALICE, ALICE, {"membership": "join"}
    )
    assert set(alice_join.event.prev_event_ids) == {carol_join.event_id, b.event_id}
    assert list(await storage.events.get_forward_extremities(room.room_id)) == [alice_join.event_id]
    assert await storage.events.get_backward_extremities(room.room_id) == []
    # An event whose parent is re-sent later: already pointed at, so not an extremity.
    assert await persister.persist([EventToPersist(a)]) and True
    assert list(await storage.events.get_forward_extremities(room.room_id)) == [alice_join.event_id]


async def test_outliers_have_no_state_and_no_extremity(database: Database, reactor: Any) -> None:
    storage, persister = await setup_persister(database, reactor)
    room, order = await naive_remote_room(storage, persister, V10)
    other = NaiveRoom(V10)
    invite_create = other.create(CAROL)
    (stored,) = await persister.persist([EventToPersist(invite_create, outlier=True)])
    assert stored.outlier
    assert await storage.events.get_forward_extremities(invite_create.room_id) == {}
    assert await storage.state.get_state_ids_for_event(invite_create.event_id) is None
    assert (await storage.events.get_stored_events([invite_create.event_id]))[
        invite_create.event_id
    ].outlier


# -- concurrency and batching


async def test_concurrent_local_senders_make_a_linear_dag(database: Database, reactor: Any) -> None:
    """50 senders at once: nothing lost, each event's prev_events is exactly the previous event,
    and the queued events are stored in a couple of transactions, not 50."""
    storage, persister = await setup_persister(database, reactor)
    room_id = await local_room(persister)
    senders = [f"@s{i}:{LOCAL}" for i in range(50)]
    for user in senders:
        await persister.create_and_persist(
            room_id, "m.room.member", user, user, {"membership": "join"}
        )
    before = _persist_transactions()
    results: list[PersistedEvent] = await defer.gatherResults(
        [
            defer.ensureDeferred(
                persister.create_and_persist(room_id, "m.room.message", None, u, {"body": u})
            )
            for u in senders
        ]
    )
    transactions = _persist_transactions() - before
    assert transactions <= 3, transactions
    assert len({r.event_id for r in results}) == 50
    by_order = sorted(results, key=lambda r: r.stream_ordering)
    for previous, current in zip(by_order, by_order[1:], strict=False):
        assert current.event.prev_event_ids == (previous.event_id,)
        assert current.event.depth == previous.event.depth + 1
    assert list(await storage.events.get_forward_extremities(room_id)) == [by_order[-1].event_id]
    timeline = await storage.events.get_room_events_stream(
        room_id, by_order[0].stream_ordering - 1, storage.events.current_token(), limit=100
    )
    assert [e.event_id for e in timeline] == [r.event_id for r in by_order]


async def test_batches_of_queued_remote_events_use_one_transaction(
    database: Database, reactor: Any
) -> None:
    """Events queued while a batch is being written go into the next single transaction."""
    storage, persister = await setup_persister(database, reactor)
    room, order = await naive_remote_room(storage, persister, V10)
    events = []
    head = order[-1]
    for i in range(60):
        event = room.make("m.room.message", BOB, {"body": str(i)}, prevs=[head])
        room.add(event)
        events.append(event)
        head = event.event_id
    before = _persist_transactions()
    await persister.persist([EventToPersist(e) for e in events])
    assert _persist_transactions() - before == 1
    before = _persist_transactions()
    more = []
    for i in range(30):
        event = room.make("m.room.message", BOB, {"body": f"x{i}"}, prevs=[head])
        room.add(event)
        more.append(event)
        head = event.event_id
    await defer.gatherResults(
        [defer.ensureDeferred(persister.persist([EventToPersist(e)])) for e in more]
    )
    # One or two: the first may go alone, the rest queue behind it.
    assert _persist_transactions() - before <= 2
    assert list(await storage.events.get_forward_extremities(room.room_id)) == [head]


async def test_listeners_hear_about_stored_events(database: Database, reactor: Any) -> None:
    storage, persister = await setup_persister(database, reactor)
    heard: list[tuple[str, list[str]]] = []
    persister.add_listener(
        lambda room_id, events: heard.append((room_id, [e.event_id for e in events]))
    )
    create = await persister.create_room(ALICE)
    assert heard == [(create.room_id, [create.event_id])]


# -- durability


_KILL_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from twisted.internet import defer, reactor
    from homeserver.storage.database import Database
    from tests.storage.events_helpers import ALICE, make_persister, open_room_storage

    engine_name, args = json.loads(sys.argv[1])

    async def main():
        db = Database(reactor, engine_name, args, cp_min=1, cp_max=1)
        await db.start()
        storage = await open_room_storage(db)
        persister = make_persister(storage, reactor)
        create = await persister.create_room(ALICE)
        join = await persister.create_and_persist(
            create.room_id, "m.room.member", ALICE, ALICE, {"membership": "join"})
        # Acknowledged: tell the parent, then die without closing anything.
        print(json.dumps([create.room_id, join.event_id]), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def failed(f):
        f.printTraceback()
        os._exit(3)

    defer.ensureDeferred(main()).addErrback(failed)
    reactor.run()
    """
)


def test_acknowledged_event_survives_kill_9(db_config: DbConfig, reactor: Any) -> None:
    """An event whose persist() returned is there, with its state, after the process is SIGKILLed."""
    engine_name, args = db_config
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, json.dumps([engine_name, args])],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    room_id, event_id = json.loads(child.stdout.strip().splitlines()[-1])

    db = Database(reactor, engine_name, args, cp_min=1, cp_max=1)
    run_on_reactor(db.start())
    try:
        storage = run_on_reactor(open_room_storage(db))
        event = run_on_reactor(storage.events.get_event(event_id))
        assert event is not None and event.room_id == room_id
        assert list(run_on_reactor(storage.events.get_forward_extremities(room_id))) == [event_id]
        state = run_on_reactor(storage.state.get_current_state_ids(room_id))
        assert state[("m.room.member", ALICE)] == event_id
        assert KNOWN_ROOM_VERSIONS[run_on_reactor(storage.rooms.get_room_version(room_id))]
    finally:
        run_on_reactor(db.close())


# -- client transactions and replaced state


async def test_client_transaction_returns_the_first_event(database: Database, reactor: Any) -> None:
    """The same client transaction gives the first event back, even from a fresh persister."""
    storage, persister = await setup_persister(database, reactor)
    room_id = await local_room(persister)
    txn = ClientTxn(ALICE, "d:PHONE", "txn1")
    body = {"msgtype": "m.text", "body": "once"}
    first, again = await defer.gatherResults(
        [
            defer.ensureDeferred(
                persister.create_and_persist(room_id, "m.room.message", None, ALICE, body, txn=txn)
            ),
            defer.ensureDeferred(
                persister.create_and_persist(room_id, "m.room.message", None, ALICE, body, txn=txn)
            ),
        ]
    )
    assert not first.duplicate and again.duplicate
    assert again.event_id == first.event_id

    # Another device, or another room, is another transaction.
    other_device = await persister.create_and_persist(
        room_id, "m.room.message", None, ALICE, body, txn=ClientTxn(ALICE, "d:LAPTOP", "txn1")
    )
    assert other_device.event_id != first.event_id

    _, restarted = await setup_persister(database, reactor)
    later = await restarted.create_and_persist(
        room_id, "m.room.message", None, ALICE, body, txn=txn
    )
    assert later.duplicate and later.event_id == first.event_id
    found = await storage.events.get_txn_ids_for_events([first.event_id, other_device.event_id])
    assert found == {first.event_id: txn, other_device.event_id: ClientTxn(ALICE, "d:LAPTOP", "txn1")}
    messages = [
        e
        for e in await storage.events.get_room_events_stream(
            room_id, 0, storage.events.current_token()
        )
        if e.event.type == "m.room.message"
    ]
    assert len(messages) == 2


async def test_state_events_record_what_they_replace(database: Database, reactor: Any) -> None:
    storage, persister = await setup_persister(database, reactor)
    room_id = await local_room(persister)
    first = await persister.create_and_persist(room_id, "m.room.topic", "", ALICE, {"topic": "a"})
    second = await persister.create_and_persist(room_id, "m.room.topic", "", ALICE, {"topic": "b"})
    message = await persister.create_and_persist(
        room_id, "m.room.message", None, ALICE, {"msgtype": "m.text", "body": "x"}
    )
    # From the cache filled by the write, then from the database.
    for events in (
        await storage.events.get_stored_events([first.event_id, second.event_id, message.event_id]),
        await (await setup_persister(database, reactor))[0].events.get_stored_events(
            [first.event_id, second.event_id, message.event_id]
        ),
    ):
        assert events[first.event_id].replaces_state is None
        assert events[second.event_id].replaces_state == first.event_id
        assert events[message.event_id].replaces_state is None
