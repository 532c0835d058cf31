"""State resolution v1 (room version 1), spec: rooms v1 "State resolution".

Events are ordered by `depth` and `sha1(event_id)`; power levels, then join
rules, then memberships are resolved by accepting events oldest first while
they pass the auth rules; other conflicts take the newest event that passes.
"""

from __future__ import annotations

import hashlib

from homeserver.state.loader import StateKey
from homeserver.state.resolution import resolve_state
from homeserver.state.v1 import separate
from homeserver.types.room_versions import V1, V2
from tests.state.resolution_fixtures import RoomBuilder

PL: StateKey = ("m.room.power_levels", "")
JR: StateKey = ("m.room.join_rules", "")
TOPIC: StateKey = ("m.room.topic", "")


def sha1(event_id: str) -> str:
    return hashlib.sha1(event_id.encode()).hexdigest()


def test_separate_only_differing_values_conflict() -> None:
    """In v1 a conflict is different event IDs for one key; a key that some sets lack
    is not a conflict."""
    unconflicted, conflicted = separate([{TOPIC: "$t", PL: "$p1"}, {PL: "$p2"}])
    assert unconflicted == {TOPIC: "$t"}
    assert conflicted == {PL: {"$p1", "$p2"}}


def test_key_in_only_one_set_is_kept_without_a_check_in_v1_but_checked_in_v2() -> None:
    """A topic that only one state set has (and that its sender may not set) survives
    v1, which sees no conflict; v2 counts it as conflicted, re-checks it and drops it."""
    for rv, survives in ((V1, True), (V2, False)):
        b = RoomBuilder(rv)
        b.bootstrap(members=["bob"])
        b.fork("main", "other")
        forged = b.topic("other", "topic-bob", "bob", "not allowed")
        assert forged in b.rejected
        with_topic = b.state("other")
        with_topic[TOPIC] = forged  # as a buggy or malicious server might claim
        state = resolve_state(rv, [b.state("main"), with_topic], b.fetch_event)
        assert (state.get(TOPIC) == forged) is survives, rv.identifier


def test_later_power_levels_apply_while_allowed() -> None:
    """Power levels: oldest first, each next one applied if it passes auth on top of
    the previous. Alice's two successive changes on two branches end in the deeper one."""
    b = RoomBuilder(V1)
    b.bootstrap(members=["bob"])
    b.fork("main", "other")
    b.power_levels("main", "pl-a1", "alice", {"alice": 100, "bob": 10})
    deeper = b.power_levels("main", "pl-a2", "alice", {"alice": 100, "bob": 20})
    b.power_levels("other", "pl-b1", "alice", {"alice": 100, "bob": 30})
    state = b.resolve("main", "other")
    assert state[PL] == deeper


def test_power_levels_stop_at_the_first_failure() -> None:
    """Three conflicting power levels at depths d, d+1, d+2: the middle one (by bob,
    who may not change them, claimed by one state set) fails, so the algorithm stops
    there and alice's deepest change is never considered: the shallowest one wins."""
    b = RoomBuilder(V1)
    b.bootstrap(members=["bob"])
    for branch in ("x", "y", "z"):
        b.fork("main", branch)
    shallow = b.power_levels("x", "pl-x", "alice", {"alice": 100, "bob": 5})
    b.topic("y", "pad-y", "alice", "padding")
    bob_pl = b.power_levels("y", "pl-y-bob", "bob", {"alice": 100, "bob": 100})
    assert bob_pl in b.rejected  # so a server claiming it in its state is wrong
    b.topic("z", "pad-z1", "alice", "padding")
    b.topic("z", "pad-z2", "alice", "padding")
    deepest = b.power_levels("z", "pl-z", "alice", {"alice": 100, "bob": 7})
    depths = {e: b.events[e].depth for e in (shallow, b.id("pl-y-bob"), deepest)}
    assert depths[shallow] < depths[b.id("pl-y-bob")] < depths[deepest]
    # Without bob's event in any state set, alice's changes apply one after the other.
    assert b.resolve("x", "y", "z")[PL] == deepest
    claimed = b.state("y") | {PL: bob_pl}
    state = resolve_state(V1, [b.state("x"), claimed, b.state("z")], b.fetch_event)
    assert state[PL] == shallow


