"""The steps of state resolution v2, one module each, tested on small hand-made graphs.

Spec: rooms v2 "State resolution" definitions; rooms v12 "Conflicted state subgraph".
"""

from __future__ import annotations

import math

from homeserver.state.loader import EventMap
from homeserver.state.v2.conflicted_subgraph import conflicted_state_subgraph
from homeserver.state.v2.iterative_auth_checks import iterative_auth_checks
from homeserver.state.v2.mainline import MainlinePositions, mainline, mainline_order
from homeserver.state.v2.power_events import is_power_event, power_events_and_their_auth
from homeserver.state.v2.power_ordering import reverse_topological_power_order
from homeserver.state.v2.sender_power import sender_power_level
from homeserver.state.v2.split import split_conflicted
from homeserver.types.room_versions import V10, V11, V12
from tests.state.resolution_fixtures import RoomBuilder, event, graph_events

TOPIC = ("m.room.topic", "")
NAME = ("m.room.name", "")


# --- split ------------------------------------------------------------------------


def test_split_keys_agreeing_everywhere_are_unconflicted() -> None:
    """A key with the same event in every set is unconflicted; differing values conflict."""
    unconflicted, conflicted = split_conflicted(
        [{TOPIC: "$t", NAME: "$n1"}, {TOPIC: "$t", NAME: "$n2"}]
    )
    assert unconflicted == {TOPIC: "$t"}
    assert conflicted == {NAME: frozenset({"$n1", "$n2"})}


def test_split_a_key_missing_from_one_set_is_conflicted() -> None:
    """Spec: (K, V) is unconflicted only if K is present in *every* S_i; otherwise V is
    conflicted, even when all sets that have K agree."""
    unconflicted, conflicted = split_conflicted([{TOPIC: "$t"}, {TOPIC: "$t"}, {}])
    assert unconflicted == {}
    assert conflicted == {TOPIC: frozenset({"$t"})}


def test_split_of_nothing_is_empty() -> None:
    """No state sets: nothing is unconflicted or conflicted."""
    assert split_conflicted([]) == ({}, {})


# --- conflicted state subgraph (v2.1) ---------------------------------------------


def test_conflicted_subgraph_is_the_paths_between_conflicted_events() -> None:
    """Events on an auth path from one conflicted event to another are in the subgraph;
    events only below (or beside) them are not."""
    #   c1 -> x -> y -> c2 -> base ;  c1 -> side ; z -> c2 (z above c2, not conflicted)
    source = graph_events(
        V12,
        {
            "$base": [],
            "$c2": ["$base"],
            "$y": ["$c2"],
            "$x": ["$y"],
            "$c1": ["$x", "$side"],
            "$side": ["$base"],
            "$z": ["$c2"],
        },
    )
    subgraph = conflicted_state_subgraph({"$c1", "$c2"}, source.fetch_event)
    assert subgraph == {"$c1", "$x", "$y", "$c2"}


def test_conflicted_subgraph_follows_every_path() -> None:
    """With two routes from c1 down to c2 both are included (a union of all paths)."""
    source = graph_events(
        V12,
        {"$c2": [], "$a": ["$c2"], "$b": ["$c2"], "$c1": ["$a", "$b"], "$c3": []},
    )
    assert conflicted_state_subgraph({"$c1", "$c2", "$c3"}, source.fetch_event) == {
        "$c1",
        "$a",
        "$b",
        "$c2",
        "$c3",
    }


def test_conflicted_subgraph_without_paths_adds_nothing() -> None:
    """Conflicted events with no auth path between them add no other event."""
    source = graph_events(V12, {"$base": [], "$c1": ["$base"], "$c2": ["$base"]})
    assert conflicted_state_subgraph({"$c1", "$c2"}, source.fetch_event) <= {"$c1", "$c2"}


# --- power events -----------------------------------------------------------------


