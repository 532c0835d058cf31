"""State resolution v2, step 1 (sorting): the reverse topological power ordering.

Spec: rooms v2, "Definitions › Reverse topological power ordering": "the
lexicographically smallest topological ordering based on the DAG formed by
auth events ... ordered from earliest event to latest", where x < y if

1. x's sender has *greater* power level than y's sender, when looking at their
   respective auth_events; or
2. the senders have the same power level, but x's origin_server_ts is *less*
   than y's origin_server_ts; or
3. the senders have the same power level and the events have the same
   origin_server_ts, but x's event_id is *less* than y's event_id.

"The reverse topological power ordering can be found by sorting the events
using Kahn's algorithm for topological sorting, and at each step selecting,
among all the candidate vertices, the smallest vertex using the above
comparison relation." An event is a candidate once all of its auth events in
the graph have been placed.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Set

from homeserver.state.loader import FetchEvent
from homeserver.state.v2.sender_power import sender_power_level
from homeserver.types.room_versions import RoomVersion

SortKey = tuple[float, int, str]


def reverse_topological_power_order(
    room_version: RoomVersion, graph: Mapping[str, Set[str]], fetch_event: FetchEvent
) -> list[str]:
    """Sort the events of `graph` (event -> its auth events in the graph), earliest first."""
    keys: dict[str, SortKey] = {}
    for event_id in graph:
        event = fetch_event(event_id)
        if event is None:
            keys[event_id] = (0.0, 0, event_id)
            continue
        power = sender_power_level(room_version, event, fetch_event)
        keys[event_id] = (-power, event.origin_server_ts, event_id)

    pending: dict[str, int] = {}
    cited_by: dict[str, list[str]] = {event_id: [] for event_id in graph}
    for event_id, auth_ids in graph.items():
        in_graph = [a for a in auth_ids if a in graph and a != event_id]
        pending[event_id] = len(in_graph)
        for auth_id in in_graph:
            cited_by[auth_id].append(event_id)

    ready = [(keys[e], e) for e, count in pending.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        _, event_id = heapq.heappop(ready)
        ordered.append(event_id)
        for citing in cited_by[event_id]:
            pending[citing] -= 1
            if pending[citing] == 0:
                heapq.heappush(ready, (keys[citing], citing))

    if len(ordered) < len(graph):
        # Only forged events can form an auth cycle; Kahn's algorithm never
        # frees them. Place them last, by the same comparison, so the result
        # stays deterministic.
        placed = set(ordered)
        ordered.extend(sorted((e for e in graph if e not in placed), key=keys.__getitem__))
    return ordered
