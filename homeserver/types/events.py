"""Frozen, typed room events (PDUs), one class per event format, and `make_event`.

Spec: server-server API "PDUs" and "Checks performed on receipt of a PDU"
(step 1: "Is a valid event"), the PDU schemas per room version
(data/api/server-server/definitions/pdu_v1, pdu_v3, pdu_v4, pdu_v6, pdu_v11,
pdu_v12), the room versions' "Event format" sections, and client-server API
"Size limits" (65536 bytes per event; 255 bytes for `type`, `state_key`,
`sender`, `room_id`, `event_id`).

Formats:

- `FrozenEventV1` (room v1, v2): the origin chooses `event_id` and puts it in
  the PDU; `prev_events`/`auth_events` are `[[event_id, {"sha256": ...}], ...]`.
- `FrozenEventV3` (room v3..v11): the event ID is `$` + the reference hash
  (standard base64 in v3, URL-safe from v4) and is not part of the PDU;
  `prev_events`/`auth_events` are lists of IDs.
- `FrozenEventV12` (room v12+): as v3, and the `m.room.create` event has no
  `room_id`; its room ID is its event ID with `!` for `$`.

All of them are `EventBase`: immutable, with content and the other JSON
values frozen (see `homeserver.types.frozen`). `make_event` is the only way to
build one and it validates the format, raising `InvalidEvent` (or
`EventTooLarge`) with a message naming the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn

from homeserver.types.canonical_json import (
    InvalidCanonicalJson,
    check_canonical_json_value,
    encode_canonical_json,
)
from homeserver.types.errors import Codes
from homeserver.types.frozen import FrozenDict, freeze_mapping, thaw
from homeserver.types.hashing import compute_event_id, room_id_from_create_event_id
from homeserver.types.identifiers import InvalidIdentifier, parse_event_id, parse_user_id
from homeserver.types.room_versions import EventFormat, RoomVersion

# Client-server API "Size limits".
MAX_PDU_SIZE = 65536
MAX_ID_FIELD_BYTES = 255
# Maximum depth: "Must be less than the maximum value for an integer" (2^63 - 1
# before v6, 2^53 - 1 from v6, which enforces canonical JSON).
MAX_DEPTH_LAX = 2**63 - 1
MAX_DEPTH_STRICT = 2**53 - 1
# PDU schemas: "Must contain less than or equal to 20 events" / "10 events".
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10


class InvalidEvent(ValueError):
    """A PDU that does not match its room version's event format (M_BAD_JSON)."""

    errcode: str = Codes.BAD_JSON


class EventTooLarge(InvalidEvent):
    """A PDU over a size limit (M_TOO_LARGE)."""

    errcode = Codes.TOO_LARGE


