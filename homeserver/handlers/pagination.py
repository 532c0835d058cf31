"""PaginationHandler: a room's history as clients read it: /messages, /context, timestamp_to_event.

Spec: client-server API "Getting events for a room" (GET /rooms/{roomId}/messages),
"Room event context" (GET /rooms/{roomId}/context/{eventId}), "Lazy-loading room
members", and GET /rooms/{roomId}/timestamp_to_event.

History is read in topological order (depth, stream_ordering) from the
pagination store; tokens are `RoomToken`s: "t{depth}-{stream}" positions, or
the stream positions /sync hands out (`prev_batch`, `next_batch`), which the
store converts. Who may read what: the reader must be in the room, have left
it, or the room must be world_readable (`check_user_in_room_or_world_readable`),
and every event goes through `filter_events_for_client`. A user who left a
room that is not world_readable reads it as it was when they left: pagination
stops at their leave in both directions (Synapse clamps backwards pagination
the same way), so `end` goes away there instead of leading on to pages that
visibility would empty.

`end` is left out when no further events are available, as the spec asks.
Backwards, the store looks one event ahead, so the page that reaches the
start of what we hold has no `end` (unless backfill brought more, below).
Forwards, the newest events are a moving edge: a page that returned events
always gives an `end` to come back with for what arrives later, and only an
empty page has none, as with Synapse.

Backfill: a backwards page (without `to`) that reaches the start of what we
hold, in a room with backward extremities (prev_events we never got, as in
a room joined over federation), asks the `Backfiller` (one round per
request: homeserver.federation.backfill) for older events from other
servers, then is read again. If that round stored events and the room still
has history to fetch, the page gets an `end` so the client comes back for
more; a round that stored nothing ends the pagination there, so an
unreachable server does not keep clients looping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from homeserver.handlers.auth import Requester
from homeserver.handlers.event_serializer import EventSerializer
from homeserver.handlers.visibility import (
    check_user_in_room_or_world_readable,
    filter_events_for_client,
    is_world_readable,
)
from homeserver.state.auth_common import LEAVE, MEMBER
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.events import StoredEvent
from homeserver.storage.stores.pagination import BEFORE_ALL, Page, Position
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.filters import RoomEventFilter
from homeserver.types.stream_tokens import InvalidToken, RoomToken

JsonDict = dict[str, Any]

MAX_LIMIT = 1000
"""The most events one request returns, whatever the client asks (Synapse's cap)."""


def _room_token(position: Position) -> RoomToken:
    depth, stream = position
    return RoomToken(stream, depth)


def _token(position: Position) -> str:
    return str(_room_token(position))


_MAX_POSITION = 2**63 - 1
"""Depths and stream orderings are BIGINT columns."""


def _parse_token(value: str, name: str) -> RoomToken:
    try:
        token = RoomToken.parse(value)
    except InvalidToken:
        token = None
    if token is None or max(token.stream, token.depth or 0) > _MAX_POSITION:
        raise MatrixError(Codes.INVALID_PARAM, f"Invalid '{name}' token: {value!r}")
    return token


def _not_found(event_id: str) -> MatrixError:
    return MatrixError(Codes.NOT_FOUND, f"Event {event_id} not found")


class Backfiller(Protocol):
    """Fetches a room's older history from other servers (homeserver.federation.backfill)."""

    async def backfill(self, room_id: str, reached_depth: int | None = None) -> bool:
        """One round for the history below `reached_depth`; whether events were stored."""
        ...


class PaginationHandler:
    """Reads of room history for clients."""

    def __init__(
        self,
        room_storage: RoomStorage,
        serializer: EventSerializer,
        backfiller: Backfiller | None = None,
    ) -> None:
        self._storage = room_storage
        self._serializer = serializer
        self.backfiller = backfiller
        """Set by the composition root once federation is built; None: no backfill."""

    async def get_messages(
        self,
        requester: Requester,
        room_id: str,
        *,
        backwards: bool,
        from_token: str | None,
        to_token: str | None,
        limit: int,
        event_filter: RoomEventFilter | None = None,
    ) -> JsonDict:
        """GET /rooms/{roomId}/messages: {chunk, start, end?, state?}.

        Without `from_token`, from the newest event backwards, from the first
        forwards. `limit` is capped at MAX_LIMIT.
        """
        start = None if from_token is None else _parse_token(from_token, "from")
        bound = None if to_token is None else _parse_token(to_token, "to")
        if start is None:
            # Everything persisted when the request came: later events are for the next /sync.
            start = (
                RoomToken(self._storage.events.current_token())
                if backwards
                else _room_token(BEFORE_ALL)
            )
        user_id = requester.user_id
        membership, member_event_id = await check_user_in_room_or_world_readable(
            self._storage, room_id, user_id, allow_departed_users=True
        )
        ceiling = await self._departure_ceiling(room_id, membership, member_event_id)

        async def read_page() -> Page:
            return await self._storage.pagination.paginate(
                room_id,
                start,
                backwards=backwards,
                limit=min(limit, MAX_LIMIT),
                bound=bound,
                event_filter=event_filter,
                ceiling=ceiling,
            )

        page = await read_page()
        more = page.more
        if backwards and not page.more and bound is None and await self._backfill(room_id, page):
            page = await read_page()
            more = page.more or bool(await self._storage.events.get_backward_extremities(room_id))
        events = await filter_events_for_client(
            self._storage, user_id, page.events, is_peeking=member_event_id is None
        )
        state: list[StoredEvent] = []
        if events and event_filter is not None and event_filter.lazy_load_members:
            # The senders' membership as of the first event given, as Synapse
            # does; every time, as clients may not remember what earlier pages sent.
            state = await self._member_events(events[0], {e.event.sender for e in events})
        serialized = await self._serializer.serialize_events([*events, *state], requester=requester)
        result: JsonDict = {
            "chunk": serialized[: len(events)],
            "start": from_token if from_token is not None else _token(page.start),
        }
        if more or (page.events and not backwards):
            result["end"] = _token(page.next)
        if state:
            result["state"] = serialized[len(events) :]
        return result

    async def get_event_context(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        *,
        limit: int,
        event_filter: RoomEventFilter | None = None,
    ) -> JsonDict:
        """GET /rooms/{roomId}/context/{eventId}.

        {event, events_before, events_after, start, end, state}: `limit` is
        shared between before and after as Synapse does (the smaller half
        before); the filter applies to all but the event itself; `state` is
        the state after the last event returned (lazy-loaded: every non-member
        event and the members who sent the events returned).
        """
        user_id = requester.user_id
        _, member_event_id = await check_user_in_room_or_world_readable(
            self._storage, room_id, user_id, allow_departed_users=True
        )
        stored = (await self._storage.events.get_stored_events([event_id])).get(event_id)
        if (
            stored is None
            or stored.event.room_id != room_id
            or stored.outlier
            or stored.rejected_reason is not None
        ):
            raise _not_found(event_id)
        is_peeking = member_event_id is None
        if not await filter_events_for_client(
            self._storage, user_id, [stored], is_peeking=is_peeking
        ):
            raise _not_found(event_id)

        limit = min(limit, MAX_LIMIT)
        before_limit = limit // 2
        before, after = await self._storage.pagination.get_events_around(
            room_id, stored.topological_ordering, before_limit, limit - before_limit, event_filter
        )
        events_before = await filter_events_for_client(
            self._storage, user_id, before.events, is_peeking=is_peeking
        )
        events_after = await filter_events_for_client(
            self._storage, user_id, after.events, is_peeking=is_peeking
        )
        last = events_after[-1] if events_after else stored
        returned = [*events_before, stored, *events_after]
        if event_filter is not None and event_filter.lazy_load_members:
            state = await self._lazy_state(last, {e.event.sender for e in returned})
        else:
            state = await self._state_after(last)
        if event_filter is not None:
            state = [s for s in state if event_filter.matches(s.event)]

        serialized = await self._serializer.serialize_events(
            [stored, *events_before, *events_after, *state], requester=requester
        )
        after_start = 1 + len(events_before)
        state_start = after_start + len(events_after)
        return {
            "event": serialized[0],
            "events_before": serialized[1:after_start],
            "events_after": serialized[after_start:state_start],
            "state": serialized[state_start:],
            "start": _token(before.next),
            "end": _token(after.next),
        }

    async def get_event_for_timestamp(
        self, requester: Requester, room_id: str, timestamp: int, *, backwards: bool
    ) -> JsonDict:
        """GET /rooms/{roomId}/timestamp_to_event: {event_id, origin_server_ts}.

        The closest event we hold at or before (`backwards`) or at or after the
        timestamp; 404 M_NOT_FOUND when there is none. Asking other servers is
        for when federation backfill exists.
        """
        await check_user_in_room_or_world_readable(self._storage, room_id, requester.user_id)
        found = await self._storage.pagination.get_event_for_timestamp(
            room_id, timestamp, backwards=backwards
        )
        if found is None:
            direction = "backward" if backwards else "forward"
            raise MatrixError(
                Codes.NOT_FOUND, f"Unable to find event from {timestamp} in {direction} direction"
            )
        event_id, origin_server_ts = found
        return {"event_id": event_id, "origin_server_ts": origin_server_ts}

    # -- helpers

    async def _backfill(self, room_id: str, page: Page) -> bool:
        """One round of backfill below where `page` ended; whether it stored events."""
        if self.backfiller is None:
            return False
        if not await self._storage.events.get_backward_extremities(room_id):
            return False
        return await self.backfiller.backfill(room_id, page.next[0])

    async def _departure_ceiling(
        self, room_id: str, membership: str | None, member_event_id: str | None
    ) -> Position | None:
        """Where a user who left stops reading the room: their leave (None: no limit).

        Not in a world_readable room, where they read whatever anyone may.
        """
        if membership != LEAVE or member_event_id is None:
            return None
        if await is_world_readable(self._storage, room_id):
            return None
        leave = (await self._storage.events.get_stored_events([member_event_id])).get(
            member_event_id
        )
        return None if leave is None else leave.topological_ordering

    async def _state_after(self, stored: StoredEvent) -> list[StoredEvent]:
        state = await self._storage.state.get_state_ids_for_event(stored.event_id, after=True)
        return await self._events_in_order(state.values() if state is not None else ())

    async def _member_events(
        self, stored: StoredEvent, user_ids: Iterable[str]
    ) -> list[StoredEvent]:
        """The membership events of these users in the state after `stored`."""
        state = await self._storage.state.get_state_ids_for_event(stored.event_id, after=True)
        if state is None:
            return []
        return await self._events_in_order(
            state[(MEMBER, u)] for u in sorted(user_ids) if (MEMBER, u) in state
        )

    async def _lazy_state(self, stored: StoredEvent, senders: Iterable[str]) -> list[StoredEvent]:
        """The state after `stored`: every non-member event, and the members among `senders`."""
        state = await self._storage.state.get_state_ids_for_event(stored.event_id, after=True)
        if state is None:
            return []
        wanted = set(senders)
        return await self._events_in_order(
            event_id
            for (event_type, state_key), event_id in state.items()
            if event_type != MEMBER or state_key in wanted
        )

    async def _events_in_order(self, event_ids: Iterable[str]) -> list[StoredEvent]:
        ids: Sequence[str] = list(dict.fromkeys(event_ids))
        stored = await self._storage.events.get_stored_events(ids)
        return [stored[i] for i in ids if i in stored]
