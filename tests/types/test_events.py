"""Frozen event objects and `make_event`'s format validation (PDU schemas per room version)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.types.canonical_json import encode_canonical_json
from homeserver.types.errors import Codes
from homeserver.types.events import (
    MAX_PDU_SIZE,
    EventBase,
    EventTooLarge,
    FrozenEventV1,
    FrozenEventV3,
    FrozenEventV12,
    InvalidEvent,
    event_class,
    make_event,
)
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS
from tests.types.vectors import load_json, load_ndjson, shared_dir

V1, V5, V6 = KNOWN_ROOM_VERSIONS["1"], KNOWN_ROOM_VERSIONS["5"], KNOWN_ROOM_VERSIONS["6"]
V10, V11, V12 = KNOWN_ROOM_VERSIONS["10"], KNOWN_ROOM_VERSIONS["11"], KNOWN_ROOM_VERSIONS["12"]
SIMPLE = load_ndjson("tardis/simple.ndjson")


def base_pdu(**overrides: Any) -> dict[str, Any]:
    """A valid v3+ PDU (hashes/signatures are placeholders; make_event does not check them)."""
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "content": {"msgtype": "m.text", "body": "hello"},
        "origin_server_ts": 1000,
        "depth": 3,
        "prev_events": ["$prev"],
        "auth_events": ["$create", "$member"],
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:1": "sig"}},
    }
    pdu.update(overrides)
    return pdu


def v1_pdu(**overrides: Any) -> dict[str, Any]:
    pdu = base_pdu(
        event_id="$ev1:example.org",
        prev_events=[["$p1:example.org", {"sha256": "h1"}]],
        auth_events=[["$a1:example.org", {"sha256": "h2"}], ["$a2:example.org", {}]],
    )
    pdu.update(overrides)
    return pdu


# --- real events --------------------------------------------------------------------


@pytest.mark.parametrize("line", range(len(SIMPLE)), ids=lambda i: SIMPLE[i]["type"])
def test_real_events_get_their_reference_hash_ids(line: int) -> None:
    """make_event on real v10 PDUs derives exactly the IDs matrix.org gave them."""
    pdu = SIMPLE[line]
    event = make_event(pdu, V10)
    assert isinstance(event, FrozenEventV3)
    assert event.event_id == pdu["event_id"]
    assert event.room_id == pdu["room_id"]
    assert event.type == pdu["type"]
    assert event.sender == pdu["sender"]
    assert event.depth == pdu["depth"]
    assert event.prev_event_ids == tuple(pdu["prev_events"])
    assert event.auth_event_ids == tuple(pdu["auth_events"])
    assert event.is_state() == ("state_key" in pdu)
    assert "event_id" not in event.pdu_json()  # not part of the v3+ format


def test_accessors_and_pdu_json_round_trip() -> None:
    """Accessors read the PDU; pdu_json gives the PDU back as a fresh dict."""
    pdu = base_pdu(state_key="", type="m.room.topic", content={"topic": "t"}, unsigned={"age": 5})
    event = make_event(pdu, V10, event_id="$topic")
    assert event.state_key == "" and event.is_state()
    assert dict(event.content) == {"topic": "t"}
    assert dict(event.unsigned) == {"age": 5}
    assert dict(event.hashes) == {"sha256": "abc"}
    assert event.signatures["example.org"]["ed25519:1"] == "sig"
    assert event.origin_server_ts == 1000
    assert event.redacts is None
    assert event.pdu_json() == pdu


def test_non_state_event_has_none_state_key() -> None:
    """A PDU without state_key is a message event: state_key None, is_state False."""
    event = make_event(base_pdu(), V10, event_id="$m")
    assert event.state_key is None and not event.is_state()


# --- immutability -------------------------------------------------------------------


def test_events_are_immutable() -> None:
    """Attributes cannot be set or deleted, and content cannot be changed at any depth."""
    event = make_event(base_pdu(content={"a": {"b": [1]}}), V10, event_id="$m")
    with pytest.raises(AttributeError, match="immutable"):
        event.type = "x"
    with pytest.raises(AttributeError, match="immutable"):
        del event.sender
    with pytest.raises(TypeError):
        event.content["a"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        event.content["a"]["b"].append(2)
    with pytest.raises(TypeError):
        event.signatures["example.org"]["ed25519:2"] = "x"


def test_pdu_json_is_a_fresh_copy_and_input_is_not_kept() -> None:
    """Mutating pdu_json()'s result or the input PDU does not change the event."""
    pdu = base_pdu()
    event = make_event(pdu, V10, event_id="$m")
    pdu["content"]["body"] = "changed"
    got = event.pdu_json()
    got["content"]["body"] = "changed again"
    assert event.content["body"] == "hello"
    assert event.pdu_json()["content"]["body"] == "hello"


