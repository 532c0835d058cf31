"""FederationSenderStore on both engines: what destinations are owed, backoff timings, positions."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.event_persistence import EventToPersist
from homeserver.storage.stores.federation_sender import (
    DestinationRoom,
    FederationSenderStore,
    RetryTimings,
)
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS
from tests.storage.events_helpers import (
    ALICE,
    BOB,
    CAROL,
    local_room,
    remote_event,
    setup_persister,
)

CREATE_KEY = ("m.room.create", "")
POWER_LEVELS_KEY = ("m.room.power_levels", "")
JOIN_RULES_KEY = ("m.room.join_rules", "")


def row(destination: str, room_id: str, stream_ordering: int) -> DestinationRoom:
    return DestinationRoom(destination, room_id, stream_ordering, f"$e{stream_ordering}")


async def test_position_starts_once_and_moves_with_the_rows(database: Any) -> None:
    store = FederationSenderStore(database)
    assert await store.get_position("master") is None
    assert await store.init_position("master", 7) == 7
    # A second start keeps the stored position.
    assert await store.init_position("master", 99) == 7
    await store.record("master", [row("a.test", "!r", 9)], 12)
    assert await store.get_position("master") == 12
    await store.set_position("master", 15)
    assert await store.get_position("master") == 15
    assert await store.get_position("other") is None


async def test_rows_only_move_forward_and_a_new_destination_is_owed_only_them(
    database: Any,
) -> None:
    store = FederationSenderStore(database)
    await store.init_position("master", 0)
    await store.record(
        "master", [row("a.test", "!r1", 10), row("a.test", "!r1", 12), row("b.test", "!r1", 11)], 12
    )
    a = await store.get_destination("a.test")
    assert a is not None
    assert a.last_successful_stream_ordering == 9
    assert a.timings == RetryTimings()
    assert [
        (r.room_id, r.stream_ordering, r.event_id) for r in await store.get_owed_rooms("a.test", 9)
    ] == [("!r1", 12, "$e12")]
    # An older event never replaces a newer one; a known destination keeps its position.
    await store.record("master", [row("a.test", "!r1", 11), row("a.test", "!r2", 13)], 13)
    a = await store.get_destination("a.test")
    assert a is not None and a.last_successful_stream_ordering == 9
    owed = await store.get_owed_rooms("a.test", 9)
    assert [(r.room_id, r.stream_ordering) for r in owed] == [("!r1", 12), ("!r2", 13)]
    b = await store.get_destination("b.test")
    assert b is not None and b.last_successful_stream_ordering == 10


async def test_owed_rooms_are_oldest_first_within_bounds(database: Any) -> None:
    store = FederationSenderStore(database)
    await store.init_position("master", 0)
    await store.record("master", [row("a.test", f"!r{n}", n) for n in range(1, 8)], 7)
    owed = await store.get_owed_rooms("a.test", 2, before=6, limit=2)
    assert [r.stream_ordering for r in owed] == [3, 4]
    owed = await store.get_owed_rooms("a.test", 2, before=6)
    assert [r.stream_ordering for r in owed] == [3, 4, 5]
    assert [r.stream_ordering for r in await store.get_owed_rooms("a.test", 5)] == [6, 7]
    assert await store.get_owed_rooms("b.test", 0) == []


async def test_last_successful_never_moves_back(database: Any) -> None:
    store = FederationSenderStore(database)
    await store.init_position("master", 0)
    await store.record("master", [row("a.test", "!r", 5)], 5)
    await store.set_last_successful_stream_ordering("a.test", 5)
    await store.set_last_successful_stream_ordering("a.test", 3)
    a = await store.get_destination("a.test")
    assert a is not None and a.last_successful_stream_ordering == 5
    assert await store.get_owed_rooms("a.test", 5) == []


async def test_retry_timings_and_the_destinations_due(database: Any) -> None:
    store = FederationSenderStore(database)
    await store.init_position("master", 0)
    await store.record(
        "master", [row("a.test", "!r", 5), row("b.test", "!r", 5), row("c.test", "!r", 5)], 5
    )
    await store.set_last_successful_stream_ordering("c.test", 5)  # c is owed nothing
    failing = RetryTimings(retry_last_ts=1000, retry_interval=500, failure_ts=900)
    await store.set_retry_timings("a.test", failing, position_if_new=5)
    a = await store.get_destination("a.test")
    assert a is not None
    assert a.timings == failing
    assert a.last_successful_stream_ordering == 4  # timings leave the position alone
    assert await store.get_failing_destinations() == ["a.test"]

    assert await store.get_owed_destinations(1499) == ["b.test"]
    assert await store.get_owed_destinations(1500) == ["a.test", "b.test"]
    assert await store.get_owed_destinations(1500, after="a.test") == ["b.test"]
    assert await store.get_owed_destinations(1500, limit=1) == ["a.test"]

    # A destination we only sent EDUs to starts owed nothing.
    await store.set_retry_timings("d.test", failing, position_if_new=5)
    d = await store.get_destination("d.test")
    assert d is not None and d.last_successful_stream_ordering == 5
    assert await store.get_owed_destinations(1500) == ["a.test", "b.test"]

    await store.set_retry_timings("a.test", RetryTimings(), position_if_new=5)
    assert await store.get_failing_destinations() == ["d.test"]


async def test_new_events_and_memberships_come_from_the_events_tables(
    database: Any, reactor: Any
) -> None:
    storage, persister = await setup_persister(database, reactor)
    store = FederationSenderStore(database)
    start = storage.events.current_token()
    room_id = await local_room(persister)
    state = await storage.state.get_current_state_ids(room_id)
    extremities = await storage.events.get_forward_extremities(room_id)
    version = (await storage.rooms.get_room(room_id)).room_version  # type: ignore[union-attr]

    def bob_event(content: dict[str, Any], state_key: str = BOB) -> Any:
        return remote_event(
            KNOWN_ROOM_VERSIONS[version],
            room_id,
            "m.room.member",
            BOB,
            content,
            state_key=state_key,
            prevs=list(extremities),
            auth=[state[k] for k in (CREATE_KEY, POWER_LEVELS_KEY, JOIN_RULES_KEY)],
            depth=max(extremities.values()) + 1,
        )

    join = bob_event({"membership": "join"})
    # Joining on someone else's behalf is not allowed: stored, rejected.
    forged = bob_event({"membership": "join"}, CAROL)
    outlier = bob_event({"membership": "join", "displayname": "outlier"})
    await persister.persist([EventToPersist(join), EventToPersist(forged)])
    await persister.persist([EventToPersist(outlier, outlier=True)])
    assert (await storage.events.get_stored_events([forged.event_id]))[
        forged.event_id
    ].rejected_reason is not None

    up_to = storage.events.current_token()
    new = await store.get_new_events(start, up_to, 100)
    assert [e.event_id for e in new][-1] == join.event_id
    assert forged.event_id not in {e.event_id for e in new}
    assert outlier.event_id not in {e.event_id for e in new}
    assert [e.stream_ordering for e in new] == sorted(e.stream_ordering for e in new)
    assert {e.sender for e in new} == {ALICE, BOB}
    assert all(e.room_id == room_id for e in new)
    assert len(await store.get_new_events(start, up_to, 2)) == 2
    assert await store.get_new_events(up_to, up_to, 100) == []

    alice_join = state[("m.room.member", ALICE)]
    memberships = await store.get_memberships([alice_join, join.event_id, forged.event_id, "$nope"])
    assert memberships == {alice_join: "join", join.event_id: "join"}
