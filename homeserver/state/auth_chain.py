"""Auth chains: the events reachable from an event through `auth_events`.

Spec: rooms v2, "State resolution › Definitions › Auth chain": "The auth chain
of an event E is the set containing all of E's auth events, all of their auth
events, and so on recursively, stretching back to the start of the room." The
event itself is not part of its own auth chain (unless the graph had a cycle,
which valid events cannot form, since an event's ID commits to its auth events).

"Auth difference" uses the *full auth chain* of a state set: the union of the
auth chains of the events in it.

Events that `fetch_event` cannot return are kept in the chain (they are
referenced, so they are in it) but not walked further.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from homeserver.state.loader import FetchEvent, StateMap


def auth_chain(event_ids: Iterable[str], fetch_event: FetchEvent) -> set[str]:
    """The union of the auth chains of the given events.

    The starting events are included only if one of them is in the auth chain
    of another.
    """
    chain: set[str] = set()
    stack: list[str] = []
    for event_id in event_ids:
        event = fetch_event(event_id)
        if event is not None:
            stack.extend(event.auth_event_ids)
    while stack:
        event_id = stack.pop()
        if event_id in chain:
            continue
        chain.add(event_id)
        event = fetch_event(event_id)
        if event is not None:
            stack.extend(a for a in event.auth_event_ids if a not in chain)
    return chain


class AuthChainCache:
    """Auth chains of single events, each computed once: chain(E) is E's auth
    events plus their chains.

    For callers that need the chain of many individual events (for example to
    index them as they are stored). Chains are frozensets and never change,
    since an event's auth events are fixed by its ID. Memory grows with the sum
    of the chain sizes, so this is not what `state_set_auth_chains` uses.
    """

    __slots__ = ("_chains", "_fetch_event")

    def __init__(self, fetch_event: FetchEvent) -> None:
        self._fetch_event = fetch_event
        self._chains: dict[str, frozenset[str]] = {}

    def chain_of(self, event_id: str) -> frozenset[str]:
        """The auth chain of one event (without the event itself)."""
        cached = self._chains.get(event_id)
        if cached is not None:
            return cached
        # Iterative post-order walk, so that deep auth DAGs do not hit the
        # recursion limit: a node's chain is built once all its auth events'
        # chains are known.
        stack: list[tuple[str, bool]] = [(event_id, False)]
        on_path: set[str] = set()
        added: list[str] = []
        cyclic = False
        while stack:
            current, expanded = stack.pop()
            if current in self._chains:
                continue
            event = self._fetch_event(current)
            parents: tuple[str, ...] = () if event is None else tuple(event.auth_event_ids)
            if not expanded:
                on_path.add(current)
                stack.append((current, True))
                for parent in parents:
                    if parent in on_path:
                        cyclic = True
                    elif parent not in self._chains:
                        stack.append((parent, False))
                continue
            on_path.discard(current)
            chain: set[str] = set(parents)
            for parent in parents:
                chain.update(self._chains.get(parent, ()))
            self._chains[current] = frozenset(chain)
            added.append(current)
        if cyclic:
            # Only forged events (room v1/v2 IDs do not commit to content) can
            # form an auth cycle. The post-order chains above are then
            # incomplete, so drop them and walk this one plainly.
            for done in added:
                del self._chains[done]
            self._chains[event_id] = frozenset(auth_chain([event_id], self._fetch_event))
        return self._chains[event_id]

    def full_chain(self, event_ids: Iterable[str]) -> frozenset[str]:
        """The union of the auth chains of the given events."""
        chain: set[str] = set()
        for event_id in event_ids:
            chain.update(self.chain_of(event_id))
        return frozenset(chain)


def state_set_auth_chains(
    state_sets: Sequence[StateMap], fetch_event: FetchEvent
) -> list[frozenset[str]]:
    """The full auth chain of each state set, in the same order, counting the set's own events.

    Spec: rooms v2, "Auth difference": "the full auth chain for each state S_i,
    that is the union of the auth chains for each event in S_i". Read
    literally, an event's auth chain does not hold the event itself. Synapse,
    which most rooms run on, counts each state event as part of its own set's
    chain, and the two readings resolve differently when an event in every
    state set is an auth event of some sets' events but not of the others'
    (tests/interop pins such a case). Servers in one room must resolve alike,
    so we follow Synapse: each chain also holds the state set's events.

    One walk per state set: time grows with (number of sets) x (chain size),
    memory with the chain size. Servers with an auth chain index should pass
    the chains to `resolve_state` instead.
    """
    return [
        frozenset(auth_chain(state_set.values(), fetch_event)) | frozenset(state_set.values())
        for state_set in state_sets
    ]
