"""Event filters: the JSON a client gives /sync, /messages and /context to choose events.

Spec: client-server API "Filtering" and "Lazy-loading room members"; the
schemas data/api/client-server/definitions/sync_filter.yaml (`Filter`),
room_event_filter.yaml (`RoomEventFilter`) and event_filter.yaml
(`EventFilter`).

`parse_filter` and `parse_room_event_filter` validate a filter (decoded JSON,
or JSON text from a query parameter) and return a frozen model; they raise
`MatrixError` naming the problem and where it is ("room.timeline.limit: ...").
Unknown keys are accepted and ignored, as Synapse does, so filters written for
newer spec versions or MSCs keep working.

Matching works on room events (`EventBase`) and on plain event dicts (account
data, ephemeral events) alike: `type`, `sender`, `room_id` and `content.url`.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import jsonschema

from homeserver.types.canonical_json import InvalidCanonicalJson, decode_json
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.events import EventBase
from homeserver.types.identifiers import InvalidIdentifier, parse_room_id, parse_user_id

# "Servers should apply a default value": Synapse's, which clients are used to.
DEFAULT_LIMIT = 10

FilterableEvent = EventBase | Mapping[str, Any]
E = TypeVar("E", EventBase, Mapping[str, Any])


# --- schema -----------------------------------------------------------------

_USER_IDS = {"type": "array", "items": {"type": "string", "format": "mx-user-id"}}
_ROOM_IDS = {"type": "array", "items": {"type": "string", "format": "mx-room-id"}}
_TYPES = {"type": "array", "items": {"type": "string"}}

_EVENT_FILTER_PROPERTIES: dict[str, Any] = {
    # The spec says "greater than 0", but clients widely send 0 to get a
    # sync token without history, and Synapse serves them; negative is nonsense.
    "limit": {"type": "integer", "minimum": 0},
    "types": _TYPES,
    "not_types": _TYPES,
    "senders": _USER_IDS,
    "not_senders": _USER_IDS,
}

_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        "event_filter": {"type": "object", "properties": _EVENT_FILTER_PROPERTIES},
        "room_event_filter": {
            "type": "object",
            "properties": {
                **_EVENT_FILTER_PROPERTIES,
                "rooms": _ROOM_IDS,
                "not_rooms": _ROOM_IDS,
                "contains_url": {"type": "boolean"},
                "lazy_load_members": {"type": "boolean"},
                "include_redundant_members": {"type": "boolean"},
                "unread_thread_notifications": {"type": "boolean"},
            },
        },
    },
    "type": "object",
    "properties": {
        "event_fields": {"type": "array", "items": {"type": "string"}},
        "event_format": {"enum": ["client", "federation"]},
        "presence": {"$ref": "#/$defs/event_filter"},
        "account_data": {"$ref": "#/$defs/event_filter"},
        "room": {
            "type": "object",
            "properties": {
                "rooms": _ROOM_IDS,
                "not_rooms": _ROOM_IDS,
                "include_leave": {"type": "boolean"},
                "ephemeral": {"$ref": "#/$defs/room_event_filter"},
                "state": {"$ref": "#/$defs/room_event_filter"},
                "timeline": {"$ref": "#/$defs/room_event_filter"},
                "account_data": {"$ref": "#/$defs/room_event_filter"},
            },
        },
    },
}

_FORMATS = jsonschema.FormatChecker(formats=())


def _check_user_id(value: object) -> bool:
    if isinstance(value, str):
        parse_user_id(value)
    return True


def _check_room_id(value: object) -> bool:
    if isinstance(value, str):
        parse_room_id(value)
    return True


# The spec's string formats (data/string-formats.yaml); the parsers' messages say what is wrong.
_FORMATS.checks("mx-user-id", raises=InvalidIdentifier)(_check_user_id)
_FORMATS.checks("mx-room-id", raises=InvalidIdentifier)(_check_room_id)

_FILTER_VALIDATOR = jsonschema.Draft202012Validator(_SCHEMA, format_checker=_FORMATS)
_ROOM_EVENT_FILTER_VALIDATOR = jsonschema.Draft202012Validator(
    {"$defs": _SCHEMA["$defs"], "$ref": "#/$defs/room_event_filter"}, format_checker=_FORMATS
)


def _where(error: jsonschema.ValidationError) -> str:
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "type":
        problem = f"expected {error.validator_value}, got {error.instance!r}"
    elif error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        problem = f"{error.instance!r} is not one of {allowed}"
    elif error.validator == "minimum":
        problem = f"must be at least {error.validator_value}, got {error.instance!r}"
    elif error.validator == "format" and error.cause is not None:
        problem = str(error.cause)
    else:
        problem = error.message
    where = _where(error)
    return f"{where}: {problem}" if where else problem


def _validate(
    validator: jsonschema.Draft202012Validator, value: object, what: str, parameter: str | None
) -> Mapping[str, Any]:
    errcode = Codes.INVALID_PARAM if parameter is not None else Codes.BAD_JSON
    label = parameter or what
    if isinstance(value, str):
        try:
            value = decode_json(value, strict=False)
        except InvalidCanonicalJson as e:
            raise MatrixError(
                errcode if parameter is not None else Codes.NOT_JSON, f"{label}: {e}"
            ) from None
    if not isinstance(value, Mapping):
        raise MatrixError(errcode, f"{label} must be a JSON object")
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        problems = "; ".join(dict.fromkeys(_describe(e) for e in errors))
        raise MatrixError(errcode, f"invalid {label}: {problems}")
    return value


# --- matching -----------------------------------------------------------------


def _type_pattern(patterns: Iterable[str]) -> re.Pattern[str]:
    # "A `*` can be used as a wildcard to match any sequence of characters."
    alternatives = (".*".join(re.escape(part) for part in p.split("*")) for p in patterns)
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.DOTALL)


def _event_fields(event: FilterableEvent) -> tuple[object, object, object, bool]:
    """(type, sender, room_id, has a string content.url) of an event or event dict."""
    if isinstance(event, EventBase):
        return event.type, event.sender, event.room_id, isinstance(event.content.get("url"), str)
    content = event.get("content")
    url = content.get("url") if isinstance(content, Mapping) else None
    return event.get("type"), event.get("sender"), event.get("room_id"), isinstance(url, str)


class EventFilter:
    """`EventFilter`: which events to include by type and sender, and how many.

    An absent inclusion list (`types`, `senders`) includes everything; an
    exclusion list (`not_*`) wins over the matching inclusion list.
    """

    __slots__ = ("limit", "types", "not_types", "senders", "not_senders", "_types", "_not_types")

    limit: int
    types: tuple[str, ...] | None
    not_types: tuple[str, ...]
    senders: frozenset[str] | None
    not_senders: frozenset[str]

    def __init__(self, json: Mapping[str, Any]) -> None:
        """From JSON that has passed the schema; use the parse_* functions."""
        self.limit = int(json.get("limit", DEFAULT_LIMIT))
        types = json.get("types")
        self.types = None if types is None else tuple(types)
        self.not_types = tuple(json.get("not_types", ()))
        senders = json.get("senders")
        self.senders = None if senders is None else frozenset(senders)
        self.not_senders = frozenset(json.get("not_senders", ()))
        self._types = None if self.types is None else _type_pattern(self.types)
        self._not_types = _type_pattern(self.not_types) if self.not_types else None

    def _matches_fields(self, event_type: object, sender: object) -> bool:
        if self._not_types is not None and (
            not isinstance(event_type, str) or self._not_types.fullmatch(event_type)
        ):
            return False
        if self._types is not None and (
            not isinstance(event_type, str) or not self._types.fullmatch(event_type)
        ):
            return False
        if sender in self.not_senders:
            return False
        return self.senders is None or sender in self.senders

    def matches(self, event: FilterableEvent) -> bool:
        """Whether `event` (a room event or an event dict) passes this filter."""
        event_type, sender, _room_id, _has_url = _event_fields(event)
        return self._matches_fields(event_type, sender)

    def filter(self, events: Iterable[E]) -> list[E]:
        """The events that pass, in their order (the limit is the caller's to apply)."""
        return [e for e in events if self.matches(e)]

    def excludes_all_types(self) -> bool:
        """Whether no event at all can pass on its type (`types: []` or `not_types: ["*"]`)."""
        return self.types == () or "*" in self.not_types

    def excludes_everything(self) -> bool:
        """Whether no event can pass, so the caller need not fetch any."""
        return self.excludes_all_types() or self.senders == frozenset()


class RoomEventFilter(EventFilter):
    """`RoomEventFilter`: an EventFilter that also selects rooms, URLs and member loading."""

    __slots__ = (
        "rooms",
        "not_rooms",
        "contains_url",
        "lazy_load_members",
        "include_redundant_members",
        "unread_thread_notifications",
    )

    rooms: frozenset[str] | None
    not_rooms: frozenset[str]
    contains_url: bool | None
    lazy_load_members: bool
    include_redundant_members: bool
    unread_thread_notifications: bool

    def __init__(self, json: Mapping[str, Any]) -> None:
        super().__init__(json)
        rooms = json.get("rooms")
        self.rooms = None if rooms is None else frozenset(rooms)
        self.not_rooms = frozenset(json.get("not_rooms", ()))
        self.contains_url = json.get("contains_url")
        self.lazy_load_members = bool(json.get("lazy_load_members", False))
        # "Does not apply unless lazy_load_members is true."
        self.include_redundant_members = self.lazy_load_members and bool(
            json.get("include_redundant_members", False)
        )
        self.unread_thread_notifications = bool(json.get("unread_thread_notifications", False))

    def allows_room(self, room_id: str) -> bool:
        return room_id not in self.not_rooms and (self.rooms is None or room_id in self.rooms)

    def matches(self, event: FilterableEvent) -> bool:
        event_type, sender, room_id, has_url = _event_fields(event)
        if room_id is not None and not self.allows_room(str(room_id)):
            return False
        if self.rooms is not None and room_id is None:
            return False
        if self.contains_url is not None and self.contains_url != has_url:
            return False
        return self._matches_fields(event_type, sender)

    def excludes_everything(self) -> bool:
        return super().excludes_everything() or self.rooms == frozenset()


class RoomFilter:
    """`RoomFilter`: which rooms /sync reports, and a RoomEventFilter per section."""

    __slots__ = (
        "rooms",
        "not_rooms",
        "include_leave",
        "ephemeral",
        "state",
        "timeline",
        "account_data",
    )

    rooms: frozenset[str] | None
    not_rooms: frozenset[str]
    include_leave: bool
    ephemeral: RoomEventFilter
    state: RoomEventFilter
    timeline: RoomEventFilter
    account_data: RoomEventFilter

    def __init__(self, json: Mapping[str, Any]) -> None:
        rooms = json.get("rooms")
        self.rooms = None if rooms is None else frozenset(rooms)
        self.not_rooms = frozenset(json.get("not_rooms", ()))
        self.include_leave = bool(json.get("include_leave", False))
        self.ephemeral = RoomEventFilter(json.get("ephemeral", {}))
        self.state = RoomEventFilter(json.get("state", {}))
        self.timeline = RoomEventFilter(json.get("timeline", {}))
        self.account_data = RoomEventFilter(json.get("account_data", {}))

    def allows_room(self, room_id: str) -> bool:
        """Whether the room is reported at all ("applied before" the section filters)."""
        return room_id not in self.not_rooms and (self.rooms is None or room_id in self.rooms)


class Filter:
    """The `Filter` of /sync and the filter API: every section's filter, and event shaping."""

    __slots__ = ("json", "event_fields", "event_format", "presence", "account_data", "room")

    json: Mapping[str, Any]
    event_fields: tuple[str, ...] | None
    event_format: str
    presence: EventFilter
    account_data: EventFilter
    room: RoomFilter

    def __init__(self, json: Mapping[str, Any]) -> None:
        self.json = json
        fields = json.get("event_fields")
        self.event_fields = None if fields is None else tuple(fields)
        self.event_format = str(json.get("event_format", "client"))
        self.presence = EventFilter(json.get("presence", {}))
        self.account_data = EventFilter(json.get("account_data", {}))
        self.room = RoomFilter(json.get("room", {}))

    @property
    def lazy_load_members(self) -> bool:
        """Lazy loading is asked for on the room state filter (spec: "Lazy-loading room members")."""
        return self.room.state.lazy_load_members

    @property
    def include_redundant_members(self) -> bool:
        return self.room.state.include_redundant_members


# The filter of a /sync that names none.
DEFAULT_FILTER = Filter({})


def parse_filter(value: object, *, parameter: str | None = None) -> Filter:
    """A `Filter` from decoded JSON, or from JSON text (a query parameter).

    Errors are M_BAD_JSON (M_NOT_JSON for text that is not JSON), or, when
    `parameter` names the query parameter the filter came in,
    M_INVALID_PARAM; the message says which key is wrong and why.
    """
    return Filter(_validate(_FILTER_VALIDATOR, value, "filter", parameter))


def parse_room_event_filter(value: object, *, parameter: str | None = None) -> RoomEventFilter:
    """A `RoomEventFilter` (the `filter` of /messages and /context); errors as `parse_filter`."""
    return RoomEventFilter(_validate(_ROOM_EVENT_FILTER_VALIDATOR, value, "filter", parameter))

