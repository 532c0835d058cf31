"""State resolution v2, steps 2 and 4: the iterative auth checks.

Spec: rooms v2, "Definitions › Iterative auth checks": "The iterative auth
checks algorithm takes as input an initial room state and a sorted list of
state events, and constructs a new room state by iterating through the event
list and applying the state event to the room state if the state event is
allowed by the authorisation rules. If the state event is not allowed by the
authorisation rules, then the event is ignored. If a (event_type, state_key)
key that is required for checking the authorisation rules is not present in
the state, then the appropriate state event from the event's auth_events is
used if the auth event is not rejected."

So the auth events for a check are, for each key the auth rules need: the
event in the state being built if there is one, else the event's own auth
event for that key unless it was rejected. Rejected events themselves are
re-checked like any other ("Rejected events": handled as usual).

From room v12 the create event is not among `auth_events`; when the state has
no create event (v2.1 starts from an empty state) it is taken from the room ID.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from homeserver.state.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from homeserver.state.loader import FetchEvent, IsRejected, StateKey
from homeserver.state.v2.create_event import create_event_for
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion

CREATE_KEY: StateKey = ("m.room.create", "")


def auth_events_for_check(
    room_version: RoomVersion,
    event: EventBase,
    state: Mapping[StateKey, str],
    fetch_event: FetchEvent,
    is_rejected: IsRejected,
) -> dict[StateKey, EventBase]:
    """The auth events to check `event` against, keyed by (type, state_key)."""
    fallback: dict[StateKey, EventBase] = {}
    for auth_id in event.auth_event_ids:
        auth_event = fetch_event(auth_id)
        if auth_event is None or auth_event.state_key is None or is_rejected(auth_id):
            continue
        fallback.setdefault((auth_event.type, auth_event.state_key), auth_event)
    if CREATE_KEY not in fallback and room_version.auth.room_id_from_create_event:
        create = create_event_for(room_version, event, fetch_event)
        if create is not None and not is_rejected(create.event_id):
            fallback[CREATE_KEY] = create

    needed = set(auth_types_for_event(room_version, event))
    needed.add(CREATE_KEY)
    chosen: dict[StateKey, EventBase] = {}
    for key in needed:
        state_id = state.get(key)
        state_event = fetch_event(state_id) if state_id is not None else None
        if state_event is not None:
            chosen[key] = state_event
        elif key in fallback:
            chosen[key] = fallback[key]
    return chosen


def iterative_auth_checks(
    room_version: RoomVersion,
    event_ids: Iterable[str],
    initial_state: Mapping[StateKey, str],
    fetch_event: FetchEvent,
    is_rejected: IsRejected,
) -> dict[StateKey, str]:
    """Apply the sorted events to a copy of `initial_state`, each only if it passes auth."""
    state = dict(initial_state)
    for event_id in event_ids:
        event = fetch_event(event_id)
        if event is None or event.state_key is None:
            continue
        auth_events = auth_events_for_check(room_version, event, state, fetch_event, is_rejected)
        try:
            check_auth_rules(room_version, event, auth_events)
        except AuthError:
            continue
        state[(event.type, event.state_key)] = event_id
    return state
