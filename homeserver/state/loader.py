"""How state resolution gets at events: the small loader interface.

The algorithms in `homeserver.state` are synchronous and pure. They never touch
storage; they read events through two callables that the caller provides:

- `fetch_event(event_id) -> EventBase | None` returns the event, or None when
  the caller does not have it. An event that cannot be fetched is treated as if
  it did not exist: it is dropped from the conflicted set, not walked in auth
  chains, and not used as an auth event. (The spec's algorithm only ever looks
  at events in the state sets and in their auth chains, which a server holds
  before it resolves; a missing one is a caller bug or a gap that the federation
  layer fills first.)

- `is_rejected(event_id) -> bool` says whether the event was rejected when it
  was received. Rejected events are *not* hidden from the algorithm: the spec
  (rooms v2, "Rejected events") says that events rejected against the state at
  the event "are handled as usual by the algorithm, unless otherwise specified";
  they are sorted, re-authorised in the iterative auth checks and can end up in
  the resolved state. The one place the spec says otherwise is the iterative
  auth checks' fallback to an event's own `auth_events`, which skips rejected
  auth events. That is why rejection is a separate callable rather than
  `fetch_event` returning None. State resolution v1 does not look at rejection.

A storage-side caller loads every event the resolution may need (the state
sets' events and their auth chains, see `events_needed`) into memory first, for
example into an `EventMap`, and then runs the pure algorithm on it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

from homeserver.types.events import EventBase

StateKey = tuple[str, str]
"""(event type, state key) of a state event."""

StateMap = Mapping[StateKey, str]
"""A room state: (event type, state key) -> event ID."""

FetchEvent = Callable[[str], EventBase | None]
"""Returns the event with this ID, or None if the caller does not have it."""

IsRejected = Callable[[str], bool]
"""Whether the event with this ID was rejected when it was received."""


def never_rejected(event_id: str) -> bool:
    """The default `is_rejected`: no event is rejected."""
    return False


class EventMap:
    """Events held in memory, with the set of rejected ones.

    `fetch_event` and `is_rejected` are the two loader callables; pass them
    (bound methods) to `resolve_state`.
    """

    __slots__ = ("_events", "_rejected")

    def __init__(self, events: Iterable[EventBase] = (), rejected: Collection[str] = ()) -> None:
        self._events: dict[str, EventBase] = {ev.event_id: ev for ev in events}
        self._rejected: frozenset[str] = frozenset(rejected)

    def add(self, event: EventBase) -> None:
        self._events[event.event_id] = event

    def fetch_event(self, event_id: str) -> EventBase | None:
        return self._events.get(event_id)

    def is_rejected(self, event_id: str) -> bool:
        return event_id in self._rejected

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._events

    def __len__(self) -> int:
        return len(self._events)


def state_event_key(event: EventBase) -> StateKey:
    """The (type, state_key) of a state event. Raises ValueError for a non-state event."""
    if event.state_key is None:
        raise ValueError(f"{event.event_id} is not a state event")
    return (event.type, event.state_key)


def events_needed(
    state_sets: Iterable[StateMap], auth_chains: Iterable[Collection[str]] = ()
) -> set[str]:
    """The IDs a caller must be able to fetch before resolving these state sets.

    That is every event in the state sets and in the given auth chains (the
    full auth chain of each state set, as `auth_chain.state_set_auth_chains`
    computes it, or as a storage index returns it). The resolution may also
    look at the `m.room.create` event, which is in every state set anyway.
    """
    needed: set[str] = set()
    for state_set in state_sets:
        needed.update(state_set.values())
    for chain in auth_chains:
        needed.update(chain)
    return needed
