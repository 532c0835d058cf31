"""The state resolution entry point: dispatch, edge cases, and real matrix.org events.

Spec: rooms v1/v2/v12 "State resolution". The tardis vectors are real signed
room-v10 events from matrix.org (VECTORS.md section 4).
"""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest

from homeserver.state.loader import EventMap, StateKey, events_needed
from homeserver.state.resolution import resolve_state, state_after
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import V1, V10, V12, RoomVersion
from tests.state.resolution_fixtures import RoomBuilder, resolve_iteratively, vectors_dir

NAME: StateKey = ("m.room.name", "")
TOPIC: StateKey = ("m.room.topic", "")


def load_tardis(name: str) -> list[EventBase]:
    lines = (vectors_dir() / "tardis" / name).read_text(encoding="utf-8").splitlines()
    events = []
    for line in lines:
        if line.strip():
            pdu = json.loads(line)
            events.append(make_event(pdu, V10, event_id=pdu["event_id"]))
    return events


@pytest.mark.parametrize("rv", [V1, V10, V12], ids=["v1", "v2", "v2.1"])
def test_no_state_sets_resolve_to_an_empty_state(rv: RoomVersion) -> None:
    """Resolving nothing gives the empty state (the state before a create event)."""
    assert resolve_state(rv, [], lambda _: None) == {}


@pytest.mark.parametrize("rv", [V1, V10, V12], ids=["v1", "v2", "v2.1"])
def test_one_state_set_comes_back_unchanged_as_a_new_dict(rv: RoomVersion) -> None:
    """A single state set is the resolution of itself; the caller's mapping is not
    returned or modified."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob"])
    state = MappingProxyType(b.state("main"))
    result = resolve_state(rv, [state], b.fetch_event)
    assert result == dict(state)
    assert result is not state


def test_inputs_are_not_modified() -> None:
    """Resolution works on copies: the state sets given in are unchanged afterwards."""
    b = RoomBuilder(V10)
    b.bootstrap(members=["bob"], admins={"bob": 50})
    b.fork("main", "bob")
    b.member("main", "ban-bob", "alice", "ban", "bob")
    b.topic("bob", "topic-bob", "bob", "x")
    sets = [b.state("main"), b.state("bob")]
    copies = [dict(s) for s in sets]
    resolve_state(V10, sets, b.fetch_event)
    assert sets == copies


def test_auth_chains_must_match_the_state_sets() -> None:
    """Given auth chains must be one per state set."""
    b = RoomBuilder(V10)
    b.bootstrap()
    b.fork("main", "x")
    b.topic("x", "t", "alice", "t")
    with pytest.raises(ValueError, match="one auth chain per state set"):
        resolve_state(V10, [b.state("main"), b.state("x")], b.fetch_event, auth_chains=[set()])


def test_events_the_loader_lacks_are_ignored() -> None:
    """A conflicted event the loader cannot return is left out of the resolution
    instead of failing it: here the other branch's topic wins."""
    b = RoomBuilder(V10)
    b.bootstrap()
    b.fork("main", "x")
    known = b.topic("main", "known", "alice", "known")
    sets = [b.state("main"), b.state("x") | {TOPIC: "$not-here"}]
    assert resolve_state(V10, sets, b.fetch_event)[TOPIC] == known


def test_state_after_replaces_the_events_key() -> None:
    """S'(E) is S(E) with E's key set to E for a state event, and S(E) for a message."""
    before = {TOPIC: "$t1", NAME: "$n"}
    assert state_after(before, "$t2", TOPIC) == {TOPIC: "$t2", NAME: "$n"}
    assert state_after(before, "$msg", None) == before
    assert before == {TOPIC: "$t1", NAME: "$n"}


def test_events_needed_covers_state_and_chains() -> None:
    """What a storage caller must load: all state set events and auth chain events."""
    needed = events_needed([{TOPIC: "$a"}, {TOPIC: "$b", NAME: "$c"}], [{"$x"}, {"$y", "$a"}])
    assert needed == {"$a", "$b", "$c", "$x", "$y"}


def test_tardis_linear_room_resolves_to_its_seven_state_events() -> None:
    """The real matrix.org room (simple.ndjson), walked forward event by event, ends
    with its seven state events; the final message changes nothing."""
    events = load_tardis("simple.ndjson")
    state = resolve_iteratively(V10, events)
    expected = {(e.type, e.state_key): e.event_id for e in events if e.state_key is not None}
    assert len(expected) == 7
    assert state == expected


def test_tardis_fork_of_the_room_name() -> None:
    """basic-fork.ndjson forks the room name: two name events with the same sender,
    auth events, and origin_server_ts. Mainline position and timestamp tie, so the
    event ID decides: the "-fork" copy sorts last, is applied last, and wins."""
    events = load_tardis("basic-fork.ndjson")
    source = EventMap(events)
    original, fork = (e for e in events if e.type == "m.room.name")
    assert original.origin_server_ts == fork.origin_server_ts
    state = resolve_iteratively(V10, events)
    assert state[NAME] == fork.event_id == max(original.event_id, fork.event_id)
    base: dict[StateKey, str] = {
        (e.type, e.state_key): e.event_id
        for e in events
        if e.state_key is not None and e.type != "m.room.name"
    }
    pair = [base | {NAME: original.event_id}, base | {NAME: fork.event_id}]
    assert resolve_state(V10, pair, source.fetch_event) == state
