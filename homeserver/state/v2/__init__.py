"""State resolution v2 (room versions 2..11) and v2.1 (room version 12).

Spec: rooms v2, "State resolution"; rooms v12, "State resolution" (MSC4297).
One step per module, in the spec's order:

- `split`: unconflicted state map and conflicted state set
- `auth_difference`: ∪ C_i − ∩ C_i over the full auth chains
- `conflicted_subgraph` (v2.1): events on auth paths between conflicted events
- `power_events`: the set X of power events and their conflicted auth events
- `power_ordering`: the reverse topological power ordering (Kahn)
- `iterative_auth_checks`: applying sorted events if they pass the auth rules
- `mainline`: the mainline ordering of the remaining events

`resolve_v2` strings them together (the spec's "Algorithm" section).
"""

from __future__ import annotations

from collections.abc import Sequence, Set

from homeserver.state.auth_chain import state_set_auth_chains
from homeserver.state.loader import FetchEvent, IsRejected, StateKey, StateMap, never_rejected
from homeserver.state.v2.auth_difference import auth_difference
from homeserver.state.v2.conflicted_subgraph import conflicted_state_subgraph
from homeserver.state.v2.iterative_auth_checks import iterative_auth_checks
from homeserver.state.v2.mainline import mainline_order
from homeserver.state.v2.power_events import power_events_and_their_auth
from homeserver.state.v2.power_ordering import reverse_topological_power_order
from homeserver.state.v2.split import conflicted_state_set, split_conflicted
from homeserver.types.room_versions import RoomVersion, StateResAlgorithm

POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")


def full_conflicted_set(
    room_version: RoomVersion,
    conflicted_ids: Set[str],
    auth_chains: Sequence[Set[str]],
    fetch_event: FetchEvent,
) -> set[str]:
    """The conflicted state set ∪ the auth difference (∪ the conflicted state
    subgraph for v2.1), keeping only events that can be fetched."""
    full = set(conflicted_ids) | auth_difference(auth_chains)
    if room_version.state_res is StateResAlgorithm.V2_1:
        full |= conflicted_state_subgraph(conflicted_ids, fetch_event)
    return {event_id for event_id in full if fetch_event(event_id) is not None}


def resolve_v2(
    room_version: RoomVersion,
    state_sets: Sequence[StateMap],
    fetch_event: FetchEvent,
    *,
    is_rejected: IsRejected = never_rejected,
    auth_chains: Sequence[Set[str]] | None = None,
) -> dict[StateKey, str]:
    """Resolve state sets with the v2 algorithm (v2.1 when the room version says so).

    `auth_chains`, if given, is the full auth chain of each state set, in the
    same order (for callers with an auth chain index); otherwise they are
    computed by walking `auth_events` through `fetch_event`.
    """
    unconflicted, conflicted = split_conflicted(state_sets)
    if not conflicted:
        return unconflicted
    if auth_chains is None:
        auth_chains = state_set_auth_chains(state_sets, fetch_event)
    elif len(auth_chains) != len(state_sets):
        raise ValueError("need one auth chain per state set")

    full = full_conflicted_set(
        room_version, conflicted_state_set(conflicted), auth_chains, fetch_event
    )

    # 1. The power events of the full conflicted set, with their auth events in
    #    it, in reverse topological power ordering.
    power_graph = power_events_and_their_auth(full, fetch_event)
    sorted_power = reverse_topological_power_order(room_version, power_graph, fetch_event)

    # 2. Iterative auth checks over them, starting from the unconflicted state
    #    map (v2) or from an empty state map (v2.1).
    initial: StateMap = {} if room_version.state_res is StateResAlgorithm.V2_1 else unconflicted
    partial = iterative_auth_checks(room_version, sorted_power, initial, fetch_event, is_rejected)

    # 3. The other events of the full conflicted set, in mainline ordering
    #    based on the power levels event of the partially resolved state.
    remaining = full - power_graph.keys()
    sorted_remaining = mainline_order(remaining, partial.get(POWER_LEVELS_KEY), fetch_event)

    # 4. Iterative auth checks over them, starting from the partial state.
    resolved = iterative_auth_checks(
        room_version, sorted_remaining, partial, fetch_event, is_rejected
    )

    # 5. The unconflicted state map wins over whatever was resolved.
    resolved.update(unconflicted)
    return resolved
