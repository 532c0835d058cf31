"""The room directory stores on both engines: aliases, published rooms, room summaries and
the public room listing over them, and the catch-up of the summaries after a crash."""

from __future__ import annotations

from typing import Any

from homeserver.clock import Clock
from homeserver.handlers.room_stats import STATS_EVENT_TYPES, RoomStatsUpdater, summarise
from homeserver.storage.database import Database
from homeserver.storage.stores.room_stats import PublicRoomsQuery, RoomStats
from tests.storage.events_helpers import ALICE, LOCAL, open_room_storage, setup_persister

LISTABLE = ("public", "knock", "knock_restricted")


def _stats(room_id: str, joined: int, **fields: Any) -> RoomStats:
    fields.setdefault("join_rules", "public")
    return RoomStats(room_id, joined, **fields)


async def _publish(storage: Any, rooms: list[RoomStats], position: int = 1) -> None:
    await storage.room_stats.write_stats(rooms, position)
    for room in rooms:
        await storage.directory.set_published(room.room_id, True)


async def _ids(storage: Any, **query: Any) -> list[str]:
    rooms = await storage.room_stats.get_public_rooms(
        PublicRoomsQuery(listable_join_rules=LISTABLE, **query)
    )
    return [r.room_id for r in rooms]


async def test_an_alias_points_at_one_room(database: Database) -> None:
    directory = (await open_room_storage(database)).directory
    assert await directory.create_alias("#a:t", "!r1:t", "@u:t", ["t", "other"])
    assert not await directory.create_alias("#a:t", "!r2:t", "@v:t", ["t"])
    assert await directory.create_alias("#b:t", "!r1:t", "@v:t", ["t"])
    mapping = await directory.get_alias("#a:t")
    assert mapping is not None
    assert (mapping.room_id, mapping.creator, mapping.servers) == ("!r1:t", "@u:t", ("t", "other"))
    assert await directory.get_aliases_for_room("!r1:t") == ["#a:t", "#b:t"]
    assert await directory.get_aliases_for_room("!r2:t") == []
    deleted = await directory.delete_alias("#a:t")
    assert deleted is not None and deleted.room_id == "!r1:t"
    assert await directory.delete_alias("#a:t") is None
    assert await directory.get_alias("#a:t") is None
    assert await directory.get_aliases_for_room("!r1:t") == ["#b:t"]


async def test_publishing_is_idempotent(database: Database) -> None:
    directory = (await open_room_storage(database)).directory
    assert not await directory.is_published("!r:t")
    await directory.set_published("!r:t", True)
    await directory.set_published("!r:t", True)
    assert await directory.is_published("!r:t")
    await directory.set_published("!r:t", False)
    await directory.set_published("!r:t", False)
    assert not await directory.is_published("!r:t")


async def test_listing_order_and_what_is_listed(database: Database) -> None:
    storage = await open_room_storage(database)
    await _publish(
        storage,
        [
            _stats("!b:t", 5),
            _stats("!a:t", 5),
            _stats("!big:t", 40),
            _stats("!empty:t", 0),
            _stats("!invite:t", 9, join_rules="invite"),
            _stats("!readable:t", 2, join_rules="invite", history_visibility="world_readable"),
            _stats("!knock:t", 1, join_rules="knock"),
        ],
    )
    # Summarised but not published: never listed.
    await storage.room_stats.write_stats([_stats("!private:t", 100)], 1)
    assert await _ids(storage) == ["!big:t", "!a:t", "!b:t", "!readable:t", "!knock:t"]
    query = PublicRoomsQuery(listable_join_rules=LISTABLE)
    assert await storage.room_stats.count_public_rooms(query) == 5
    await storage.directory.set_published("!big:t", False)
    assert await _ids(storage) == ["!a:t", "!b:t", "!readable:t", "!knock:t"]


async def test_pages_are_bounded_by_a_room_both_ways(database: Database) -> None:
    storage = await open_room_storage(database)
    rooms = [_stats(f"!r{i}:t", joined) for i, joined in enumerate([3, 3, 3, 2, 2, 1, 1])]
    await _publish(storage, rooms)
    order = ["!r0:t", "!r1:t", "!r2:t", "!r3:t", "!r4:t", "!r5:t", "!r6:t"]
    assert await _ids(storage) == order
    assert await _ids(storage, limit=3) == order[:3]
    assert await _ids(storage, limit=3, bound=(3, "!r2:t")) == order[3:6]
    assert await _ids(storage, bound=(2, "!r3:t")) == order[4:]
    assert await _ids(storage, limit=2, bound=(2, "!r4:t"), forwards=False) == order[2:4]
    assert await _ids(storage, bound=(2, "!r3:t"), forwards=False) == order[:3]
    # A bound that is no longer a listed room still splits the order where it was.
    assert await _ids(storage, bound=(3, "!r1x:t")) == order[2:]


