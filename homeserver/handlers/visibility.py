"""History visibility: which room events a user may read, and who may read a room at all.

Spec: client-server API, module "Room History Visibility" > "Server
behaviour". Whether a user sees an event depends on the room's state *at that
event*: the `m.room.history_visibility` setting then (`shared` when absent or
not understood) and the user's membership then.

1. `world_readable`: anyone may see it.
2. The user's membership was `join`: allow.
3. `shared`, and the user joined the room at any point after the event: allow.
4. The user's membership was `invite` and the setting `invited`: allow.
5. Otherwise deny.

"At that event" is the state after it, as Synapse reads it: an event is
visible to whoever was a member once it happened. For an
`m.room.history_visibility` event the setting before *or* after it may allow
it, and for the user's own `m.room.member` event the membership before *or*
after it. A user who left therefore sees what they saw up to their leave
(their leave included) and nothing after it, unless they join again. As in
Synapse, a user always sees their own leave from `join` or `invite` (so a
client sees a rejected invite go away), and of outliers (events we hold
without the state at them, such as an invite received over federation) only
their own membership events.

Rule 3 compares positions in the room's history, (depth, stream_ordering), so
that history fetched later (backfill) is ordered where it happened, not where
it arrived.

The state lookups are batched: one read of the state groups before and after
every event (cached by the StateStore), one fetch of the visibility and
membership events they name, and, only where rule 3 decides, one read of the
user's membership history per room.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from homeserver.state.auth_common import INVITE, JOIN, LEAVE, MEMBER, membership_of
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.events import StoredEvent
from homeserver.storage.stores.state import StateMap
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.events import EventBase

HISTORY_VISIBILITY = "m.room.history_visibility"
HISTORY_VISIBILITY_KEY = (HISTORY_VISIBILITY, "")

WORLD_READABLE = "world_readable"
SHARED = "shared"
INVITED = "invited"
JOINED = "joined"
_KNOWN_VISIBILITIES = frozenset((WORLD_READABLE, SHARED, INVITED, JOINED))


def history_visibility_of(event: EventBase | None) -> str:
    """The setting an m.room.history_visibility event makes (`shared` if none or not understood)."""
    if event is None:
        return SHARED
    value = event.content.get("history_visibility")
    return value if isinstance(value, str) and value in _KNOWN_VISIBILITIES else SHARED


def _allowed_without_later_join(visibility: str, membership: str | None) -> bool:
    """Rules 1, 2 and 4: what the state at the event allows on its own."""
    if visibility == WORLD_READABLE or membership == JOIN:
        return True
    return visibility == INVITED and membership == INVITE


def _is_own_membership(event: EventBase, user_id: str | None) -> bool:
    return user_id is not None and event.type == MEMBER and event.state_key == user_id


class _StateAtEvents:
    """The visibility setting and the user's membership in the states before/after events."""

    def __init__(
        self,
        groups: dict[str, tuple[int | None, int]],
        states: dict[int, StateMap],
        events: dict[str, StoredEvent],
        user_id: str | None,
    ) -> None:
        self._groups = groups
        self._states = states
        self._events = events
        self._user_id = user_id

    @classmethod
    async def load(
        cls, room_storage: RoomStorage, events: Iterable[StoredEvent], user_id: str | None
    ) -> _StateAtEvents:
        groups = await room_storage.state.get_state_groups_for_events([e.event_id for e in events])
        group_ids = {g for pair in groups.values() for g in pair if g is not None}
        states = await room_storage.state.get_state_for_groups(group_ids)
        keys = [HISTORY_VISIBILITY_KEY]
        if user_id is not None:
            keys.append((MEMBER, user_id))
        wanted = {state[key] for state in states.values() for key in keys if key in state}
        fetched = await room_storage.events.get_stored_events(wanted)
        return cls(groups, states, fetched, user_id)

    def knows(self, event_id: str) -> bool:
        return event_id in self._groups

    def _state_event(self, event_id: str, after: bool, key: tuple[str, str]) -> EventBase | None:
        before_group, after_group = self._groups[event_id]
        group = after_group if after else before_group
        if group is None:
            return None  # the empty state before an m.room.create event
        state_event_id = self._states[group].get(key)
        found = None if state_event_id is None else self._events.get(state_event_id)
        return None if found is None else found.event

    def visibility(self, event_id: str, *, after: bool) -> str:
        return history_visibility_of(self._state_event(event_id, after, HISTORY_VISIBILITY_KEY))

    def membership(self, event_id: str, *, after: bool) -> str | None:
        if self._user_id is None:
            return None
        member = self._state_event(event_id, after, (MEMBER, self._user_id))
        return None if member is None else membership_of(member.content)


