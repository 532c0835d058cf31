"""Content hashes, reference hashes and IDs derived from them (server-server "Signing Events")."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from homeserver.types.hashing import (
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    content_hash_base64,
    room_id_from_create_event_id,
)
from homeserver.types.redaction import prune_event_dict
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS
from tests.types.vectors import load_json, load_ndjson

V10 = KNOWN_ROOM_VERSIONS["10"]
TARDIS = load_json("tardis/expected.json")
SIMPLE = load_ndjson("tardis/simple.ndjson")
FORK = load_ndjson("tardis/basic-fork.ndjson")
SIGNING = load_json("spec-appendix/signing-vectors.json")


def without_event_id(pdu: dict[str, Any]) -> dict[str, Any]:
    """The tardis export added `event_id`, which v10 PDUs do not carry."""
    return {k: v for k, v in pdu.items() if k != "event_id"}


@pytest.mark.parametrize("line", range(len(SIMPLE)), ids=lambda i: SIMPLE[i]["type"])
def test_real_matrix_org_events_have_matching_content_hashes(line: int) -> None:
    """Each real v10 event from matrix.org has the content hash we compute."""
    pdu = without_event_id(SIMPLE[line])
    expected = TARDIS["results"]["simple.ndjson"][line]["computed_content_hash"]
    assert content_hash_base64(pdu) == expected == pdu["hashes"]["sha256"]
    assert check_content_hash(pdu)


@pytest.mark.parametrize("line", range(len(SIMPLE)), ids=lambda i: SIMPLE[i]["type"])
def test_real_matrix_org_event_ids_are_reference_hashes(line: int) -> None:
    """Each real v10 event's ID is `$` + URL-safe base64 of our reference hash."""
    pdu = SIMPLE[line]
    assert compute_event_id(V10, without_event_id(pdu)) == pdu["event_id"]
    # The `event_id` key some exports add is ignored for hash-ID versions.
    assert compute_event_id(V10, pdu) == pdu["event_id"]


@pytest.mark.parametrize("line", range(len(SIMPLE)), ids=lambda i: SIMPLE[i]["type"])
def test_redacted_form_matches_vector(line: int) -> None:
    """The object we hash for the reference hash is exactly the vector's redacted form."""
    pruned = prune_event_dict(V10, without_event_id(SIMPLE[line]))
    pruned.pop("signatures")
    expected = TARDIS["results"]["simple.ndjson"][line]["redacted_for_reference_hash"]
    assert pruned == expected


def test_forked_event_fails_content_hash_and_id() -> None:
    """The hand-edited fork line: content hash mismatch, and its given ID is no reference hash."""
    fork = FORK[-1]
    result = TARDIS["results"]["basic-fork.ndjson"][-1]
    assert not check_content_hash(without_event_id(fork))
    assert content_hash_base64(without_event_id(fork)) == result["computed_content_hash"]
    computed = compute_event_id(V10, without_event_id(fork))
    assert computed == result["computed_event_id"] != fork["event_id"]


@pytest.mark.parametrize("case", SIGNING["event_signing"], ids=lambda c: c["name"])
def test_spec_event_vectors_content_hash(case: dict[str, Any]) -> None:
    """The spec's event-signing vectors have the content hash we compute."""
    assert content_hash_base64(case["input"]) == case["expected"]["hashes"]["sha256"]


def test_content_hash_ignores_unsigned_signatures_and_hashes() -> None:
    """Changing unsigned/signatures/hashes leaves the content hash alone; content changes it."""
    pdu = without_event_id(SIMPLE[-1])
    other = copy.deepcopy(pdu)
    other["unsigned"] = {"age": 5}
    other["signatures"] = {}
    other["hashes"] = {"sha256": "x"}
    assert compute_content_hash(other) == compute_content_hash(pdu)
    other["content"]["body"] = "changed"
    assert compute_content_hash(other) != compute_content_hash(pdu)


def test_reference_hash_survives_redaction_and_ignores_signatures() -> None:
    """The reference hash is the same for the full and the redacted event, and new signatures."""
    pdu = without_event_id(SIMPLE[-1])
    redacted = prune_event_dict(V10, pdu)
    redacted["signatures"] = {"other.org": {"ed25519:x": "y"}}
    assert compute_reference_hash(V10, redacted) == compute_reference_hash(V10, pdu)


@pytest.mark.parametrize(
    "pdu",
    [
        {"content": {}},
        {"hashes": "x"},
        {"hashes": {"sha256": 5}},
        {"hashes": {"sha256": "not the hash"}},
    ],
)
def test_check_content_hash_false_for_missing_or_malformed(pdu: dict[str, Any]) -> None:
    """A missing, non-string or wrong `hashes.sha256` fails the check (no exception)."""
    assert not check_content_hash(pdu)


def test_event_id_alphabet_per_room_version() -> None:
    """v3 uses standard base64 (`+/`); v4+ URL-safe (`-_`) over the same reference hash."""
    # Search a little for an event whose hash contains a '+' or '/' in standard base64.
    for ts in range(200):
        pdu = dict(without_event_id(SIMPLE[-1]), origin_server_ts=ts)
        v3_id = compute_event_id(KNOWN_ROOM_VERSIONS["3"], pdu)
        if "+" in v3_id or "/" in v3_id:
            break
    else:
        pytest.fail("no hash with '+' or '/' found")
    v4_id = compute_event_id(KNOWN_ROOM_VERSIONS["4"], pdu)
    assert v4_id == v3_id.replace("+", "-").replace("/", "_")
    assert len(v3_id) == 44 and v3_id.startswith("$")


def test_v1_event_ids_are_not_derived() -> None:
    """For v1/v2 the origin chooses the ID: compute_event_id refuses."""
    with pytest.raises(ValueError, match="chosen by the origin server"):
        compute_event_id(KNOWN_ROOM_VERSIONS["2"], {"type": "x", "content": {}})


def test_v12_room_id_from_create_event_id() -> None:
    """v12: the room ID is the create event's ID with `!` for `$`."""
    assert room_id_from_create_event_id("$abc_-") == "!abc_-"
    with pytest.raises(ValueError, match="does not start with"):
        room_id_from_create_event_id("!abc")
