"""Signing and verifying JSON and events (appendices "Signing JSON"; s2s "Signing Events")."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key

from homeserver.types.events import make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.types.signing import (
    SignatureError,
    add_hashes_and_signatures,
    event_after_hash_check,
    key_id_of,
    redact_event,
    required_signers,
    sign_event_dict,
    sign_json,
    verify_event_signatures,
    verify_json_signature,
    verify_signed_by,
)
from tests.types.vectors import load_json, load_ndjson, matrix_org_verify_key, spec_signing_key

SIGNING = load_json("spec-appendix/signing-vectors.json")
TARDIS = load_json("tardis/expected.json")
V10 = KNOWN_ROOM_VERSIONS["10"]
SPEC_KEY = spec_signing_key()


def spec_keys() -> dict[str, dict[str, Any]]:
    return {"domain": {"ed25519:1": get_verify_key(SPEC_KEY)}}


def matrix_org_keys() -> dict[str, dict[str, Any]]:
    server, key_id, key = matrix_org_verify_key()
    return {server: {key_id: key}}


# --- spec vectors ----------------------------------------------------------------------


def test_spec_seed_gives_the_published_verify_key() -> None:
    """The spec's seed yields the verify key recorded with the vectors, as key `ed25519:1`."""
    assert key_id_of(SPEC_KEY) == SIGNING["key"]["key_id"]
    assert encode_verify_key_base64(get_verify_key(SPEC_KEY)) == SIGNING["key"]["verify_key_base64"]


@pytest.mark.parametrize("case", SIGNING["json_signing"], ids=lambda c: c["name"])
def test_spec_json_signing_vectors(case: dict[str, Any]) -> None:
    """sign_json reproduces the spec's signed objects byte for byte, and they verify."""
    signed = sign_json(case["input"], "domain", SPEC_KEY)
    assert signed == case["expected"]
    verify_json_signature(signed, "domain", "ed25519:1", get_verify_key(SPEC_KEY))
    assert case["input"] == {k: v for k, v in case["expected"].items() if k != "signatures"}


@pytest.mark.parametrize("version", [str(v) for v in range(1, 11)])
@pytest.mark.parametrize("case", SIGNING["event_signing"], ids=lambda c: c["name"])
def test_spec_event_signing_vectors(case: dict[str, Any], version: str) -> None:
    """add_hashes_and_signatures reproduces the spec's hashed and signed events (rooms v1..v10)."""
    assert (
        add_hashes_and_signatures(KNOWN_ROOM_VERSIONS[version], case["input"], "domain", SPEC_KEY)
        == case["expected"]
    )


@pytest.mark.parametrize("case", SIGNING["event_signing"], ids=lambda c: c["name"])
def test_spec_event_vectors_differ_under_v11_rules(case: dict[str, Any]) -> None:
    """v11 redaction drops `origin`, so the same input signs differently (as VECTORS.md notes)."""
    signed = add_hashes_and_signatures(KNOWN_ROOM_VERSIONS["11"], case["input"], "domain", SPEC_KEY)
    assert signed["hashes"] == case["expected"]["hashes"]
    assert signed["signatures"] != case["expected"]["signatures"]


def test_sign_json_keeps_other_signatures_and_unsigned() -> None:
    """Signing adds to existing signatures and leaves `unsigned` out of the signed bytes."""
    obj = {"a": 1, "signatures": {"other": {"ed25519:x": "s"}}, "unsigned": {"age": 1}}
    signed = sign_json(obj, "domain", SPEC_KEY)
    assert signed["signatures"]["other"] == {"ed25519:x": "s"}
    assert signed["unsigned"] == {"age": 1}
    signed["unsigned"] = {"age": 999}  # unsigned may change in transit
    verify_json_signature(signed, "domain", "ed25519:1", get_verify_key(SPEC_KEY))
    assert obj["signatures"] == {"other": {"ed25519:x": "s"}}  # input untouched


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.__setitem__("one", 2), "does not verify"),
        (lambda o: o.pop("signatures"), "no 'signatures'"),
        (lambda o: o["signatures"]["domain"].pop("ed25519:1"), "no signature from 'domain'"),
        (
            lambda o: o["signatures"]["domain"].__setitem__("ed25519:1", "!!"),
            "does not verify|base64",
        ),
        (lambda o: o["signatures"]["domain"].__setitem__("ed25519:1", 5), "not valid base64"),
    ],
)
def test_json_signature_failures(mutate: Any, message: str) -> None:
    """Tampering, missing or malformed signatures each raise SignatureError with the reason."""
    signed = sign_json({"one": 1}, "domain", SPEC_KEY)
    mutate(signed)
    with pytest.raises(SignatureError, match=message):
        verify_json_signature(signed, "domain", "ed25519:1", get_verify_key(SPEC_KEY))


def test_verify_signed_by_skips_unknown_keys_but_needs_one_known() -> None:
    """Signatures under unknown key IDs are skipped; with no known key the check fails."""
    signed = sign_json({"one": 1}, "domain", SPEC_KEY)
    signed["signatures"]["domain"]["ed25519:unknown"] = "junk"
    verify_signed_by(signed, "domain", {"ed25519:1": get_verify_key(SPEC_KEY)})
    with pytest.raises(SignatureError, match="no signature from 'domain' under a known key"):
        verify_signed_by(signed, "domain", {})
    with pytest.raises(SignatureError, match="not signed by 'elsewhere'"):
        verify_signed_by(signed, "elsewhere", {"ed25519:1": get_verify_key(SPEC_KEY)})