def test_equality_by_id_version_and_content() -> None:
    """Two events from the same PDU are equal and hash alike; a different PDU is not equal."""
    a = make_event(base_pdu(), V10, event_id="$m")
    b = make_event(base_pdu(), V10, event_id="$m")
    c = make_event(base_pdu(depth=4), V10, event_id="$m")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != c


# --- per-format specifics ---------------------------------------------------------------


def test_v1_event_ids_and_reference_pairs() -> None:
    """v1/v2: the event ID is the PDU's; prev/auth references are pairs, accessors give IDs."""
    event = make_event(v1_pdu(), V1)
    assert isinstance(event, FrozenEventV1)
    assert event.event_id == "$ev1:example.org"
    assert event.prev_event_ids == ("$p1:example.org",)
    assert event.auth_event_ids == ("$a1:example.org", "$a2:example.org")
    assert event.pdu_json()["event_id"] == "$ev1:example.org"


def test_v1_explicit_event_id_must_agree() -> None:
    """v1: an explicit event_id fills a missing one, and must match a present one."""
    pdu = v1_pdu()
    del pdu["event_id"]
    assert make_event(pdu, V1, event_id="$x:example.org").event_id == "$x:example.org"
    with pytest.raises(InvalidEvent, match="does not match"):
        make_event(v1_pdu(), V1, event_id="$other:example.org")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"event_id": None}, "event_id must be an event ID string"),
        ({"event_id": "ev1:example.org"}, "must start with '\\$'"),
        ({"event_id": "$ev1"}, "event_id: invalid event ID '\\$ev1': missing ':'"),
        ({"event_id": "$ev1:bad_server"}, "bad server name"),
        ({"prev_events": ["$p1:example.org"]}, r"prev_events\[0\] must be a pair"),
        ({"auth_events": [["$a", {}, 3]]}, r"auth_events\[0\] must be a pair"),
        ({"auth_events": [["$a", "hash"]]}, r"auth_events\[0\]\[1\] must be an object"),
        ({"prev_events": [[5, {}]]}, r"prev_events\[0\]\[0\] must be an event ID"),
    ],
)
def test_v1_format_errors(overrides: dict[str, Any], message: str) -> None:
    """v1-format PDUs with a bad event_id or reference pairs are refused with the reason."""
    with pytest.raises(InvalidEvent, match=message):
        make_event(v1_pdu(**overrides), V1)


def test_v3_event_id_given_explicitly_overrides_hash() -> None:
    """v3+: `event_id=` (for fixtures with readable IDs) is used as is."""
    assert make_event(base_pdu(), V10, event_id="$readable").event_id == "$readable"
    assert make_event(base_pdu(), V10).event_id.startswith("$")
    with pytest.raises(InvalidEvent, match="must start with"):
        make_event(base_pdu(), V10, event_id="readable")


def test_v12_create_event_room_id_derived_from_event_id() -> None:
    """v12: the create event has no room_id; its room ID is `!` + the reference-hash part."""
    pdu = base_pdu(type="m.room.create", state_key="", content={"room_version": "12"})
    pdu.update(prev_events=[], auth_events=[])
    del pdu["room_id"]
    event = make_event(pdu, V12)
    assert isinstance(event, FrozenEventV12)
    assert event.room_id == "!" + event.event_id[1:]
    assert len(event.event_id) == 44
    assert "room_id" not in event.pdu_json()
    fixture = make_event(pdu, V12, event_id="$00-m-room-create")
    assert fixture.room_id == "!00-m-room-create"


def test_v12_create_event_with_room_id_refused() -> None:
    """v12: an m.room.create PDU carrying a room_id is not a valid event."""
    pdu = base_pdu(type="m.room.create", state_key="", content={}, prev_events=[], auth_events=[])
    with pytest.raises(InvalidEvent, match="must not have a room_id"):
        make_event(pdu, V12)


def test_v12_other_events_need_room_id() -> None:
    """v12: every event other than m.room.create still needs a room_id."""
    pdu = base_pdu()
    del pdu["room_id"]
    with pytest.raises(InvalidEvent, match="missing required key 'room_id'"):
        make_event(pdu, V12)