def test_power_events_are_pl_join_rules_and_kicks_and_bans() -> None:
    """Spec: power levels, join rules, and leave/ban memberships sent by someone else;
    as in Synapse and ruma also the create event, and only with an empty state_key."""
    assert is_power_event(event(V10, "$0", event_type="m.room.create"))
    assert not is_power_event(event(V10, "$0b", event_type="m.room.power_levels", state_key="x"))
    assert is_power_event(event(V10, "$1", event_type="m.room.power_levels"))
    assert is_power_event(event(V10, "$2", event_type="m.room.join_rules"))
    kick = event(
        V10,
        "$3",
        event_type="m.room.member",
        state_key="@bob:example.com",
        content={"membership": "leave"},
    )
    ban = event(
        V10,
        "$4",
        event_type="m.room.member",
        state_key="@bob:example.com",
        content={"membership": "ban"},
    )
    own_leave = event(
        V10,
        "$5",
        event_type="m.room.member",
        state_key="@alice:example.com",
        content={"membership": "leave"},
    )
    invite = event(
        V10,
        "$6",
        event_type="m.room.member",
        state_key="@bob:example.com",
        content={"membership": "invite"},
    )
    assert is_power_event(kick) and is_power_event(ban)
    assert not is_power_event(own_leave)
    assert not is_power_event(invite)
    assert not is_power_event(event(V10, "$7", event_type="m.room.topic"))
    assert not is_power_event(event(V10, "$8", event_type="m.room.message", state_key=None))


def test_power_graph_adds_conflicted_auth_events_of_power_events() -> None:
    """X = power events of the full conflicted set plus their auth chain within it;
    non-power events not under a power event stay out."""
    b = RoomBuilder(V10)
    b.bootstrap(members=["bob"])
    b.fork("main", "other")
    pl1 = b.power_levels("main", "pl1", "alice", {"alice": 100, "bob": 50})
    topic = b.topic("main", "t1", "bob", "hello")
    pl2 = b.power_levels("main", "pl2", "bob", {"alice": 100, "bob": 50, "charlie": 10})
    other_topic = b.topic("other", "t2", "alice", "other")
    full = {pl1, topic, pl2, other_topic}
    graph = power_events_and_their_auth(full, b.fetch_event)
    assert set(graph) == {pl1, pl2}
    assert graph[pl2] == {pl1}
    assert graph[pl1] == set()


# --- reverse topological power ordering ------------------------------------------


def test_kahn_picks_the_smallest_candidate_at_each_step() -> None:
    """With equal power and timestamps, ties go by event ID: for the graph
    l->o, m->{n,o}, n->o, p->o (x->y: y is an auth event of x) the order is o, l, n, m, p."""
    graph: dict[str, set[str]] = {
        "$o": set(),
        "$l": {"$o"},
        "$m": {"$n", "$o"},
        "$n": {"$o"},
        "$p": {"$o"},
    }
    source = graph_events(V10, {k: sorted(v) for k, v in graph.items()})
    order = reverse_topological_power_order(V10, graph, source.fetch_event)
    assert order == ["$o", "$l", "$n", "$m", "$p"]


def test_kahn_prefers_higher_power_then_earlier_timestamp() -> None:
    """Among candidates, the sender with more power goes first, then the smaller
    origin_server_ts, then the smaller event ID."""
    b = RoomBuilder(V10)
    b.bootstrap(members=["bob", "charlie"])
    b.power_levels("main", "pl1", "alice", {"alice": 100, "bob": 50})
    for branch in ("b1", "b2", "b3", "b4"):
        b.fork("main", branch)
    # All four cite pl1 and nothing else in the graph, so all are candidates at once.
    low_late = b.join_rules("b1", "jr-bob-late", "bob", "invite", ts=500)
    low_early = b.join_rules("b2", "jr-bob-early", "bob", "invite", ts=400)
    high_late = b.join_rules("b3", "jr-alice", "alice", "invite", ts=900)
    tie = b.join_rules("b4", "jr-bob-tie", "bob", "invite", ts=400)
    graph: dict[str, set[str]] = {e: set() for e in (low_late, low_early, high_late, tie)}
    order = reverse_topological_power_order(V10, graph, b.fetch_event)
    assert order == [high_late, low_early, tie, low_late]


