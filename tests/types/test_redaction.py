"""The redaction algorithm in every room version (client-server "Redactions"; rooms/*/Redactions).

The expectations below are written from the spec's per-version lists (v1,
v6, v8, v9, v11 fragments), by version number, independently of the
room-version flags the code branches on.
"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.types.hashing import compute_event_id
from homeserver.types.redaction import (
    kept_content_keys,
    kept_top_level_keys,
    prune_content,
    prune_event_dict,
)
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

VERSIONS = list(KNOWN_ROOM_VERSIONS.values())


def vnum(rv: RoomVersion) -> int:
    return int(rv.identifier)


# Sample content for every type with special rules, with extra keys that must go.
SAMPLES: dict[str, dict[str, Any]] = {
    "m.room.member": {
        "membership": "join",
        "displayname": "Alice",
        "avatar_url": "mxc://x/y",
        "join_authorised_via_users_server": "@mod:example.org",
        "third_party_invite": {
            "display_name": "alice@example.org",
            "signed": {"mxid": "@alice:example.org", "token": "t", "signatures": {}},
        },
        "reason": "hi",
    },
    "m.room.create": {
        "creator": "@alice:example.org",
        "room_version": "1",
        "m.federate": False,
        "predecessor": {"room_id": "!old:example.org", "event_id": "$e:example.org"},
    },
    "m.room.join_rules": {
        "join_rule": "restricted",
        "allow": [{"type": "m.room_membership", "room_id": "!space:example.org"}],
        "extra": 1,
    },
    "m.room.power_levels": {
        "ban": 50,
        "events": {"m.room.name": 100},
        "events_default": 0,
        "invite": 0,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        "users": {"@alice:example.org": 100},
        "users_default": 0,
        "notifications": {"room": 50},
    },
    "m.room.aliases": {"aliases": ["#a:example.org"], "extra": True},
    "m.room.history_visibility": {"history_visibility": "shared", "extra": "x"},
    "m.room.redaction": {"redacts": "$target:example.org", "reason": "spam"},
    "m.room.message": {"msgtype": "m.text", "body": "secret"},
    "m.room.name": {"name": "Secret room"},
    "m.room.topic": {"topic": "gone"},
}


def expected_content(version: int, event_type: str) -> dict[str, Any]:
    """The content each version keeps, per the spec text."""
    c = SAMPLES[event_type]
    if event_type == "m.room.member":
        keys = ["membership"]
        if version >= 9:
            keys.append("join_authorised_via_users_server")
        kept = {k: c[k] for k in keys}
        if version >= 11:
            kept["third_party_invite"] = {"signed": c["third_party_invite"]["signed"]}
        return kept
    if event_type == "m.room.create":
        return dict(c) if version >= 11 else {"creator": c["creator"]}
    if event_type == "m.room.join_rules":
        keys = ["join_rule", "allow"] if version >= 8 else ["join_rule"]
        return {k: c[k] for k in keys}
    if event_type == "m.room.power_levels":
        keys = ["ban", "events", "events_default", "kick", "redact", "state_default"]
        keys += ["users", "users_default"]
        if version >= 11:
            keys.append("invite")
        return {k: c[k] for k in keys}
    if event_type == "m.room.aliases":
        return {"aliases": c["aliases"]} if version <= 5 else {}
    if event_type == "m.room.history_visibility":
        return {"history_visibility": "shared"}
    if event_type == "m.room.redaction":
        return {"redacts": c["redacts"]} if version >= 11 else {}
    return {}


def full_pdu(event_type: str) -> dict[str, Any]:
    """A PDU carrying every top-level key any version keeps, plus some none keep."""
    return {
        "event_id": "$ev:example.org",
        "type": event_type,
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "state_key": "" if event_type != "m.room.member" else "@alice:example.org",
        "content": SAMPLES[event_type],
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "depth": 5,
        "prev_events": ["$p"],
        "prev_state": [],
        "auth_events": ["$a"],
        "origin": "example.org",
        "origin_server_ts": 1234,
        "membership": "join",
        "unsigned": {"age_ts": 1},
        "redacts": "$target:example.org",
        "age_ts": 1,
        "outlier": True,
        "custom": {"x": 1},
    }


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
@pytest.mark.parametrize("rv", VERSIONS, ids=lambda rv: f"v{rv.identifier}")
def test_redacted_content_per_version(rv: RoomVersion, event_type: str) -> None:
    """Each event type keeps exactly the content keys its room version lists."""
    pruned = prune_event_dict(rv, full_pdu(event_type))
    assert pruned["content"] == expected_content(vnum(rv), event_type)


@pytest.mark.parametrize("rv", VERSIONS, ids=lambda rv: f"v{rv.identifier}")
def test_redacted_top_level_keys_per_version(rv: RoomVersion) -> None:
    """v1..v10 keep origin/membership/prev_state; v11+ drop them; unsigned, redacts and extras go."""
    pruned = prune_event_dict(rv, full_pdu("m.room.message"))
    expected = {
        "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
        "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
    }  # fmt: skip
    if vnum(rv) <= 10:
        expected |= {"prev_state", "origin", "membership"}
    assert set(pruned) == expected
    assert kept_top_level_keys(rv) == expected


@pytest.mark.parametrize("rv", VERSIONS, ids=lambda rv: f"v{rv.identifier}")
def test_redaction_is_idempotent(rv: RoomVersion) -> None:
    """Redacting a redacted event changes nothing (so reference hashes survive redaction)."""
    for event_type in SAMPLES:
        once = prune_event_dict(rv, full_pdu(event_type))
        assert prune_event_dict(rv, once) == once


def test_redaction_does_not_touch_its_input() -> None:
    """The input PDU is left as it was and the result shares no mutable parts with it."""
    pdu = full_pdu("m.room.power_levels")
    before = repr(pdu)
    pruned = prune_event_dict(KNOWN_ROOM_VERSIONS["11"], pdu)
    pruned["content"]["users"]["@mallory:example.org"] = 100
    assert repr(pdu) == before


def test_missing_content_becomes_empty_object() -> None:
    """A PDU without content (or with non-object content) redacts to `content: {}`."""
    rv = KNOWN_ROOM_VERSIONS["10"]
    assert prune_event_dict(rv, {"type": "m.room.message"})["content"] == {}
    assert prune_event_dict(rv, {"type": "m.room.message", "content": []})["content"] == {}


def test_v11_member_keeps_only_signed_of_third_party_invite() -> None:
    """v11: from a `third_party_invite` object only `signed` survives; an object
    without `signed` stays as `{}` (as Synapse, MSC3821's reference
    implementation, redacts it: regression found by the Synapse cross-check);
    a `third_party_invite` that is not an object is dropped."""
    v11 = KNOWN_ROOM_VERSIONS["11"]
    no_signed = {"membership": "invite", "third_party_invite": {"display_name": "x"}}
    assert prune_content(v11, "m.room.member", no_signed) == {
        "membership": "invite",
        "third_party_invite": {},
    }
    empty = {"membership": "invite", "third_party_invite": {}}
    assert prune_content(v11, "m.room.member", empty) == {
        "membership": "invite",
        "third_party_invite": {},
    }
    not_object = {"membership": "invite", "third_party_invite": "junk"}
    assert prune_content(v11, "m.room.member", not_object) == {"membership": "invite"}
    as_list = {"membership": "invite", "third_party_invite": [{"signed": {}}]}
    assert prune_content(v11, "m.room.member", as_list) == {"membership": "invite"}


def test_kept_content_keys_reports_all_for_v11_create() -> None:
    """kept_content_keys uses None for 'all keys' (v11+ m.room.create) and () for 'none'."""
    assert kept_content_keys(KNOWN_ROOM_VERSIONS["11"], "m.room.create") is None
    assert kept_content_keys(KNOWN_ROOM_VERSIONS["10"], "m.room.create") == ("creator",)
    assert kept_content_keys(KNOWN_ROOM_VERSIONS["10"], "m.room.message") == ()


def test_v11_event_id_of_member_with_signed_less_third_party_invite() -> None:
    """The event ID (reference hash) of a v11 join whose `third_party_invite` has
    no `signed` covers `third_party_invite: {}`: the ID below is the one Synapse
    1.163.2 computes for this PDU (regression found by the Synapse cross-check)."""
    pdu = {
        "type": "m.room.member",
        "state_key": "@bob:example.org",
        "sender": "@bob:example.org",
        "room_id": "!room:example.org",
        "content": {
            "membership": "join",
            "third_party_invite": {"display_name": "bob@example.org"},
        },
        "origin_server_ts": 1700000000000,
        "depth": 5,
        "prev_events": ["$prev"],
        "auth_events": ["$auth"],
        "hashes": {"sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        "signatures": {},
    }
    event_id = compute_event_id(KNOWN_ROOM_VERSIONS["11"], pdu)
    assert event_id == "$tLvnEqG1ZPbFECmDdXSr_eyX2p2nOhukaY-qXt-nogE"