def test_redacts_top_level_before_v11_and_in_content_from_v11() -> None:
    """`redacts` is read from the top level up to v10 and from content from v11."""
    old = base_pdu(type="m.room.redaction", content={}, redacts="$target")
    assert make_event(old, V10, event_id="$r").redacts == "$target"
    assert make_event(old, V11, event_id="$r").redacts is None
    new = base_pdu(type="m.room.redaction", content={"redacts": "$target"})
    assert make_event(new, V11, event_id="$r").redacts == "$target"
    assert make_event(new, V10, event_id="$r").redacts is None


def test_event_class_per_room_version() -> None:
    """Each room version maps to the class for its event format."""
    classes = {v: event_class(rv) for v, rv in KNOWN_ROOM_VERSIONS.items()}
    assert classes["1"] is classes["2"] is FrozenEventV1
    assert all(classes[str(v)] is FrozenEventV3 for v in range(3, 12))
    assert classes["12"] is FrozenEventV12
    assert all(issubclass(c, EventBase) for c in classes.values())


# --- validation ---------------------------------------------------------------------------


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda pdu: pdu.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda pdu: pdu.__setitem__(key, value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_drop("type"), "missing required key 'type'"),
        (_drop("sender"), "missing required key 'sender'"),
        (_drop("content"), "missing required key 'content'"),
        (_drop("hashes"), "missing required key 'hashes'"),
        (_drop("signatures"), "missing required key 'signatures'"),
        (_drop("depth"), "missing required key 'depth'"),
        (_drop("origin_server_ts"), "missing required key 'origin_server_ts'"),
        (_drop("prev_events"), "missing required key 'prev_events'"),
        (_drop("auth_events"), "missing required key 'auth_events'"),
        (_drop("room_id"), "missing required key 'room_id'"),
        (_set("type", 5), "'type' must be a string"),
        (_set("state_key", None), "'state_key' must be a string"),
        (_set("content", []), "'content' must be an object"),
        (_set("unsigned", "x"), "'unsigned' must be an object"),
        (_set("hashes", {"sha256": 1}), "string 'sha256'"),
        (_set("signatures", {"example.org": "sig"}), "signatures of 'example.org'"),
        (_set("signatures", {"example.org": {"ed25519:1": 5}}), "must be a string"),
        (_set("depth", "3"), "'depth' must be an integer"),
        (_set("depth", True), "'depth' must be an integer"),
        (_set("depth", -1), "outside"),
        (_set("depth", 2**53), "outside"),
        (_set("origin_server_ts", 1.5), "'origin_server_ts' must be an integer"),
        (_set("prev_events", "$x"), "'prev_events' must be a list"),
        (_set("prev_events", [["$x", {}]]), r"prev_events\[0\] must be an event ID"),
        (_set("prev_events", ["$p"] * 21), "at most 20"),
        (_set("auth_events", ["$a"] * 11), "at most 10"),
        (_set("room_id", "room:example.org"), "not a room ID"),
        (_set("sender", "alice"), "sender: invalid user ID"),
        (_set("redacts", 5), "redacts must be an event ID string"),
    ],
)
def test_format_errors_are_named(mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    """Each way a v10 PDU can be malformed raises InvalidEvent (M_BAD_JSON) saying what is wrong."""
    pdu = base_pdu()
    mutate(pdu)
    with pytest.raises(InvalidEvent, match=message) as info:
        make_event(pdu, V10)
    assert info.value.errcode == Codes.BAD_JSON


def test_non_object_pdu_refused() -> None:
    """A PDU that is not a JSON object is refused."""
    with pytest.raises(InvalidEvent, match="must be a JSON object"):
        make_event(["not", "a", "dict"], V10)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["type", "state_key", "sender", "room_id"])
def test_id_fields_limited_to_255_bytes(key: str) -> None:
    """type, state_key, sender and room_id over 255 bytes raise EventTooLarge (M_TOO_LARGE)."""
    long_values = {
        "type": "m." + "x" * 254,
        "state_key": "é" * 128,
        "sender": "@" + "a" * 250 + ":example.org",
        "room_id": "!" + "r" * 250 + ":example.org",
    }
    with pytest.raises(EventTooLarge, match=f"'{key}' is longer than 255 bytes") as info:
        make_event(base_pdu(**{key: long_values[key]}), V10)
    assert info.value.errcode == Codes.TOO_LARGE


