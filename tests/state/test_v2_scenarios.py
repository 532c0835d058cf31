"""Named state resolution scenarios (v2 and v2.1), written as forked room DAGs.

Each scenario builds a room with `RoomBuilder`: a common history on "main",
then concurrent branches. The branches' states are what two (or more) servers
would hold; resolving them must give the outcome the spec's algorithm is
designed for: power events from the more powerful sender win, concurrent
actions of someone who lost their power are undone, mainline ordering decides
between ordinary state events.

Scenarios run under several room versions of the v2 family: v2 (oldest event
format and auth rules), v6, v10 and v11 (state res v2.0) and v12 (v2.1), unless
they are about one version's rules.
"""

from __future__ import annotations

import pytest

from homeserver.state.loader import StateKey
from homeserver.types.room_versions import V2, V6, V10, V11, V12, RoomVersion
from tests.state.resolution_fixtures import RoomBuilder

V2_FAMILY = [V2, V6, V10, V11, V12]
IDS = [f"room-v{v.identifier}" for v in V2_FAMILY]

PL: StateKey = ("m.room.power_levels", "")
JR: StateKey = ("m.room.join_rules", "")
TOPIC: StateKey = ("m.room.topic", "")


def member(b: RoomBuilder, name: str) -> StateKey:
    return ("m.room.member", b.user(name))


def membership(b: RoomBuilder, state: dict[StateKey, str], name: str) -> str | None:
    event_id = state.get(member(b, name))
    if event_id is None:
        return None
    value = b.events[event_id].content.get("membership")
    return value if isinstance(value, str) else None


