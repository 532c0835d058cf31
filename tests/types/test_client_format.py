"""The client event format (ClientEvent / ClientEventWithoutRoomID schemas)."""

from __future__ import annotations

from typing import Any

from homeserver.types.client_format import serialize_event
from homeserver.types.events import make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS


def pdu(**overrides: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "type": "m.room.topic",
        "state_key": "",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "content": {"topic": "hello"},
        "origin_server_ts": 1000,
        "depth": 3,
        "prev_events": ["$prev"],
        "auth_events": ["$create"],
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:1": "sig"}},
        "origin": "example.org",
        "unsigned": {"age_ts": 5},
    }
    p.update(overrides)
    return p


def test_client_format_keeps_client_keys_and_drops_federation_keys() -> None:
    """Only event_id, type, state_key, sender, origin_server_ts, content, room_id, unsigned remain."""
    event = make_event(pdu(), KNOWN_ROOM_VERSIONS["10"], event_id="$topic")
    out = serialize_event(event, unsigned={"age": 42, "replaces_state": "$old"})
    assert out == {
        "event_id": "$topic",
        "type": "m.room.topic",
        "state_key": "",
        "sender": "@alice:example.org",
        "origin_server_ts": 1000,
        "content": {"topic": "hello"},
        "room_id": "!room:example.org",
        "unsigned": {"age": 42, "replaces_state": "$old"},
    }


def test_without_room_id_and_empty_unsigned() -> None:
    """include_room_id=False gives ClientEventWithoutRoomID; no unsigned key when there is none."""
    event = make_event(pdu(), KNOWN_ROOM_VERSIONS["10"], event_id="$topic")
    out = serialize_event(event, include_room_id=False)
    assert "room_id" not in out and "unsigned" not in out


def test_message_event_has_no_state_key() -> None:
    """state_key is present if, and only if, the event is a state event."""
    p = pdu(type="m.room.message", content={"body": "x"})
    del p["state_key"]
    out = serialize_event(make_event(p, KNOWN_ROOM_VERSIONS["10"], event_id="$m"))
    assert "state_key" not in out


def test_redacts_at_the_top_level_in_every_version() -> None:
    """m.room.redaction: top-level `redacts` in v1..v10; from v11 in the content, and copied to
    the top level for older clients (rooms/v11: "servers should add it")."""
    old = pdu(type="m.room.redaction", content={}, redacts="$t")
    del old["state_key"]
    assert (
        serialize_event(make_event(old, KNOWN_ROOM_VERSIONS["10"], event_id="$r"))["redacts"]
        == "$t"
    )
    new = pdu(type="m.room.redaction", content={"redacts": "$t"})
    del new["state_key"]
    out = serialize_event(make_event(new, KNOWN_ROOM_VERSIONS["11"], event_id="$r"))
    assert out["redacts"] == "$t" and out["content"]["redacts"] == "$t"
    # Only redactions: another event's content.redacts means nothing.
    other = pdu(type="m.room.message", content={"redacts": "$t", "body": "x"})
    del other["state_key"]
    assert "redacts" not in serialize_event(
        make_event(other, KNOWN_ROOM_VERSIONS["11"], event_id="$o")
    )


def test_output_is_mutable_and_independent() -> None:
    """The returned dict is plain and changing it does not change the event."""
    event = make_event(
        pdu(content={"topic": "hello", "nested": {"a": [1]}}),
        KNOWN_ROOM_VERSIONS["10"],
        event_id="$t",
    )
    out = serialize_event(event)
    out["content"]["nested"]["a"].append(2)
    assert list(event.content["nested"]["a"]) == [1]
    assert type(out["content"]) is dict
