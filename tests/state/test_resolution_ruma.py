"""The 13 ruma state resolution cases (VECTORS.md section 2), evaluated as upstream does.

`batches` cases must give the expected state in all three ways the upstream
harness resolves them (iteratively along prev_events, batch by batch, and all
at once); `state_maps` cases resolve the given state sets directly. The
expected states are ruma's insta snapshots.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from homeserver.state.auth_chain import state_set_auth_chains
from homeserver.state.loader import StateKey
from homeserver.state.resolution import resolve_state
from homeserver.types.room_versions import StateResAlgorithm
from tests.state.resolution_fixtures import (
    RumaCase,
    load_ruma_case,
    resolve_atomically,
    resolve_by_batches,
    resolve_iteratively,
    ruma_cases,
)

BATCH_CASES = sorted(n for n, c in ruma_cases().items() if c["mode"] == "batches")
STATE_MAP_CASES = sorted(n for n, c in ruma_cases().items() if c["mode"] == "state_maps")


def _diff(got: dict[StateKey, str], case: RumaCase) -> str:
    keys = sorted(set(got) | set(case.expected))
    lines = [
        f"{key}: got {got.get(key)}, expected {case.expected.get(key)}"
        for key in keys
        if got.get(key) != case.expected.get(key)
    ]
    return f"{case.name} ({case.description}):\n" + "\n".join(lines)


def test_manifest_has_the_13_upstream_cases() -> None:
    """Shows the harness runs every case of the manifest: 9 batch cases and 4 state-map cases."""
    assert len(ruma_cases()) == 13
    assert len(BATCH_CASES) == 9
    assert len(STATE_MAP_CASES) == 4


@pytest.mark.parametrize("name", BATCH_CASES)
def test_batch_case_iteratively(name: str) -> None:
    """Walking the DAG forward event by event ends in the snapshot's state."""
    case = load_ruma_case(name)
    got = resolve_iteratively(case.room_version, case.events)
    assert got == case.expected, _diff(got, case)


@pytest.mark.parametrize("name", BATCH_CASES)
def test_batch_case_per_batch(name: str) -> None:
    """Resolving file by file (previous result + one singleton set per PDU) gives the snapshot."""
    case = load_ruma_case(name)
    got = resolve_by_batches(case.room_version, case.batches)
    assert got == case.expected, _diff(got, case)


@pytest.mark.parametrize("name", BATCH_CASES)
def test_batch_case_atomically(name: str) -> None:
    """Resolving one singleton state set per PDU, all at once, gives the snapshot."""
    case = load_ruma_case(name)
    got = resolve_atomically(case.room_version, case.events)
    assert got == case.expected, _diff(got, case)


@pytest.mark.parametrize("name", STATE_MAP_CASES)
def test_state_map_case(name: str) -> None:
    """Resolving the given state sets gives the snapshot (MSC4297 problems A and B)."""
    case = load_ruma_case(name)
    got = resolve_state(case.room_version, case.state_maps, case.event_map().fetch_event)
    assert got == case.expected, _diff(got, case)


@pytest.mark.parametrize("name", STATE_MAP_CASES)
def test_state_map_case_with_given_auth_chains(name: str) -> None:
    """Passing precomputed auth chains (as a storage index would) gives the same result."""
    case = load_ruma_case(name)
    source = case.event_map()
    chains = state_set_auth_chains(case.state_maps, source.fetch_event)
    got = resolve_state(case.room_version, case.state_maps, source.fetch_event, auth_chains=chains)
    assert got == case.expected, _diff(got, case)


@pytest.mark.parametrize("name", BATCH_CASES + STATE_MAP_CASES)
def test_resolved_events_have_the_snapshot_content(name: str) -> None:
    """The snapshot's content matches the event we picked, so the fixture and the
    expectation describe the same events (guards against a mis-loaded fixture)."""
    case = load_ruma_case(name)
    by_id = {event.event_id: event for event in case.events}
    for key, event_id in case.expected.items():
        event = by_id[event_id]
        assert (event.type, event.state_key) == key
        assert dict(event.content) == case.expected_content[key]


def test_problem_a_differs_between_v2_0_and_v2_1() -> None:
    """MSC4297 problem A: v2.0 loses the join rules; v2.1 keeps $01-m-room-join_rules."""
    v20 = load_ruma_case("msc4297_problem_a_state_res_v2_0")
    v21 = load_ruma_case("msc4297_problem_a_state_res_v2_1")
    assert ("m.room.join_rules", "") not in v20.expected
    assert v21.expected[("m.room.join_rules", "")] == "$01-m-room-join_rules"


@pytest.mark.parametrize(
    ("name", "key", "v2_0_value"),
    [
        ("msc4297_problem_a_state_res_v2_1", ("m.room.join_rules", ""), None),
        (
            "msc4297_problem_b_state_res_v2_1",
            ("m.room.power_levels", ""),
            "$00-m-room-power_levels",
        ),
    ],
)
def test_v12_events_under_plain_v2_reproduce_the_state_reset(
    name: str, key: StateKey, v2_0_value: str | None
) -> None:
    """The v12 fixtures resolved with the v2.0 algorithm (same events, same auth
    rules) show the very reset MSC4297 describes (A: join rules lost; B: power
    levels back to the first event), and differ from the v2.1 snapshot only
    there: the conflicted subgraph and the empty starting state are what fix it."""
    case = load_ruma_case(name)
    v12_with_v2_0 = replace(case.room_version, state_res=StateResAlgorithm.V2)
    got = resolve_state(v12_with_v2_0, case.state_maps, case.event_map().fetch_event)
    assert got.get(key) == v2_0_value
    assert {k: v for k, v in got.items() if k != key} == {
        k: v for k, v in case.expected.items() if k != key
    }
