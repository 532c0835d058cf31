"""Tests for homeserver.handlers.room_batch: the state before and after each event, on both engines.

Events go in through the persister; the oracle is `NaiveRoom`, which
recomputes every state from scratch with the pure resolution and auth rules.
Also here: what state costs in storage as a room grows.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from twisted.internet import defer

from homeserver.handlers.event_persistence import EventToPersist
from homeserver.handlers.room_batch import MissingStateError
from homeserver.state.auth_rules import AuthError
from homeserver.state.loader import EventMap
from homeserver.state.resolution import resolve_state
from homeserver.storage.database import Database
from homeserver.types.room_versions import V1, V10, V12, RoomVersion
from tests.storage.events_helpers import (
    ALICE,
    BOB,
    CAROL,
    LOCAL,
    NaiveRoom,
    creator_users,
    local_room,
    naive_remote_room,
    open_room_storage,
    setup_persister,
)


async def test_missing_prev_events_need_supplied_state(database: Database, reactor: Any) -> None:
    """An event after a gap needs its state_before; the gap becomes a backward extremity."""
    storage, persister = await setup_persister(database, reactor)
    room, order = await naive_remote_room(storage, persister, V10)
    gap = room.make("m.room.message", BOB, {"body": "never sent"}, prevs=[order[-1]])
    room.add(gap)
    after_gap = room.make("m.room.message", BOB, {"body": "after"}, prevs=[gap.event_id])
    room.add(after_gap)
    with pytest.raises(MissingStateError):
        await persister.persist([EventToPersist(after_gap)])
    (stored,) = await persister.persist(
        [EventToPersist(after_gap, state_before=room.before[after_gap.event_id])]
    )
    assert stored.rejected_reason is None
    assert await storage.events.get_backward_extremities(room.room_id) == [gap.event_id]
    assert set(await storage.events.get_forward_extremities(room.room_id)) == {
        order[-1],
        after_gap.event_id,
    }
    assert (
        await storage.state.get_state_ids_for_event(after_gap.event_id)
        == room.before[after_gap.event_id]
    )


# -- state


async def test_rejected_events_never_change_state(database: Database, reactor: Any) -> None:
    """A remote event failing the auth rules is stored as rejected, with after-state = before-state."""
    storage, persister = await setup_persister(database, reactor)
    room, order = await naive_remote_room(storage, persister, V10)
    # CAROL is not in the room: her topic change is rejected.
    bad = room.make("m.room.topic", CAROL, {"topic": "hijack"}, state_key="", prevs=[order[-1]])
    assert not room.add(bad)
    (stored,) = await persister.persist([EventToPersist(bad)])
    assert stored.rejected_reason is not None and stored.rejected_reason.startswith("auth:")
    assert ("m.room.topic", "") not in await storage.state.get_current_state_ids(room.room_id)
    groups = await storage.state.get_state_groups_for_events([bad.event_id])
    assert groups[bad.event_id][0] == groups[bad.event_id][1]
    assert list(await storage.events.get_forward_extremities(room.room_id)) == [order[-1]]
    assert await storage.events.get_event(bad.event_id) is None
    assert await storage.events.get_event(bad.event_id, allow_rejected=True) == bad
    timeline = await storage.events.get_room_events_stream(
        room.room_id, 0, storage.events.current_token()
    )
    assert bad.event_id not in [e.event_id for e in timeline]


@pytest.mark.parametrize("version", [V1, V10, V12], ids=lambda v: f"v{v.identifier}")
async def test_forks_are_resolved(database: Database, reactor: Any, version: RoomVersion) -> None:
    """Conflicting branches: current state and the merge event's state are resolve_state's result."""
    storage, persister = await setup_persister(database, reactor)
    room, order = await naive_remote_room(storage, persister, version)
    head = order[-1]
    carol_join = room.make(
        "m.room.member", CAROL, {"membership": "join"}, state_key=CAROL, prevs=[head]
    )
    room.add(carol_join)
    pl = room.make(
        "m.room.power_levels",
        BOB,
        {
            "users": {**creator_users(version, BOB), CAROL: 50},
            "state_default": 50,
            "events": {"m.room.topic": 10},
        },
        state_key="",
        prevs=[carol_join.event_id],
    )
    room.add(pl)
    await persister.persist([EventToPersist(carol_join), EventToPersist(pl)])
    # Branch A: BOB bans CAROL. Branch B: CAROL sets the topic.
    ban = room.make(
        "m.room.member", BOB, {"membership": "ban"}, state_key=CAROL, prevs=[pl.event_id]
    )
    topic = room.make(
        "m.room.topic", CAROL, {"topic": "carol's"}, state_key="", prevs=[pl.event_id]
    )
    room.add(ban)
    room.add(topic)
    await persister.persist([EventToPersist(ban)])
    await persister.persist([EventToPersist(topic)])
    expected = resolve_state(
        version,
        [room.after[ban.event_id], room.after[topic.event_id]],
        EventMap(room.events.values()).fetch_event,
    )
    assert dict(await storage.state.get_current_state_ids(room.room_id)) == expected
    assert dict(await storage.state.get_current_state_ids(room.room_id)) == room.state_before(
        [ban.event_id, topic.event_id]
    )
    members = {m.user_id: m.membership for m in await storage.rooms.get_members(room.room_id, None)}
    assert members[CAROL] == (
        "ban" if expected[("m.room.member", CAROL)] == ban.event_id else "join"
    )
    merge = room.make(
        "m.room.message", BOB, {"body": "merge"}, prevs=[ban.event_id, topic.event_id]
    )
    room.add(merge)
    await persister.persist([EventToPersist(merge)])
    assert await storage.state.get_state_ids_for_event(merge.event_id) == expected
    assert list(await storage.events.get_forward_extremities(room.room_id)) == [merge.event_id]


async def test_state_at_every_event_matches_naive_recomputation(
    database: Database, reactor: Any
) -> None:
    """A long random history with forks and rejections: state before/after each event, read back
    through a fresh storage (no caches), equals the from-scratch recomputation."""
    storage, persister = await setup_persister(database, reactor)
    version = V10
    room, order = await naive_remote_room(storage, persister, version)
    rng = random.Random(5)
    users = [f"@u{i}:{'remote.test' if i % 2 else 'other.test'}" for i in range(12)]
    heads = [order[-1]]
    pending: list[EventToPersist] = []
    for step in range(400):
        if len(heads) > 1 and rng.random() < 0.3:
            prevs = rng.sample(heads, min(len(heads), rng.randint(2, 3)))
        else:
            prevs = [rng.choice(heads)]
        roll = rng.random()
        sender = rng.choice(users + [BOB])
        if roll < 0.3:
            event = room.make(
                "m.room.member",
                sender,
                {"membership": rng.choice(["join", "leave"])},
                state_key=sender,
                prevs=prevs,
            )
        elif roll < 0.4:
            event = room.make(
                "m.room.topic", sender, {"topic": f"t{step}"}, state_key="", prevs=prevs
            )
        elif roll < 0.45:
            event = room.make("m.room.name", BOB, {"name": f"n{step}"}, state_key="", prevs=prevs)
        else:
            event = room.make("m.room.message", sender, {"body": f"m{step}"}, prevs=prevs)
        accepted = room.add(event)
        if accepted:
            heads = [h for h in heads if h not in prevs] + [event.event_id]
        if rng.random() < 0.1 and len(heads) < 4:
            heads.append(rng.choice(list(room.after)))
            heads = list(dict.fromkeys(heads))  # old events, rejected ones included
        pending.append(EventToPersist(event))
        order.append(event.event_id)
        if len(pending) >= rng.randint(1, 8):
            await persister.persist(pending)
            pending = []
    if pending:
        await persister.persist(pending)

    merges = sum(1 for e in order if len(room.events[e].prev_event_ids) > 1)
    assert merges > 20 and len(room.rejected) > 20  # the history has what it should test

    fresh = await open_room_storage(database)
    stored = await fresh.events.get_stored_events(order)
    assert {e for e, s in stored.items() if s.rejected_reason} == room.rejected
    for event_id in order:
        assert (
            dict(await fresh.state.get_state_ids_for_event(event_id) or {}) == room.before[event_id]
        ), event_id
        assert (
            dict(await fresh.state.get_state_ids_for_event(event_id, after=True) or {})
            == room.after[event_id]
        ), event_id
    # Current state is the resolution of the extremities' states.
    extremities = list(await fresh.events.get_forward_extremities(room.room_id))
    assert dict(await fresh.state.get_current_state_ids(room.room_id)) == room.state_before(
        extremities
    )
    groups, rows = await fresh.state.count_state_rows(room.room_id)
    state_changes = sum(
        1 for e in order if room.events[e].state_key is not None and e not in room.rejected
    )
    print(
        f"\n{len(order)} events, {merges} merges, {len(room.rejected)} rejected,"
        f" {state_changes} state changes: {groups} groups, {rows} rows"
    )
    assert groups <= state_changes * 2 and rows <= state_changes * 10


async def test_state_storage_grows_with_state_changes(database: Database, reactor: Any) -> None:
    """200 members and 2000 messages: state rows are O(state changes), and messages add none."""
    storage, persister = await setup_persister(database, reactor)
    room_id = await local_room(persister)
    members = [f"@m{i}:{LOCAL}" for i in range(200)]
    started = time.monotonic()
    await defer.gatherResults(
        [
            defer.ensureDeferred(
                persister.create_and_persist(room_id, "m.room.member", u, u, {"membership": "join"})
            )
            for u in members
        ]
    )
    groups_after_joins, rows_after_joins = await storage.state.count_state_rows(room_id)
    rng = random.Random(1)
    await defer.gatherResults(
        [
            defer.ensureDeferred(
                persister.create_and_persist(
                    room_id, "m.room.message", None, rng.choice(members), {"body": str(i)}
                )
            )
            for i in range(2000)
        ]
    )
    elapsed = time.monotonic() - started
    groups, rows = await storage.state.count_state_rows(room_id)
    state_events = 4 + len(members)
    print(
        f"\n[{database.engine.name}] {state_events} state events, 2000 messages:"
        f" {groups} state groups, {rows} delta rows; {2200 / elapsed:.0f} events/s"
    )
    assert (groups, rows) == (groups_after_joins, rows_after_joins)  # messages reuse groups
    assert groups == state_events  # one group per state change, none for anything else
    assert rows < state_events * 6  # vs 204 x 200 / 2 = 20400 for a snapshot per change
    assert len(await storage.state.get_current_state_ids(room_id)) == state_events
    assert len(await storage.rooms.get_members(room_id)) == 201
    # Every message's state is read back in full from a fresh store.
    fresh = await open_room_storage(database)
    last = list(await fresh.events.get_forward_extremities(room_id))[0]
    assert len(await fresh.state.get_state_ids_for_event(last) or {}) == state_events


async def test_joining_a_room_from_its_state(database: Database, reactor: Any) -> None:
    """A room known only from outliers (its auth events) plus one event with a supplied state:
    the room becomes known, with that state current and that event its only extremity."""
    storage, persister = await setup_persister(database, reactor)
    room = NaiveRoom(V10)
    create = room.create(BOB)
    events = [create]
    head = create.event_id
    for event_type, content, state_key in [
        ("m.room.member", {"membership": "join"}, BOB),
        ("m.room.power_levels", {"users": {BOB: 100}}, ""),
        ("m.room.join_rules", {"join_rule": "public"}, ""),
    ]:
        event = room.make(event_type, BOB, content, state_key=state_key, prevs=[head])
        room.add(event)
        events.append(event)
        head = event.event_id
    await persister.persist([EventToPersist(e, outlier=True) for e in events])
    assert await storage.events.get_forward_extremities(room.room_id) == {}
    join = room.make("m.room.member", CAROL, {"membership": "join"}, state_key=CAROL, prevs=[head])
    room.add(join)
    (stored,) = await persister.persist(
        [EventToPersist(join, state_before=room.before[join.event_id])]
    )
    assert stored.rejected_reason is None
    assert await storage.rooms.get_room_version(room.room_id) == "10"
    assert (
        dict(await storage.state.get_current_state_ids(room.room_id)) == room.after[join.event_id]
    )
    assert list(await storage.events.get_forward_extremities(room.room_id)) == [join.event_id]
    assert await storage.events.get_backward_extremities(room.room_id) == [head]
    assert {m.user_id for m in await storage.rooms.get_members(room.room_id)} == {BOB, CAROL}


async def test_refused_local_event_leaves_no_state_behind(database: Database, reactor: Any) -> None:
    """Over a fork, the resolved state computed for a refused local event is not stored when
    the rest of its batch doesn't use it (no orphan group)."""
    storage, persister = await setup_persister(database, reactor)
    room, order = await naive_remote_room(storage, persister, V10)
    topic = room.make("m.room.topic", BOB, {"topic": "a"}, state_key="", prevs=[order[-1]])
    name = room.make("m.room.name", BOB, {"name": "b"}, state_key="", prevs=[order[-1]])
    room.add(topic)
    room.add(name)
    await persister.persist([EventToPersist(topic), EventToPersist(name)])
    rows = await storage.state.count_state_rows(room.room_id)
    on_topic = room.make("m.room.message", BOB, {"body": "1"}, prevs=[topic.event_id])
    on_name = room.make("m.room.message", BOB, {"body": "2"}, prevs=[name.event_id])
    # The first goes alone; the refused event and the second queue behind it as one batch.
    first = defer.ensureDeferred(persister.persist([EventToPersist(on_topic)]))
    refused = defer.ensureDeferred(
        persister.create_and_persist(room.room_id, "m.room.message", None, ALICE, {})
    )
    second = defer.ensureDeferred(persister.persist([EventToPersist(on_name)]))
    await first
    with pytest.raises(AuthError):
        await refused
    await second
    assert set(await storage.events.get_forward_extremities(room.room_id)) == {
        on_topic.event_id,
        on_name.event_id,
    }
    assert await storage.state.count_state_rows(room.room_id) == rows
