"""PaginationStore: reading a room's history in topological order (/messages, /context, timestamp_to_event).

Positions. A `Position` (depth, stream_ordering) names the gap just after the
event at that place in the room's topological order, as
`homeserver.types.stream_tokens.RoomToken` does: paginating backwards from it
returns that event first, forwards the event after it. A stream position (the
room part of a /sync token, "s{stream}") is first converted to the position of
the last event, in topological order, of those the room had at that stream
position, so paginating from a /sync `prev_batch` continues where the sync
timeline began. Only accepted timeline events count: outliers and rejected
events are in no timeline.

Filters. What SQL can decide of a `RoomEventFilter` is pushed into the query:
types (exactly, or as a LIKE superset for `*` patterns), senders, and
contains_url (as a superset: the event's JSON holds a `"url":"` string).
Every row is then checked against the whole filter, and the query goes on from
where it stopped until the page is full, so a page holds `limit` matching
events whenever the room has them, and `more` says whether it has others.

Each page is one transaction: the token conversions and the page query (a
second query only when the superset checks dropped rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.events import EventStore, StoredEvent
from homeserver.storage.stores.state import placeholders
from homeserver.types.filters import RoomEventFilter
from homeserver.types.stream_tokens import RoomToken

Position = tuple[int, int]
"""(depth, stream_ordering): the gap just after that place in the room's topological order."""

BEFORE_ALL: Position = (0, 0)
"""Before the room's first event (the create event has depth 1, stream orderings start at 1)."""

_MAX_BATCH = 1000
"""The most rows one query of a page reads when the filter's superset checks drop some."""

_TIMELINE = "room_id = ? AND NOT outlier AND rejected_reason IS NULL AND NOT soft_failed"


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a room's history, in the order paginated."""

    events: list[StoredEvent]
    start: Position
    """Where the page started (a stream token converted)."""
    next: Position
    """Where the following page starts: past the last event returned (`start` if none)."""
    more: bool
    """Whether another event matching the filter lies past `next`, before the bound."""


@dataclass(frozen=True, slots=True)
class _PageIds:
    event_ids: list[str]
    start: Position
    next: Position
    more: bool


@dataclass(frozen=True, slots=True)
class _FilterSql:
    """The SQL a RoomEventFilter pushes down, and whether rows need the exact check."""

    clauses: tuple[str, ...] = ()
    args: tuple[object, ...] = ()
    check: RoomEventFilter | None = None
    needs_content: bool = False
    matches_nothing: bool = False


def _like_pattern(type_pattern: str) -> str:
    """A LIKE pattern (escape character `\\`) for a filter type with `*` wildcards."""
    escaped = type_pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _filter_sql(room_id: str, event_filter: RoomEventFilter | None) -> _FilterSql:
    if event_filter is None:
        return _FilterSql()
    if event_filter.excludes_everything() or not event_filter.allows_room(room_id):
        return _FilterSql(matches_nothing=True)
    clauses: list[str] = []
    args: list[object] = []
    if event_filter.types is not None:
        exact = [t for t in event_filter.types if "*" not in t]
        alternatives = [f"type IN ({placeholders(len(exact))})"] if exact else []
        args += exact
        for pattern in (t for t in event_filter.types if "*" in t):
            # A superset on SQLite, whose LIKE ignores ASCII case; the row check is exact.
            alternatives.append("type LIKE ? ESCAPE '\\'")
            args.append(_like_pattern(pattern))
        clauses.append("(" + " OR ".join(alternatives) + ")")
    # Excluding `*` patterns in SQL would exclude too much where LIKE ignores case:
    # they are left to the row check.
    not_exact = [t for t in event_filter.not_types if "*" not in t]
    if not_exact:
        clauses.append(f"type NOT IN ({placeholders(len(not_exact))})")
        args += not_exact
    if event_filter.senders is not None:
        senders = sorted(event_filter.senders)
        clauses.append(f"sender IN ({placeholders(len(senders))})")
        args += senders
    if event_filter.not_senders:
        not_senders = sorted(event_filter.not_senders)
        clauses.append(f"sender NOT IN ({placeholders(len(not_senders))})")
        args += not_senders
    if event_filter.contains_url:
        # The stored JSON is canonical (no spaces), so an event whose content has
        # a string `url` contains this; a few others may too, and the row check drops them.
        clauses.append("json LIKE ?")
        args.append('%"url":"%')
    return _FilterSql(
        tuple(clauses), tuple(args), event_filter, event_filter.contains_url is not None
    )


