"""The room entries of a /sync response: timelines, state, lazy-loaded members, stripped state.

Spec: client-server API "Syncing" (the `state`/`timeline` split), GET /sync
(`rooms.join`, `rooms.leave`, `rooms.invite`, `rooms.knock`, `state_after`,
`summary`), "Lazy-loading room members" and "Stripped state".

`RoomEntryBuilder.build` takes one `RoomPlan` per joined or left room and
answers them all together: every database read is batched over the rooms
(see `homeserver.storage.stores.sync`), and events are serialized in one call.

Timeline: the newest `limit` events in (after, up_to] that pass the timeline
filter and the history visibility rules; `limited` when more of them exist;
`prev_batch` the stream position just before the first one.

State, "the state at the start of the timeline" (or, with `use_state_after`,
at its end), given:

- in full (initial sync, `full_state`, a newly joined room): the state before
  the first timeline event (the state at `up_to` if the timeline is empty),
  less the events in the timeline;
- as a delta, when the timeline is not limited: the changes of the room's
  current state within (after, up_to] (current_state_delta_stream) that are
  not timeline events (those the timeline filter left out, and changes made
  by state resolution);
- as a delta across a gap (limited): the entries of the state at the start of
  the timeline that differ from the state at `after` (the state after the
  room's last event then).

In the first and last case, a key that changed later in the range without a
timeline event showing it (left out by the timeline filter, or resolved) is
given its value at `up_to`, as Synapse also sends the state at the end, so
that the client's state is not left behind.

Joined rooms get a `summary` (member counts, and heroes when the room has no
name) whenever their membership may have changed for the client: the spec
requires the counts when they change and the heroes for unnamed rooms.

Lazy-loading members (`lazy_load_members` on the state filter) keeps, of the
m.room.member state, only the senders of the timeline events (the user's own
when the state is full, and the heroes of the room summary), from the state
at the start of the timeline, and skips those this device was already sent
unless `include_redundant_members`; member changes across a gap are always
sent ("MUST return membership events for events in the gap").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.handlers.event_serializer import EventSerializer, only_fields, parse_field_path
from homeserver.handlers.visibility import filter_events_for_client
from homeserver.state.auth_common import MEMBER
from homeserver.storage.lru import LruCache
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.events import StoredEvent
from homeserver.storage.stores.state import StateKey, StateMap
from homeserver.storage.stores.sync import MemberSummary, StateDelta, SyncStore
from homeserver.types.events import EventBase
from homeserver.types.filters import Filter, RoomEventFilter
from homeserver.types.frozen import thaw
from homeserver.types.stream_tokens import RoomToken

if TYPE_CHECKING:
    from homeserver.handlers.auth import Requester

JsonDict = dict[str, Any]

JOIN_SECTION = "join"
LEAVE_SECTION = "leave"

# Spec "Stripped state": the events that help a user decide on an invite or knock.
STRIPPED_STATE_KEYS: tuple[StateKey, ...] = (
    ("m.room.create", ""),
    ("m.room.name", ""),
    ("m.room.avatar", ""),
    ("m.room.topic", ""),
    ("m.room.join_rules", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.encryption", ""),
)
NAME_KEY: StateKey = ("m.room.name", "")
CANONICAL_ALIAS_KEY: StateKey = ("m.room.canonical_alias", "")

# How many times a timeline is fetched again, further back, when the filter
# and history visibility hid events; each time twice as many rows.
_TIMELINE_ROUNDS = 4
_MAX_FETCH = 1000


@dataclass(frozen=True, slots=True)
class RoomPlan:
    """What to report of one joined or left room."""

    room_id: str
    section: str
    """JOIN_SECTION or LEAVE_SECTION."""
    after: int
    """Timeline and state deltas cover after < stream_ordering <= up_to (after=0: from the start)."""
    up_to: int
    full_state: bool
    """Give the whole state (initial sync, full_state, newly joined) rather than a delta."""
    only_event: StoredEvent | None = None
    """The user never joined (a rejected or withdrawn invite): report this event alone."""
    quiet: bool = False
    """Known to have no events in the range (the notifier says so): nothing to read."""

    @property
    def reads_events(self) -> bool:
        return self.only_event is None and not self.quiet


@dataclass(slots=True)
class _Timeline:
    events: list[StoredEvent]
    """Oldest first."""
    limited: bool
    prev_batch: str | None


@dataclass(slots=True)
class RoomEntry:
    """One room of the response, before serialization."""

    plan: RoomPlan
    timeline: _Timeline
    state: list[StoredEvent] = field(default_factory=list)
    summary: JsonDict | None = None

    def has_news(self) -> bool:
        """Whether an incremental sync must report the room (events or state changed)."""
        return bool(self.timeline.events or self.state)


class LazyLoadedMembers:
    """Per device: the member events already sent, (room ID, user ID) -> event ID.

    In memory and bounded, as Synapse keeps it: forgetting only makes us send a
    member event again, which the spec allows ("redundant membership events").
    """

    def __init__(self, devices: int = 10_000, members_per_device: int = 5_000) -> None:
        self._devices: LruCache[tuple[str, str], LruCache[tuple[str, str], str]] = LruCache(
            devices
        )
        self._per_device = members_per_device

    def for_device(self, key: tuple[str, str], *, fresh: bool) -> LruCache[tuple[str, str], str]:
        """The device's cache; `fresh` (an initial sync) starts it again: the client forgot all."""
        cache = None if fresh else self._devices.get(key)
        if cache is None:
            cache = LruCache(self._per_device)
            self._devices.set(key, cache)
        return cache