def test_verify_signed_by_fails_if_any_known_key_signature_is_bad() -> None:
    """Every signature under a known key must verify, not just one of them."""
    other = generate_signing_key("2")
    signed = sign_json(sign_json({"one": 1}, "domain", SPEC_KEY), "domain", other)
    keys = {"ed25519:1": get_verify_key(SPEC_KEY), "ed25519:2": get_verify_key(other)}
    verify_signed_by(signed, "domain", keys)
    signed["signatures"]["domain"]["ed25519:2"] = signed["signatures"]["domain"]["ed25519:1"]
    with pytest.raises(SignatureError, match="'ed25519:2' does not verify"):
        verify_signed_by(signed, "domain", keys)


# --- real events ------------------------------------------------------------------------


@pytest.mark.parametrize("line", range(8))
def test_real_matrix_org_signatures_verify(line: int) -> None:
    """Each real v10 event carries a valid matrix.org signature over its redacted form."""
    event = make_event(load_ndjson("tardis/simple.ndjson")[line], V10)
    assert required_signers(event) == {"matrix.org"}
    verify_event_signatures(event, matrix_org_keys())
    assert TARDIS["results"]["simple.ndjson"][line]["signature_valid"]


def test_real_event_with_changed_redacted_field_fails() -> None:
    """Changing a field the signature covers (`content.membership` of a member event) fails."""
    pdu = copy.deepcopy(load_ndjson("tardis/simple.ndjson")[1])
    pdu["content"]["membership"] = "leave"
    with pytest.raises(SignatureError, match="matrix.org"):
        verify_event_signatures(make_event(pdu, V10), matrix_org_keys())


def test_forked_event_signature_valid_but_redacted_before_use() -> None:
    """The fork line: the signature (over the redacted form) still verifies, the hash does not,
    so the event to use is the redacted copy."""
    fork = load_ndjson("tardis/basic-fork.ndjson")[-1]
    event = make_event(fork, V10, event_id=fork["event_id"])
    verify_event_signatures(event, matrix_org_keys())
    used = event_after_hash_check(event)
    assert used is not event
    assert dict(used.content) == {}
    assert used.event_id == event.event_id and used.room_id == event.room_id
    assert "body" not in str(used.pdu_json()) and "forked" not in str(used.pdu_json())


def test_event_with_good_hash_is_used_as_is() -> None:
    """An event whose content hash matches is returned unchanged by the hash check."""
    event = make_event(load_ndjson("tardis/simple.ndjson")[-1], V10)
    assert event_after_hash_check(event) is event


def test_missing_keys_for_required_server_fail() -> None:
    """With no keys for the sender's server the event does not verify."""
    event = make_event(load_ndjson("tardis/simple.ndjson")[0], V10)
    with pytest.raises(SignatureError, match="matrix.org"):
        verify_event_signatures(event, {})


# --- which servers must sign --------------------------------------------------------------


def _event(version: str, **fields: Any) -> Any:
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": "!r:example.org",
        "sender": "@alice:a.example",
        "content": {},
        "origin_server_ts": 1,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
        "hashes": {"sha256": "x"},
        "signatures": {},
    }
    pdu.update(fields)
    if version in ("1", "2"):
        pdu.setdefault("event_id", "$e:a.example")
    return make_event(
        pdu, KNOWN_ROOM_VERSIONS[version], event_id=None if version in ("1", "2") else "$e"
    )


def test_required_signers_sender_server() -> None:
    """By default only the sender's server must sign."""
    assert required_signers(_event("10")) == {"a.example"}


def test_required_signers_v1_event_id_domain() -> None:
    """v1/v2: the server named in the event ID must sign too, if different."""
    assert required_signers(_event("1", event_id="$e:b.example")) == {"a.example", "b.example"}
    assert required_signers(_event("3")) == {"a.example"}


def test_required_signers_third_party_invite() -> None:
    """A third-party invite need not be signed by the sender's server."""
    content = {"membership": "invite", "third_party_invite": {"signed": {}}}
    event = _event("10", type="m.room.member", state_key="@bob:b.example", content=content)
    assert required_signers(event) == frozenset()


@pytest.mark.parametrize(
    ("version", "expected"), [("7", {"a.example"}), ("8", {"a.example", "c.example"})]
)
def test_required_signers_restricted_join(version: str, expected: set[str]) -> None:
    """v8+: a join authorised via another user needs that user's server's signature."""
    content = {"membership": "join", "join_authorised_via_users_server": "@mod:c.example"}
    event = _event(version, type="m.room.member", state_key="@alice:a.example", content=content)
    assert required_signers(event) == expected


def test_signature_survives_redaction() -> None:
    """An event signed with sign_event_dict still verifies after redaction (signature covers
    only the redacted form)."""
    key = generate_signing_key("k")
    pdu = _event("10", content={"body": "secret"}).pdu_json()
    pdu = add_hashes_and_signatures(V10, pdu, "a.example", key)
    event = make_event(pdu, V10)
    keys = {"a.example": {"ed25519:k": get_verify_key(key)}}
    verify_event_signatures(event, keys)
    verify_event_signatures(redact_event(event), keys)
    assert redact_event(event).event_id == event.event_id
    resigned = sign_event_dict(V10, pdu, "b.example", generate_signing_key("z"))
    assert set(resigned["signatures"]) == {"a.example", "b.example"}
