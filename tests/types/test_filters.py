"""Event filters (client-server API "Filtering"): validation and matching."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.types.errors import Codes, MatrixError
from homeserver.types.events import make_event
from homeserver.types.filters import (
    DEFAULT_FILTER,
    DEFAULT_LIMIT,
    parse_filter,
    parse_room_event_filter,
)
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS


def room_event(**overrides: Any) -> Any:
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "content": {"body": "hi"},
        "origin_server_ts": 1000,
        "depth": 3,
        "prev_events": ["$prev"],
        "auth_events": ["$create"],
        "hashes": {"sha256": "abc"},
        "signatures": {},
    }
    pdu.update(overrides)
    return make_event(pdu, KNOWN_ROOM_VERSIONS["10"], event_id="$e")


def error_of(value: object, **kwargs: Any) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        parse_filter(value, **kwargs)
    return info.value


# --- validation


def test_empty_filter_has_the_defaults() -> None:
    """No keys: client format, all fields, timeline limit 10, no lazy loading, no leave."""
    f = parse_filter({})
    assert f.event_format == "client" and f.event_fields is None
    assert f.room.timeline.limit == DEFAULT_LIMIT
    assert not f.lazy_load_members and not f.room.include_leave
    assert DEFAULT_FILTER.room.timeline.limit == DEFAULT_LIMIT


def test_full_filter_is_read() -> None:
    """Every documented key of sync_filter.yaml lands on the model."""
    f = parse_filter(
        {
            "event_fields": ["type", "content.body"],
            "event_format": "federation",
            "presence": {"not_types": ["*"]},
            "account_data": {"types": ["m.tag"], "limit": 3},
            "room": {
                "rooms": ["!a:x"],
                "not_rooms": ["!b:x"],
                "include_leave": True,
                "state": {"lazy_load_members": True, "include_redundant_members": True},
                "timeline": {"limit": 5, "not_senders": ["@spam:x"], "contains_url": False},
                "ephemeral": {"types": []},
                "account_data": {"not_types": ["m.fully_read"]},
            },
        }
    )
    assert f.event_fields == ("type", "content.body") and f.event_format == "federation"
    assert f.presence.excludes_everything()
    assert f.account_data.limit == 3 and f.account_data.types == ("m.tag",)
    assert f.room.rooms == frozenset({"!a:x"}) and f.room.not_rooms == frozenset({"!b:x"})
    assert f.room.include_leave
    assert f.lazy_load_members and f.include_redundant_members
    assert f.room.timeline.limit == 5 and f.room.timeline.contains_url is False
    assert f.room.ephemeral.excludes_everything()
    assert f.room.account_data.not_types == ("m.fully_read",)


def test_unknown_keys_are_ignored() -> None:
    """Keys from newer versions or MSCs do not make a filter invalid (as Synapse)."""
    f = parse_filter({"org.example.new": 1, "room": {"timeline": {"org.matrix.labels": ["x"]}}})
    assert f.room.timeline.limit == DEFAULT_LIMIT


@pytest.mark.parametrize(
    "value, where, problem",
    [
        ({"room": {"timeline": {"limit": "ten"}}}, "room.timeline.limit", "expected integer"),
        ({"room": {"timeline": {"limit": -1}}}, "room.timeline.limit", "at least 0"),
        ({"room": {"timeline": {"limit": 2.5}}}, "room.timeline.limit", "expected integer"),
        ({"event_format": "xml"}, "event_format", "'xml' is not one of"),
        ({"event_fields": "type"}, "event_fields", "expected array"),
        ({"room": {"rooms": ["not-a-room"]}}, "room.rooms[0]", "must start with '!'"),
        ({"room": {"state": {"senders": ["bob"]}}}, "room.state.senders[0]", "must start with '@'"),
        ({"presence": {"types": [1]}}, "presence.types[0]", "expected string"),
        ({"room": {"include_leave": "yes"}}, "room.include_leave", "expected boolean"),
        ({"room": {"state": {"lazy_load_members": 1}}}, "room.state.lazy_load_members", "boolean"),
        ({"room": {"timeline": []}}, "room.timeline", "expected object"),
    ],
)
def test_invalid_filter_names_the_key_and_problem(value: Any, where: str, problem: str) -> None:
    """A bad filter is M_BAD_JSON with a message naming where and what is wrong."""
    error = error_of(value)
    assert error.errcode == Codes.BAD_JSON and error.status == 400
    assert f"{where}: " in error.message and problem in error.message


def test_every_problem_is_reported() -> None:
    """Several mistakes are all listed, so the client can fix them at once."""
    error = error_of({"event_format": 1, "room": {"timeline": {"limit": "x"}}})
    assert "event_format:" in error.message and "room.timeline.limit:" in error.message


def test_not_an_object_is_bad_json() -> None:
    error = error_of([{"room": {}}])
    assert error.errcode == Codes.BAD_JSON and "JSON object" in error.message


def test_json_text_is_decoded() -> None:
    """Query parameters carry the filter as JSON text."""
    assert parse_filter('{"room": {"timeline": {"limit": 2}}}').room.timeline.limit == 2


def test_bad_json_text_is_not_json() -> None:
    assert error_of("{room").errcode == Codes.NOT_JSON


def test_query_parameter_errors_are_invalid_param_and_named() -> None:
    """From a query parameter, bad text or a bad filter is M_INVALID_PARAM naming the parameter."""
    for value in ("{room", '{"room": {"timeline": {"limit": "x"}}}', "[]"):
        error = error_of(value, parameter="filter")
        assert error.errcode == Codes.INVALID_PARAM and "filter" in error.message


def test_room_event_filter_validation() -> None:
    """parse_room_event_filter checks a RoomEventFilter on its own (no `room` wrapper)."""
    f = parse_room_event_filter(
        {"limit": 20, "types": ["m.room.*"], "lazy_load_members": True, "rooms": ["!r:x"]}
    )
    assert f.limit == 20 and f.lazy_load_members and f.rooms == frozenset({"!r:x"})
    with pytest.raises(MatrixError) as info:
        parse_room_event_filter({"contains_url": "yes"}, parameter="filter")
    assert info.value.errcode == Codes.INVALID_PARAM
    assert "contains_url: expected boolean" in info.value.message


def test_include_redundant_members_needs_lazy_loading() -> None:
    """"Does not apply unless lazy_load_members is true"."""
    assert not parse_room_event_filter({"include_redundant_members": True}).include_redundant_members


def test_v12_room_ids_are_accepted() -> None:
    room_id = "!" + "A" * 43
    assert parse_filter({"room": {"rooms": [room_id]}}).room.allows_room(room_id)


# --- matching


def test_types_with_wildcards() -> None:
    """`*` matches any sequence of characters, anywhere in the pattern."""
    f = parse_room_event_filter({"types": ["m.room.*", "org.*.thing", "exact"]})
    assert f.matches({"type": "m.room.message"})
    assert f.matches({"type": "org.example.thing"})
    assert f.matches({"type": "exact"})
    assert not f.matches({"type": "exactly"})
    assert not f.matches({"type": "m.call.invite"})


def test_regex_characters_in_types_are_literal() -> None:
    f = parse_room_event_filter({"types": ["m.room.message"]})
    assert not f.matches({"type": "mXroomXmessage"})


def test_exclusions_win_over_inclusions() -> None:
    """"A matching type will be excluded even if it is listed in the types filter"."""
    f = parse_room_event_filter(
        {
            "types": ["m.*"],
            "not_types": ["m.room.member"],
            "senders": ["@a:x", "@b:x"],
            "not_senders": ["@b:x"],
            "rooms": ["!r:x", "!s:x"],
            "not_rooms": ["!s:x"],
        }
    )
    ok = {"type": "m.room.message", "sender": "@a:x", "room_id": "!r:x"}
    assert f.matches(ok)
    assert not f.matches({**ok, "type": "m.room.member"})
    assert not f.matches({**ok, "sender": "@b:x"})
    assert not f.matches({**ok, "sender": "@c:x"})
    assert not f.matches({**ok, "room_id": "!s:x"})
    assert not f.matches({**ok, "room_id": "!t:x"})


def test_contains_url() -> None:
    """true keeps only events with a string content.url; false only those without."""
    with_url = {"type": "m.room.message", "content": {"url": "mxc://x/y"}}
    bad_url = {"type": "m.room.message", "content": {"url": 5}}
    without = {"type": "m.room.message", "content": {}}
    yes = parse_room_event_filter({"contains_url": True})
    no = parse_room_event_filter({"contains_url": False})
    assert yes.filter([with_url, bad_url, without]) == [with_url]
    assert no.filter([with_url, bad_url, without]) == [bad_url, without]


def test_room_events_are_matched_like_dicts() -> None:
    """EventBase objects match on the same fields as event dicts."""
    event = room_event(content={"body": "img", "url": "mxc://x/y"})
    assert parse_room_event_filter({"senders": ["@alice:example.org"]}).matches(event)
    assert parse_room_event_filter({"contains_url": True}).matches(event)
    assert not parse_room_event_filter({"not_rooms": ["!room:example.org"]}).matches(event)
    assert not parse_room_event_filter({"types": ["m.room.member"]}).matches(event)


def test_empty_lists_exclude_everything() -> None:
    assert parse_room_event_filter({"types": []}).excludes_everything()
    assert parse_room_event_filter({"not_types": ["*"]}).excludes_everything()
    assert parse_room_event_filter({"senders": []}).excludes_everything()
    assert parse_room_event_filter({"rooms": []}).excludes_everything()
    assert not parse_room_event_filter({}).excludes_everything()
    assert parse_room_event_filter({"types": []}).filter([{"type": "a"}]) == []


def test_event_without_type_does_not_match_type_lists() -> None:
    assert not parse_room_event_filter({"types": ["*"]}).matches({"content": {}})
    assert not parse_room_event_filter({"not_types": ["x"]}).matches({"content": {}})
    assert parse_room_event_filter({}).matches({"content": {}})


def test_filter_keeps_order() -> None:
    events = [{"type": t} for t in ("a", "b", "a2", "c")]
    assert parse_room_event_filter({"types": ["a*"]}).filter(events) == [events[0], events[2]]


def test_room_filter_selects_rooms() -> None:
    f = parse_filter({"room": {"rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"]}})
    assert f.room.allows_room("!a:x")
    assert not f.room.allows_room("!b:x") and not f.room.allows_room("!c:x")
