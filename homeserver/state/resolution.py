"""State resolution: the entry point, dispatching on the room version.

Spec: rooms v1 "State resolution" (room v1), rooms v2 "State resolution"
(rooms v2..v11), rooms v12 "State resolution" (v2.1, MSC4297). The room
version's `state_res` flag picks the algorithm; nothing here looks at version
strings.

Synchronous and pure: the caller loads the events first and passes
`fetch_event` (and `is_rejected`); see `homeserver.state.loader` for that
interface and for how missing and rejected events are treated.
"""

from __future__ import annotations

from collections.abc import Sequence, Set

from homeserver.state.loader import FetchEvent, IsRejected, StateKey, StateMap, never_rejected
from homeserver.state.v1 import resolve_v1
from homeserver.state.v2 import resolve_v2
from homeserver.types.room_versions import RoomVersion, StateResAlgorithm


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[StateMap],
    fetch_event: FetchEvent,
    *,
    is_rejected: IsRejected = never_rejected,
    auth_chains: Sequence[Set[str]] | None = None,
) -> dict[StateKey, str]:
    """Resolve several room states into one.

    `state_sets` are the states to merge, each (type, state_key) -> event ID
    (for the state before an event: the states after each of its
    `prev_events`). Returns a new dict; the inputs are not modified. No state
    sets give an empty state; a single state set is returned as it is.

    `auth_chains` (v2 and v2.1 only) is the full auth chain of each state set,
    in the same order, for callers that keep an auth chain index; without it
    the chains are computed by walking `auth_events` through `fetch_event`.

    Raises `ValueError` if `auth_chains` does not match `state_sets` in length.
    """
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    if room_version.state_res is StateResAlgorithm.V1:
        return resolve_v1(room_version, state_sets, fetch_event)
    return resolve_v2(
        room_version,
        state_sets,
        fetch_event,
        is_rejected=is_rejected,
        auth_chains=auth_chains,
    )


def state_after(state_before: StateMap, event_id: str, key: StateKey | None) -> dict[StateKey, str]:
    """S'(E): the state after event E given the state S(E) before it.

    Spec: rooms v2, "State resolution": "If E is a message event, then
    S'(E) = S(E). If E is a state event, then S'(E) is S(E), except that its
    entry corresponding to the event_type and state_key of E is replaced by the
    event_id of E." `key` is E's (type, state_key), or None for a message event.
    (Whether E is allowed at all, and so whether it is rejected, is the auth
    rules' business; the state after a rejected event is the state before it.)
    """
    after = dict(state_before)
    if key is not None:
        after[key] = event_id
    return after
