"""Auth chains and the auth difference (spec: rooms v2, "Auth chain", "Auth difference")."""

from __future__ import annotations

from homeserver.state.auth_chain import AuthChainCache, auth_chain, state_set_auth_chains
from homeserver.state.loader import EventMap
from homeserver.state.v2.auth_difference import auth_difference
from homeserver.types.room_versions import V1, V10
from tests.state.resolution_fixtures import event, graph_events, load_ruma_case

# create <- join <- pl <- jr ; pl <- topic ; (jr, pl) <- bob
DIAMOND = {
    "$create": [],
    "$join": ["$create"],
    "$pl": ["$create", "$join"],
    "$jr": ["$create", "$join", "$pl"],
    "$topic": ["$create", "$join", "$pl"],
    "$bob": ["$create", "$pl", "$jr"],
}


def test_auth_chain_is_everything_reachable_through_auth_events() -> None:
    """The chain of an event holds its auth events and theirs, recursively, but not itself."""
    source = graph_events(V10, DIAMOND)
    assert auth_chain(["$bob"], source.fetch_event) == {"$create", "$join", "$pl", "$jr"}
    assert auth_chain(["$join"], source.fetch_event) == {"$create"}
    assert auth_chain(["$create"], source.fetch_event) == set()


def test_auth_chain_of_several_events_is_the_union() -> None:
    """For several events the chain is the union; a starting event is in it only if another cites it."""
    source = graph_events(V10, DIAMOND)
    assert auth_chain(["$topic", "$jr"], source.fetch_event) == {"$create", "$join", "$pl"}
    assert auth_chain(["$bob", "$jr"], source.fetch_event) == {"$create", "$join", "$pl", "$jr"}


def test_missing_events_stay_in_the_chain_but_are_not_walked() -> None:
    """An auth event the loader does not have is still referenced, so it is in the chain;
    what lies behind it cannot be known."""
    source = graph_events(V10, {"$a": ["$gone"], "$b": ["$a"]})
    assert auth_chain(["$b"], source.fetch_event) == {"$a", "$gone"}
    assert auth_chain(["$unknown"], source.fetch_event) == set()


def test_cache_agrees_with_the_plain_walk_on_every_event() -> None:
    """The memoising walk gives the same chain as the plain one, for each event of a real DAG."""
    case = load_ruma_case("topic_vs_ban")
    source = case.event_map()
    cache = AuthChainCache(source.fetch_event)
    for ev in case.events:
        assert cache.chain_of(ev.event_id) == auth_chain([ev.event_id], source.fetch_event)
    all_ids = [ev.event_id for ev in case.events]
    assert cache.full_chain(all_ids) == auth_chain(all_ids, source.fetch_event)


def test_cache_survives_a_deep_linear_chain() -> None:
    """A 5000-deep auth chain (beyond Python's recursion limit) is walked without recursion."""
    graph: dict[str, list[str]] = {"$e0": []}
    graph.update({f"$e{i}": [f"$e{i - 1}"] for i in range(1, 5000)})
    source = graph_events(V10, graph)
    chain = AuthChainCache(source.fetch_event).chain_of("$e4999")
    assert len(chain) == 4999 and "$e0" in chain and "$e4999" not in chain


def test_forged_auth_cycle_terminates_and_matches_the_plain_walk() -> None:
    """Room v1 event IDs do not commit to content, so a forged cycle a -> b -> c -> a is
    possible; both walks terminate and agree, whichever event is asked first."""
    graph = {"$a:x": ["$b:x"], "$b:x": ["$c:x"], "$c:x": ["$a:x"], "$d:x": ["$a:x"]}
    source = graph_events(V1, graph)
    for first in graph:
        cache = AuthChainCache(source.fetch_event)
        cache.chain_of(first)
        for eid in graph:
            assert cache.chain_of(eid) == auth_chain([eid], source.fetch_event)
    assert auth_chain(["$d:x"], source.fetch_event) == {"$a:x", "$b:x", "$c:x"}


def test_state_set_auth_chains_unions_each_sets_events() -> None:
    """The full auth chain of a state set is the union of its events' chains, per set,
    plus the set's own events (as Synapse counts them; see state_set_auth_chains)."""
    source = graph_events(V10, DIAMOND)
    chains = state_set_auth_chains(
        [{("m.room.topic", ""): "$topic"}, {("m.room.member", "@bob:x"): "$bob"}],
        source.fetch_event,
    )
    assert chains == [
        frozenset({"$create", "$join", "$pl", "$topic"}),
        frozenset({"$create", "$join", "$pl", "$jr", "$bob"}),
    ]


def test_auth_difference_is_union_minus_intersection() -> None:
    """∪ C_i − ∩ C_i: events in some chains but not all."""
    assert auth_difference([{"a", "b", "c"}, {"b", "c", "d"}, {"c", "e"}]) == {"a", "b", "d", "e"}
    assert auth_difference([{"a", "b"}, {"a", "b"}]) == set()
    assert auth_difference([{"a"}]) == set()
    assert auth_difference([]) == set()


def test_auth_difference_of_a_fork() -> None:
    """Two branches that each added a power levels event differ exactly by those events,
    what only they cite, and the conflicted topics themselves."""
    source = EventMap(
        [
            event(V10, "$create", state_key="", event_type="m.room.create"),
            event(V10, "$join", auth=["$create"]),
            event(V10, "$pl", auth=["$create", "$join"]),
            event(V10, "$pl-a", auth=["$create", "$join", "$pl"]),
            event(V10, "$pl-b", auth=["$create", "$join", "$pl"]),
            event(V10, "$topic-a", auth=["$create", "$join", "$pl-a"]),
            event(V10, "$topic-b", auth=["$create", "$join", "$pl-b"]),
        ]
    )
    chains = state_set_auth_chains(
        [{("m.room.topic", ""): "$topic-a"}, {("m.room.topic", ""): "$topic-b"}],
        source.fetch_event,
    )
    assert auth_difference(chains) == {"$pl-a", "$pl-b", "$topic-a", "$topic-b"}