def test_sender_power_comes_from_the_events_own_auth_events() -> None:
    """The sender's level is read from the power levels event the event cites, not
    from any later state; without one the creator has 100, others 0."""
    b = RoomBuilder(V10)
    b.create("alice")
    join = b.member("main", "join-alice", "alice", "join")
    b.power_levels("main", "pl1", "alice", {"alice": 100, "bob": 40})
    b.join_rules("main", "jr", "alice", "public")
    bob_join = b.member("main", "join-bob", "bob", "join")
    bob_topic = b.topic("main", "topic-bob", "bob", "x")
    b.power_levels("main", "pl2", "alice", {"alice": 100, "bob": 75})
    # pl2 gives bob 75, but the topic cites pl1.
    assert sender_power_level(V10, b.events[bob_topic], b.fetch_event) == 40
    assert sender_power_level(V10, b.events[join], b.fetch_event) == 100
    # Bob's join cites pl1, where bob is listed with 40 (before he even joined).
    assert sender_power_level(V10, b.events[bob_join], b.fetch_event) == 40


def test_sender_power_of_v12_creators_is_infinite() -> None:
    """Room v12: the creators (sender and additional_creators) have infinite power; the
    create event is found from the room ID since auth_events does not list it."""
    b = RoomBuilder(V12)
    b.create("alice", content={"additional_creators": ["@carol:example.com"]})
    b.member("main", "join-alice", "alice", "join")
    b.power_levels("main", "pl1", "alice", {"bob": 50})
    b.join_rules("main", "jr", "alice", "public")
    carol = b.member("main", "join-carol", "carol", "join")
    bob = b.member("main", "join-bob", "bob", "join")
    topic = b.topic("main", "topic-alice", "alice", "x")
    assert sender_power_level(V12, b.events[topic], b.fetch_event) == math.inf
    assert sender_power_level(V12, b.events[carol], b.fetch_event) == math.inf
    assert sender_power_level(V12, b.events[bob], b.fetch_event) == 50


def test_sender_power_reads_v11_creator_from_the_sender() -> None:
    """Room v11 has no `creator` field: without power levels the create event's sender has 100."""
    b = RoomBuilder(V11)
    b.create("alice")
    join = b.member("main", "join-alice", "alice", "join")
    assert sender_power_level(V11, b.events[join], b.fetch_event) == 100


# --- mainline ordering ------------------------------------------------------------


def _mainline_room() -> tuple[RoomBuilder, dict[str, str]]:
    """pl0 <- pl1 <- pl2 on main; topics citing each, plus one citing a side PL."""
    b = RoomBuilder(V10)
    b.bootstrap(members=["bob"])
    ids = {"pl0": b.id("pl0")}
    ids["t0"] = b.topic("main", "t0", "alice", "zero", ts=300)
    ids["pl1"] = b.power_levels("main", "pl1", "alice", {"alice": 100, "bob": 50})
    ids["t1"] = b.topic("main", "t1", "alice", "one", ts=200)
    b.fork("main", "side")
    ids["pl2"] = b.power_levels("main", "pl2", "alice", {"alice": 100, "bob": 60})
    ids["t2"] = b.topic("main", "t2", "alice", "two", ts=100)
    ids["side-pl"] = b.power_levels("side", "side-pl", "alice", {"alice": 100, "bob": 10})
    ids["t-side"] = b.topic("side", "t-side", "alice", "side", ts=50)
    return b, ids


def test_mainline_follows_power_levels_auth_events() -> None:
    """The mainline of P is P, the PL event in P's auth events, and so on."""
    b, ids = _mainline_room()
    assert mainline(ids["pl2"], b.fetch_event) == [ids["pl2"], ids["pl1"], ids["pl0"]]
    assert mainline(None, b.fetch_event) == []


def test_mainline_positions() -> None:
    """An event's position is the index of the first mainline PL on its PL chain
    (P_0 = 0); an event whose chain only joins the mainline further down gets that
    deeper index; one that never joins it gets ∞."""
    b, ids = _mainline_room()
    positions = MainlinePositions(mainline(ids["pl2"], b.fetch_event), b.fetch_event)
    assert positions.position(b.events[ids["t2"]]) == 0
    assert positions.position(b.events[ids["t1"]]) == 1
    assert positions.position(b.events[ids["t0"]]) == 2
    assert positions.position(b.events[ids["t-side"]]) == 1  # side-pl -> pl1
    create = b.events[b.id("create")]
    assert positions.position(create) == math.inf


