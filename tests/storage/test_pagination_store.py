"""Tests for homeserver.storage.stores.pagination: topological pages, token conversion, filters, timestamps (both engines)."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.event_persistence import EventPersister, PersistedEvent
from homeserver.storage.database import Database
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.pagination import BEFORE_ALL, Page, Position
from homeserver.types.filters import parse_room_event_filter
from homeserver.types.stream_tokens import RoomToken
from tests.homeserver_harness import TestClock
from tests.storage.events_helpers import ALICE, LOCAL, LOCAL_KEY, local_room, open_room_storage

BOB = f"@bob:{LOCAL}"


async def _setup(database: Database, reactor: Any) -> tuple[RoomStorage, EventPersister, TestClock]:
    storage = await open_room_storage(database)
    clock = TestClock(reactor)
    return storage, EventPersister(storage, clock, LOCAL, LOCAL_KEY), clock


async def _message(
    persister: EventPersister, room_id: str, body: str, sender: str = ALICE, **content: Any
) -> PersistedEvent:
    return await persister.create_and_persist(
        room_id, "m.room.message", None, sender, {"msgtype": "m.text", "body": body, **content}
    )


async def _room_with_bob(persister: EventPersister) -> str:
    room_id = await local_room(persister)
    await persister.create_and_persist(room_id, "m.room.member", BOB, BOB, {"membership": "join"})
    return room_id


async def _timeline(storage: RoomStorage, room_id: str) -> list[str]:
    """Every timeline event of the room, oldest first, straight from the events store."""
    events = await storage.events.get_room_events_topological(
        room_id, None, 10_000, backwards=False
    )
    return [e.event_id for e in events]


def _ids(page: Page) -> list[str]:
    return [e.event_id for e in page.events]


def _token(position: Position) -> RoomToken:
    return RoomToken(position[1], position[0])


async def _walk(
    storage: RoomStorage, room_id: str, start: RoomToken, backwards: bool, limit: int, **kwargs: Any
) -> list[Page]:
    pages = [
        await storage.pagination.paginate(
            room_id, start, backwards=backwards, limit=limit, **kwargs
        )
    ]
    while pages[-1].more:
        assert len(pages) < 100, "pagination does not end"
        pages.append(
            await storage.pagination.paginate(
                room_id, _token(pages[-1].next), backwards=backwards, limit=limit, **kwargs
            )
        )
    return pages


# -- chaining pages


async def test_backwards_pages_chain_without_gaps_or_duplicates(
    database: Database, reactor: Any
) -> None:
    """Paging back from the newest event by 7s returns the whole timeline, newest first, once each."""
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    for i in range(55):
        await _message(persister, room_id, f"m{i}")
    everything = await _timeline(storage, room_id)
    assert len(everything) == 59

    pages = await _walk(storage, room_id, RoomToken(storage.events.current_token()), True, 7)
    assert [len(p.events) for p in pages] == [7] * 8 + [3]
    assert [i for p in pages for i in _ids(p)] == everything[::-1]
    assert not pages[-1].more
    # Each page starts where the one before it ended.
    for before, after in zip(pages, pages[1:], strict=False):
        assert after.start == before.next


async def test_forwards_pages_chain_from_the_start(database: Database, reactor: Any) -> None:
    """Paging forwards from before the first event returns the timeline oldest first, once each."""
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    for i in range(52):
        await _message(persister, room_id, f"m{i}")
    everything = await _timeline(storage, room_id)

    pages = await _walk(storage, room_id, _token(BEFORE_ALL), False, 8)
    assert [i for p in pages for i in _ids(p)] == everything
    # 56 events in pages of 8: the 7th page is full and nothing is left after it.
    assert len(pages) == 7 and not pages[-1].more


async def test_direction_change_at_a_token(database: Database, reactor: Any) -> None:
    """From one token, backwards gives its event and older; forwards the events after it."""
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    for i in range(10):
        await _message(persister, room_id, f"m{i}")
    everything = await _timeline(storage, room_id)

    page = await storage.pagination.paginate(
        room_id, RoomToken(storage.events.current_token()), backwards=True, limit=4
    )
    back = await storage.pagination.paginate(room_id, _token(page.next), backwards=True, limit=3)
    forward = await storage.pagination.paginate(
        room_id, _token(page.next), backwards=False, limit=10
    )
    assert _ids(back) == everything[-5:-8:-1]
    assert _ids(forward) == everything[-4:]
    assert not forward.more


async def test_limit_zero_says_whether_there_is_more(database: Database, reactor: Any) -> None:
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    end = RoomToken(storage.events.current_token())
    page = await storage.pagination.paginate(room_id, end, backwards=True, limit=0)
    assert page.events == [] and page.more and page.next == page.start
    page = await storage.pagination.paginate(room_id, end, backwards=False, limit=0)
    assert page.events == [] and not page.more


# -- stream tokens


async def test_stream_tokens_convert_to_the_last_event_before_them(
    database: Database, reactor: Any
) -> None:
    """A stream position (as in a /sync token) starts at the room's last event at or before it,
    however the room's events interleave with other rooms' on the stream."""
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    other_room = await local_room(persister)
    ours: list[PersistedEvent] = []
    theirs: list[PersistedEvent] = []
    for i in range(6):
        ours.append(await _message(persister, room_id, f"ours {i}"))
        theirs.append(await _message(persister, other_room, f"theirs {i}"))

    # At the stream position of the other room's 3rd message, our last event was our 3rd message.
    token = RoomToken(theirs[2].stream_ordering)
    back = await storage.pagination.paginate(room_id, token, backwards=True, limit=2)
    assert _ids(back) == [ours[2].event_id, ours[1].event_id]
    assert back.start == ours[2].topological_ordering
    forward = await storage.pagination.paginate(room_id, token, backwards=False, limit=10)
    assert _ids(forward) == [e.event_id for e in ours[3:]]

    # Exactly at one of our events: that event is the first one back.
    token = RoomToken(ours[4].stream_ordering)
    back = await storage.pagination.paginate(room_id, token, backwards=True, limit=1)
    assert _ids(back) == [ours[4].event_id]

    # Before the room existed: nothing back, everything forwards.
    back = await storage.pagination.paginate(room_id, RoomToken(0), backwards=True, limit=5)
    assert back.events == [] and not back.more
    forward = await storage.pagination.paginate(room_id, RoomToken(0), backwards=False, limit=100)
    assert _ids(forward) == await _timeline(storage, room_id)


async def test_bounds(database: Database, reactor: Any) -> None:
    """A bound stops the page: backwards it excludes the bound's event, forwards it includes it."""
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    sent = [await _message(persister, room_id, f"m{i}") for i in range(10)]
    bound = _token(sent[3].topological_ordering)
    newest = RoomToken(storage.events.current_token())

    pages = await _walk(storage, room_id, newest, True, 4, bound=bound)
    assert [i for p in pages for i in _ids(p)] == [e.event_id for e in sent[:3:-1]]

    start = _token(sent[0].topological_ordering)
    pages = await _walk(storage, room_id, start, False, 2, bound=bound)
    assert [i for p in pages for i in _ids(p)] == [e.event_id for e in sent[1:4]]

    # A stream token as the bound converts like a start does.
    pages = await _walk(
        storage, room_id, newest, True, 100, bound=RoomToken(sent[7].stream_ordering)
    )
    assert [i for p in pages for i in _ids(p)] == [sent[9].event_id, sent[8].event_id]