def _row_matches(event_filter: RoomEventFilter, room_id: str, row: tuple[object, ...]) -> bool:
    fields: dict[str, object] = {"type": row[3], "sender": row[4], "room_id": room_id}
    if len(row) > 5:
        fields["content"] = json.loads(str(row[5])).get("content", {})
    return event_filter.matches(fields)


def _position_txn(txn: Transaction, room_id: str, token: RoomToken) -> Position:
    """The topological position of a token; a stream token's is that of the last event before it."""
    if token.depth is not None:
        return (token.depth, token.stream)
    # Walks the topological index down from the room's newest event, skipping
    # only the events persisted after the token: few for a /sync token. (The
    # unary plus keeps SQLite from choosing the stream index instead, which
    # would sort the room's whole history before the token.)
    txn.execute(
        f"SELECT depth, stream_ordering FROM events WHERE {_TIMELINE} AND +stream_ordering <= ?"
        " ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
        (room_id, token.stream),
    )
    row = txn.fetchone()
    return BEFORE_ALL if row is None else (int(row[0]), int(row[1]))


def _after(position: Position, backwards: bool) -> Position:
    """The position past an event at `position`, in the direction of pagination."""
    depth, stream = position
    # A position is the gap after its event: going backwards, the gap before
    # an event is the one after whatever precedes it, (depth, stream - 1) at most.
    return (depth, stream - 1) if backwards else position


def _page_txn(
    txn: Transaction,
    room_id: str,
    start: Position,
    bound: Position | None,
    backwards: bool,
    limit: int,
    event_filter: _FilterSql,
) -> _PageIds:
    """Up to `limit` matching events from `start` (exclusive of the gap's far side) towards `bound`.

    Backwards, events at or before `start` and after `bound`; forwards, events
    after `start` and at or before `bound`.
    """
    if event_filter.matches_nothing:
        return _PageIds([], start, start, False)
    if backwards:
        order, from_op, bound_op = "DESC", "<=", ">"
    else:
        order, from_op, bound_op = "ASC", ">", "<="
    columns = "event_id, depth, stream_ordering, type, sender"
    if event_filter.needs_content:
        columns += ", json"
    sql = (
        f"SELECT {columns} FROM events WHERE {_TIMELINE}"
        f" AND (depth, stream_ordering) {from_op} (?, ?)"
    )
    bound_args: tuple[int, ...] = ()
    if bound is not None:
        sql += f" AND (depth, stream_ordering) {bound_op} (?, ?)"
        bound_args = bound
    for clause in event_filter.clauses:
        sql += f" AND {clause}"
    sql += f" ORDER BY depth {order}, stream_ordering {order} LIMIT ?"

    found: list[tuple[str, Position]] = []
    cursor = start
    batch = limit + 1
    while True:
        txn.execute(sql, (room_id, *cursor, *bound_args, *event_filter.args, batch))
        rows = txn.fetchall()
        for row in rows:
            if event_filter.check is None or _row_matches(event_filter.check, room_id, row):
                found.append((str(row[0]), (int(row[1]), int(row[2]))))
        if len(found) > limit or len(rows) < batch:
            break
        cursor = _after((int(rows[-1][1]), int(rows[-1][2])), backwards)
        batch = min(max(batch * 2, limit + 1), max(_MAX_BATCH, limit + 1))
    page = found[:limit]
    next_position = _after(page[-1][1], backwards) if page else start
    return _PageIds([event_id for event_id, _ in page], start, next_position, len(found) > limit)


