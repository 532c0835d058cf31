"""Step 0 of state resolution v2: split the state sets into unconflicted and conflicted.

Spec: rooms v2, "Definitions › Unconflicted state map and conflicted state set":
"If a given key K is present in every S_i with the same value V in each state
map, then the pair (K, V) belongs to the unconflicted state map. Otherwise, V
belongs to the conflicted state set." A key missing from one of the state maps
is therefore conflicted, even if every map that has it agrees.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.state.loader import StateKey, StateMap


def split_conflicted(
    state_sets: Sequence[StateMap],
) -> tuple[dict[StateKey, str], dict[StateKey, frozenset[str]]]:
    """Returns (unconflicted state map, conflicted event IDs per key)."""
    if not state_sets:
        return {}, {}
    values: dict[StateKey, set[str]] = {}
    present: dict[StateKey, int] = {}
    for state_set in state_sets:
        for key, event_id in state_set.items():
            values.setdefault(key, set()).add(event_id)
            present[key] = present.get(key, 0) + 1
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, frozenset[str]] = {}
    for key, ids in values.items():
        if len(ids) == 1 and present[key] == len(state_sets):
            (unconflicted[key],) = ids
        else:
            conflicted[key] = frozenset(ids)
    return unconflicted, conflicted


def conflicted_state_set(conflicted: dict[StateKey, frozenset[str]]) -> set[str]:
    """All event IDs of the conflicted state set (the values, flattened)."""
    out: set[str] = set()
    for ids in conflicted.values():
        out.update(ids)
    return out
