"""Tests for homeserver.storage.stores.events (and rooms): the batch write and the reads, on both engines.

These drive the store directly with hand-made `RoomBatch`es; what goes into a
batch (state, extremities) is the persister's business and is tested in
tests/handlers/test_event_persistence.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.storage.database import Database
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.event_batch import EventWrite, RoomBatch, StaleExtremitiesError
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.state import StateGroup, plan_state_group
from homeserver.types.events import EventBase
from homeserver.types.room_versions import V1, V10, RoomVersion
from tests.storage.events_helpers import BOB, CAROL, count_rows, open_room_storage, remote_event

ROOM = "!room:remote.test"


def _group(base: StateGroup | None, key: tuple[str, str], event_id: str, new_id: int) -> StateGroup:
    groups = {} if base is None else {base.id: base}
    return plan_state_group(
        ROOM, None if base is None else base.id, {key: event_id}, groups, new_id
    )


async def _start_room(
    storage: RoomStorage, version: RoomVersion = V10
) -> tuple[list[EventBase], int]:
    """create + BOB's join stored as one batch; returns the events and the stored group after the join."""
    create = remote_event(version, ROOM, "m.room.create", BOB, {"creator": BOB}, state_key="")
    join = remote_event(
        version,
        ROOM,
        "m.room.member",
        BOB,
        {"membership": "join"},
        state_key=BOB,
        prevs=[create.event_id],
        auth=[create.event_id],
        depth=2,
    )
    g1 = _group(None, ("m.room.create", ""), create.event_id, -1)
    g2 = StateGroup(-2, ROOM, -1, {("m.room.member", BOB): join.event_id})
    state = {("m.room.create", ""): create.event_id, ("m.room.member", BOB): join.event_id}
    result = await storage.events.persist_batch(
        RoomBatch(
            room_id=ROOM,
            events=[
                EventWrite(create, state_before=None, state_after=-1),
                EventWrite(join, state_before=-1, state_after=-2),
            ],
            received_ts=1,
            new_groups=[g1, g2],
            old_extremities=frozenset(),
            new_extremities=frozenset({join.event_id}),
            current_state_changes=state,
            current_state=state,
            memberships={join.event_id: "join"},
        )
    )
    return [create, join], result.groups[-2]


def _message(version: RoomVersion, prev: EventBase, auth: list[str], body: str) -> EventBase:
    return remote_event(
        version,
        ROOM,
        "m.room.message",
        BOB,
        {"body": body},
        prevs=[prev.event_id],
        auth=auth,
        depth=prev.depth + 1,
    )


@pytest.mark.parametrize("version", [V1, V10], ids=lambda v: f"v{v.identifier}")
async def test_round_trip(database: Database, version: RoomVersion) -> None:
    """Stored events read back equal (from a fresh store), with positions, edges, room and state."""
    storage = await open_room_storage(database)
    (create, join), group = await _start_room(storage, version)
    fresh = await open_room_storage(database)
    stored = await fresh.events.get_stored_events([create.event_id, join.event_id, "$unknown"])
    assert set(stored) == {create.event_id, join.event_id}
    assert stored[create.event_id].event == create and stored[join.event_id].event == join
    assert stored[create.event_id].stream_ordering < stored[join.event_id].stream_ordering
    assert stored[join.event_id].topological_ordering == (2, stored[join.event_id].stream_ordering)
    assert not stored[join.event_id].outlier and stored[join.event_id].rejected_reason is None
    assert await fresh.events.get_prev_event_ids(join.event_id) == [create.event_id]
    assert await fresh.events.get_auth_event_ids(join.event_id) == [create.event_id]
    assert await fresh.events.get_forward_extremities(ROOM) == {join.event_id: 2}
    assert await fresh.events.get_max_depth(ROOM) == 2
    room = await fresh.rooms.get_room(ROOM)
    assert room is not None and (room.room_version, room.creator) == (version.identifier, BOB)
    assert dict(await fresh.state.get_current_state_ids(ROOM)) == {
        ("m.room.create", ""): create.event_id,
        ("m.room.member", BOB): join.event_id,
    }
    assert dict(await fresh.state.get_state_ids_for_event(join.event_id) or {}) == {
        ("m.room.create", ""): create.event_id
    }
    assert (await fresh.state.get_state_groups_for_events([join.event_id]))[join.event_id][
        1
    ] == group
    assert [(m.user_id, m.membership) for m in await fresh.rooms.get_members(ROOM)] == [
        (BOB, "join")
    ]
    assert await fresh.rooms.get_membership_history(ROOM, BOB) == [
        (join.event_id, "join", stored[join.event_id].stream_ordering)
    ]
    assert await fresh.rooms.get_membership_histories([ROOM, "!other:test"], BOB) == {
        ROOM: [(join.event_id, "join", stored[join.event_id].stream_ordering)],
        "!other:test": [],
    }
    assert await fresh.rooms.get_membership_histories([], BOB) == {}
    assert fresh.events.current_token() == stored[join.event_id].stream_ordering