async def test_search_is_case_insensitive_and_literal(database: Database) -> None:
    storage = await open_room_storage(database)
    await _publish(
        storage,
        [
            _stats("!name:t", 4, name="Straße Café"),
            _stats("!topic:t", 3, topic="All about 100% cotton_wool"),
            _stats("!alias:t", 2, canonical_alias="#Knitting:t"),
            _stats("!plain:t", 1),
        ],
    )
    assert await _ids(storage, search_term="STRASSE") == ["!name:t"]
    assert await _ids(storage, search_term="café") == ["!name:t"]
    assert await _ids(storage, search_term="100%") == ["!topic:t"]
    assert await _ids(storage, search_term="n_w") == ["!topic:t"]
    assert await _ids(storage, search_term="%") == ["!topic:t"]
    assert await _ids(storage, search_term="knitting") == ["!alias:t"]
    # Room IDs match whole, so a common prefix finds nothing.
    assert await _ids(storage, search_term="!plain:t") == ["!plain:t"]
    assert await _ids(storage, search_term="!pla") == []
    query = PublicRoomsQuery(listable_join_rules=LISTABLE, search_term="T")
    assert await storage.room_stats.count_public_rooms(query) == 3


async def test_room_types_filter(database: Database) -> None:
    storage = await open_room_storage(database)
    await _publish(
        storage,
        [
            _stats("!space:t", 3, room_type="m.space"),
            _stats("!custom:t", 2, room_type="org.example"),
            _stats("!untyped:t", 1),
        ],
    )
    assert await _ids(storage, room_types=["m.space"]) == ["!space:t"]
    assert await _ids(storage, room_types=[None]) == ["!untyped:t"]
    assert await _ids(storage, room_types=[None, "m.space"]) == ["!space:t", "!untyped:t"]
    assert await _ids(storage, room_types=[]) == ["!space:t", "!custom:t", "!untyped:t"]


async def test_stats_are_rewritten_and_the_position_never_goes_back(database: Database) -> None:
    store = (await open_room_storage(database)).room_stats
    assert await store.get_position() == 0
    await store.write_stats([_stats("!r:t", 1, name="One")], 10)
    await store.write_stats([_stats("!r:t", 2, name=None, topic="Two")], 5)
    assert await store.get_position() == 10
    assert await store.get_stats("!r:t") == _stats("!r:t", 2, topic="Two")
    assert await store.get_stats("!unknown:t") is None


async def test_changes_and_inputs_come_from_current_state(database: Database, reactor: Any) -> None:
    storage, persister = await setup_persister(database, reactor)
    create = await persister.create_room(ALICE, content={"type": "m.space"})
    room_id = create.room_id
    await persister.create_and_persist(
        room_id, "m.room.member", ALICE, ALICE, {"membership": "join"}
    )
    await persister.create_and_persist(room_id, "m.room.name", "", ALICE, {"name": "Old"})
    middle = storage.events.current_token()
    await persister.create_and_persist(room_id, "m.room.name", "", ALICE, {"name": "New"})
    await persister.create_and_persist(
        room_id,
        "m.room.topic",
        "",
        ALICE,
        {
            "topic": "",
            "m.topic": {"m.text": [{"mimetype": "text/html", "body": "<b>hi</b>"}, {"body": "hi"}]},
        },
    )
    await persister.create_and_persist(room_id, "m.room.message", None, ALICE, {"body": "x"})
    end = storage.events.current_token()
    store = storage.room_stats

    rooms, reached = await store.get_changed_rooms(0, end)
    assert (rooms, reached) == ([room_id], end)
    assert await store.get_changed_rooms(end, end) == ([], end)
    # A page cut short ends at a whole position.
    rooms, reached = await store.get_changed_rooms(0, end, limit=2)
    assert rooms == [room_id] and 0 < reached < middle

    inputs = await store.get_stats_inputs([room_id, "!none:t"], STATS_EVENT_TYPES)
    assert inputs["!none:t"].joined_members == 0
    summary = summarise(room_id, inputs[room_id])
    assert summary == RoomStats(
        room_id, 1, name="New", topic="hi", join_rules=None, room_type="m.space"
    )


async def test_the_updater_catches_up_after_a_crash(database: Database, reactor: Any) -> None:
    """Events stored while no updater listened (a crash after the commit) are summarised at start."""
    storage, persister = await setup_persister(database, reactor)
    room_id = (await persister.create_room(ALICE)).room_id
    await persister.create_and_persist(
        room_id, "m.room.member", ALICE, ALICE, {"membership": "join"}
    )
    await persister.create_and_persist(room_id, "m.room.name", "", ALICE, {"name": "Before"})

    updater = RoomStatsUpdater(Clock(reactor), storage.room_stats, storage.events.current_token)
    updater.rooms_per_pass = 1  # catch up one position per transaction
    persister.add_listener(updater.on_new_events)
    updater.startService()
    try:
        await updater.wait_until_current()
        stats = await storage.room_stats.get_stats(room_id)
        assert stats is not None and (stats.name, stats.joined_members) == ("Before", 1)
        assert await storage.room_stats.get_position() == storage.events.current_token()

        await persister.create_and_persist(room_id, "m.room.name", "", ALICE, {"name": "After"})
        await persister.create_and_persist(
            room_id, "m.room.member", f"@bob:{LOCAL}", ALICE, {"membership": "invite"}
        )
        await updater.wait_until_current()
        stats = await storage.room_stats.get_stats(room_id)
        assert stats is not None and (stats.name, stats.joined_members) == ("After", 1)
    finally:
        await updater.stopService()