def test_mainline_order_beats_timestamps() -> None:
    """Events based on earlier mainline PLs sort first even when their timestamps are
    later; equal positions fall back to origin_server_ts."""
    b, ids = _mainline_room()
    order = mainline_order(
        [ids["t2"], ids["t1"], ids["t0"], ids["t-side"]], ids["pl2"], b.fetch_event
    )
    assert order == [ids["t0"], ids["t-side"], ids["t1"], ids["t2"]]


def test_mainline_order_without_power_levels_uses_timestamps() -> None:
    """If the partial state has no power levels event every position is ∞: sort by ts, then ID."""
    b, ids = _mainline_room()
    order = mainline_order([ids["t0"], ids["t1"], ids["t2"]], None, b.fetch_event)
    assert order == [ids["t2"], ids["t1"], ids["t0"]]


# --- iterative auth checks --------------------------------------------------------


def test_iterative_auth_checks_apply_only_allowed_events() -> None:
    """Each event is applied if it passes the auth rules against the state built so far."""
    b = RoomBuilder(V10)
    b.bootstrap(members=["bob"], admins={"bob": 50})
    start = b.state("main")
    b.fork("main", "x")
    demote = b.power_levels("main", "pl-demote", "alice", {"alice": 100}, state_default=100)
    bob_topic = b.topic("x", "topic-bob", "bob", "x")
    state = iterative_auth_checks(V10, [demote, bob_topic], start, b.fetch_event, b.is_rejected)
    assert state[("m.room.power_levels", "")] == demote
    assert TOPIC not in state  # bob's topic fails against the new power levels
    state = iterative_auth_checks(V10, [bob_topic, demote], start, b.fetch_event, b.is_rejected)
    assert state[TOPIC] == bob_topic  # before the demotion it passes


def test_missing_keys_fall_back_to_the_events_own_auth_events() -> None:
    """From an empty state, an event is checked against its own auth events."""
    b = RoomBuilder(V10)
    b.bootstrap(members=["bob"])
    topic = b.topic("main", "topic", "alice", "hi")
    state = iterative_auth_checks(V10, [topic], {}, b.fetch_event, b.is_rejected)
    assert state == {TOPIC: topic}


def test_rejected_auth_events_are_not_used_as_fallback() -> None:
    """Spec: the auth event from the event's auth_events is used only "if the auth
    event is not rejected". With bob's join marked rejected, his topic has no
    membership to be checked against and fails."""
    b = RoomBuilder(V10)
    b.bootstrap(members=["bob"], admins={"bob": 50})
    topic = b.topic("main", "topic-bob", "bob", "hi")
    bob_join = b.id("join-bob")
    ok = iterative_auth_checks(V10, [topic], {}, b.fetch_event, lambda e: False)
    assert ok == {TOPIC: topic}
    rejected = iterative_auth_checks(V10, [topic], {}, b.fetch_event, lambda e: e == bob_join)
    assert rejected == {}


def test_rejected_events_themselves_are_rechecked_as_usual() -> None:
    """Spec, "Rejected events": events rejected against the state at the event are
    handled as usual, so one that passes against the resolved state is applied."""
    b = RoomBuilder(V10)
    b.bootstrap(members=["bob"], admins={"bob": 50})
    topic = b.topic("main", "topic-bob", "bob", "hi")
    state = iterative_auth_checks(
        V10, [topic], b.state("main"), b.fetch_event, lambda e: e == topic
    )
    assert state[TOPIC] == topic


def test_unknown_and_non_state_events_are_skipped() -> None:
    """Events the loader does not have, and non-state events, change nothing."""
    b = RoomBuilder(V10)
    b.bootstrap()
    message = event(V10, "$msg", state_key=None, event_type="m.room.message")
    source = EventMap([*b.events.values(), message])
    start = b.state("main")
    state = iterative_auth_checks(
        V10, ["$nope", "$msg"], start, source.fetch_event, source.is_rejected
    )
    assert state == start
