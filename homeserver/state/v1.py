"""State resolution v1 (room version 1).

Spec: rooms v1, "State resolution". A *conflict* is a (type, state_key) for
which the state sets hold different event IDs; a key that only some sets have,
all with the same event, is not a conflict (unlike v2). Then:

- R starts as the union of the states, without the conflicting events.
- `m.room.power_levels` conflicts: sort by ascending `depth`, then descending
  `sha1(event_id)`; add the first to R; for each next event, if it is allowed
  by the auth rules in state R, update R with it and go on, else stop.
- The same for `m.room.join_rules` conflicts, then for `m.room.member`
  conflicts.
- Every other conflict: "pick the event with the highest depth and lowest
  sha1(event_id) that passes authentication in R and add it to R".

Choices where the spec is silent, following Synapse (the reference v1
implementation, so that servers converge):

- The ordering steps handle the power levels key `("m.room.power_levels", "")`,
  then every `m.room.join_rules` key, then every `m.room.member` key. Each
  join-rules (member) key is resolved against R as it was after the previous
  step; their results are added to R together, so the order of keys within a
  step does not matter. Other conflicts (any other type, and power levels with
  a non-empty state key) are "other" conflicts.
- If no event of an "other" conflict passes, the last one in the order (lowest
  depth, highest sha1) is taken.
- Conflicting events that `fetch_event` cannot return are dropped; if only one
  is left, the key is not a conflict any more.

Rejection is not consulted: v1 predates the spec's rules about it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from homeserver.state.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from homeserver.state.loader import FetchEvent, StateKey, StateMap
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion

POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")
CREATE_KEY: StateKey = ("m.room.create", "")


def separate(
    state_sets: Sequence[StateMap],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split into (unconflicted map, conflicting event IDs per key), v1's way."""
    values: dict[StateKey, set[str]] = {}
    for state_set in state_sets:
        for key, event_id in state_set.items():
            values.setdefault(key, set()).add(event_id)
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key, ids in values.items():
        if len(ids) == 1:
            (unconflicted[key],) = ids
        else:
            conflicted[key] = ids
    return unconflicted, conflicted


def _sha1(event_id: str) -> str:
    return hashlib.sha1(event_id.encode("utf-8")).hexdigest()


def _newest_first(events: list[EventBase]) -> list[EventBase]:
    """Descending depth, then ascending sha1(event_id)."""
    return sorted(events, key=lambda e: (-e.depth, _sha1(e.event_id)))


def _oldest_first(events: list[EventBase]) -> list[EventBase]:
    """Ascending depth, then descending sha1(event_id)."""
    return list(reversed(_newest_first(events)))


class _StateR:
    """R: the unconflicted state (event IDs, fetched when the auth rules need
    them) under the events chosen so far."""

    __slots__ = ("_cache", "_fetch_event", "_ids")

    def __init__(self, ids: Mapping[StateKey, str], fetch_event: FetchEvent) -> None:
        self._ids = ids
        self._fetch_event = fetch_event
        self._cache: dict[StateKey, EventBase | None] = {}

    def get(self, key: StateKey, chosen: Mapping[StateKey, EventBase]) -> EventBase | None:
        if key in chosen:
            return chosen[key]
        if key not in self._cache:
            event_id = self._ids.get(key)
            self._cache[key] = self._fetch_event(event_id) if event_id is not None else None
        return self._cache[key]

    def allows(
        self, room_version: RoomVersion, event: EventBase, chosen: Mapping[StateKey, EventBase]
    ) -> bool:
        """Whether `event` passes the auth rules in state R with `chosen` on top."""
        needed = set(auth_types_for_event(room_version, event))
        needed.add(CREATE_KEY)
        auth_events: dict[StateKey, EventBase] = {}
        for key in needed:
            auth_event = self.get(key, chosen)
            if auth_event is not None:
                auth_events[key] = auth_event
        try:
            check_auth_rules(room_version, event, auth_events)
        except AuthError:
            return False
        return True


def _resolve_auth_conflict(
    room_version: RoomVersion,
    events: list[EventBase],
    r_state: _StateR,
    chosen: Mapping[StateKey, EventBase],
) -> EventBase:
    """Oldest first: take the first, then each next one while it passes auth on top."""
    ordered = _oldest_first(events)
    current = dict(chosen)
    winner = ordered[0]
    for event in ordered[1:]:
        current[(winner.type, winner.state_key or "")] = winner
        if not r_state.allows(room_version, event, current):
            break
        winner = event
    return winner


def _resolve_other_conflict(
    room_version: RoomVersion,
    events: list[EventBase],
    r_state: _StateR,
    chosen: Mapping[StateKey, EventBase],
) -> EventBase:
    """Newest first: the first one that passes auth, else the oldest."""
    ordered = _newest_first(events)
    for event in ordered:
        if r_state.allows(room_version, event, chosen):
            return event
    return ordered[-1]


def resolve_v1(
    room_version: RoomVersion, state_sets: Sequence[StateMap], fetch_event: FetchEvent
) -> dict[StateKey, str]:
    """Resolve state sets with the room v1 algorithm."""
    unconflicted, conflicted_ids = separate(state_sets)
    conflicted: dict[StateKey, list[EventBase]] = {}
    for key, ids in conflicted_ids.items():
        events = [e for e in (fetch_event(i) for i in sorted(ids)) if e is not None]
        if len(events) > 1:
            conflicted[key] = events
        elif events:
            unconflicted[key] = events[0].event_id
    if not conflicted:
        return unconflicted

    r_state = _StateR(unconflicted, fetch_event)
    resolved: dict[StateKey, EventBase] = {}
    if POWER_LEVELS_KEY in conflicted:
        resolved[POWER_LEVELS_KEY] = _resolve_auth_conflict(
            room_version, conflicted[POWER_LEVELS_KEY], r_state, resolved
        )
    for event_type in ("m.room.join_rules", "m.room.member"):
        before = dict(resolved)
        for key, events in conflicted.items():
            if key[0] == event_type:
                resolved[key] = _resolve_auth_conflict(room_version, events, r_state, before)
    before = dict(resolved)
    for key, events in conflicted.items():
        if key not in resolved:
            resolved[key] = _resolve_other_conflict(room_version, events, r_state, before)

    result = dict(unconflicted)
    result.update({key: event.event_id for key, event in resolved.items()})
    return result
