"""Building new events: fields, content hash, signature and ID per room version."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from signedjson.key import generate_signing_key, get_verify_key

from homeserver.types.event_builder import build_event, max_depth
from homeserver.types.events import InvalidEvent, make_event
from homeserver.types.hashing import check_content_hash, compute_event_id
from homeserver.types.identifiers import parse_event_id, parse_room_id
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.types.signing import required_signers, verify_event_signatures

KEY = generate_signing_key("test")
KEYS = {"example.org": {"ed25519:test": get_verify_key(KEY)}}
VERSIONS = list(KNOWN_ROOM_VERSIONS.values())


def build(rv: RoomVersion, **overrides: Any) -> Any:
    args: dict[str, Any] = {
        "room_version": rv,
        "type": "m.room.message",
        "state_key": None,
        "sender": "@alice:example.org",
        "content": {"msgtype": "m.text", "body": "hi"},
        "room_id": "!room:example.org",
        "prev_event_ids": ["$prev:example.org" if rv.identifier in ("1", "2") else "$prev"],
        "auth_event_ids": ["$create:example.org" if rv.identifier in ("1", "2") else "$create"],
        "depth": 7,
        "origin_server_ts": 123456,
        "server_name": "example.org",
        "signing_key": KEY,
    }
    args.update(overrides)
    return build_event(**args)


@pytest.mark.parametrize("rv", VERSIONS, ids=lambda rv: f"v{rv.identifier}")
def test_built_event_is_hashed_signed_and_well_formed(rv: RoomVersion) -> None:
    """In every version a built event has a matching content hash, verifies, and has a valid ID."""
    event = build(rv)
    assert check_content_hash(event.pdu_json())
    assert required_signers(event) == {"example.org"}
    verify_event_signatures(event, KEYS)
    parse_event_id(event.event_id, rv)
    if rv.identifier not in ("1", "2"):
        assert event.event_id == compute_event_id(rv, event.pdu_json())
    assert event.depth == 7 and event.origin_server_ts == 123456
    assert dict(event.content) == {"msgtype": "m.text", "body": "hi"}


@pytest.mark.parametrize("rv", VERSIONS, ids=lambda rv: f"v{rv.identifier}")
def test_origin_only_where_redaction_keeps_it(rv: RoomVersion) -> None:
    """`origin` is set in v1..v10 and left out from v11 (its redaction rules drop it)."""
    assert ("origin" in build(rv).pdu_json()) == (int(rv.identifier) <= 10)


def test_v1_event_ids_and_reference_hashes() -> None:
    """v1/v2: the ID is `$local:server`; references carry the given hashes (or `{}`)."""
    v1 = KNOWN_ROOM_VERSIONS["1"]
    event = build(
        v1,
        event_id_localpart="abc",
        reference_hashes={"$prev:example.org": {"sha256": "h"}},
    )
    assert event.event_id == "$abc:example.org"
    pdu = event.pdu_json()
    assert pdu["prev_events"] == [["$prev:example.org", {"sha256": "h"}]]
    assert pdu["auth_events"] == [["$create:example.org", {}]]
    random_id = build(v1).event_id
    assert random_id.endswith(":example.org") and len(random_id) > 20


@pytest.mark.parametrize(("version", "top_level"), [("10", True), ("11", False), ("12", False)])
def test_redacts_placement(version: str, top_level: bool) -> None:
    """`redacts` goes to the top level up to v10 and into content from v11."""
    event = build(
        KNOWN_ROOM_VERSIONS[version], type="m.room.redaction", content={}, redacts="$target"
    )
    pdu = event.pdu_json()
    assert event.redacts == "$target"
    assert ("redacts" in pdu) == top_level
    assert ("redacts" in pdu["content"]) == (not top_level)


def test_v12_create_event_makes_its_room_id() -> None:
    """v12: a create event built without room_id gets `!` + its reference hash as room ID."""
    v12 = KNOWN_ROOM_VERSIONS["12"]
    create = build(
        v12,
        type="m.room.create",
        state_key="",
        content={"room_version": "12"},
        room_id=None,
        prev_event_ids=[],
        auth_event_ids=[],
        depth=1,
    )
    assert create.room_id == "!" + create.event_id[1:]
    assert parse_room_id(create.room_id, v12).domain is None
    verify_event_signatures(create, KEYS)
    member = build(v12, type="m.room.member", state_key="@alice:example.org",
                   content={"membership": "join"}, room_id=create.room_id,
                   prev_event_ids=[create.event_id], auth_event_ids=[])  # fmt: skip
    assert member.room_id == create.room_id


def test_depth_capped_at_room_version_maximum() -> None:
    """Depth beyond the version's maximum is capped (2**53 - 1 from v6, 2**63 - 1 before)."""
    assert (
        build(KNOWN_ROOM_VERSIONS["6"], depth=2**60).depth
        == max_depth(KNOWN_ROOM_VERSIONS["6"])
        == 2**53 - 1
    )
    assert build(KNOWN_ROOM_VERSIONS["5"], depth=2**60).depth == 2**60


def test_builder_input_not_aliased() -> None:
    """The caller's content dict is copied: changing it later does not touch the event."""
    content = {"body": "hi"}
    event = build(KNOWN_ROOM_VERSIONS["10"], content=content)
    content["body"] = "changed"
    assert event.content["body"] == "hi"


def test_invalid_build_raises_invalid_event() -> None:
    """A builder call that would make a malformed event raises InvalidEvent."""
    with pytest.raises(InvalidEvent, match="at most 20"):
        build(KNOWN_ROOM_VERSIONS["10"], prev_event_ids=[f"$p{i}" for i in range(21)])
    with pytest.raises(InvalidEvent, match="sender"):
        build(KNOWN_ROOM_VERSIONS["10"], sender="alice")


json_leaf = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20)
json_content = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        json_leaf,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    ),
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(content=json_content, version=st.sampled_from(sorted(KNOWN_ROOM_VERSIONS)))
def test_built_events_round_trip_through_make_event(content: dict[str, Any], version: str) -> None:
    """Property: any JSON content builds into an event whose PDU re-parses to an equal event
    with the same ID, a matching content hash and a valid signature."""
    rv = KNOWN_ROOM_VERSIONS[version]
    event = build(rv, content=content)
    again = make_event(event.pdu_json(), rv)
    assert again == event and again.event_id == event.event_id
    assert check_content_hash(again.pdu_json())
    verify_event_signatures(again, KEYS)
