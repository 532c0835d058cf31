"""SyncHandler: GET /sync, initial and incremental, long-polling.

Spec: client-server API "Syncing" and GET /sync; "Room Tagging" (tags as the
rooms' `m.tag` account data); "Client Config" (account data in /sync).

A sync reports, for one user, what happened between `since` (none: from the
start) and the current position of every stream (`next_batch`):

- `rooms.join`: each joined room with new events, state changes or account
  data (all of them on an initial sync or with `full_state`). A room joined
  since `since` gets its full state.
- `rooms.invite` / `rooms.knock`: pending invites and knocks, with stripped
  state (on an incremental sync, those made since `since`).
- `rooms.leave`: rooms left or banned from since `since`, with the timeline up
  to the leave; on an initial or `full_state` sync only with the filter's
  `include_leave`. A room the user never joined (a rejected invite) shows
  the leave event alone; rooms the user forgot are left out.
- `account_data`: the global account data set since `since`.

Room sets come from `current_memberships` and, for incremental syncs, the
user's membership events since `since`; room entries are built in bulk by
`homeserver.handlers.sync_rooms`. Sections for features this server does not
have yet (presence, ephemeral events, to-device, E2EE, notification counts)
are left out rather than faked.

Long-polling: an incremental sync that finds nothing waits on the notifier
for up to `timeout` ms and looks again as soon as something for the user is
committed (see `homeserver.handlers.notifier`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.clock import Clock
from homeserver.handlers.auth import Requester
from homeserver.handlers.notifier import Notifier
from homeserver.handlers.sync_rooms import (
    JOIN_SECTION,
    LEAVE_SECTION,
    RoomEntryBuilder,
    RoomPlan,
)
from homeserver.state.auth_common import BAN, INVITE, JOIN, KNOCK, LEAVE
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.account_data import AccountDataChanges, AccountDataStore
from homeserver.storage.stores.events import StoredEvent
from homeserver.storage.stores.rooms import Membership
from homeserver.storage.stores.sync import SyncStore
from homeserver.types.filters import Filter
from homeserver.types.stream_tokens import SyncToken

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

# Synapse's `filter_timeline_limit`: the largest timeline a filter may ask for.
MAX_TIMELINE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class SyncRequest:
    requester: Requester
    filter: Filter
    since: SyncToken | None = None
    timeout_ms: int = 0
    full_state: bool = False
    use_state_after: bool = False


@dataclass(slots=True)
class SyncResult:
    next_batch: SyncToken
    response: JsonDict
    joined_room_ids: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        """Nothing to report: the long-poll goes on waiting."""
        return not (self.response.get("rooms") or self.response.get("account_data"))


@dataclass(slots=True)
class _Rooms:
    """The rooms of one sync, by section."""

    plans: list[RoomPlan] = field(default_factory=list)
    invites: list[StoredEvent] = field(default_factory=list)
    knocks: list[StoredEvent] = field(default_factory=list)
    newly_joined: set[str] = field(default_factory=set)
    joined: list[str] = field(default_factory=list)


class SyncHandler:
    def __init__(
        self,
        clock: Clock,
        room_storage: RoomStorage,
        sync_store: SyncStore,
        account_data: AccountDataStore,
        notifier: Notifier,
        rooms: RoomEntryBuilder,
    ) -> None:
        self._clock = clock
        self._storage = room_storage
        self._sync_store = sync_store
        self._account_data = account_data
        self._notifier = notifier
        self._rooms = rooms

    async def sync(self, request: SyncRequest) -> JsonDict:
        """The /sync response, waiting up to `timeout_ms` for news on an incremental sync."""
        since = request.since
        result = await self._compute(request, since)
        if since is None or request.full_state or request.timeout_ms <= 0:
            return result.response
        deadline = self._clock.time() + request.timeout_ms / 1000
        user_id = request.requester.user_id
        while result.is_empty():
            remaining_ms = int((deadline - self._clock.time()) * 1000)
            if remaining_ms <= 0:
                break
            await self._notifier.wait_for_events(
                user_id, result.next_batch, remaining_ms, result.joined_room_ids
            )
            # Nothing was visible up to the last token: look on from there.
            result = await self._compute(request, result.next_batch)
            if self._notifier.stopping:
                break
        return result.response

    async def _compute(self, request: SyncRequest, since: SyncToken | None) -> SyncResult:
        now = self._notifier.current_token()
        if since is not None:
            # A token from the future (a restored database) reads as now.
            since = SyncToken(
                min(since.events, now.events), min(since.account_data, now.account_data)
            )
        user_id = request.requester.user_id
        sync_filter = request.filter
        initial = since is None
        full_state = initial or request.full_state
        rooms = await self._select_rooms(user_id, since, now, sync_filter, full_state)

        entries = await self._rooms.build(
            rooms.plans,
            requester=request.requester,
            sync_filter=sync_filter,
            timeline_limit=min(sync_filter.room.timeline.limit, MAX_TIMELINE_LIMIT),
            use_state_after=request.use_state_after,
            initial=initial,
        )
        account_data = await self._account_data_changes(
            user_id,
            None if full_state else since,
            now,
            [p.room_id for p in rooms.plans],
            rooms.newly_joined,
        )
        room_account_data = self._room_account_data(account_data, sync_filter)
        reported = {
            room_id: entry
            for room_id, entry in entries.items()
            if full_state
            or room_id in rooms.newly_joined
            or entry.plan.section == LEAVE_SECTION
            or entry.has_news()
            or room_account_data.get(room_id)
        }
        serialized = await self._rooms.serialize(
            reported,
            requester=request.requester,
            sync_filter=sync_filter,
            use_state_after=request.use_state_after,
            room_account_data=room_account_data,
        )
        response: JsonDict = {"next_batch": str(now)}
        sections: JsonDict = {}
        joins = {r: v for r, v in serialized.items() if reported[r].plan.section == JOIN_SECTION}
        leaves = {r: v for r, v in serialized.items() if reported[r].plan.section == LEAVE_SECTION}
        if joins:
            sections["join"] = joins
        if rooms.invites:
            stripped = await self._rooms.stripped_states(rooms.invites, "invite_room_state")
            sections["invite"] = {r: {"invite_state": {"events": e}} for r, e in stripped.items()}
        if rooms.knocks:
            stripped = await self._rooms.stripped_states(rooms.knocks, "knock_room_state")
            sections["knock"] = {r: {"knock_state": {"events": e}} for r, e in stripped.items()}
        if leaves:
            sections["leave"] = leaves
        if sections:
            response["rooms"] = sections
        global_data = [
            event
            for event in (
                {"type": t, "content": c} for t, c in account_data.global_data.items()
            )
            if sync_filter.account_data.matches(event)
        ]
        if global_data:
            response["account_data"] = {"events": global_data}
        return SyncResult(now, response, rooms.joined)

    # -- which rooms

    async def _select_rooms(
        self,
        user_id: str,
        since: SyncToken | None,
        now: SyncToken,
        sync_filter: Filter,
        full_state: bool,
    ) -> _Rooms:
        memberships = [
            m
            for m in await self._storage.rooms.get_rooms_for_user(user_id, None)
            if sync_filter.room.allows_room(m.room_id)
        ]
        membership_events = await self._storage.events.get_stored_events(
            [m.event_id for m in memberships]
        )
        memberships, membership_events = await self._as_of(
            user_id, now, memberships, membership_events
        )
        rooms = _Rooms(joined=[m.room_id for m in memberships if m.membership == JOIN])
        if full_state:
            await self._select_all(
                rooms, user_id, since, now, sync_filter, memberships, membership_events
            )
        else:
            assert since is not None
            await self._select_changed(rooms, user_id, since, now, memberships, membership_events)
        return rooms

    async def _as_of(
        self,
        user_id: str,
        now: SyncToken,
        memberships: list[Membership],
        events: dict[str, StoredEvent],
    ) -> tuple[list[Membership], dict[str, StoredEvent]]:
        """The memberships as they were at `now`: one that changed since we took the token
        would report a room in a state its timeline does not reach (and the next sync,
        starting at `now`, would then see that change as already reported)."""
        moved = [
            m.room_id
            for m in memberships
            if m.event_id in events and events[m.event_id].stream_ordering > now.events
        ]
        if not moved:
            return memberships, events
        earlier = await self._sync_store.get_memberships_at(user_id, moved, now.events)
        found = await self._storage.events.get_stored_events(
            [c.event_id for c in earlier.values()]
        )
        events = {**events, **found}
        result = [m for m in memberships if m.room_id not in moved]
        result += [
            Membership(c.room_id, user_id, c.membership, c.event_id, c.stream_ordering)
            for c in earlier.values()
        ]
        return result, events

    async def _select_all(
        self,
        rooms: _Rooms,
        user_id: str,
        since: SyncToken | None,
        now: SyncToken,
        sync_filter: Filter,
        memberships: Sequence[Membership],
        events: Mapping[str, StoredEvent],
    ) -> None:
        """Initial sync, or full_state: every room the user is in, and left ones if asked."""
        after = 0 if since is None else since.events
        left: list[tuple[Membership, StoredEvent]] = []
        for m in memberships:
            stored = events.get(m.event_id)
            if stored is None:
                continue
            if m.membership == JOIN:
                rooms.plans.append(RoomPlan(m.room_id, JOIN_SECTION, after, now.events, True))
            elif m.membership == INVITE:
                rooms.invites.append(stored)
            elif m.membership == KNOCK:
                rooms.knocks.append(stored)
            elif m.membership in (LEAVE, BAN) and sync_filter.room.include_leave:
                left.append((m, stored))
        if left:
            forgotten = await self._storage.forgotten.get_forgotten_rooms(user_id)
            left = [(m, stored) for m, stored in left if m.room_id not in forgotten]
        ever_joined = await self._sync_store.get_rooms_ever_joined(
            user_id, [m.room_id for m, _ in left]
        )
        for m, stored in left:
            up_to = min(stored.stream_ordering, now.events)
            if m.room_id in ever_joined:
                rooms.plans.append(RoomPlan(m.room_id, LEAVE_SECTION, after, up_to, True))
            elif stored.stream_ordering > after:
                rooms.plans.append(
                    RoomPlan(m.room_id, LEAVE_SECTION, after, up_to, True, only_event=stored)
                )

    async def _select_changed(
        self,
        rooms: _Rooms,
        user_id: str,
        since: SyncToken,
        now: SyncToken,
        memberships: Sequence[Membership],
        events: Mapping[str, StoredEvent],
    ) -> None:
        """Incremental sync: joined rooms, and rooms whose membership changed since `since`."""
        changes = await self._sync_store.get_membership_changes(user_id, since.events, now.events)
        active = self._notifier.rooms_changed_since(
            [m.room_id for m in memberships if m.membership == JOIN], since.events
        )
        changed_in: dict[str, list[str]] = {}
        for change in changes:
            changed_in.setdefault(change.room_id, []).append(change.membership)
        before = await self._sync_store.get_memberships_at(user_id, changed_in, since.events)
        departed = [
            m.room_id for m in memberships if m.room_id in changed_in and m.membership in (LEAVE, BAN)
        ]
        forgotten = (
            await self._storage.forgotten.get_forgotten_rooms(user_id) if departed else set()
        )
        for m in memberships:
            stored = events.get(m.event_id)
            if stored is None:
                continue
            changed = m.room_id in changed_in
            previous = before.get(m.room_id)
            was_joined = previous is not None and previous.membership == JOIN
            range_memberships = changed_in.get(m.room_id, [])
            if m.membership == JOIN:
                # Joined since, or left and joined again: the client's state is stale.
                newly = changed and (
                    not was_joined or any(x in (LEAVE, BAN) for x in range_memberships)
                )
                if newly:
                    rooms.newly_joined.add(m.room_id)
                quiet = not newly and m.room_id not in active
                rooms.plans.append(
                    RoomPlan(m.room_id, JOIN_SECTION, since.events, now.events, newly, quiet=quiet)
                )
            elif not changed or stored.stream_ordering <= since.events or m.room_id in forgotten:
                continue
            elif m.membership == INVITE:
                rooms.invites.append(stored)
            elif m.membership == KNOCK:
                rooms.knocks.append(stored)
            elif m.membership in (LEAVE, BAN):
                up_to = min(stored.stream_ordering, now.events)
                if was_joined:
                    plan = RoomPlan(m.room_id, LEAVE_SECTION, since.events, up_to, False)
                elif JOIN in range_memberships:
                    plan = RoomPlan(m.room_id, LEAVE_SECTION, since.events, up_to, True)
                else:
                    plan = RoomPlan(
                        m.room_id, LEAVE_SECTION, since.events, up_to, True, only_event=stored
                    )
                rooms.plans.append(plan)

    # -- account data

    async def _account_data_changes(
        self,
        user_id: str,
        since: SyncToken | None,
        now: SyncToken,
        room_ids: Sequence[str],
        newly_joined: set[str],
    ) -> AccountDataChanges:
        after = 0 if since is None else since.account_data
        changes = await self._account_data.get_changes(user_id, after, now.account_data, room_ids)
        if newly_joined and after > 0:
            # A room joined since: all of its account data, not just what changed.
            everything = await self._account_data.get_changes(
                user_id, 0, now.account_data, newly_joined
            )
            for room_id, data in everything.rooms.items():
                changes.rooms[room_id] = {**data, **changes.rooms.get(room_id, {})}
        return changes

    @staticmethod
    def _room_account_data(
        changes: AccountDataChanges, sync_filter: Filter
    ) -> dict[str, list[JsonDict]]:
        room_filter = sync_filter.room.account_data
        result: dict[str, list[JsonDict]] = {}
        for room_id, data in changes.rooms.items():
            kept = [
                {"type": data_type, "content": content}
                for data_type, content in data.items()
                if room_filter.matches({"type": data_type, "room_id": room_id})
            ]
            if kept:
                result[room_id] = kept
        return result