class _LaterJoins:
    """Rule 3's question, "did the user join after this event?", from one history read."""

    def __init__(self, room_storage: RoomStorage, user_id: str) -> None:
        self._room_storage = room_storage
        self._user_id = user_id
        self._last_join: dict[str, tuple[int, int] | None] = {}

    async def load(self, room_ids: Collection[str]) -> None:
        """Read the user's joins in these rooms (all at once: a /sync asks about many rooms)."""
        wanted = [r for r in room_ids if r not in self._last_join]
        histories = await self._room_storage.rooms.get_membership_histories(wanted, self._user_id)
        join_ids = [
            event_id
            for history in histories.values()
            for event_id, membership, _ in history
            if membership == JOIN
        ]
        joins = await self._room_storage.events.get_stored_events(join_ids)
        for room_id in wanted:
            self._last_join[room_id] = max(
                (
                    joins[event_id].topological_ordering
                    for event_id, membership, _ in histories.get(room_id, [])
                    if membership == JOIN and event_id in joins and not joins[event_id].outlier
                ),
                default=None,
            )

    async def joined_after(self, stored: StoredEvent) -> bool:
        room_id = stored.event.room_id
        if room_id not in self._last_join:
            await self.load([room_id])
        last = self._last_join[room_id]
        return last is not None and last > stored.topological_ordering


async def filter_events_for_client(
    room_storage: RoomStorage,
    user_id: str | None,
    events: Sequence[StoredEvent],
    *,
    is_peeking: bool = False,
) -> list[StoredEvent]:
    """The events `user_id` may see, in the order given (rejected events never are).

    `user_id` None is an anonymous reader: world_readable history only.
    `is_peeking`: the user reads a room they are not a member of (a preview of
    a world_readable room); as in Synapse, rule 3 is then not applied, so of
    `shared` history they see only what they were joined or invited for.
    """
    candidates = [e for e in events if e.rejected_reason is None]
    if not candidates:
        return []
    states = await _StateAtEvents.load(
        room_storage, [e for e in candidates if not e.outlier], user_id
    )
    later_joins = (
        _LaterJoins(room_storage, user_id) if user_id is not None and not is_peeking else None
    )
    if later_joins is not None:
        await later_joins.load({e.event.room_id for e in candidates})
    visible: list[StoredEvent] = []
    for stored in candidates:
        event = stored.event
        own_membership = _is_own_membership(event, user_id)
        if stored.outlier or not states.knows(stored.event_id):
            if own_membership:
                visible.append(stored)
            continue
        visibilities = {states.visibility(stored.event_id, after=True)}
        if event.type == HISTORY_VISIBILITY and event.state_key == "":
            visibilities.add(states.visibility(stored.event_id, after=False))
        memberships = {states.membership(stored.event_id, after=True)}
        if own_membership:
            before = states.membership(stored.event_id, after=False)
            if membership_of(event.content) == LEAVE and before in (JOIN, INVITE):
                visible.append(stored)
                continue
            memberships.add(before)
        if any(_allowed_without_later_join(v, m) for v in visibilities for m in memberships):
            visible.append(stored)
        elif SHARED in visibilities and later_joins is not None:
            if await later_joins.joined_after(stored):
                visible.append(stored)
    return visible


async def is_world_readable(room_storage: RoomStorage, room_id: str) -> bool:
    """Whether the room's current history visibility is `world_readable`."""
    state = await room_storage.state.get_current_state_ids(room_id)
    event_id = state.get(HISTORY_VISIBILITY_KEY)
    if event_id is None:
        return False
    event = await room_storage.events.get_event(event_id)
    return history_visibility_of(event) == WORLD_READABLE


async def check_user_in_room_or_world_readable(
    room_storage: RoomStorage,
    room_id: str,
    user_id: str,
    *,
    allow_departed_users: bool = False,
) -> tuple[str | None, str | None]:
    """Whether `user_id` may read the room now, and as what: (membership, membership event ID).

    - ("join", event ID) for a current member;
    - ("leave", event ID of the leave) for a user who left or was kicked, with
      `allow_departed_users`, unless they forgot the room (what they read is
      the room as they left it);
    - (None, None) for anyone else when the room is world_readable (a preview).

    Otherwise (banned, invited, never a member of a room that isn't
    world_readable, unknown room) 403 M_FORBIDDEN.
    """
    member = await room_storage.rooms.get_membership(room_id, user_id)
    if member is not None:
        if member.membership == JOIN:
            return JOIN, member.event_id
        if (
            allow_departed_users
            and member.membership == LEAVE
            and not await room_storage.forgotten.is_forgotten(user_id, room_id)
        ):
            return LEAVE, member.event_id
    if await is_world_readable(room_storage, room_id):
        return None, None
    raise MatrixError(
        Codes.FORBIDDEN,
        f"User {user_id} not in room {room_id}, and room previews are disabled",
    )