def resolve_both_orders(b: RoomBuilder, *branches: str) -> dict[StateKey, str]:
    """Resolve the branches, and check that the reverse order gives the same state."""
    result = b.resolve(*branches)
    assert b.resolve(*reversed(branches)) == result
    return result


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_ban_beats_concurrent_power_levels_change(rv: RoomVersion) -> None:
    """Alice (100) bans bob (50) while bob concurrently promotes charlie. The ban is
    sorted first (more power) and bob's power levels change then fails: he is banned."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob", "charlie"], admins={"bob": 50})
    b.fork("main", "bob")
    ban = b.member("main", "ban-bob", "alice", "ban", "bob")
    b.power_levels("bob", "pl-bob", "bob", {"alice": 100, "bob": 50, "charlie": 50})
    state = resolve_both_orders(b, "main", "bob")
    assert state[member(b, "bob")] == ban
    assert state[PL] == b.id("pl0")


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_join_rules_change_beats_concurrent_join(rv: RoomVersion) -> None:
    """Alice makes the room invite-only while evelyn joins through the old public
    rule on another branch. The join is checked against the new rule and loses."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob"])
    b.fork("main", "evelyn")
    invite_only = b.join_rules("main", "jr-invite", "alice", "invite")
    b.member("evelyn", "join-evelyn", "evelyn", "join")
    state = resolve_both_orders(b, "main", "evelyn")
    assert state[JR] == invite_only
    assert member(b, "evelyn") not in state
    assert membership(b, state, "bob") == "join"


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_topic_from_demoted_user_is_dropped(rv: RoomVersion) -> None:
    """Bob (50) sets a topic while alice concurrently demotes him and sets her own
    topic *earlier* in time. Mainline ordering puts bob's topic (based on the older
    power levels) first; it then fails against the demotion, so alice's topic wins."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob"], admins={"bob": 50})
    b.fork("main", "bob")
    demote = b.power_levels("main", "pl-demote", "alice", {"alice": 100}, ts=100)
    alice_topic = b.topic("main", "topic-alice", "alice", "Alice's", ts=101)
    b.topic("bob", "topic-bob", "bob", "Bob's", ts=500)
    state = resolve_both_orders(b, "main", "bob")
    assert state[PL] == demote
    assert state[TOPIC] == alice_topic


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_topic_resets_when_its_sender_is_banned(rv: RoomVersion) -> None:
    """Alice sets a topic; bob (50) replaces it while alice concurrently bans him.
    The resolved topic goes back to alice's: bob's change does not survive his ban."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob"], admins={"bob": 50})
    first_topic = b.topic("main", "topic-1", "alice", "first")
    b.fork("main", "bob")
    ban = b.member("main", "ban-bob", "alice", "ban", "bob")
    b.topic("bob", "topic-2", "bob", "second")
    state = resolve_both_orders(b, "main", "bob")
    assert state[member(b, "bob")] == ban
    assert state[TOPIC] == first_topic


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_moderator_change_loses_to_concurrent_demotion(rv: RoomVersion) -> None:
    """Bob (50) promotes charlie to 50 while alice concurrently demotes bob to 0.
    Alice's event is sorted first and bob's change, checked after it, fails."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob", "charlie"], admins={"bob": 50})
    b.fork("main", "bob")
    demote = b.power_levels("main", "pl-demote", "alice", {"alice": 100, "bob": 0})
    b.power_levels("bob", "pl-promote", "bob", {"alice": 100, "bob": 50, "charlie": 50})
    state = resolve_both_orders(b, "main", "bob")
    assert state[PL] == demote


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_mainline_ordering_beats_timestamps(rv: RoomVersion) -> None:
    """Two concurrent topics by alice: the one based on the newer power levels is applied
    last and wins, though its origin_server_ts is far older than the other's."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob"])
    b.fork("main", "old")
    b.power_levels("main", "pl1", "alice", {"alice": 100, "bob": 10})
    newer_base = b.topic("main", "topic-new-base", "alice", "new base", ts=1)
    b.topic("old", "topic-old-base", "alice", "old base", ts=10_000)
    state = resolve_both_orders(b, "main", "old")
    assert state[TOPIC] == newer_base


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_equal_mainline_position_falls_back_to_timestamp(rv: RoomVersion) -> None:
    """Two concurrent topics based on the same power levels: the later origin_server_ts
    is applied last and wins, whatever the event IDs."""
    b = RoomBuilder(rv)
    b.bootstrap()
    b.fork("main", "other")
    b.topic("main", "topic-a", "alice", "a", ts=300)
    later = b.topic("other", "topic-z", "alice", "z", ts=200)
    earlier_but_bigger_id = b.topic("main", "topic-zz", "alice", "zz", ts=100)
    assert b.state("main")[TOPIC] == earlier_but_bigger_id
    state = resolve_both_orders(b, "main", "other")
    assert state[TOPIC] == later


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_concurrent_joins_on_three_branches_all_survive(rv: RoomVersion) -> None:
    """Three users join a public room on three branches; nothing conflicts with a join,
    so all three are members after resolving the three states."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob"])
    for name in ("charlie", "dave", "ella"):
        b.fork("main", name)
        b.member(name, f"join-{name}", name, "join")
    state = resolve_both_orders(b, "charlie", "dave", "ella")
    for name in ("alice", "bob", "charlie", "dave", "ella"):
        assert membership(b, state, name) == "join", name


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_four_branch_fork(rv: RoomVersion) -> None:
    """Four concurrent branches: charlie joins; ella joins; alice sets a topic and closes
    the room; alice bans ella. Result: the room is invite-only, charlie's join (made
    under the public rule, concurrently with the change) is dropped, ella stays banned,
    alice's topic stands, and bob (joined before the fork) is untouched."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob"])
    for branch in ("b1", "b2", "b3", "b4"):
        b.fork("main", branch)
    b.member("b1", "join-charlie", "charlie", "join")
    b.member("b2", "join-ella", "ella", "join")
    topic = b.topic("b3", "topic", "alice", "closed for repairs")
    invite_only = b.join_rules("b3", "jr-invite", "alice", "invite")
    ban = b.member("b4", "ban-ella", "alice", "ban", "ella")
    state = b.resolve("b1", "b2", "b3", "b4")
    assert b.resolve("b4", "b2", "b1", "b3") == state
    assert state[JR] == invite_only
    assert member(b, "charlie") not in state
    assert state[member(b, "ella")] == ban
    assert state[TOPIC] == topic
    assert membership(b, state, "bob") == "join"


