"""Tests for homeserver.storage.stores.state: the delta-group policy, and reading states back (both engines)."""

from __future__ import annotations

import math
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.state import (
    MAX_CHAIN_LENGTH,
    StateGroup,
    StateStore,
    chain_length,
    compose_state,
    insert_state_groups_txn,
    plan_state_group,
    state_diff,
)

StateKey = tuple[str, str]


class Planner:
    """Plans groups in memory, as the persister does, with a naive copy of each state."""

    def __init__(self) -> None:
        self.groups: dict[int, StateGroup] = {}
        self.states: dict[int | None, dict[StateKey, str]] = {None: {}}
        self.order: list[StateGroup] = []

    def new(self, base: int | None, changes: dict[StateKey, str | None]) -> int:
        group = plan_state_group("!r:x", base, changes, self.groups, -(len(self.groups) + 1))
        self.groups[group.id] = group
        self.order.append(group)
        state = dict(self.states[base])
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        self.states[group.id] = state
        return group.id

    def rows(self) -> int:
        return sum(len(g.delta) for g in self.groups.values())


def test_linear_history_costs_log_rows_per_change() -> None:
    """One change at a time: rows ~ changes x log2(changes), chains ~ log2(changes)."""
    planner = Planner()
    head = planner.new(None, {("m.room.create", ""): "$c"})
    for n in range(1, 4000):
        head = planner.new(head, {("m.room.member", f"@u{n}:x"): f"$e{n}"})
        if n % 97 == 0:
            assert compose_state(head, planner.groups) == planner.states[head]
    changes = 4000
    assert planner.rows() <= changes * (2 + math.log2(changes) / 2)
    assert max(chain_length(g, planner.groups) for g in planner.groups) <= math.log2(changes) + 2
    # A snapshot per 100 changes (Synapse's way) would hold about changes^2 / 200 rows,
    # and the gap widens as the room grows.
    assert planner.rows() < changes**2 / 200 / 3


def test_repeated_changes_of_one_key_stay_small() -> None:
    """A key changed over and over (a topic): merged deltas collapse to one row per key."""
    planner = Planner()
    head = planner.new(None, {("m.room.create", ""): "$c"})
    for n in range(2000):
        head = planner.new(head, {("m.room.topic", ""): f"$t{n}"})
    assert planner.rows() <= 2000 * 2
    assert max(len(g.delta) for g in planner.groups.values()) <= 2


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_any_tree_of_changes_composes_back(data: Any) -> None:
    """Random trees of states (branching from any group, removals included) compose back
    exactly, and no chain is longer than MAX_CHAIN_LENGTH."""
    planner = Planner()
    planner.new(None, {("m.room.create", ""): "$c"})
    keys = [("t", str(i)) for i in range(30)]
    for n in range(data.draw(st.integers(1, 120))):
        base = data.draw(st.sampled_from(sorted(planner.groups)))
        picked = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=8, unique=True))
        changes: dict[StateKey, str | None] = {
            key: (None if data.draw(st.booleans()) and key in planner.states[base] else f"$e{n}")
            for key in picked
        }
        if not state_diff(planner.states[base], {**planner.states[base], **changes}):
            continue
        planner.new(base, changes)
    for group_id in planner.groups:
        assert compose_state(group_id, planner.groups) == planner.states[group_id]
        assert chain_length(group_id, planner.groups) <= MAX_CHAIN_LENGTH


def test_state_diff() -> None:
    old = {("a", ""): "$1", ("b", ""): "$2"}
    new = {("a", ""): "$1", ("b", ""): "$3", ("c", ""): "$4"}
    assert state_diff(old, new) == {("b", ""): "$3", ("c", ""): "$4"}
    assert state_diff(new, old) == {("b", ""): "$2", ("c", ""): None}


# -- on the database


async def test_groups_round_trip(database: Database) -> None:
    """Planned groups stored in one transaction read back, from a fresh store, as the same states."""
    rng = random.Random(3)
    planner = Planner()
    planner.new(None, {("m.room.create", ""): "$c"})
    for n in range(300):
        base = rng.choice(sorted(planner.groups)) if rng.random() < 0.2 else planner.order[-1].id
        key = ("m.room.member", f"@u{rng.randrange(60)}:x")
        value = None if rng.random() < 0.1 and key in planner.states[base] else f"$e{n}"
        planner.new(base, {key: value})

    def insert(txn: Transaction) -> dict[int, int]:
        return insert_state_groups_txn(txn, planner.order)

    stored = await database.run_interaction("insert_groups", insert)
    assert sorted(stored) == sorted(planner.groups)
    fresh = StateStore(database, group_cache_rows=50, state_cache_rows=50)
    states = await fresh.get_state_for_groups([stored[g] for g in planner.groups])
    for planned, stored_id in stored.items():
        assert dict(states[stored_id]) == planner.states[planned]
    groups, rows = await fresh.count_state_rows("!r:x")
    assert (groups, rows) == (len(planner.groups), planner.rows())
    # Read again: from the caches, same answer.
    one = next(iter(stored.values()))
    assert await fresh.get_state_for_group(one) == states[one]


async def test_unknown_group_is_an_error(database: Database) -> None:
    store = StateStore(database)
    try:
        await store.get_state_for_group(12345)
    except KeyError as e:
        assert "12345" in str(e)
    else:
        raise AssertionError("expected KeyError")


async def test_state_at_unknown_event_and_empty_current_state(database: Database) -> None:
    store = StateStore(database)
    assert await store.get_state_ids_for_event("$nope") is None
    assert dict(await store.get_current_state_ids("!nope:x")) == {}