async def test_ceiling(database: Database, reactor: Any) -> None:
    """No event past the ceiling: backwards starts at it, forwards stops at it."""
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    sent = [await _message(persister, room_id, f"m{i}") for i in range(8)]
    ceiling = sent[4].topological_ordering
    newest = RoomToken(storage.events.current_token())

    page = await storage.pagination.paginate(
        room_id, newest, backwards=True, limit=2, ceiling=ceiling
    )
    assert _ids(page) == [sent[4].event_id, sent[3].event_id]
    assert page.start == ceiling
    # Below the ceiling already: the start stands.
    start = _token(sent[2].topological_ordering)
    page = await storage.pagination.paginate(
        room_id, start, backwards=True, limit=1, ceiling=ceiling
    )
    assert _ids(page) == [sent[2].event_id]

    pages = await _walk(
        storage, room_id, _token(sent[1].topological_ordering), False, 2, ceiling=ceiling
    )
    assert [i for p in pages for i in _ids(p)] == [e.event_id for e in sent[2:5]]
    # A bound past the ceiling gives way to it; one before it stands.
    page = await storage.pagination.paginate(
        room_id,
        _token(sent[1].topological_ordering),
        backwards=False,
        limit=10,
        bound=_token(sent[6].topological_ordering),
        ceiling=ceiling,
    )
    assert _ids(page) == [e.event_id for e in sent[2:5]] and not page.more
    page = await storage.pagination.paginate(
        room_id,
        _token(sent[1].topological_ordering),
        backwards=False,
        limit=10,
        bound=_token(sent[3].topological_ordering),
        ceiling=ceiling,
    )
    assert _ids(page) == [e.event_id for e in sent[2:4]]
    page = await storage.pagination.paginate(
        room_id, newest, backwards=False, limit=10, ceiling=ceiling
    )
    assert page.events == [] and not page.more


