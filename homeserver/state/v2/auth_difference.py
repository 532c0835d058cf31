"""State resolution v2: the auth difference.

Spec: rooms v2, "Definitions › Auth difference": "If C_i is the full auth chain
of S_i, then the auth difference is ∪ C_i − ∩ C_i." The full auth chains come
from `homeserver.state.auth_chain.state_set_auth_chains`, or from a storage
index that computes the same sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Set


def auth_difference(auth_chains: Iterable[Set[str]]) -> set[str]:
    """The events that are in some of the full auth chains but not in all of them."""
    chains = list(auth_chains)
    if not chains:
        return set()
    union: set[str] = set().union(*chains)
    intersection: set[str] = set(chains[0]).intersection(*chains[1:])
    return union - intersection
