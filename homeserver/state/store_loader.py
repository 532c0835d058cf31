"""Glue between storage and the pure state resolution: load what it needs, then run it.

`resolve_state` is synchronous and reads events through `fetch_event`; a
server holds its events in a database. `resolve_state_from_source` loads every
event the resolution may look at (the events of the state sets and their auth
chains, per `loader.events_needed`) in rounds, one fetch per level of the auth
DAG, into an `EventMap`, and then runs the algorithm on it.

The source is any object with an async `fetch_events(ids)` returning
`{event_id: (event, rejected)}` for the events it holds (the event
persistence handler passes its event store, overlaid with the events of the
batch it is computing). No storage import here: the pure core stays pure.

Cost: one fetch per level of the auth DAG, and the whole auth closure of the
state sets in memory. Fine for forks in the rooms a small server sees; an auth
chain index in storage (handing `auth_chains` to `resolve_state`) is the
upgrade for very large rooms.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from homeserver.state.loader import EventMap, StateKey, StateMap
from homeserver.state.resolution import resolve_state
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion


class EventSource(Protocol):
    async def fetch_events(
        self, event_ids: Collection[str]
    ) -> Mapping[str, tuple[EventBase, bool]]:
        """The events held among `event_ids`: event ID -> (event, rejected)."""


async def load_auth_closure(state_sets: Sequence[StateMap], source: EventSource) -> EventMap:
    """The events of the state sets and of their auth chains, with the rejected ones marked."""
    events: dict[str, EventBase] = {}
    rejected: set[str] = set()
    asked: set[str] = set()
    frontier: set[str] = {event_id for state in state_sets for event_id in state.values()}
    while frontier:
        asked |= frontier
        found = await source.fetch_events(frontier)
        next_frontier: set[str] = set()
        for event_id, (event, is_rejected) in found.items():
            events[event_id] = event
            if is_rejected:
                rejected.add(event_id)
            next_frontier.update(event.auth_event_ids)
        frontier = next_frontier - asked
    return EventMap(events.values(), rejected)


async def resolve_state_from_source(
    room_version: RoomVersion, state_sets: Sequence[StateMap], source: EventSource
) -> dict[StateKey, str]:
    """`resolve_state` over these state sets, loading the events it needs from `source`."""
    distinct: list[StateMap] = []
    for state in state_sets:
        if not any(state == seen for seen in distinct):
            distinct.append(state)
    if len(distinct) <= 1:
        return dict(distinct[0]) if distinct else {}
    event_map = await load_auth_closure(distinct, source)
    return resolve_state(
        room_version, distinct, event_map.fetch_event, is_rejected=event_map.is_rejected
    )