class EventBase:
    """An immutable room event. Build with `make_event`; never construct directly.

    `content`, `hashes`, `signatures` and `unsigned` are read-only mappings
    (their nested values are read-only too). `pdu_json()` gives a fresh,
    mutable copy of the federation form.
    """

    __slots__ = (
        "room_version",
        "event_id",
        "room_id",
        "type",
        "state_key",
        "sender",
        "content",
        "origin_server_ts",
        "depth",
        "prev_event_ids",
        "auth_event_ids",
        "redacts",
        "hashes",
        "signatures",
        "unsigned",
        "_pdu",
    )

    room_version: RoomVersion
    event_id: str
    room_id: str
    type: str
    state_key: str | None
    sender: str
    content: Mapping[str, Any]
    origin_server_ts: int
    depth: int
    prev_event_ids: tuple[str, ...]
    auth_event_ids: tuple[str, ...]
    redacts: str | None
    hashes: Mapping[str, Any]
    signatures: Mapping[str, Any]
    unsigned: Mapping[str, Any]
    _pdu: FrozenDict

    # The event format(s) this class implements.
    FORMATS: ClassVar[tuple[EventFormat, ...]] = ()

    def __init__(
        self, pdu: FrozenDict, room_version: RoomVersion, event_id: str, room_id: str
    ) -> None:
        """Private: use `make_event`, which validates `pdu` first."""
        put = object.__setattr__
        put(self, "_pdu", pdu)
        put(self, "room_version", room_version)
        put(self, "event_id", event_id)
        put(self, "room_id", room_id)
        put(self, "type", pdu["type"])
        put(self, "state_key", pdu.get("state_key"))
        put(self, "sender", pdu["sender"])
        put(self, "content", pdu["content"])
        put(self, "origin_server_ts", pdu["origin_server_ts"])
        put(self, "depth", pdu["depth"])
        put(self, "prev_event_ids", self._ids(pdu["prev_events"]))
        put(self, "auth_event_ids", self._ids(pdu["auth_events"]))
        put(self, "hashes", pdu["hashes"])
        put(self, "signatures", pdu["signatures"])
        put(self, "unsigned", pdu.get("unsigned", FrozenDict()))
        if room_version.event_format.redacts_in_content:
            redacts = pdu["content"].get("redacts")
        else:
            redacts = pdu.get("redacts")
        put(self, "redacts", redacts if isinstance(redacts, str) else None)

    @staticmethod
    def _ids(refs: list[Any]) -> tuple[str, ...]:
        return tuple(refs)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"events are immutable (tried to set {name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"events are immutable (tried to delete {name!r})")

    def is_state(self) -> bool:
        """Whether this is a state event (it has a `state_key`, possibly empty)."""
        return self.state_key is not None

    def pdu_json(self) -> dict[str, Any]:
        """The federation (PDU) form of the event: a fresh, mutable deep copy."""
        return thaw(self._pdu)  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventBase):
            return NotImplemented
        return (
            self.event_id == other.event_id
            and self.room_version.identifier == other.room_version.identifier
            and self._pdu == other._pdu
        )

    def __hash__(self) -> int:
        return hash(self.event_id)

    def __repr__(self) -> str:
        sk = f", state_key={self.state_key!r}" if self.state_key is not None else ""
        return (
            f"<{type(self).__name__} {self.event_id} type={self.type!r}{sk} "
            f"sender={self.sender!r} room_version={self.room_version.identifier}>"
        )


class FrozenEventV1(EventBase):
    """Room v1/v2 events: origin-chosen `event_id`; `[id, {hashes}]` references."""

    __slots__ = ()
    FORMATS = (EventFormat.V1,)

    @staticmethod
    def _ids(refs: list[Any]) -> tuple[str, ...]:
        return tuple(ref[0] for ref in refs)


class FrozenEventV3(EventBase):
    """Room v3..v11 events: the event ID is the reference hash; references are IDs."""

    __slots__ = ()
    FORMATS = (EventFormat.V2, EventFormat.V3)


class FrozenEventV12(EventBase):
    """Room v12+ events: as v3, and the create event's room ID comes from its event ID."""

    __slots__ = ()
    FORMATS = (EventFormat.V4,)


_CLASS_FOR_FORMAT: dict[EventFormat, type[EventBase]] = {
    fmt: cls for cls in (FrozenEventV1, FrozenEventV3, FrozenEventV12) for fmt in cls.FORMATS
}


def event_class(room_version: RoomVersion) -> type[EventBase]:
    """The event class used for this room version's event format."""
    return _CLASS_FOR_FORMAT[room_version.event_format.format]


# --- validation -------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    raise InvalidEvent(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_str(pdu: Mapping[str, Any], key: str, *, required: bool, limit: bool) -> None:
    if key not in pdu:
        if required:
            _fail(f"PDU is missing required key {key!r}")
        return
    value = pdu[key]
    if not isinstance(value, str):
        _fail(f"PDU key {key!r} must be a string, not {type(value).__name__}")
    if limit and len(value.encode("utf-8")) > MAX_ID_FIELD_BYTES:
        raise EventTooLarge(f"PDU key {key!r} is longer than {MAX_ID_FIELD_BYTES} bytes")


