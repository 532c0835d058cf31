"""State resolution v2, step 1 (selection): power events and the set X.

Spec: rooms v2, "Definitions › Power events": "A power event is a state event
with type m.room.power_levels or m.room.join_rules, or a state event with type
m.room.member where the membership is leave or ban and the sender does not
match the state_key."

"Algorithm", step 1: "Select the set X of all power events that appear in the
full conflicted set. For each such power event P, enlarge X by adding the
events in the auth chain of P which also belong to the full conflicted set."

As in Synapse and ruma, the `m.room.create` event also counts as a power
event, and power levels, join rules and create events only with an empty
`state_key` (the only one the auth rules read). A create event reaches the
full conflicted set only in a room's first moments or in odd inputs (a state
set without it, or holding nothing but it, so that its auth chain is empty);
counting it sorts it first, before everything it authorises. Servers must
agree, so we do as the deployed implementations do.

The auth chain of P is walked only through events of the full conflicted set,
as Synapse, ruma and tuwunel do: an event of the full conflicted set that P
reaches only through an event outside it is not added to X. (Such an event is
in every state set's auth chain, so it is not in the auth difference.) Servers
must agree on X, so we follow the deployed behaviour.
"""

from __future__ import annotations

from collections.abc import Set

from homeserver.state.loader import FetchEvent
from homeserver.types.events import EventBase

_POWER_KEYS = frozenset(
    {("m.room.power_levels", ""), ("m.room.join_rules", ""), ("m.room.create", "")}
)


def is_power_event(event: EventBase) -> bool:
    """Whether the event is a power event (see the module docstring)."""
    if event.state_key is None:
        return False
    if (event.type, event.state_key) in _POWER_KEYS:
        return True
    if event.type == "m.room.member":
        membership = event.content.get("membership")
        return membership in ("leave", "ban") and event.sender != event.state_key
    return False


def power_events_and_their_auth(
    full_conflicted: Set[str], fetch_event: FetchEvent
) -> dict[str, set[str]]:
    """The set X as a graph: each event of X -> its auth events that are in X.

    The edges are what the reverse topological power ordering sorts by.
    """
    graph: dict[str, set[str]] = {}
    for event_id in sorted(full_conflicted):
        event = fetch_event(event_id)
        if event is None or not is_power_event(event):
            continue
        stack = [event_id]
        while stack:
            current = stack.pop()
            if current in graph:
                continue
            edges = graph.setdefault(current, set())
            current_event = fetch_event(current)
            if current_event is None:
                continue
            for auth_id in current_event.auth_event_ids:
                if auth_id in full_conflicted:
                    edges.add(auth_id)
                    if auth_id not in graph:
                        stack.append(auth_id)
    return graph