def test_255_byte_state_key_is_allowed() -> None:
    """Exactly 255 bytes is within the limit."""
    assert make_event(base_pdu(state_key="s" * 255), V10, event_id="$e").state_key == "s" * 255


def test_whole_pdu_limited_to_65536_bytes() -> None:
    """A PDU over 65536 bytes of canonical JSON raises EventTooLarge; just under is fine."""
    pdu = base_pdu(content={"body": ""})
    size = len(encode_canonical_json(pdu))
    pdu["content"]["body"] = "x" * (MAX_PDU_SIZE - size)
    assert len(encode_canonical_json(pdu)) == MAX_PDU_SIZE
    make_event(pdu, V10, event_id="$e")
    pdu["content"]["body"] += "x"
    with pytest.raises(EventTooLarge, match="65537 bytes"):
        make_event(pdu, V10, event_id="$e")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"n": 1.5}, r"float 1\.5 at content\.n"),
        ({"n": 2**53}, "outside the canonical JSON range"),
        ({"list": [-(2**53)]}, r"content\.list\[0\]"),
    ],
)
def test_strict_canonical_json_from_v6(content: dict[str, Any], message: str) -> None:
    """v6+ refuses floats and out-of-range integers anywhere in the PDU; v5 accepts them."""
    with pytest.raises(InvalidEvent, match=message):
        make_event(base_pdu(content=content), V6)
    assert make_event(base_pdu(content=content), V5, event_id="$e").content == content


def test_v5_depth_may_exceed_2_53() -> None:
    """Before v6 depth may go up to 2**63 - 1."""
    assert make_event(base_pdu(depth=2**63 - 1), V5, event_id="$e").depth == 2**63 - 1
    with pytest.raises(InvalidEvent, match="outside"):
        make_event(base_pdu(depth=2**63), V5, event_id="$e")


def test_historical_sender_accepted() -> None:
    """Senders with historical (non-compliant) local parts are valid in events."""
    assert make_event(base_pdu(sender="@Old User:example.org"), V10, event_id="$e").sender == (
        "@Old User:example.org"
    )


# --- the state-resolution fixtures, as other modules will load them ---------------------------


def test_ruma_fixture_events_load_with_explicit_ids() -> None:
    """ruma's v12 fixtures (readable IDs, no hashes/signatures/depth) load once those are filled in."""
    pdus = load_json("ruma-state-res/fixtures/MSC4297-problem-A/pdus-v12.json")
    events = []
    for depth, raw in enumerate(pdus):
        pdu = copy.deepcopy(raw)
        pdu.pop("test-comments", None)
        pdu.setdefault("hashes", {"sha256": ""})
        pdu.setdefault("signatures", {})
        pdu.setdefault("depth", depth)
        events.append(make_event(pdu, V12, event_id=pdu["event_id"]))
    create = events[0]
    assert create.type == "m.room.create" and create.room_id == "!00-m-room-create"
    assert all(e.room_id == create.room_id for e in events)


# --- the spec's own PDU examples -----------------------------------------------------------


def _resolve_example(path: Path) -> dict[str, Any]:
    """Merge the `$ref` / `allOf` composition the spec's example files use."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    parts = raw.pop("allOf", [])
    result: dict[str, Any] = {}
    if "$ref" in raw:
        result.update(_resolve_example(path.parent / raw.pop("$ref")))
    for part in parts:
        result.update(_resolve_example(path.parent / part["$ref"]) if "$ref" in part else part)
    result.update(raw)
    return result


@pytest.mark.parametrize(
    ("example", "version"),
    [("pdu_v1", "1"), ("pdu_v3", "3"), ("pdu_v4", "4"), ("pdu_v11", "11"), ("pdu_v12", "12")],
)
def test_spec_pdu_examples_are_valid_events(example: str, version: str) -> None:
    """The spec's example PDU for each format passes make_event's format checks."""
    path = shared_dir() / "spec/data/api/server-server/examples" / f"{example}.json"
    pdu = _resolve_example(path)
    event = make_event(pdu, KNOWN_ROOM_VERSIONS[version])
    assert event.room_id == pdu["room_id"]
    assert event.prev_event_ids == tuple(
        ref[0] if isinstance(ref, list) else ref for ref in pdu["prev_events"]
    )
    if version == "1":
        assert event.event_id == pdu["event_id"]
    if version in ("3", "4"):
        assert event.redacts == pdu["redacts"]