async def test_stale_extremities_roll_back(database: Database) -> None:
    """A batch computed from old extremities is refused and leaves nothing behind."""
    storage = await open_room_storage(database)
    (create, join), group = await _start_room(storage)
    message = _message(V10, join, [create.event_id, join.event_id], "late")
    rows_before = await count_rows(database, "events")
    with pytest.raises(StaleExtremitiesError):
        await storage.events.persist_batch(
            RoomBatch(
                room_id=ROOM,
                events=[EventWrite(message, state_before=group, state_after=group)],
                received_ts=2,
                old_extremities=frozenset({create.event_id}),
                new_extremities=frozenset({message.event_id}),
            )
        )
    assert await count_rows(database, "events") == rows_before
    assert await storage.events.get_event(message.event_id) is None


async def test_outliers_rejected_and_stream_ranges(database: Database) -> None:
    """Timeline reads skip outliers and rejected events; ranges and directions work."""
    storage = await open_room_storage(database)
    (create, join), group = await _start_room(storage)
    auth = [create.event_id, join.event_id]
    messages = []
    prev = join
    for i in range(5):
        prev = _message(V10, prev, auth, str(i))
        messages.append(prev)
    rejected = _message(V10, prev, auth, "rejected")
    outlier = remote_event(
        V10,
        ROOM,
        "m.room.member",
        CAROL,
        {"membership": "invite"},
        state_key=CAROL,
        auth=auth,
        prevs=[join.event_id],
        depth=3,
    )
    writes = [EventWrite(m, state_before=group, state_after=group) for m in messages]
    writes.append(
        EventWrite(rejected, rejected_reason="auth: no", state_before=group, state_after=group)
    )
    writes.append(EventWrite(outlier, outlier=True))
    result = await storage.events.persist_batch(
        RoomBatch(
            room_id=ROOM,
            events=writes,
            received_ts=3,
            old_extremities=frozenset({join.event_id}),
            new_extremities=frozenset({messages[-1].event_id}),
        )
    )
    fresh = await open_room_storage(database)
    top = fresh.events.current_token()
    assert top == max(result.positions.values())
    forwards = await fresh.events.get_room_events_stream(ROOM, 0, top)
    assert [e.event_id for e in forwards] == [create.event_id, join.event_id] + [
        m.event_id for m in messages
    ]
    backwards = await fresh.events.get_room_events_stream(ROOM, 0, top, limit=2, backwards=True)
    assert [e.event_id for e in backwards] == [messages[-1].event_id, messages[-2].event_id]
    middle = await fresh.events.get_room_events_stream(
        ROOM, result.positions[messages[0].event_id], result.positions[messages[2].event_id]
    )
    assert [e.event_id for e in middle] == [messages[1].event_id, messages[2].event_id]
    # Pagination in topological order, from a token, both ways.
    newest = await fresh.events.get_room_events_topological(ROOM, None, limit=3)
    assert [e.event_id for e in newest] == [m.event_id for m in reversed(messages[-3:])]
    older = await fresh.events.get_room_events_topological(
        ROOM, newest[-1].topological_ordering, limit=10
    )
    assert [e.event_id for e in older] == [m.event_id for m in reversed(messages[:2])] + [
        join.event_id,
        create.event_id,
    ]
    later = await fresh.events.get_room_events_topological(
        ROOM, older[0].topological_ordering, limit=2, backwards=False
    )
    assert [e.event_id for e in later] == [messages[2].event_id, messages[3].event_id]
    assert await fresh.events.get_event(rejected.event_id) is None
    stored = await fresh.events.get_stored_events([rejected.event_id, outlier.event_id])
    assert stored[rejected.event_id].rejected_reason == "auth: no"
    assert stored[outlier.event_id].outlier
    # Only accepted non-outlier events count as pointing at their prev_events.
    # (messages[-1] is listed only by the rejected event.)
    queried = [join.event_id, messages[0].event_id, messages[-1].event_id]
    assert await fresh.events.get_referenced(queried) == {join.event_id, messages[0].event_id}
    # The outlier invite is in the membership history, not in current memberships.
    assert [e for e, _, _ in await fresh.rooms.get_membership_history(ROOM, CAROL)] == [
        outlier.event_id
    ]
    assert await fresh.rooms.get_membership(ROOM, CAROL) is None