# -- filters


async def test_type_and_sender_filters(database: Database, reactor: Any) -> None:
    storage, persister, _ = await _setup(database, reactor)
    room_id = await _room_with_bob(persister)
    for i in range(6):
        await _message(persister, room_id, f"a{i}")
        await _message(persister, room_id, f"b{i}", sender=BOB)
        await persister.create_and_persist(room_id, "m.reaction", None, BOB, {"n": i})
        await persister.create_and_persist(room_id, "M.room.shouting", None, ALICE, {"n": i})
    newest = RoomToken(storage.events.current_token())
    everything = await _timeline(storage, room_id)
    events = await storage.events.get_stored_events(everything)

    async def ids_for(filter_json: dict[str, Any], limit: int = 3) -> list[str]:
        event_filter = parse_room_event_filter(filter_json)
        pages = await _walk(storage, room_id, newest, True, limit, event_filter=event_filter)
        assert all(len(p.events) == limit for p in pages[:-1]), "pages are full"
        return [i for p in pages for i in _ids(p)]

    def expected(predicate: Any) -> list[str]:
        return [i for i in everything[::-1] if predicate(events[i].event)]

    assert await ids_for({"types": ["m.room.message"]}) == expected(
        lambda e: e.type == "m.room.message"
    )
    assert await ids_for({"types": ["m.room.*"]}) == expected(
        lambda e: e.type.startswith("m.room.")
    )
    # Wildcards are case-sensitive on both engines (SQLite's LIKE is not).
    assert await ids_for({"not_types": ["m.*"]}) == expected(lambda e: not e.type.startswith("m."))
    assert await ids_for({"not_types": ["m.room.member", "m.reaction"]}) == expected(
        lambda e: e.type not in ("m.room.member", "m.reaction")
    )
    assert await ids_for({"senders": [BOB]}) == expected(lambda e: e.sender == BOB)
    assert await ids_for({"not_senders": [BOB], "types": ["m.room.message"]}) == expected(
        lambda e: e.sender == ALICE and e.type == "m.room.message"
    )
    # LIKE's own wildcards in a type are taken literally.
    assert await ids_for({"types": ["m_room%*"]}) == []
    assert await ids_for({"types": []}) == []
    assert await ids_for({"senders": []}) == []


async def test_contains_url_filter(database: Database, reactor: Any) -> None:
    """contains_url selects events whose content has a string `url`; look-alikes (a nested url,
    a url that is not a string) fill no place in a page."""
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    with_url = []
    for i in range(4):
        with_url.append(await _message(persister, room_id, f"file {i}", url=f"mxc://test/{i}"))
        # Rows the SQL superset lets through: whole pages of them.
        for j in range(12):
            await _message(persister, room_id, f"lookalike {i}.{j}", info={"url": "mxc://x/y"})
        await _message(persister, room_id, f"number {i}", url=5)
    newest = RoomToken(storage.events.current_token())

    event_filter = parse_room_event_filter({"contains_url": True})
    pages = await _walk(storage, room_id, newest, True, 2, event_filter=event_filter)
    assert [_ids(p) for p in pages] == [
        [with_url[3].event_id, with_url[2].event_id],
        [with_url[1].event_id, with_url[0].event_id],
    ]
    assert not pages[-1].more

    event_filter = parse_room_event_filter({"contains_url": False})
    without = [
        i
        for p in await _walk(storage, room_id, newest, True, 10, event_filter=event_filter)
        for i in _ids(p)
    ]
    everything = await _timeline(storage, room_id)
    assert without == [i for i in everything[::-1] if i not in {e.event_id for e in with_url}]


