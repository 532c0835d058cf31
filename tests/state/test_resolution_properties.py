"""Hypothesis properties of state resolution over random forked room histories.

A history is drawn as a list of operations on up to four branches of a room
(fork, topic, name, join, leave, kick, ban, power levels, join rules) by a few
users with different power, with small timestamps so that ties happen. Events
that the auth rules refuse on their branch are kept in the DAG (as rejected)
but do not change that branch's state, as on a real server. The branches'
states are then resolved with each algorithm (v1, v2, v2.1).

Properties: the result does not depend on the order of the state sets or on
duplicated state sets; one state set (or several equal ones) resolves to
itself; keys on which all sets agree keep their value; resolving the same input
twice, from freshly built events, or with precomputed auth chains, gives the
same output; and the output is the same in processes with different string
hash seeds (no dependence on set iteration order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.state.auth_chain import state_set_auth_chains
from homeserver.state.loader import StateKey
from homeserver.state.resolution import resolve_state
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, V1, V10, V12, RoomVersion
from tests.state.resolution_fixtures import RoomBuilder

VERSIONS = [V1, V10, V12]
VERSION_IDS = ["v1", "v2", "v2.1"]
USERS = ["alice", "bob", "charlie", "dave"]
ACTIONS = ["fork", "topic", "name", "join", "leave", "kick", "ban", "power_levels", "join_rules"]


@dataclass(frozen=True)
class Op:
    branch: int
    action: str
    actor: str
    target: str
    level: int
    ts: int


ops_strategy = st.lists(
    st.builds(
        Op,
        branch=st.integers(0, 3),
        action=st.sampled_from(ACTIONS),
        actor=st.sampled_from(USERS),
        target=st.sampled_from(USERS),
        level=st.sampled_from([0, 10, 50, 100]),
        ts=st.integers(0, 6),
    ),
    min_size=2,
    max_size=14,
)


def build_room(rv: RoomVersion, ops: Sequence[Op]) -> tuple[RoomBuilder, list[str]]:
    """Replay `ops` on a room; returns the builder and its branch names (at least two)."""
    b = RoomBuilder(rv)
    b.bootstrap(members=["bob", "charlie"], admins={"bob": 50})
    branches = ["main"]
    b.fork("main", "b1")
    branches.append("b1")
    base_ts = 1000
    for i, op in enumerate(ops):
        branch = branches[op.branch % len(branches)]
        ts = base_ts + op.ts
        name = f"e{i}"
        if op.action == "fork":
            if len(branches) < 4:
                new = f"b{len(branches)}"
                b.fork(branch, new)
                branches.append(new)
        elif op.action == "topic":
            b.topic(branch, name, op.actor, f"topic {i}", ts=ts)
        elif op.action == "name":
            b.send(branch, name, "m.room.name", "", op.actor, {"name": f"n{i}"}, ts=ts)
        elif op.action == "join":
            b.member(branch, name, op.actor, "join", ts=ts)
        elif op.action == "leave":
            b.member(branch, name, op.actor, "leave", ts=ts)
        elif op.action in ("kick", "ban"):
            membership = "leave" if op.action == "kick" else "ban"
            b.member(branch, name, op.actor, membership, op.target, ts=ts)
        elif op.action == "power_levels":
            users = {"alice": 100, "bob": 50, op.target: op.level}
            b.power_levels(branch, name, op.actor, users, ts=ts)
        elif op.action == "join_rules":
            rule = "invite" if op.level >= 50 else "public"
            b.join_rules(branch, name, op.actor, rule, ts=ts)
    return b, branches


def states_of(b: RoomBuilder, branches: Sequence[str]) -> list[dict[StateKey, str]]:
    return [b.state(name) for name in branches]


def resolve(b: RoomBuilder, sets: Sequence[dict[StateKey, str]]) -> dict[StateKey, str]:
    return resolve_state(b.room_version, sets, b.fetch_event, is_rejected=b.is_rejected)


PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@PROPERTY_SETTINGS
@given(ops=ops_strategy, data=st.data())
def test_result_does_not_depend_on_the_order_of_the_state_sets(
    rv: RoomVersion, ops: list[Op], data: st.DataObject
) -> None:
    """Any permutation of the state sets resolves to the same state."""
    b, branches = build_room(rv, ops)
    sets = states_of(b, branches)
    shuffled = data.draw(st.permutations(sets))
    assert resolve(b, shuffled) == resolve(b, sets)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@PROPERTY_SETTINGS
@given(ops=ops_strategy)
def test_duplicated_state_sets_change_nothing(rv: RoomVersion, ops: list[Op]) -> None:
    """Adding a copy of one of the state sets does not change the result."""
    b, branches = build_room(rv, ops)
    sets = states_of(b, branches)
    assert resolve(b, [*sets, dict(sets[-1])]) == resolve(b, sets)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@PROPERTY_SETTINGS
@given(ops=ops_strategy)
def test_a_state_resolves_to_itself(rv: RoomVersion, ops: list[Op]) -> None:
    """One state set, or the same state set several times, resolves to that state."""
    b, branches = build_room(rv, ops)
    for state in states_of(b, branches):
        assert resolve(b, [state]) == state
        assert resolve(b, [state, dict(state), dict(state)]) == state


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@PROPERTY_SETTINGS
@given(ops=ops_strategy)
def test_keys_all_sets_agree_on_are_kept(rv: RoomVersion, ops: list[Op]) -> None:
    """Step 5 of v2 (and the first pass of v1): unconflicted entries are in the result."""
    b, branches = build_room(rv, ops)
    sets = states_of(b, branches)
    result = resolve(b, sets)
    agreed = {k: v for k, v in sets[0].items() if all(s.get(k) == v for s in sets)}
    for key, event_id in agreed.items():
        assert result[key] == event_id


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@PROPERTY_SETTINGS
@given(ops=ops_strategy)
def test_resolution_is_deterministic(rv: RoomVersion, ops: list[Op]) -> None:
    """The same history built twice (fresh event objects) resolves to the same state,
    and passing the auth chains precomputed gives that state too."""
    b1, branches = build_room(rv, ops)
    b2, _ = build_room(rv, ops)
    first = resolve(b1, states_of(b1, branches))
    assert resolve(b2, states_of(b2, branches)) == first
    assert resolve(b1, states_of(b1, branches)) == first
    if rv.state_res.value != "v1":
        sets = states_of(b1, branches)
        chains = state_set_auth_chains(sets, b1.fetch_event)
        given_chains = resolve_state(
            rv, sets, b1.fetch_event, is_rejected=b1.is_rejected, auth_chains=chains
        )
        assert given_chains == first


# --- the same output across processes with different hash seeds ----------------

FIXED_HISTORY = [
    Op(1, "ban", "alice", "bob", 0, 3),
    Op(0, "power_levels", "bob", "charlie", 50, 3),
    Op(0, "fork", "alice", "alice", 0, 0),
    Op(2, "join_rules", "alice", "alice", 50, 2),
    Op(0, "join", "dave", "dave", 0, 1),
    Op(1, "topic", "bob", "bob", 0, 5),
    Op(2, "kick", "bob", "charlie", 0, 1),
    Op(0, "name", "alice", "alice", 0, 4),
    Op(1, "fork", "alice", "alice", 0, 0),
    Op(3, "power_levels", "alice", "bob", 100, 2),
    Op(3, "topic", "bob", "bob", 0, 2),
    Op(0, "topic", "charlie", "charlie", 0, 6),
]


def fingerprint() -> str:
    """The resolved states of FIXED_HISTORY under each algorithm, as sorted JSON."""
    out = {}
    for rv in VERSIONS:
        b, branches = build_room(rv, FIXED_HISTORY)
        state = resolve(b, states_of(b, branches))
        out[rv.identifier] = sorted([k[0], k[1], v] for k, v in state.items())
    return json.dumps(out, sort_keys=True)


def test_fixed_history_has_real_conflicts() -> None:
    """The history used across processes does exercise conflicts in every algorithm."""
    for rv in VERSIONS:
        b, branches = build_room(rv, FIXED_HISTORY)
        sets = states_of(b, branches)
        assert len(branches) == 4
        conflicted = {k for s in sets for k in s if len({t.get(k) for t in sets}) > 1}
        assert len(conflicted) >= 4, rv.identifier
    assert KNOWN_ROOM_VERSIONS["12"] is V12


def test_same_output_under_different_hash_seeds() -> None:
    """Python randomises string hashing per process, which changes set iteration order;
    three processes with different PYTHONHASHSEED values must resolve identically."""
    root = Path(__file__).resolve().parents[2]
    code = "from tests.state.test_resolution_properties import fingerprint; print(fingerprint())"
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(root))
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        outputs.add(proc.stdout.strip())
    assert len(outputs) == 1
    assert outputs.pop() == fingerprint()
