"""Our protocol core against Synapse's, on Hypothesis-generated events and room DAGs.

Each property computes something with our code and with Synapse's own
functions (through the oracle subprocess, see `synapse_oracle.py`) and fails
with a readable diff when they disagree. A disagreement is a bug in ours until
the spec (../shared/spec) says otherwise; the known, deliberate deviations of
Synapse are excluded narrowly where they arise, with a comment.

- canonical JSON: the encoding, and the strict (v6+) value check;
- content hashes, reference hashes and event IDs (and v12's room IDs) of
  random PDUs in every room version;
- redaction (the pruned PDU) in every room version;
- signing: the same key signs to the same bytes; each side verifies the
  other's signatures and content hashes, and both notice tampering;
- the authorization rules: every event of the generated room DAGs, allowed or
  not, gets the same verdict;
- state resolution: the state sets at every merge of the generated DAGs and
  at their branch tips resolve to the same state, for room versions 1 (v1),
  2..11 (v2) and 12 (v2.1).

Run time is kept to about a minute or two on two cores by the example counts
below; HOMESERVER_INTEROP_EXAMPLES multiplies them for a longer soak.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from signedjson.key import get_verify_key
from unpaddedbase64 import encode_base64

from homeserver.state.auth_chain import auth_chain
from homeserver.state.loader import StateKey
from homeserver.state.resolution import resolve_state
from homeserver.types.canonical_json import (
    InvalidCanonicalJson,
    check_canonical_json_value,
    encode_canonical_json,
)
from homeserver.types.events import EventBase, make_event
from homeserver.types.hashing import check_content_hash, compute_reference_hash, content_hash_base64
from homeserver.types.redaction import prune_event_dict
from homeserver.types.room_versions import (
    KNOWN_ROOM_VERSIONS,
    EventFormat,
    RoomVersion,
)
from homeserver.types.signing import (
    SignatureError,
    add_hashes_and_signatures,
    verify_event_signatures,
)
from tests.interop.oracle_client import SynapseOracle
from tests.interop.room_dags import (
    KEY_VERSION,
    SIGNING_KEYS,
    Branch,
    RoomDag,
    bootstrap,
    key_seed,
    replay,
)
from tests.interop.strategies import (
    MAX_SAFE,
    ROOM_VERSIONS,
    RoomSetup,
    drafts,
    json_values,
    pdus,
    room_histories,
    room_versions,
)
from tests.interop.synapse_venv import SYNAPSE_VERSION

SCALE = float(os.environ.get("HOMESERVER_INTEROP_EXAMPLES", "1"))


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


def crosscheck(n: int) -> settings:
    """Hypothesis settings for a cross-check: `n` examples (times the scale), no deadline."""
    return settings(
        max_examples=examples(n),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- reporting ---------------------------------------------------------------------------


class Disagreement(AssertionError):
    """Ours and Synapse's answers differ (Hypothesis adds the falsifying example)."""


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def json_diff(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where two JSON values differ, as `path: ours=... synapse=...` lines."""
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        lines = []
        for key in sorted(set(ours) | set(theirs)):
            where = f"{path}.{key}" if path else str(key)
            if key not in theirs:
                lines.append(f"{where}: only ours has it: {_show(ours[key])}")
            elif key not in ours:
                lines.append(f"{where}: only Synapse has it: {_show(theirs[key])}")
            else:
                lines.extend(json_diff(ours[key], theirs[key], where))
        return lines
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        lines = []
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            lines.extend(json_diff(a, b, f"{path}[{i}]"))
        return lines
    if ours == theirs and type(ours) is type(theirs):
        return []
    return [f"{path or '<top>'}: ours={_show(ours)} synapse={_show(theirs)}"]


def assert_same(what: str, ours: Any, theirs: Any, context: Any = None) -> None:
    diff = json_diff(ours, theirs)
    if diff:
        message = [f"{what}: ours and Synapse's differ"] + ["  " + line for line in diff]
        if context is not None:
            message.append("input: " + _show(context))
        raise Disagreement("\n".join(message))


def with_version() -> st.SearchStrategy[tuple[RoomVersion, dict[str, Any]]]:
    return room_versions.flatmap(lambda rv: st.tuples(st.just(rv), pdus(rv)))


def with_version_drafts() -> st.SearchStrategy[tuple[RoomVersion, dict[str, Any]]]:
    return room_versions.flatmap(lambda rv: st.tuples(st.just(rv), drafts(rv)))


# --- canonical JSON ----------------------------------------------------------------------


@crosscheck(150)
@given(value=json_values(strict=False, max_leaves=20))
def test_canonical_json_encoding_and_strict_check(
    synapse_oracle: SynapseOracle, value: Any
) -> None:
    """The canonical JSON bytes are the same, and the strict (v6+) value check agrees."""
    ours = encode_canonical_json(value).decode("utf-8")
    assert_same("canonical JSON", ours, synapse_oracle.call("canonical_json", value=value), value)
    try:
        check_canonical_json_value(value)
        ours_valid = True
    except InvalidCanonicalJson:
        ours_valid = False
    theirs = synapse_oracle.call("validate_canonicaljson", value=value)
    assert ours_valid == theirs["valid"], (
        f"strict canonical JSON check: ours={ours_valid} synapse={theirs} for {_show(value)}"
    )


# --- hashes, event IDs, redaction ----------------------------------------------------------


@crosscheck(200)
@given(case=with_version())
def test_content_hash(
    synapse_oracle: SynapseOracle, case: tuple[RoomVersion, dict[str, Any]]
) -> None:
    """The content hash of any PDU is the same."""
    _rv, pdu = case
    assert_same(
        "content hash",
        content_hash_base64(pdu),
        synapse_oracle.call("content_hash", event=pdu),
        pdu,
    )


# Synapse's pruning keeps two of its own `unsigned` fields (`age_ts`, its
# local receive time, and `replaces_state`, an internal link), which the
# spec's redaction algorithm drops with the rest of `unsigned`. They never
# reach a hash or a signature (both strip `unsigned`), so only the pruned
# dict shows them; we drop them from Synapse's answer and nothing else.
SYNAPSE_KEPT_UNSIGNED = {"age_ts", "replaces_state"}


def _without_synapse_unsigned(pruned: dict[str, Any]) -> dict[str, Any]:
    unsigned = pruned.get("unsigned")
    if isinstance(unsigned, dict) and set(unsigned) <= SYNAPSE_KEPT_UNSIGNED:
        pruned = dict(pruned)
        del pruned["unsigned"]
    return pruned


@crosscheck(300)
@given(case=with_version())
def test_redaction(synapse_oracle: SynapseOracle, case: tuple[RoomVersion, dict[str, Any]]) -> None:
    """The redaction algorithm keeps the same keys in every room version."""
    rv, pdu = case
    pdu.setdefault("unsigned", {})["age_ts"] = 1234  # Synapse's own field: must not survive ours
    theirs = synapse_oracle.call("redact", room_version=rv.identifier, event=pdu, event_too=False)
    assert_same(
        f"redaction (room v{rv.identifier})",
        prune_event_dict(rv, pdu),
        _without_synapse_unsigned(theirs["dict"]),
        pdu,
    )


@crosscheck(200)
@given(case=with_version())
def test_event_id_room_id_and_reference_hash(
    synapse_oracle: SynapseOracle, case: tuple[RoomVersion, dict[str, Any]]
) -> None:
    """The reference hash, the event ID (v3+: made from it) and the room ID
    (v12 create events: made from the event ID) are the same."""
    rv, pdu = case
    event = make_event(pdu, rv)
    theirs = synapse_oracle.call("event_id", room_version=rv.identifier, event=pdu)
    assert_same(
        f"event and room ID (room v{rv.identifier})",
        {"event_id": event.event_id, "room_id": event.room_id},
        theirs,
        pdu,
    )
    assert_same(
        f"reference hash (room v{rv.identifier})",
        encode_base64(compute_reference_hash(rv, pdu)),
        synapse_oracle.call("reference_hash", room_version=rv.identifier, event=pdu),
        pdu,
    )


# --- signing ---------------------------------------------------------------------------------


SERVER = "a.test"


@crosscheck(150)
@given(case=with_version_drafts(), tamper=st.sampled_from(["none", "content", "kept"]))
def test_signing_and_verification(
    synapse_oracle: SynapseOracle, case: tuple[RoomVersion, dict[str, Any]], tamper: str
) -> None:
    """Signing the same draft with the same key gives the same PDU (Ed25519 is
    deterministic); Synapse accepts our hash and signature. After adding a
    content key the hash check fails on both sides (the signature too, where
    redaction keeps that key); after changing `origin_server_ts`, which
    redaction keeps, the signature fails on both."""
    rv, draft = case
    ours = add_hashes_and_signatures(rv, draft, SERVER, SIGNING_KEYS[SERVER])
    theirs = synapse_oracle.call(
        "sign",
        room_version=rv.identifier,
        event=draft,
        server_name=SERVER,
        seed=key_seed(SERVER),
        key_version=KEY_VERSION,
    )
    assert_same(f"signed PDU (room v{rv.identifier})", ours, theirs, draft)

    pdu = json.loads(json.dumps(ours))
    if tamper == "content":
        pdu["content"]["org.example.tampered"] = True
    elif tamper == "kept":
        ts = pdu["origin_server_ts"]
        pdu["origin_server_ts"] = ts + 1 if ts < MAX_SAFE else ts - 1
    verify_key = get_verify_key(SIGNING_KEYS[SERVER])
    verified = synapse_oracle.call(
        "verify",
        room_version=rv.identifier,
        event=pdu,
        server_name=SERVER,
        verify_key=encode_base64(verify_key.encode()),
        key_version=KEY_VERSION,
    )
    event = make_event(pdu, rv)
    try:
        verify_event_signatures(
            event, {SERVER: {f"ed25519:{KEY_VERSION}": verify_key}}, required=[SERVER]
        )
        ours_valid = True
    except SignatureError:
        ours_valid = False
    # The signature covers the redacted event: it survives a change that the
    # redaction algorithm drops (an arbitrary content key, except where all
    # content is kept, as in v11+ m.room.create).
    survives = prune_event_dict(rv, pdu) == prune_event_dict(rv, ours)
    assert ours_valid == verified["valid"] == survives, (
        f"signature check after tampering {tamper!r}: ours={ours_valid} synapse={verified}"
    )
    theirs_hash_ok = synapse_oracle.call(
        "check_content_hash", room_version=rv.identifier, event=pdu
    )
    assert check_content_hash(pdu) == theirs_hash_ok == (tamper == "none"), (
        f"content hash check after tampering {tamper!r}: ours={check_content_hash(pdu)} "
        f"synapse={theirs_hash_ok}"
    )


# --- room DAGs: authorization and state resolution ---------------------------------------

# Auth chain scope, state resolution v2 and v2.1: the spec's words (rooms v2,
# "Auth chain" and "Auth difference") leave the state set's own events out of
# its full auth chain; Synapse counts them in, and the two readings resolve
# differently when an event in every state set is an auth event of some sets'
# events but not of the others'. Rooms only stay consistent if servers agree,
# so ours follows Synapse (`homeserver.state.auth_chain.state_set_auth_chains`);
# `test_auth_chain_scope_agrees_with_synapse` pins a minimal case.
RESOLUTION_VERSIONS = [KNOWN_ROOM_VERSIONS[v] for v in ("1", "2", "10", "11", "12")]
OTHER_VERSIONS = [v for v in ROOM_VERSIONS if v not in RESOLUTION_VERSIONS]


def _describe_event(dag: RoomDag, event_or_id: EventBase | str) -> str:
    """One line per event for failure reports: ID, type, state key, sender, content..."""
    event = dag.events.get(event_or_id) if isinstance(event_or_id, str) else event_or_id
    if event is None:
        return f"{event_or_id} (unknown)"
    sk = f" [{event.state_key}]" if event.state_key is not None else ""
    return (
        f"{event.event_id} {event.type}{sk} by {event.sender} ts={event.origin_server_ts} "
        f"depth={event.depth} content={_show(event.pdu_json()['content'])} "
        f"auth={list(event.auth_event_ids)}"
    )


def _rows(state: Mapping[StateKey, str]) -> list[list[str]]:
    return sorted([t, k, e] for (t, k), e in state.items())


def _oracle_events(dag: RoomDag) -> dict[str, Any]:
    return {
        "room_version": dag.room_version.identifier,
        "room_id": dag.room_id,
        "events": [event.pdu_json() for event in dag.events.values()],
        "event_ids": list(dag.events),
    }


def check_auth_decisions(oracle: SynapseOracle, dag: RoomDag) -> None:
    """Ask Synapse's auth rules about every event tried while building the DAG."""
    rv = dag.room_version
    for decision in dag.decisions:
        event = decision.event
        auth_events = [dag.events[e].pdu_json() for e in decision.auth_event_ids]
        theirs = oracle.call(
            "auth", room_version=rv.identifier, event=event.pdu_json(), auth_events=auth_events
        )
        if theirs["allowed"] != decision.allowed:
            lines = [
                f"auth rules (room v{rv.identifier}) disagree on {_describe_event(dag, event)}",
                f"  event: {_show(event.pdu_json())}",
                f"  ours: {'allowed' if decision.allowed else 'rejected: ' + str(decision.reason)}",
                f"  synapse: {'allowed' if theirs['allowed'] else 'rejected: ' + str(theirs['reason'])}",
                "  auth events:",
            ]
            lines += ["    " + _describe_event(dag, e) for e in decision.auth_event_ids]
            raise Disagreement("\n".join(lines))


def check_resolutions(oracle: SynapseOracle, dag: RoomDag) -> int:
    """Compare every resolution problem of the DAG; returns how many there were."""
    rv = dag.room_version
    problems = dag.all_problems()
    if not problems:
        return 0
    theirs = oracle.call(
        "resolve",
        **_oracle_events(dag),
        problems=[{"state_sets": [_rows(s) for s in sets]} for sets in problems],
    )
    event(f"resolution problems: {min(len(problems), 5)}{'+' if len(problems) >= 5 else ''}")
    for index, (sets, their_rows) in enumerate(zip(problems, theirs, strict=True)):
        their_state = {(t, k): e for t, k, e in their_rows}
        ours = resolve_state(rv, sets, dag.fetch_event)
        if resolve_state(rv, sets, dag.fetch_event) != their_state:
            event("spec-literal auth chains change the outcome")
        if ours == their_state:
            continue
        lines = [
            f"state resolution (room v{rv.identifier}, {rv.state_res.value}) disagrees on "
            f"problem {index + 1} of {len(problems)}",
            "  differing keys:",
        ]
        for key in sorted(set(ours) | set(their_state)):
            if ours.get(key) != their_state.get(key):
                lines.append(f"    {key}: ours={ours.get(key)} synapse={their_state.get(key)}")
        for i, state_set in enumerate(sets):
            lines.append(f"  state set {i + 1}: {_show(_rows(state_set))}")
        lines.append("  events:")
        lines += ["    " + _describe_event(dag, e) for e in dag.events]
        raise Disagreement("\n".join(lines))
    return len(problems)


HISTORY_SETTINGS = crosscheck(250)


@pytest.mark.parametrize("rv", RESOLUTION_VERSIONS, ids=lambda v: f"v{v.identifier}")
@HISTORY_SETTINGS
@given(history=room_histories())
def test_state_resolution(synapse_oracle: SynapseOracle, rv: RoomVersion, history: Any) -> None:
    """Every merge of a random forked room, and its final branch tips, resolve to
    the same state as Synapse resolves them."""
    setup, ops = history
    dag = replay(rv, setup, ops)
    check_resolutions(synapse_oracle, dag)


@crosscheck(150)
@given(rv=st.sampled_from(OTHER_VERSIONS), history=room_histories())
def test_state_resolution_other_versions(
    synapse_oracle: SynapseOracle, rv: RoomVersion, history: Any
) -> None:
    """The same for room versions 3..9 (state resolution v2, other rules)."""
    setup, ops = history
    check_resolutions(synapse_oracle, replay(rv, setup, ops))


@crosscheck(300)
@given(rv=room_versions, history=room_histories())
def test_auth_rules(synapse_oracle: SynapseOracle, rv: RoomVersion, history: Any) -> None:
    """Every event tried while building a random room gets the same verdict from
    Synapse's authorization rules as from ours, against the same auth events."""
    setup, ops = history
    check_auth_decisions(synapse_oracle, replay(rv, setup, ops))


def test_oracle_runs_the_pinned_synapse(synapse_oracle: SynapseOracle) -> None:
    """The oracle is the pinned Synapse and knows every room version we do."""
    assert synapse_oracle.info["synapse_version"] == SYNAPSE_VERSION
    assert set(KNOWN_ROOM_VERSIONS) <= set(synapse_oracle.info["room_versions"])


def test_v12_create_event_format(synapse_oracle: SynapseOracle) -> None:
    """A sanity check of the v12 oracle path: a create event has no room_id and
    both sides derive the same one from its event ID."""
    rv = KNOWN_ROOM_VERSIONS["12"]
    dag = bootstrap(
        rv, RoomSetup(members=(1,), levels=(0, 50, 0, 0, 0), join_rule=0, additional_creator=True)
    )
    create = next(iter(dag.events.values()))
    assert create.room_version.event_format.format is EventFormat.V4
    assert "room_id" not in create.pdu_json()
    theirs = synapse_oracle.call("event_id", room_version="12", event=create.pdu_json())
    assert theirs == {"event_id": create.event_id, "room_id": dag.room_id}


@pytest.mark.parametrize("rv_id", ["2", "10", "11"])
def test_auth_chain_scope_agrees_with_synapse(synapse_oracle: SynapseOracle, rv_id: str) -> None:
    """The minimal case where the scope of a state set's auth chain matters. Carol
    joins (ts 3); the room forks; carol changes the power levels on one branch
    (ts 1, citing her join), alice on the other (ts 2). Her join is in both
    states, but only the first state's events cite it. Counting each state set's
    own events in its chain (as Synapse does, and so do we) keeps the join out of
    the full conflicted set: carol's change (ts 1) sorts before alice's (ts 2)
    and alice's wins. By the spec's literal words carol's would win."""
    rv = KNOWN_ROOM_VERSIONS[rv_id]
    dag = bootstrap(
        rv, RoomSetup(members=(), levels=(0, 0, 100, 0, 0), join_rule=0, additional_creator=False)
    )
    main = dag.branches[0]
    assert dag.send(
        main, "m.room.member", "@carol:c.test", {"membership": "join"}, "@carol:c.test", 3
    )
    other = Branch(tips=list(main.tips), state=dict(main.state))
    dag.branches.append(other)
    pl = dag.power_levels_content(main)
    carols = dag.send(other, "m.room.power_levels", "@carol:c.test", {**pl, "ban": 0}, "", 1)
    alices = dag.send(main, "m.room.power_levels", "@alice:a.test", {**pl, "kick": 0}, "", 2)
    assert carols is not None and alices is not None
    sets = dag.final_state_sets()
    theirs = synapse_oracle.call(
        "resolve", **_oracle_events(dag), problems=[{"state_sets": [_rows(s) for s in sets]}]
    )[0]
    pl_key = ("m.room.power_levels", "")
    assert {(t, k): e for t, k, e in theirs}[pl_key] == alices.event_id
    assert resolve_state(rv, sets, dag.fetch_event)[pl_key] == alices.event_id
    # The literal reading (chains without the sets' own events) would pick carol's.
    literal = [frozenset(auth_chain(state.values(), dag.fetch_event)) for state in sets]
    assert resolve_state(rv, sets, dag.fetch_event, auth_chains=literal)[pl_key] == carols.event_id


def test_known_deviation_m_federate_target(synapse_oracle: SynapseOracle) -> None:
    """KNOWN DEVIATION (see `room_dags.local_target_only`): in a room created with
    `m.federate: false` by @alice:a.test, alice invites @bob:b.test. The spec's
    rule ("the sender domain of the event does not match the sender domain of
    the create event") is about the sender, so we allow it; Synapse also checks
    the target's server and refuses it."""
    rv = KNOWN_ROOM_VERSIONS["10"]
    setup = RoomSetup(
        members=(), levels=(0,) * 5, join_rule=1, additional_creator=False, federate=False
    )
    dag = bootstrap(rv, setup)
    invite = dag.send(
        dag.branches[0], "m.room.member", "@alice:a.test", {"membership": "invite"}, "@bob:b.test"
    )
    assert invite is not None, "our auth rules allow the invite"
    decision = dag.decisions[-1]
    theirs = synapse_oracle.call(
        "auth",
        room_version=rv.identifier,
        event=invite.pdu_json(),
        auth_events=[dag.events[e].pdu_json() for e in decision.auth_event_ids],
    )
    assert theirs["allowed"] is False and "unfederatable" in theirs["reason"]