def test_equal_depth_ties_break_on_descending_sha1() -> None:
    """Two power levels events at the same depth: the one with the larger sha1(event_id)
    comes first, the other is applied on top of it, so the smaller sha1 wins."""
    b = RoomBuilder(V1)
    b.bootstrap(members=["bob"])
    b.fork("main", "other")
    one = b.power_levels("main", "pl-one", "alice", {"alice": 100, "bob": 1})
    two = b.power_levels("other", "pl-two", "alice", {"alice": 100, "bob": 2})
    assert b.events[one].depth == b.events[two].depth
    expected = min((one, two), key=sha1)
    state = b.resolve("main", "other")
    assert state[PL] == expected


def test_other_conflicts_take_the_deepest_event_that_passes() -> None:
    """Topics: the deepest one is bob's, who may not set it; the next deepest passing
    one (alice's) is taken."""
    b = RoomBuilder(V1)
    b.bootstrap(members=["bob"])
    b.fork("main", "other")
    alice_topic = b.topic("main", "topic-alice", "alice", "ok")
    b.topic("other", "pad", "alice", "x")
    b.topic("other", "pad2", "alice", "y")
    bob_topic = b.send("other", "topic-bob", "m.room.topic", "", "bob", {"topic": "no"})
    assert bob_topic in b.rejected
    other = b.state("other")
    other[TOPIC] = bob_topic
    state = resolve_state(V1, [b.state("main"), other], b.fetch_event)
    assert b.events[bob_topic].depth > b.events[alice_topic].depth
    assert state[TOPIC] == alice_topic


def test_other_conflicts_fall_back_to_the_shallowest_when_none_passes() -> None:
    """If no event of an ordinary conflict passes, the last in order (the shallowest) is
    taken, as Synapse does (the spec is silent)."""
    b = RoomBuilder(V1)
    b.bootstrap(members=["bob"])
    b.fork("main", "other")
    low = b.send("main", "topic-low", "m.room.topic", "", "bob", {"topic": "1"})
    b.topic("other", "pad", "alice", "x")
    high = b.send("other", "topic-high", "m.room.topic", "", "bob", {"topic": "2"})
    sets = [b.state("main") | {TOPIC: low}, b.state("other") | {TOPIC: high}]
    state = resolve_state(V1, sets, b.fetch_event)
    assert state[TOPIC] == low


def test_ban_beats_join_in_v1() -> None:
    """Membership conflicts run after power levels and join rules: bob's ban (deeper
    than his join) is allowed in R, so it is applied on top of the join."""
    b = RoomBuilder(V1)
    b.bootstrap(members=["charlie"])
    b.fork("main", "bob")
    b.member("bob", "join-bob", "bob", "join")
    b.topic("main", "pad", "alice", "x")
    ban = b.member("main", "ban-bob", "alice", "ban", "bob")
    state = b.resolve("main", "bob")
    assert state[("m.room.member", b.user("bob"))] == ban


def test_join_after_join_rules_change_in_v1() -> None:
    """Join rules are resolved before memberships: the room is closed (deeper event),
    and ella's join, a conflict with nothing on the other branch, is kept: v1 only
    resolves *conflicts*, so a member key only one side has is not checked."""
    b = RoomBuilder(V1)
    b.bootstrap(members=["bob"])
    b.fork("main", "ella")
    b.topic("main", "pad", "alice", "x")
    closed = b.join_rules("main", "jr-invite", "alice", "invite")
    join = b.member("ella", "join-ella", "ella", "join")
    state = b.resolve("main", "ella")
    assert state[JR] == closed
    assert state[("m.room.member", b.user("ella"))] == join


def test_v1_result_does_not_depend_on_state_set_order() -> None:
    """Several conflicts at once resolve the same whatever the order of the state sets."""
    b = RoomBuilder(V1)
    b.bootstrap(members=["bob", "charlie"], admins={"bob": 50})
    for branch in ("x", "y", "z"):
        b.fork("main", branch)
    b.power_levels("x", "pl-x", "alice", {"alice": 100, "bob": 0})
    b.topic("y", "topic-y", "bob", "bob's")
    b.member("y", "kick-charlie", "bob", "leave", "charlie")
    b.join_rules("z", "jr-z", "alice", "invite")
    b.member("z", "leave-charlie", "charlie", "leave")
    orders = [("x", "y", "z"), ("z", "y", "x"), ("y", "x", "z")]
    results = [b.resolve(*order) for order in orders]
    assert results[0] == results[1] == results[2]