@pytest.mark.parametrize("rv", V2_FAMILY, ids=IDS)
def test_merging_then_forking_again(rv: RoomVersion) -> None:
    """After a merge event that resolves two branches, a new fork resolves against the
    merged state: bob's ban carries over, and his later attempt to rejoin on a stale
    branch (which never saw the ban) fails."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob", "charlie"], admins={"bob": 50})
    b.fork("main", "stale")
    b.fork("main", "bob")
    ban = b.member("main", "ban-bob", "alice", "ban", "bob")
    b.topic("bob", "topic-bob", "bob", "mine")
    b.merge("main", ["bob"], "merge-topic", "alice", "m.room.topic", "", {"topic": "merged"})
    merged = b.state("main")
    assert merged[member(b, "bob")] == ban
    assert merged[TOPIC] == b.id("merge-topic")
    b.member("stale", "leave-bob", "bob", "leave")
    b.member("stale", "rejoin-bob", "bob", "join")
    state = resolve_both_orders(b, "main", "stale")
    assert state[member(b, "bob")] == ban
    assert state[TOPIC] == b.id("merge-topic")


def test_v12_creator_outranks_an_admin() -> None:
    """Room v12: alice (creator, infinite power) demotes bob (100) while bob bans
    charlie. Alice's event sorts first and succeeds; bob's ban then fails."""
    b = RoomBuilder(V12)
    b.bootstrap(members=["bob", "charlie"], admins={"bob": 100})
    b.fork("main", "bob")
    demote = b.power_levels("main", "pl-demote", "alice", {"bob": 0})
    b.member("bob", "ban-charlie", "bob", "ban", "charlie")
    state = resolve_both_orders(b, "main", "bob")
    assert state[PL] == demote
    assert membership(b, state, "charlie") == "join"


def test_v10_equal_admins_cannot_demote_each_other() -> None:
    """The same history in room v10, where alice and bob both have 100: alice may not
    demote an equal, so her change is dropped and bob's ban stands."""
    b = RoomBuilder(V10)
    b.bootstrap(members=["bob", "charlie"], admins={"bob": 100})
    b.fork("main", "bob")
    b.power_levels("main", "pl-demote", "alice", {"alice": 100, "bob": 0})
    ban = b.member("bob", "ban-charlie", "bob", "ban", "charlie")
    assert b.id("pl-demote") in b.rejected  # already rejected on alice's own branch
    state = resolve_both_orders(b, "main", "bob")
    assert state[PL] == b.id("pl0")
    assert state[member(b, "charlie")] == ban


def test_v12_additional_creator_beats_admin_with_later_timestamp() -> None:
    """Room v12: an additional creator also has infinite power, so carol's join-rules
    change sorts before bob's (100) even though bob's has the earlier timestamp;
    bob's change is applied afterwards and stands (he is still allowed)."""
    b = RoomBuilder(V12)
    b.create("alice", content={"additional_creators": ["@carol:example.com"]})
    b.member("main", "join-alice", "alice", "join")
    b.power_levels("main", "pl0", "alice", {"bob": 100})
    b.join_rules("main", "jr0", "alice", "public")
    b.member("main", "join-bob", "bob", "join")
    b.member("main", "join-carol", "carol", "join")
    b.fork("main", "bob")
    b.join_rules("main", "jr-carol", "carol", "invite", ts=1000)
    bob_rule = b.join_rules("bob", "jr-bob", "bob", "knock", ts=10)
    state = resolve_both_orders(b, "main", "bob")
    assert state[JR] == bob_rule
