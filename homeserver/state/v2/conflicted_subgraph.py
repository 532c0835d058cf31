"""State resolution v2.1 (room v12, MSC4297): the conflicted state subgraph.

Spec: rooms v12, "Definitions › Conflicted state subgraph": "Starting from an
event in the conflicted state set and following auth_events edges may lead to
another event in the conflicted state set. The union of all such paths between
any pair of events in the conflicted state set (including endpoints) forms a
subgraph of the original auth_event graph, called the conflicted state
subgraph."

An event X lies on such a path exactly when X can be reached from a conflicted
event and a conflicted event can be reached from X. We compute the events
reachable from the conflicted set, then, within those, the ones that reach back
to it (a reverse walk), and intersect. The result also contains the conflicted
events themselves; that changes nothing, since they are in the full conflicted
set anyway.
"""

from __future__ import annotations

from collections.abc import Set

from homeserver.state.loader import FetchEvent


def conflicted_state_subgraph(conflicted: Set[str], fetch_event: FetchEvent) -> set[str]:
    """The events on `auth_events` paths between events of the conflicted state set."""
    # Forward: everything reachable from the conflicted set, with the reverse
    # edges (auth event -> events citing it) among those events.
    cited_by: dict[str, set[str]] = {}
    reachable: set[str] = set(conflicted)
    stack = list(conflicted)
    while stack:
        event_id = stack.pop()
        event = fetch_event(event_id)
        if event is None:
            continue
        for auth_id in event.auth_event_ids:
            cited_by.setdefault(auth_id, set()).add(event_id)
            if auth_id not in reachable:
                reachable.add(auth_id)
                stack.append(auth_id)
    # Backward: the reachable events from which a conflicted event is reachable.
    reaches_conflicted: set[str] = set(conflicted)
    stack = list(conflicted)
    while stack:
        event_id = stack.pop()
        for citing in cited_by.get(event_id, ()):
            if citing not in reaches_conflicted:
                reaches_conflicted.add(citing)
                stack.append(citing)
    return reachable & reaches_conflicted