def strip_event(event: EventBase | Mapping[str, Any]) -> JsonDict:
    """A stripped state event: only `type`, `state_key`, `sender` and `content`."""
    if isinstance(event, EventBase):
        return {
            "type": event.type,
            "state_key": event.state_key,
            "sender": event.sender,
            "content": thaw(event.content),
        }
    return {k: thaw(event[k]) for k in ("type", "state_key", "sender", "content") if k in event}


class RoomEntryBuilder:
    """Builds the entries of joined and left rooms, and the stripped state of invites and knocks."""

    def __init__(
        self,
        room_storage: RoomStorage,
        sync_store: SyncStore,
        serializer: EventSerializer,
        lazy_members: LazyLoadedMembers,
    ) -> None:
        self._storage = room_storage
        self._sync_store = sync_store
        self._serializer = serializer
        self._lazy_members = lazy_members

    # -- joined and left rooms

    async def build(
        self,
        plans: Sequence[RoomPlan],
        *,
        requester: Requester,
        sync_filter: Filter,
        timeline_limit: int,
        use_state_after: bool,
        initial: bool,
    ) -> dict[str, RoomEntry]:
        if not plans:
            return {}
        user_id = requester.user_id
        timelines = await self._load_timelines(
            plans, timeline_limit, sync_filter.room.timeline, user_id
        )
        states = await self._load_states(plans, timelines)
        entries = {p.room_id: RoomEntry(p, timelines[p.room_id]) for p in plans}

        state_filter = sync_filter.room.state
        lazy = state_filter.lazy_load_members
        summaries = await self._summaries(plans, entries, states, user_id)
        device = (user_id, requester.device_id or requester.access_token_id or "")
        sent = (
            self._lazy_members.for_device(device, fresh=initial)
            if lazy and not state_filter.include_redundant_members
            else None
        )
        chosen: dict[str, list[str]] = {}
        for plan in plans:
            entry = entries[plan.room_id]
            room_state = states[plan.room_id]
            timeline_ids = {e.event_id for e in entry.timeline.events}
            ids = room_state.state_ids(use_state_after)
            if lazy:
                ids = self._lazy_members_of(
                    plan, entry, room_state, ids, summaries, user_id, sent, use_state_after
                )
            if not use_state_after:
                ids = {k: e for k, e in ids.items() if e not in timeline_ids}
            chosen[plan.room_id] = list(ids.values())
        fetched = await self._storage.events.get_stored_events(
            {e for ids in chosen.values() for e in ids}
        )
        for plan in plans:
            entry = entries[plan.room_id]
            entry.state = [
                fetched[e]
                for e in chosen[plan.room_id]
                if e in fetched and state_filter.matches(fetched[e].event)
            ]
            summary = summaries.get(plan.room_id)
            if summary is not None:
                entry.summary = summary
            if sent is not None:
                for stored in [*entry.state, *entry.timeline.events]:
                    event = stored.event
                    if event.type == MEMBER and event.state_key is not None:
                        sent.set((plan.room_id, event.state_key), stored.event_id)
        return entries

    async def serialize(
        self,
        entries: Mapping[str, RoomEntry],
        *,
        requester: Requester,
        sync_filter: Filter,
        use_state_after: bool,
        room_account_data: Mapping[str, list[JsonDict]],
    ) -> dict[str, JsonDict]:
        """The JSON of each room entry (timeline, state or state_after, account_data, summary)."""
        timeline_events = [e for entry in entries.values() for e in entry.timeline.events]
        state_events = [e for entry in entries.values() for e in entry.state]
        serialized = iter(
            await self._serialize_events([*timeline_events, *state_events], requester, sync_filter)
        )
        result: dict[str, JsonDict] = {}
        for room_id, entry in entries.items():
            timeline: JsonDict = {
                "events": [next(serialized) for _ in entry.timeline.events],
                "limited": entry.timeline.limited,
            }
            if entry.timeline.prev_batch is not None:
                timeline["prev_batch"] = entry.timeline.prev_batch
            result[room_id] = {"timeline": timeline}
        for room_id, entry in entries.items():
            state = {"events": [next(serialized) for _ in entry.state]}
            room = result[room_id]
            room["state_after" if use_state_after else "state"] = state
            room["account_data"] = {"events": room_account_data.get(room_id, [])}
            if entry.summary is not None:
                room["summary"] = entry.summary
        return result

    async def _serialize_events(
        self, events: Sequence[StoredEvent], requester: Requester, sync_filter: Filter
    ) -> list[JsonDict]:
        if sync_filter.event_format == "federation":
            paths = [parse_field_path(f) for f in sync_filter.event_fields or ()]
            return [only_fields(e.event.pdu_json(), paths) for e in events]
        return await self._serializer.serialize_events(
            events,
            requester=requester,
            include_room_id=False,
            event_fields=sync_filter.event_fields,
        )

    async def _load_timelines(
        self,
        plans: Sequence[RoomPlan],
        limit: int,
        timeline_filter: RoomEventFilter,
        user_id: str,
    ) -> dict[str, _Timeline]:
        timelines: dict[str, _Timeline] = {}
        ranges: dict[str, tuple[int, int]] = {}
        for plan in plans:
            if plan.only_event is not None:
                shown = await self._visible(timeline_filter, [plan.only_event], user_id)
                timelines[plan.room_id] = _Timeline(shown, False, None)
            elif plan.quiet:
                timelines[plan.room_id] = _Timeline([], False, str(RoomToken(stream=plan.up_to)))
            else:
                ranges[plan.room_id] = (plan.after, plan.up_to)
        kept: dict[str, list[StoredEvent]] = {room_id: [] for room_id in ranges}  # newest first
        limited: dict[str, bool] = {}
        fetch = limit + 1
        for _ in range(_TIMELINE_ROUNDS):
            if not ranges:
                break
            found = await self._sync_store.get_recent_event_ids(ranges, fetch)
            stored = await self._storage.events.get_stored_events(
                [e for ids in found.values() for e, _ in ids]
            )
            candidates = [stored[e] for ids in found.values() for e, _ in ids if e in stored]
            visible = {
                s.event_id for s in await self._visible(timeline_filter, candidates, user_id)
            }
            next_ranges: dict[str, tuple[int, int]] = {}
            for room_id, ids in found.items():
                room_kept = kept[room_id]
                room_kept.extend(stored[e] for e, _ in ids if e in visible)
                if len(room_kept) > limit:
                    limited[room_id] = True
                elif len(ids) < fetch:
                    limited[room_id] = False
                else:
                    next_ranges[room_id] = (ranges[room_id][0], ids[-1][1] - 1)
            ranges = next_ranges
            fetch = min(fetch * 2, _MAX_FETCH)
        for room_id in ranges:
            limited[room_id] = True  # gave up looking further back: there may be more
        by_room = {p.room_id: p for p in plans}
        for room_id, newest_first in kept.items():
            events = newest_first[:limit]
            events.reverse()
            position = events[0].stream_ordering - 1 if events else by_room[room_id].up_to
            timelines[room_id] = _Timeline(
                events, limited[room_id], str(RoomToken(stream=position))
            )
        return timelines

    async def _visible(
        self, timeline_filter: RoomEventFilter, events: Sequence[StoredEvent], user_id: str
    ) -> list[StoredEvent]:
        matching = [e for e in events if timeline_filter.matches(e.event)]
        return await filter_events_for_client(self._storage, user_id, matching)

    async def _load_states(
        self, plans: Sequence[RoomPlan], timelines: Mapping[str, _Timeline]
    ) -> dict[str, _RoomState]:
        """The state maps each room's state section is computed from (see the module docstring)."""
        states = {p.room_id: _RoomState() for p in plans}
        reading = [p for p in plans if p.reads_events]
        gappy = [p for p in reading if not p.full_state and timelines[p.room_id].limited]
        deltas = await self._sync_store.get_state_deltas(
            {p.room_id: (p.after, p.up_to) for p in reading if not p.full_state}
        )
        last_at_end = await self._sync_store.get_last_event_ids(
            {p.room_id: p.up_to for p in reading}
        )
        last_before_gap = await self._sync_store.get_last_event_ids(
            {p.room_id: p.after for p in gappy}
        )
        # The state before each first timeline event, and after each room's
        # last event at the end and before the gap: one read of their groups.
        first_ids = {
            p.room_id: timelines[p.room_id].events[0].event_id
            for p in reading
            if timelines[p.room_id].events
        }
        groups = await self._storage.state.get_state_groups_for_events(
            {*first_ids.values(), *last_at_end.values(), *last_before_gap.values()}
        )
        group_ids = {g for pair in groups.values() for g in pair if g is not None}
        maps = await self._storage.state.get_state_for_groups(group_ids)

        def state_before(event_id: str | None) -> StateMap | None:
            pair = groups.get(event_id) if event_id is not None else None
            if pair is None:
                return None
            return {} if pair[0] is None else maps[pair[0]]

        def state_after(event_id: str | None) -> StateMap:
            pair = groups.get(event_id) if event_id is not None else None
            return {} if pair is None else maps[pair[1]]

        gappy_rooms = {p.room_id for p in gappy}
        for plan in reading:
            room = states[plan.room_id]
            end = state_after(last_at_end.get(plan.room_id))
            start = state_before(first_ids.get(plan.room_id))
            room.end = end
            room.start = end if start is None else start
            timeline = timelines[plan.room_id].events
            room.timeline_ids = {e.event_id for e in timeline}
            if plan.full_state:
                room.state = _with_unseen_changes(room.start, end, timeline)
                room.after = dict(end)
                continue
            changes = _final_changes(deltas.get(plan.room_id, ()))
            room.after = {k: e for k, e in changes.items() if e is not None}
            if plan.room_id in gappy_rooms:
                previous = state_after(last_before_gap.get(plan.room_id))
                room.state = {
                    k: e
                    for k, e in _with_unseen_changes(room.start, end, timeline).items()
                    if previous.get(k) != e
                }
            else:
                room.state = {k: e for k, e in room.after.items() if e not in room.timeline_ids}
            room.gap_members = {k[1] for k in room.state if k[0] == MEMBER}
        return states

    def _lazy_members_of(
        self,
        plan: RoomPlan,
        entry: RoomEntry,
        room_state: _RoomState,
        ids: dict[StateKey, str],
        summaries: Mapping[str, JsonDict],
        user_id: str,
        sent: LruCache[tuple[str, str], str] | None,
        use_state_after: bool,
    ) -> dict[StateKey, str]:
        """The state to send with lazy-loaded members (see the module docstring)."""
        needed = {e.event.sender for e in entry.timeline.events}
        if plan.full_state:
            needed.add(user_id)
        heroes = summaries.get(plan.room_id, {}).get("m.heroes", ())
        needed.update(heroes)
        if plan.full_state:
            must_send = {user_id}
        elif use_state_after:
            # state_after replaces what the timeline says: every member change counts.
            must_send = {k[1] for k in ids if k[0] == MEMBER}
        else:
            must_send = room_state.gap_members
        result = {k: e for k, e in ids.items() if k[0] != MEMBER or k[1] in must_send}
        source = room_state.end if use_state_after else room_state.start
        for member in needed:
            key = (MEMBER, member)
            if key in result:
                continue
            event_id = source.get(key)
            if event_id is None or (not use_state_after and event_id in room_state.timeline_ids):
                continue
            if sent is not None and not plan.full_state and sent.get((plan.room_id, member)) == event_id:
                continue  # redundant: this device has it
            result[key] = event_id
        return result

    async def _summaries(
        self,
        plans: Sequence[RoomPlan],
        entries: Mapping[str, RoomEntry],
        states: Mapping[str, _RoomState],
        user_id: str,
    ) -> dict[str, JsonDict]:
        """Room summaries of joined rooms whose membership may have changed for the client."""
        wanted = [
            p.room_id
            for p in plans
            if p.section == JOIN_SECTION
            and (
                p.full_state
                or any(e.event.type == MEMBER for e in entries[p.room_id].timeline.events)
                or any(k[0] == MEMBER for k in states[p.room_id].state)
            )
        ]
        members = await self._sync_store.get_member_summaries(wanted, user_id)
        named = await self._has_name({room_id: states[room_id].end for room_id in wanted})
        return {
            room_id: _summary(members[room_id], room_id in named)
            for room_id in wanted
            if room_id in members
        }

    async def _has_name(self, states: Mapping[str, StateMap]) -> set[str]:
        """The rooms whose name or canonical alias gives clients a name (no heroes needed)."""
        ids = {
            room_id: [state[k] for k in (NAME_KEY, CANONICAL_ALIAS_KEY) if k in state]
            for room_id, state in states.items()
        }
        events = await self._storage.events.get_events({e for found in ids.values() for e in found})
        named: set[str] = set()
        for room_id, found in ids.items():
            for event_id in found:
                event = events.get(event_id)
                if event is None:
                    continue
                value = event.content.get("name" if event.type == NAME_KEY[0] else "alias")
                if isinstance(value, str) and value:
                    named.add(room_id)
        return named

    # -- invited and knocked rooms

    async def stripped_states(
        self, membership_events: Iterable[StoredEvent], unsigned_key: str
    ) -> dict[str, list[JsonDict]]:
        """Per room: the stripped state for an invite or knock, the membership event last.

        The state before the membership event when we hold it; for one that
        arrived alone (an outlier, from another server) the stripped state that
        came with it in `unsigned[unsigned_key]`, stripped again here.
        """
        events = list(membership_events)
        groups = await self._storage.state.get_state_groups_for_events(
            [e.event_id for e in events if not e.outlier]
        )
        maps = await self._storage.state.get_state_for_groups(
            {pair[0] for pair in groups.values() if pair[0] is not None}
        )
        wanted: dict[str, list[str]] = {}
        for stored in events:
            pair = groups.get(stored.event_id)
            if pair is not None and pair[0] is not None:
                state = maps[pair[0]]
                wanted[stored.event_id] = [state[k] for k in STRIPPED_STATE_KEYS if k in state]
        fetched = await self._storage.events.get_events({e for ids in wanted.values() for e in ids})
        result: dict[str, list[JsonDict]] = {}
        for stored in events:
            event = stored.event
            if stored.event_id in wanted:
                stripped = [strip_event(fetched[e]) for e in wanted[stored.event_id] if e in fetched]
            else:
                given = event.unsigned.get(unsigned_key)
                stripped = [
                    strip_event(item)
                    for item in (given if isinstance(given, Sequence) else ())
                    if isinstance(item, Mapping) and isinstance(item.get("type"), str)
                ]
            result[event.room_id] = [*stripped, strip_event(event)]
        return result