def _check_object(pdu: Mapping[str, Any], key: str, *, required: bool) -> None:
    if key not in pdu:
        if required:
            _fail(f"PDU is missing required key {key!r}")
        return
    if not isinstance(pdu[key], Mapping):
        _fail(f"PDU key {key!r} must be an object, not {type(pdu[key]).__name__}")


def _check_event_id_str(value: Any, where: str) -> None:
    if not isinstance(value, str):
        _fail(f"{where} must be an event ID string, not {type(value).__name__}")
    if not value.startswith("$"):
        _fail(f"{where} {value!r} is not an event ID (must start with '$')")
    if len(value.encode("utf-8")) > MAX_ID_FIELD_BYTES:
        raise EventTooLarge(f"{where} is longer than {MAX_ID_FIELD_BYTES} bytes")


def _check_references(pdu: Mapping[str, Any], key: str, fmt: EventFormat, limit: int) -> None:
    if key not in pdu:
        _fail(f"PDU is missing required key {key!r}")
    refs = pdu[key]
    if not isinstance(refs, list):
        _fail(f"PDU key {key!r} must be a list, not {type(refs).__name__}")
    if len(refs) > limit:
        _fail(f"PDU key {key!r} lists {len(refs)} events; at most {limit} are allowed")
    for i, ref in enumerate(refs):
        where = f"{key}[{i}]"
        if fmt is EventFormat.V1:
            # [event_id, {"sha256": "..."}]
            if not isinstance(ref, list) or len(ref) != 2:
                _fail(f"{where} must be a pair [event_id, {{hashes}}] in this room version")
            _check_event_id_str(ref[0], f"{where}[0]")
            if not isinstance(ref[1], Mapping):
                _fail(f"{where}[1] must be an object of hashes")
        else:
            _check_event_id_str(ref, where)


def _check_hashes(pdu: Mapping[str, Any]) -> None:
    _check_object(pdu, "hashes", required=True)
    sha = pdu["hashes"].get("sha256")
    if not isinstance(sha, str):
        _fail("PDU key 'hashes' must have a string 'sha256'")


def _check_signatures(pdu: Mapping[str, Any]) -> None:
    _check_object(pdu, "signatures", required=True)
    for server, sigs in pdu["signatures"].items():
        if not isinstance(sigs, Mapping):
            _fail(f"signatures of {server!r} must be an object of key ID to signature")
        for key_id, sig in sigs.items():
            if not isinstance(sig, str):
                _fail(f"signature {server!r}/{key_id!r} must be a string")