async def test_filter_for_another_room_matches_nothing(database: Database, reactor: Any) -> None:
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    event_filter = parse_room_event_filter({"not_rooms": [room_id]})
    page = await storage.pagination.paginate(
        room_id, _token(BEFORE_ALL), backwards=False, limit=10, event_filter=event_filter
    )
    assert page.events == [] and not page.more


# -- around an event


async def test_events_around(database: Database, reactor: Any) -> None:
    storage, persister, _ = await _setup(database, reactor)
    room_id = await local_room(persister)
    sent = [await _message(persister, room_id, f"m{i}") for i in range(10)]
    middle = sent[5]

    before, after = await storage.pagination.get_events_around(
        room_id, middle.topological_ordering, 3, 2
    )
    assert _ids(before) == [e.event_id for e in sent[4:1:-1]]
    assert _ids(after) == [e.event_id for e in sent[6:8]]
    assert before.more and after.more
    # The pages' next positions continue the history on each side.
    older = await storage.pagination.paginate(room_id, _token(before.next), backwards=True, limit=1)
    newer = await storage.pagination.paginate(room_id, _token(after.next), backwards=False, limit=1)
    assert _ids(older) == [sent[1].event_id]
    assert _ids(newer) == [sent[8].event_id]

    # At the ends of the room, and with nothing asked for.
    before, after = await storage.pagination.get_events_around(
        room_id, sent[-1].topological_ordering, 0, 5
    )
    assert before.events == [] and before.more
    assert after.events == [] and not after.more
    assert after.next == sent[-1].topological_ordering

    event_filter = parse_room_event_filter({"types": ["m.room.member"]})
    before, after = await storage.pagination.get_events_around(
        room_id, middle.topological_ordering, 5, 5, event_filter
    )
    assert [e.event.type for e in before.events] == ["m.room.member"]
    assert after.events == [] and not after.more


# -- timestamps


async def test_event_for_timestamp(database: Database, reactor: Any) -> None:
    storage, persister, clock = await _setup(database, reactor)
    room_id = await local_room(persister)
    clock.advance(10)
    sent = []
    for i in range(5):
        sent.append(await _message(persister, room_id, f"m{i}"))
        clock.advance(10)
    ts = [e.event.origin_server_ts for e in sent]
    lookup = storage.pagination.get_event_for_timestamp

    assert await lookup(room_id, ts[2], backwards=True) == (sent[2].event_id, ts[2])
    assert await lookup(room_id, ts[2], backwards=False) == (sent[2].event_id, ts[2])
    assert await lookup(room_id, ts[2] + 1, backwards=True) == (sent[2].event_id, ts[2])
    assert await lookup(room_id, ts[2] + 1, backwards=False) == (sent[3].event_id, ts[3])
    assert await lookup(room_id, ts[4] + 1, backwards=False) is None
    assert await lookup(room_id, 0, backwards=True) is None
    create = await lookup(room_id, 0, backwards=False)
    assert create is not None and create[0] == (await _timeline(storage, room_id))[0]
    assert await lookup("!unknown:test.local", ts[2], backwards=True) is None


async def test_event_for_timestamp_ties_follow_the_direction(
    database: Database, reactor: Any
) -> None:
    """Events with the same timestamp: backwards gives the last of them, forwards the first."""
    storage, persister, clock = await _setup(database, reactor)
    room_id = await local_room(persister)
    clock.advance(10)
    frozen_now = clock.time()
    real_time = clock.time
    clock.time = lambda: frozen_now  # type: ignore[method-assign]
    try:
        tied = [await _message(persister, room_id, f"m{i}") for i in range(3)]
    finally:
        clock.time = real_time  # type: ignore[method-assign]
    ts = tied[0].event.origin_server_ts
    assert {e.event.origin_server_ts for e in tied} == {ts}
    lookup = storage.pagination.get_event_for_timestamp
    assert await lookup(room_id, ts, backwards=True) == (tied[-1].event_id, ts)
    assert await lookup(room_id, ts, backwards=False) == (tied[0].event_id, ts)
