"""EventSerializer: room events as clients receive them, with what this server adds.

Spec: client-server API "Room event format" (ClientEvent and its `unsigned`),
"Redactions", "Transaction identifiers", and the `event_fields` of "Filtering".

Each event is given in client format (`homeserver.types.client_format`) with
`unsigned`:

- `age`: milliseconds since `origin_server_ts` on our clock (never negative);
- `transaction_id`: only to the device (or, without a device, the access
  token) that sent the event;
- `prev_content`, `prev_sender`, `replaces_state`: for a state event, the
  event it replaced in the state before it (as stored with the event);
- `membership`: the requesting user's membership once the event happened
  (`leave` when they had none), for events in the room's timeline;
- `redacted_because`: for a redacted event, the redaction, itself serialized.

Redactions are applied on read: an event is served pruned (the redaction
algorithm of its room version) once an accepted, non-outlier
`m.room.redaction` of the same room points at it and is valid for it. In room
versions 1 and 2 the authorization rules already checked that (the sender
had the redact level, or the two event IDs share a domain). From version 3
the rules no longer do, and the room version's "Redactions" section applies
when serving: the redaction's sender is of the redacted event's sender's
domain, or had the redact level in the state before the redaction. An event
replaced in the state that has been redacted gives its pruned content as
`prev_content`.

Every lookup is batched over the events of one call.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from homeserver.clock import Clock
from homeserver.handlers.room_events import has_txn_scope, txn_scope
from homeserver.state.auth_common import CREATE_KEY, LEAVE, POWER_LEVELS_KEY
from homeserver.state.power_levels import PowerLevels
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.events import StoredEvent
from homeserver.storage.stores.state import StateMap
from homeserver.types.client_format import serialize_event
from homeserver.types.events import EventBase
from homeserver.types.identifiers import domain_of
from homeserver.types.redaction import prune_content
from homeserver.types.room_versions import EventFormat

if TYPE_CHECKING:
    from homeserver.handlers.auth import Requester

JsonDict = dict[str, Any]


def parse_field_path(field: str) -> list[str]:
    """A filter's `event_fields` entry as keys: dots separate them, `\\.` is a literal dot.

    `\\\\` is a literal backslash; any other escaped character stands for itself.
    """
    keys: list[str] = []
    current: list[str] = []
    escaped = False
    for char in field:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            keys.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    keys.append("".join(current))
    return keys


def _copy_path(source: Mapping[str, Any], target: JsonDict, path: Sequence[str]) -> None:
    key = path[0]
    if key not in source:
        return
    if len(path) == 1:
        target[key] = source[key]
        return
    inner = source[key]
    if not isinstance(inner, Mapping):
        return
    branch = target.setdefault(key, {})
    if isinstance(branch, dict):
        _copy_path(inner, branch, path[1:])


def only_fields(event: JsonDict, paths: Sequence[Sequence[str]]) -> JsonDict:
    """The parts of a serialized event named by `paths` (all of it when there are none)."""
    if not paths:
        return event
    result: JsonDict = {}
    for path in paths:
        _copy_path(event, result, path)
    return result


def redaction_is_valid(
    redacted: StoredEvent, redaction: StoredEvent, sender_had_redact_level: bool
) -> bool:
    """Whether an accepted redaction applies to `redacted` (see the module docstring)."""
    if redaction.event.room_id != redacted.event.room_id:
        return False
    if redacted.event.room_version.event_format.format is EventFormat.V1:
        return True
    same_domain = domain_of(redaction.event.sender) == domain_of(redacted.event.sender)
    return same_domain or sender_had_redact_level


class EventSerializer:
    """Turns stored events into what clients receive."""

    def __init__(self, room_storage: RoomStorage, clock: Clock) -> None:
        self._storage = room_storage
        self._clock = clock

    async def serialize_events(
        self,
        events: Sequence[StoredEvent],
        *,
        requester: Requester | None = None,
        include_room_id: bool = True,
        event_fields: Sequence[str] | None = None,
    ) -> list[JsonDict]:
        """The client form of each event, in order.

        `requester`: who the events are for (their transaction IDs and
        membership); `include_room_id=False` gives ClientEventWithoutRoomID
        (as in /sync); `event_fields` keeps only those dot paths of each event.
        """
        if not events:
            return []
        paths = [parse_field_path(f) for f in event_fields or ()]
        replaced = await self._storage.events.get_stored_events(
            {e.replaces_state for e in events if e.replaces_state is not None}
        )
        redactions = await self.get_applied_redactions([*events, *replaced.values()])
        shown = [*events, *redactions.values()]
        txn_ids = await self._transaction_ids(shown, requester)
        memberships = (
            await self._memberships_at(shown, requester.user_id) if requester is not None else {}
        )
        now = self._clock.time_msec()

        def unsigned_for(stored: StoredEvent) -> JsonDict:
            unsigned: JsonDict = {"age": max(0, now - stored.event.origin_server_ts)}
            if stored.event_id in txn_ids:
                unsigned["transaction_id"] = txn_ids[stored.event_id]
            if stored.replaces_state is not None and stored.event.is_state():
                unsigned["replaces_state"] = stored.replaces_state
                previous = replaced.get(stored.replaces_state)
                if previous is not None:
                    unsigned["prev_content"] = _content(previous, redactions)
                    unsigned["prev_sender"] = previous.event.sender
            if stored.event_id in memberships:
                unsigned["membership"] = memberships[stored.event_id]
            return unsigned

        def client_event(stored: StoredEvent, redaction: StoredEvent | None) -> JsonDict:
            unsigned = unsigned_for(stored)
            if redaction is not None:
                unsigned["redacted_because"] = client_event(redaction, None)
            result = serialize_event(
                stored.event, unsigned=unsigned, include_room_id=include_room_id
            )
            if redaction is not None:
                result["content"] = _content(stored, redactions)
                # A top-level `redacts` (room versions 1..10) is not kept by redaction.
                result.pop("redacts", None)
            return result

        return [only_fields(client_event(e, redactions.get(e.event_id)), paths) for e in events]

    async def get_applied_redactions(self, events: Iterable[StoredEvent]) -> dict[str, StoredEvent]:
        """Event ID -> the redaction that applies to it, for the redacted ones among `events`."""
        by_id = {e.event_id: e for e in events}
        pointing = await self._storage.redactions.get_redactions_for(by_id)
        if not pointing:
            return {}
        found = await self._storage.events.get_stored_events(
            {r for ids in pointing.values() for r in ids}
        )
        needs_power = [
            found[r]
            for target, ids in pointing.items()
            for r in ids
            if r in found
            and domain_of(found[r].event.sender) != domain_of(by_id[target].event.sender)
        ]
        powerful = await self._had_redact_level(needs_power)
        applied: dict[str, StoredEvent] = {}
        for target, ids in pointing.items():
            for redaction_id in ids:
                redaction = found.get(redaction_id)
                if redaction is not None and redaction_is_valid(
                    by_id[target], redaction, redaction_id in powerful
                ):
                    applied[target] = redaction
                    break
        return applied

    async def _had_redact_level(self, redactions: Collection[StoredEvent]) -> set[str]:
        """The redactions whose sender had the redact level in the state before them."""
        if not redactions:
            return set()
        groups = await self._storage.state.get_state_groups_for_events(
            [r.event_id for r in redactions]
        )
        states = await self._storage.state.get_state_for_groups(
            {before for before, _ in groups.values() if before is not None}
        )
        wanted = {
            state[key]
            for state in states.values()
            for key in (CREATE_KEY, POWER_LEVELS_KEY)
            if key in state
        }
        auth_events = await self._storage.events.get_events(wanted)
        powerful: set[str] = set()
        for redaction in redactions:
            before = groups[redaction.event_id][0] if redaction.event_id in groups else None
            if before is None:
                continue
            state = states[before]
            create = _state_event(state, CREATE_KEY, auth_events)
            power_levels = _state_event(state, POWER_LEVELS_KEY, auth_events)
            levels = PowerLevels.from_events(redaction.event.room_version, create, power_levels)
            if levels.user_level(redaction.event.sender) >= levels.named_level("redact"):
                powerful.add(redaction.event_id)
        return powerful

    async def _transaction_ids(
        self, events: Iterable[StoredEvent], requester: Requester | None
    ) -> dict[str, str]:
        """Event ID -> transaction ID, for the events the requester's own device or token sent."""
        if requester is None or not has_txn_scope(requester):
            return {}
        own = [e.event_id for e in events if e.event.sender == requester.user_id]
        txns = await self._storage.events.get_txn_ids_for_events(own)
        scope = txn_scope(requester)
        return {
            event_id: txn.txn_id
            for event_id, txn in txns.items()
            if txn.user_id == requester.user_id and txn.scope == scope
        }

    async def _memberships_at(self, events: Iterable[StoredEvent], user_id: str) -> dict[str, str]:
        """Event ID -> the user's membership once the event happened, for non-outliers.

        Read from the user's membership events in the room, the last one at or
        before the event in the room's history, (depth, stream_ordering): one
        read per room, where the state at each event would cost a full state
        per state event (GET /state of a large room). Where the DAG forked,
        this ordering stands in for the state at the event, as the spec lets
        servers do for this optional field.
        """
        by_room: dict[str, list[StoredEvent]] = {}
        for stored in events:
            if not stored.outlier:
                by_room.setdefault(stored.event.room_id, []).append(stored)
        result: dict[str, str] = {}
        histories = await self._storage.rooms.get_membership_histories(list(by_room), user_id)
        member_events = await self._storage.events.get_stored_events(
            [h[0] for history in histories.values() for h in history]
        )
        for room_id, room_events in by_room.items():
            history = histories.get(room_id, [])
            changes = sorted(
                (member_events[event_id].topological_ordering, membership)
                for event_id, membership, _ in history
                if event_id in member_events and not member_events[event_id].outlier
            )
            positions = [position for position, _ in changes]
            for stored in room_events:
                index = bisect_right(positions, stored.topological_ordering)
                result[stored.event_id] = changes[index - 1][1] if index else LEAVE
        return result


def _state_event(
    state: StateMap, key: tuple[str, str], events: Mapping[str, EventBase]
) -> EventBase | None:
    event_id = state.get(key)
    return None if event_id is None else events.get(event_id)


def _content(stored: StoredEvent, redactions: Mapping[str, StoredEvent]) -> Any:
    """The event's content as clients see it: pruned once redacted."""
    event = stored.event
    if stored.event_id in redactions:
        return prune_content(event.room_version, event.type, event.content)
    return event.content