@dataclass(slots=True)
class _RoomState:
    """The state maps of one room, (type, state_key) -> event ID."""

    start: StateMap = field(default_factory=dict)
    """At the start of the timeline."""
    end: StateMap = field(default_factory=dict)
    """At the end of the synced range (after the room's last event up to then)."""
    state: dict[StateKey, str] = field(default_factory=dict)
    """The `state` section before lazy loading and filtering."""
    after: dict[StateKey, str] = field(default_factory=dict)
    """The `state_after` section before lazy loading and filtering."""
    gap_members: set[str] = field(default_factory=set)
    """Users whose member event changed across the gap: sent even if redundant."""
    timeline_ids: set[str] = field(default_factory=set)

    def state_ids(self, use_state_after: bool) -> dict[StateKey, str]:
        return dict(self.after if use_state_after else self.state)


def _with_unseen_changes(
    start: StateMap, end: StateMap, timeline: Sequence[StoredEvent]
) -> dict[StateKey, str]:
    """The state at the start of the timeline, updated with the changes up to its end that
    the timeline does not show (events the timeline filter left out, state resolution), so
    that the client does not lose them; keys the timeline does change keep their start value
    for the timeline to change, in order."""
    shown = {
        (e.event.type, e.event.state_key) for e in timeline if e.event.state_key is not None
    }
    state = dict(start)
    for key, event_id in end.items():
        if key not in shown and start.get(key) != event_id:
            state[key] = event_id
    return state


def _final_changes(deltas: Iterable[StateDelta]) -> dict[StateKey, str | None]:
    """Each changed key's value after the last of these current state changes, if it differs
    from its value before the first."""
    first: dict[StateKey, str | None] = {}
    last: dict[StateKey, str | None] = {}
    for delta in deltas:
        first.setdefault(delta.key, delta.prev_event_id)
        last[delta.key] = delta.event_id
    return {k: e for k, e in last.items() if e != first[k]}


def _summary(members: MemberSummary, named: bool) -> JsonDict:
    summary: JsonDict = {
        "m.joined_member_count": members.joined,
        "m.invited_member_count": members.invited,
    }
    if not named:
        summary["m.heroes"] = members.first_members
    return summary