def _paginate_txn(
    txn: Transaction,
    room_id: str,
    start: RoomToken,
    bound: RoomToken | None,
    backwards: bool,
    limit: int,
    event_filter: _FilterSql,
    ceiling: Position | None,
) -> _PageIds:
    start_position = _position_txn(txn, room_id, start)
    bound_position = None if bound is None else _position_txn(txn, room_id, bound)
    if ceiling is not None:
        if backwards:
            start_position = min(start_position, ceiling)
        elif bound_position is None or bound_position > ceiling:
            bound_position = ceiling
    return _page_txn(txn, room_id, start_position, bound_position, backwards, limit, event_filter)


def _events_around_txn(
    txn: Transaction,
    room_id: str,
    position: Position,
    before_limit: int,
    after_limit: int,
    event_filter: _FilterSql,
) -> tuple[_PageIds, _PageIds]:
    before = _page_txn(txn, room_id, _after(position, True), None, True, before_limit, event_filter)
    after = _page_txn(txn, room_id, position, None, False, after_limit, event_filter)
    return before, after


def _event_for_timestamp_txn(
    txn: Transaction, room_id: str, timestamp: int, backwards: bool
) -> tuple[str, int] | None:
    op, order = ("<=", "DESC") if backwards else (">=", "ASC")
    # Among events with the same timestamp, the one that comes next in the
    # direction looked in: by depth, then by when we got it.
    txn.execute(
        f"SELECT event_id, origin_server_ts FROM events WHERE {_TIMELINE}"
        f" AND origin_server_ts {op} ?"
        f" ORDER BY origin_server_ts {order}, depth {order}, stream_ordering {order} LIMIT 1",
        (room_id, timestamp),
    )
    row = txn.fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


class PaginationStore:
    """Reads of a room's timeline by topological position and by timestamp."""

    def __init__(self, db: Database, events: EventStore) -> None:
        self._db = db
        self._events = events

    async def _load(self, ids: _PageIds) -> Page:
        stored = await self._events.get_stored_events(ids.event_ids)
        return Page([stored[i] for i in ids.event_ids], ids.start, ids.next, ids.more)

    async def paginate(
        self,
        room_id: str,
        start: RoomToken,
        *,
        backwards: bool,
        limit: int,
        bound: RoomToken | None = None,
        event_filter: RoomEventFilter | None = None,
        ceiling: Position | None = None,
    ) -> Page:
        """Up to `limit` accepted timeline events from `start` towards `bound`, matching the filter.

        Backwards: newest first, from the event at `start` down to (not
        including) the event at `bound`. Forwards: oldest first, from the event
        after `start` up to and including the event at `bound`. Stream tokens
        are converted (see the module docstring). Without `bound`, to the
        room's first or newest event. With `ceiling`, no event after that
        position is returned (the start moves down to it when past it).
        """
        ids = await self._db.run_interaction(
            "paginate_room_events",
            _paginate_txn,
            room_id,
            start,
            bound,
            backwards,
            limit,
            _filter_sql(room_id, event_filter),
            ceiling,
        )
        return await self._load(ids)

    async def get_events_around(
        self,
        room_id: str,
        position: Position,
        before_limit: int,
        after_limit: int,
        event_filter: RoomEventFilter | None = None,
    ) -> tuple[Page, Page]:
        """The matching events before (newest first) and after (oldest first) an event's position."""
        before, after = await self._db.run_interaction(
            "get_events_around",
            _events_around_txn,
            room_id,
            position,
            before_limit,
            after_limit,
            _filter_sql(room_id, event_filter),
        )
        return await self._load(before), await self._load(after)

    async def get_event_for_timestamp(
        self, room_id: str, timestamp: int, *, backwards: bool
    ) -> tuple[str, int] | None:
        """(event ID, origin_server_ts) of the room's event closest to `timestamp`.

        Backwards: the latest at or before it; forwards: the earliest at or
        after it. Only accepted timeline events we hold.
        """
        return await self._db.run_interaction(
            "get_event_for_timestamp", _event_for_timestamp_txn, room_id, timestamp, backwards
        )