async def test_current_state_changes_and_delta_stream(database: Database) -> None:
    """Current state rows, memberships and the delta stream follow each batch's changes."""
    storage = await open_room_storage(database)
    (create, join), group = await _start_room(storage)
    leave = remote_event(
        V10,
        ROOM,
        "m.room.member",
        BOB,
        {"membership": "leave"},
        state_key=BOB,
        prevs=[join.event_id],
        auth=[create.event_id, join.event_id],
        depth=3,
    )
    new_group = StateGroup(-1, ROOM, group, {("m.room.member", BOB): leave.event_id})
    result = await storage.events.persist_batch(
        RoomBatch(
            room_id=ROOM,
            events=[EventWrite(leave, state_before=group, state_after=-1)],
            received_ts=4,
            new_groups=[new_group],
            old_extremities=frozenset({join.event_id}),
            new_extremities=frozenset({leave.event_id}),
            current_state_changes={
                ("m.room.member", BOB): leave.event_id,
                ("m.room.create", ""): None,
            },
            current_state={("m.room.member", BOB): leave.event_id},
            memberships={leave.event_id: "leave"},
        )
    )
    assert await storage.rooms.get_members(ROOM) == []
    membership = await storage.rooms.get_membership(ROOM, BOB)
    assert membership is not None and (membership.membership, membership.event_id) == (
        "leave",
        leave.event_id,
    )
    assert [m.room_id for m in await storage.rooms.get_rooms_for_user(BOB, ["leave"])] == [ROOM]
    fresh = await open_room_storage(database)
    assert dict(await fresh.state.get_current_state_ids(ROOM)) == {
        ("m.room.member", BOB): leave.event_id
    }

    def deltas(txn: Any) -> list[tuple[Any, ...]]:
        txn.execute(
            "SELECT stream_ordering, type, state_key, event_id, prev_event_id"
            " FROM current_state_delta_stream WHERE room_id = ? ORDER BY stream_ordering, type",
            (ROOM,),
        )
        return txn.fetchall()

    rows = await database.run_interaction("deltas", deltas)
    position = result.positions[leave.event_id]
    assert rows[-2:] == [
        (position, "m.room.create", "", None, create.event_id),
        (position, "m.room.member", BOB, leave.event_id, join.event_id),
    ]


async def test_event_cache_is_bounded(database: Database) -> None:
    storage = await open_room_storage(database)
    (create, join), _ = await _start_room(storage)
    small = EventStore(database, storage.events.stream, storage.state, event_cache_size=1)
    assert set(await small.get_events([create.event_id, join.event_id])) == {
        create.event_id,
        join.event_id,
    }
    assert len(small._cache) == 1