def validate_pdu(pdu: Mapping[str, Any], room_version: RoomVersion) -> None:
    """Check a PDU against its room version's event format; raise `InvalidEvent` if not.

    Checks required keys and their types, that `sender` is a user ID
    (historical grammar), the 255-byte limits on `type`,
    `state_key`, `sender`, `room_id` and `event_id`, `depth` range,
    `prev_events`/`auth_events` shape and count, strict canonical JSON
    values (v6+), and the 65536-byte limit on the whole PDU.
    """
    if not isinstance(pdu, Mapping):
        _fail(f"a PDU must be a JSON object, not {type(pdu).__name__}")
    rules = room_version.event_format
    fmt = rules.format

    _check_str(pdu, "type", required=True, limit=True)
    _check_str(pdu, "sender", required=True, limit=True)
    _check_str(pdu, "state_key", required=False, limit=True)
    try:
        # Historical grammar: federation must accept old non-compliant user IDs.
        parse_user_id(pdu["sender"])
    except InvalidIdentifier as e:
        _fail(f"sender: {e}")
    is_v12_create = fmt is EventFormat.V4 and pdu["type"] == "m.room.create"
    if is_v12_create:
        if "room_id" in pdu:
            _fail(
                f"m.room.create events in room version {room_version.identifier} "
                "must not have a room_id (it is derived from the event ID)"
            )
    else:
        _check_str(pdu, "room_id", required=True, limit=True)
        if not pdu["room_id"].startswith("!"):
            _fail(f"room_id {pdu['room_id']!r} is not a room ID (must start with '!')")
    if fmt is EventFormat.V1:
        _check_event_id_str(pdu.get("event_id"), "event_id")
        try:
            parse_event_id(pdu["event_id"], room_version)
        except InvalidIdentifier as e:
            _fail(f"event_id: {e}")
    elif "event_id" in pdu and not isinstance(pdu["event_id"], str):
        _fail("PDU key 'event_id' must be a string")

    _check_object(pdu, "content", required=True)
    _check_object(pdu, "unsigned", required=False)
    _check_hashes(pdu)
    _check_signatures(pdu)

    for key in ("origin_server_ts", "depth"):
        if key not in pdu:
            _fail(f"PDU is missing required key {key!r}")
        if not _is_int(pdu[key]):
            _fail(f"PDU key {key!r} must be an integer, not {type(pdu[key]).__name__}")
    max_depth = MAX_DEPTH_STRICT if rules.strict_canonical_json else MAX_DEPTH_LAX
    if not 0 <= pdu["depth"] <= max_depth:
        _fail(f"depth {pdu['depth']} is outside [0, {max_depth}]")

    _check_references(pdu, "prev_events", fmt, MAX_PREV_EVENTS)
    _check_references(pdu, "auth_events", fmt, MAX_AUTH_EVENTS)

    if not rules.redacts_in_content and "redacts" in pdu:
        _check_event_id_str(pdu["redacts"], "redacts")

    if rules.strict_canonical_json:
        try:
            check_canonical_json_value(pdu)
        except InvalidCanonicalJson as e:
            _fail(f"not canonical JSON: {e}")
    try:
        size = len(encode_canonical_json(pdu))
    except InvalidCanonicalJson as e:
        _fail(str(e))
    if size > MAX_PDU_SIZE:
        raise EventTooLarge(f"PDU is {size} bytes in canonical JSON; the limit is {MAX_PDU_SIZE}")


def make_event(
    pdu: Mapping[str, Any], room_version: RoomVersion, *, event_id: str | None = None
) -> EventBase:
    """Validate a PDU and build the frozen event for its room version.

    v1/v2: the event ID is the PDU's `event_id` (if `event_id=` is also given
    it must agree, or it fills a missing one). v3+: any `event_id` key in the
    PDU is dropped (it is not part of the format) and the ID is the reference
    hash, unless `event_id=` is given (for fixtures with readable IDs; the
    hash is then not checked). v12 `m.room.create`: `room_id` is derived
    from the event ID. Raises `InvalidEvent` / `EventTooLarge`.
    """
    if not isinstance(pdu, Mapping):
        _fail(f"a PDU must be a JSON object, not {type(pdu).__name__}")
    fmt = room_version.event_format.format
    data: dict[str, Any] = dict(pdu)
    if fmt is EventFormat.V1:
        if event_id is not None:
            given = data.setdefault("event_id", event_id)
            if given != event_id:
                _fail(f"event_id {event_id!r} does not match the PDU's event_id {given!r}")
    else:
        data.pop("event_id", None)
    validate_pdu(data, room_version)
    frozen = freeze_mapping(data)

    if fmt is EventFormat.V1:
        eid: str = frozen["event_id"]
    elif event_id is not None:
        _check_event_id_str(event_id, "event_id")
        eid = event_id
    else:
        eid = compute_event_id(room_version, frozen)

    if fmt is EventFormat.V4 and frozen["type"] == "m.room.create":
        room_id = room_id_from_create_event_id(eid)
    else:
        room_id = frozen["room_id"]
    return event_class(room_version)(frozen, room_version, eid, room_id)
