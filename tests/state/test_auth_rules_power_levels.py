"""Power levels: reading them, and the rule "If type is m.room.power_levels", per room version.

Spec: server-server API "Definitions"; m.room.power_levels schema; rooms
fragments v1-stringy-power-levels.md and v1-floaty-power-levels.md; rooms
v10 (integers only), v12 (creators: infinite power, never listed in users).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from homeserver.state.auth_rules import (
    CREATOR_POWER_LEVEL,
    AuthError,
    PowerLevels,
    get_named_level,
    get_required_power_level,
    get_room_creators,
    get_user_power_level,
    parse_power_level,
)
from homeserver.types.room_versions import V1, V5, V6, V9, V10, V11, V12, RoomVersion
from tests.state.room_builder import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    RoomBuilder,
    make_room,
    power_levels_content,
    versions,
)

STRINGY = versions(lambda v: not v.auth.integer_power_levels)
INTEGER_ONLY = versions(lambda v: v.auth.integer_power_levels)
FLOATY = versions(lambda v: not v.event_format.strict_canonical_json)
NOTIFICATIONS_CHECKED = versions(lambda v: v.auth.limit_notifications_power_levels)
NOTIFICATIONS_UNCHECKED = versions(lambda v: not v.auth.limit_notifications_power_levels)
CREATOR_POWER = versions(lambda v: v.auth.creator_power)
NO_CREATOR_POWER = versions(lambda v: not v.auth.creator_power)


def forbidden(room: RoomBuilder, content: dict[str, Any], match: str, sender: str = ALICE) -> None:
    event = room.build("m.room.power_levels", sender, content, "")
    with pytest.raises(AuthError, match=match):
        room.check(event)


def allowed(room: RoomBuilder, content: dict[str, Any], sender: str = ALICE) -> None:
    room.check(room.build("m.room.power_levels", sender, content, ""))


def current(room: RoomBuilder) -> dict[str, Any]:
    return dict(room.state[("m.room.power_levels", "")].content)


# --- parsing levels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100", 100),
        ("000100", 100),
        ("+100", 100),
        ("-100", -100),
        (" 100 ", 100),
        (" -0050\n", -50),
        ("1.5", None),
        ("1e3", None),
        ("", None),
        ("--1", None),
        ("0x10", None),
        ("1_000", None),
        (True, None),
        (None, None),
        ([50], None),
    ],
)
def test_v1_to_v9_accept_integer_strings(value: object, expected: int | None) -> None:
    """v1-v9: levels may be strings of a base-10 integer with a sign and surrounding spaces."""
    assert parse_power_level(V9, value) == expected
    assert parse_power_level(V10, value) is None


@pytest.mark.parametrize(
    ("value", "v5", "v6"),
    [
        (50.57, 50, None),
        (-50.5, -50, None),
        (5.114698e4, 51146, None),
        (math.inf, None, None),
        (math.nan, None, None),
    ],
)
def test_v1_to_v5_accept_finite_floats(value: float, v5: int | None, v6: int | None) -> None:
    """v1-v5 (no canonical JSON): floats truncate at the decimal point; non-finite are invalid.
    v6 enforces canonical JSON, so floats are not levels there."""
    assert parse_power_level(V1, value) == v5
    assert parse_power_level(V5, value) == v5
    assert parse_power_level(V6, value) == v6


@pytest.mark.parametrize("v", versions())
def test_integers_are_levels_everywhere(v: RoomVersion) -> None:
    """Plain integers are levels in every version; booleans never."""
    assert parse_power_level(v, -7) == -7
    assert parse_power_level(v, 2**53 - 1) == 2**53 - 1
    assert parse_power_level(v, False) is None


# --- reading levels ------------------------------------------------------------------------


@pytest.mark.parametrize("v", NO_CREATOR_POWER)
def test_without_power_levels_creator_has_100(v: RoomVersion) -> None:
    """v1-v11: "If the room contains no m.room.power_levels event, the room's creator has a power
    level of 100, and all other users have a power level of 0."."""
    room = RoomBuilder(v)
    room.create()
    assert get_user_power_level(v, ALICE, room.state) == 100
    assert get_user_power_level(v, BOB, room.state) == 0


@pytest.mark.parametrize("v", CREATOR_POWER)
def test_v12_creators_have_infinite_power(v: RoomVersion) -> None:
    """v12: creators (sender + additional_creators) have infinite power, with or without power
    levels; everyone else 0 without power levels."""
    room = RoomBuilder(v)
    room.create({"additional_creators": [BOB]})
    assert get_room_creators(v, room.state[("m.room.create", "")]) == {ALICE, BOB}
    assert get_user_power_level(v, ALICE, room.state) == CREATOR_POWER_LEVEL
    assert get_user_power_level(v, BOB, room.state) == math.inf
    assert get_user_power_level(v, CAROL, room.state) == 0
    room.join(ALICE)
    room.set_power_levels({"users": {CAROL: 100}, "users_default": 10})
    assert get_user_power_level(v, BOB, room.state) == math.inf
    assert get_user_power_level(v, CAROL, room.state) == 100
    assert get_user_power_level(v, DAVE, room.state) == 10


@pytest.mark.parametrize("v", versions())
def test_creators_per_version(v: RoomVersion) -> None:
    """The creator is content.creator (v1-v10), the sender (v11+), plus additional_creators (v12)."""
    room = RoomBuilder(v)
    create = room.create({"creator": DAVE, "additional_creators": [BOB]})
    expected = {DAVE} if not v.auth.implicit_room_creator else {ALICE}
    if v.auth.creator_power:
        expected.add(BOB)
    assert get_room_creators(v, create) == expected
    assert get_room_creators(v, None) == frozenset()


@pytest.mark.parametrize("v", versions())
def test_named_levels_and_defaults(v: RoomVersion) -> None:
    """Named levels default to invite 0, kick/ban/redact 50, state_default 50, events_default 0,
    both with an empty power levels event and with none at all; listed values win."""
    room = RoomBuilder(v)
    room.create()
    defaults = {
        "invite": 0,
        "kick": 50,
        "ban": 50,
        "redact": 50,
        "state_default": 50,
        "events_default": 0,
        "users_default": 0,
    }
    for name, level in defaults.items():
        assert get_named_level(v, room.state, name) == level
    room.join(ALICE)
    room.set_power_levels(power_levels_content(v, kick=20))
    assert get_named_level(v, room.state, "kick") == 20
    assert get_named_level(v, room.state, "ban") == 50


@pytest.mark.parametrize("v", versions())
def test_required_power_level(v: RoomVersion) -> None:
    """Spec: "The event type is either listed explicitly in the events section or given by either
    state_default or events_default depending on if the event is a state event or not."."""
    room = make_room(v, events={"m.room.name": 70}, state_default=40, events_default=5)
    assert get_required_power_level(v, room.state, "m.room.name", "") == 70
    assert get_required_power_level(v, room.state, "m.room.name", None) == 70
    assert get_required_power_level(v, room.state, "m.room.topic", "") == 40
    assert get_required_power_level(v, room.state, "m.room.message", None) == 5


@pytest.mark.parametrize("v", STRINGY)
def test_v1_to_v9_stringy_levels_are_read(v: RoomVersion) -> None:
    """v1-v9: a power levels event with string values (the spec's example) is read as integers."""
    room = make_room(
        v,
        power_levels={
            "ban": "50",
            "events": {"m.room.power_levels": "100"},
            "events_default": "0",
            "state_default": "50",
            "users": {ALICE: "100"},
            "users_default": "0",
        },
    )
    levels = PowerLevels.from_auth_events(v, room.state)
    assert levels.named_level("ban") == 50
    assert levels.required_level("m.room.power_levels", "") == 100
    expected = math.inf if v.auth.creator_power else 100
    assert levels.user_level(ALICE) == expected


# --- "If type is m.room.power_levels": validation of the new content ---------------------------


@pytest.mark.parametrize("v", versions())
def test_first_power_levels_event_allowed(v: RoomVersion) -> None:
    """Spec: "If there is no previous m.room.power_levels event in the room, allow." (any levels)."""
    room = RoomBuilder(v)
    room.create()
    room.join(ALICE)
    allowed(room, {"users": {BOB: 1000}, "ban": 1000})


@pytest.mark.parametrize("v", INTEGER_ONLY)
@pytest.mark.parametrize(
    "name", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
def test_v10_up_named_levels_must_be_integers(v: RoomVersion, name: str) -> None:
    """v10+: "If any of the properties users_default, events_default, state_default, ban, redact,
    kick, or invite in content are present and not an integer, reject." (even the first event)."""
    room = RoomBuilder(v)
    room.create()
    room.join(ALICE)
    forbidden(room, {name: "50"}, f"{name} is present and not an integer")
    allowed(room, {name: 50})


@pytest.mark.parametrize("v", INTEGER_ONLY)
@pytest.mark.parametrize("name", ["events", "notifications"])
@pytest.mark.parametrize("value", [{"x": "50"}, {"x": True}, ["x"], 50])
def test_v10_up_events_and_notifications_must_map_to_integers(
    v: RoomVersion, name: str, value: Any
) -> None:
    """v10+: "If either of the properties events or notifications in content are present and not
    an object with values that are integers, reject."."""
    room = make_room(v)
    forbidden(room, dict(current(room), **{name: value}), "not an object with values that are")
    allowed(room, dict(current(room), **{name: {"x": 50}}))


@pytest.mark.parametrize("v", STRINGY)
def test_v1_to_v9_string_levels_allowed(v: RoomVersion) -> None:
    """v1-v9: string levels are allowed (and compared as integers) in all the level fields."""
    room = make_room(v)
    content = current(room)
    users = {k: str(val) for k, val in content["users"].items()}
    allowed(
        room,
        dict(
            content,
            users=dict(users, **{BOB: " 50 "}),
            ban="60",
            events={"m.room.name": "+20"},
            notifications={"room": "50"},
        ),
    )


@pytest.mark.parametrize("v", STRINGY)
def test_v1_to_v9_unparseable_level_change_rejected(v: RoomVersion) -> None:
    """v1-v9: a changed level that is not an integer or integer string cannot be compared: rejected."""
    room = make_room(v)
    forbidden(room, dict(current(room), kick="fifty"), "kick.*not a valid power level")
    forbidden(room, dict(current(room), events={"m.room.name": "x"}), "not a valid power level")


@pytest.mark.parametrize("v", FLOATY)
def test_v1_to_v5_float_levels_allowed(v: RoomVersion) -> None:
    """v1-v5: the spec's floaty example: 50.57 counts as 50."""
    room = make_room(v)
    room.set_power_levels(dict(current(room), users={ALICE: 100, BOB: 50.57}))
    assert get_user_power_level(v, BOB, room.state) == 50


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize(
    "key",
    ["bob", "@bob", "@:b.test", "@bob:", "@bob:bad host", 5],
    ids=["no-sigil", "no-server", "empty-local", "empty-server", "bad-server", "not-a-string"],
)
def test_users_keys_must_be_user_ids(v: RoomVersion, key: object) -> None:
    """Spec: "If the users property in content is not an object with keys that are valid user IDs ...,
    reject." (even the first power levels event)."""
    room = RoomBuilder(v)
    room.create()
    room.join(ALICE)
    content = {"users": {key: 50}} if not isinstance(key, int) else {"users": ["@bob:b.test"]}
    match = "not a valid user ID" if not isinstance(key, int) else "users is not an object"
    forbidden(room, content, match)


@pytest.mark.parametrize("v", versions())
def test_users_values_must_be_integers(v: RoomVersion) -> None:
    """Spec: "... with values that are integers [v1-v9: or a string that is an integer], reject."."""
    room = make_room(v)
    forbidden(room, dict(current(room), users={BOB: "lots"}), "not an integer")
    forbidden(room, dict(current(room), users={BOB: None}), "not an integer")
    stringy = dict(current(room), users={**current(room)["users"], BOB: "10"})
    if v.auth.integer_power_levels:
        forbidden(room, stringy, "not an integer")
    else:
        allowed(room, stringy)


@pytest.mark.parametrize("v", versions())
def test_historical_user_ids_accepted_in_users(v: RoomVersion) -> None:
    """Valid user IDs include historical localparts and IP-literal servers with ports."""
    room = make_room(v)
    users = {**current(room)["users"], "@Old_User!:[::1]:8448": 10, "@x:127.0.0.1": 5}
    allowed(room, dict(current(room), users=users))


@pytest.mark.parametrize("v", CREATOR_POWER)
@pytest.mark.parametrize("who", [ALICE, BOB])
def test_v12_users_must_not_list_creators(v: RoomVersion, who: str) -> None:
    """v12: "If the users property in content contains the sender of the m.room.create event or
    any of the additional_creators ..., reject." (the first power levels event too)."""
    room = RoomBuilder(v)
    room.create({"additional_creators": [BOB]})
    room.join(ALICE)
    forbidden(room, {"users": {who: 100}}, "lists room creator")
    allowed(room, {"users": {CAROL: 100}})


@pytest.mark.parametrize("v", NO_CREATOR_POWER)
def test_before_v12_creator_may_be_listed(v: RoomVersion) -> None:
    """Before v12 listing the creator is how they keep their 100."""
    room = make_room(v)
    allowed(room, dict(current(room), users={ALICE: 100}))


# --- "If type is m.room.power_levels": changes relative to the current event -------------------


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize(
    "name", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
def test_named_level_change_within_own_level_allowed(v: RoomVersion, name: str) -> None:
    """Changing, adding or removing a named level with both values at most the sender's is allowed."""
    level: dict[str, Any] = {name: 30}
    room = make_room(v, members=[BOB], users={BOB: 60}, **level)
    allowed(room, dict(current(room), **{name: 60}), sender=BOB)
    without = current(room)
    del without[name]
    allowed(room, without, sender=BOB)


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize(
    "name", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
def test_named_level_raised_above_own_rejected(v: RoomVersion, name: str) -> None:
    """Spec: "If the new value is higher than the sender's current power level, reject."."""
    level: dict[str, Any] = {name: 30}
    room = make_room(v, members=[BOB], users={BOB: 60}, **level)
    forbidden(room, dict(current(room), **{name: 61}), f"new value of {name}", sender=BOB)


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize(
    "name", ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"]
)
def test_named_level_above_own_cannot_be_changed(v: RoomVersion, name: str) -> None:
    """Spec: "If the current value is higher than the sender's current power level, reject." (lowering
    or removing it alike). Power levels events need 50 here, so a state_default of 70 does not
    stop Bob first."""
    level: dict[str, Any] = {name: 70}
    room = make_room(v, members=[BOB], users={BOB: 60}, events={"m.room.power_levels": 50}, **level)
    forbidden(room, dict(current(room), **{name: 10}), f"current value of {name}", sender=BOB)
    without = current(room)
    del without[name]
    forbidden(room, without, f"current value of {name}", sender=BOB)


@pytest.mark.parametrize("v", versions())
def test_unchanged_level_above_own_is_not_an_alteration(v: RoomVersion) -> None:
    """Levels above the sender's that stay the same do not stop other changes."""
    room = make_room(v, members=[BOB], users={BOB: 60}, ban=90, events={"m.room.name": 80})
    allowed(room, dict(current(room), kick=10), sender=BOB)


@pytest.mark.parametrize("v", versions())
def test_events_entries_within_own_level_allowed(v: RoomVersion) -> None:
    """Adding, changing and removing events entries at or below the sender's level is allowed."""
    room = make_room(v, members=[BOB], users={BOB: 60}, events={"m.room.topic": 50})
    allowed(room, dict(current(room), events={"m.room.topic": 60, "m.room.name": 60}), sender=BOB)
    allowed(room, dict(current(room), events={}), sender=BOB)


@pytest.mark.parametrize("v", versions())
def test_events_entry_raised_above_own_rejected(v: RoomVersion) -> None:
    """Spec: "For each entry being added to, or changed in, the events property: If the new value is
    greater than the sender's current power level, reject."."""
    room = make_room(v, members=[BOB], users={BOB: 60})
    forbidden(
        room, dict(current(room), events={"m.room.name": 61}), "new value of events", sender=BOB
    )


@pytest.mark.parametrize("v", versions())
def test_events_entry_above_own_cannot_be_changed(v: RoomVersion) -> None:
    """Spec: "For each entry being changed in, or removed from, the events property: If the current
    value is greater than the sender's current power level, reject."."""
    room = make_room(v, members=[BOB], users={BOB: 60}, events={"m.room.name": 70})
    forbidden(
        room, dict(current(room), events={"m.room.name": 0}), "current value of events", sender=BOB
    )
    forbidden(room, dict(current(room), events={}), "current value of events", sender=BOB)


@pytest.mark.parametrize("v", NOTIFICATIONS_CHECKED)
def test_v6_up_notifications_checked_like_events(v: RoomVersion) -> None:
    """v6+: the events rules also apply to notifications: no raising above one's own level, no
    changing an entry above it; within it is fine."""
    room = make_room(v, members=[BOB], users={BOB: 60}, notifications={"room": 70})
    forbidden(
        room, dict(current(room), notifications={"room": 50}), "current value of notif", sender=BOB
    )
    room2 = make_room(v, members=[BOB], users={BOB: 60})
    forbidden(
        room2, dict(current(room2), notifications={"room": 61}), "new value of notif", sender=BOB
    )
    allowed(room2, dict(current(room2), notifications={"room": 60}), sender=BOB)


@pytest.mark.parametrize("v", NOTIFICATIONS_UNCHECKED)
def test_v1_to_v5_notifications_unchecked(v: RoomVersion) -> None:
    """v1-v5: notifications are not covered by the rules: anyone allowed to send power levels may
    set them to anything."""
    room = make_room(v, members=[BOB], users={BOB: 60}, notifications={"room": 70})
    allowed(room, dict(current(room), notifications={"room": 1000}), sender=BOB)


@pytest.mark.parametrize("v", versions())
def test_user_may_lower_own_level(v: RoomVersion) -> None:
    """The sender's own entry is exempt from the "greater than or equal" rule: Bob may demote
    himself, and remove his entry."""
    room = make_room(v, members=[BOB], users={BOB: 60})
    users = current(room)["users"]
    allowed(room, dict(current(room), users={**users, BOB: 10}), sender=BOB)
    allowed(
        room, dict(current(room), users={k: u for k, u in users.items() if k != BOB}), sender=BOB
    )


@pytest.mark.parametrize("v", versions())
def test_user_may_raise_others_up_to_own_level(v: RoomVersion) -> None:
    """Adding or changing a users entry up to (not above) the sender's level is allowed."""
    room = make_room(v, members=[BOB, CAROL], users={BOB: 60, CAROL: 10})
    users = current(room)["users"]
    allowed(room, dict(current(room), users={**users, CAROL: 60, DAVE: 60}), sender=BOB)


@pytest.mark.parametrize("v", versions())
def test_user_cannot_raise_anyone_above_own_level(v: RoomVersion) -> None:
    """Spec: "For each entry being added to, or changed in, the users property: If the new value is
    greater than the sender's current power level, reject." (himself included)."""
    room = make_room(v, members=[BOB], users={BOB: 60})
    users = current(room)["users"]
    forbidden(room, dict(current(room), users={**users, DAVE: 61}), "new value for", sender=BOB)
    forbidden(room, dict(current(room), users={**users, BOB: 61}), "new value for", sender=BOB)


@pytest.mark.parametrize("v", versions())
def test_user_cannot_change_peer_or_superior(v: RoomVersion) -> None:
    """Spec: "For each entry being changed in, or removed from, the users property, other than the
    sender's own entry: If the current value is greater than or equal to the sender's current
    power level, reject." (a peer at 60 cannot be demoted or removed by Bob at 60)."""
    room = make_room(v, members=[BOB, CAROL], users={BOB: 60, CAROL: 60})
    users = current(room)["users"]
    forbidden(
        room, dict(current(room), users={**users, CAROL: 10}), "current value for", sender=BOB
    )
    forbidden(
        room,
        dict(current(room), users={k: u for k, u in users.items() if k != CAROL}),
        "current value for",
        sender=BOB,
    )


@pytest.mark.parametrize("v", CREATOR_POWER)
def test_v12_creator_may_set_any_level(v: RoomVersion) -> None:
    """v12: with infinite power, a creator may set levels above 100 (but not list creators)."""
    room = make_room(v, members=[BOB])
    allowed(room, {"users": {BOB: 2**53 - 1}, "ban": 1000, "events": {"m.room.tombstone": 150}})


@pytest.mark.parametrize("v", NO_CREATOR_POWER)
def test_before_v12_creator_is_capped_by_own_level(v: RoomVersion) -> None:
    """Before v12 the creator has just their listed 100 and cannot grant more."""
    room = make_room(v, members=[BOB])
    forbidden(room, dict(current(room), users={ALICE: 100, BOB: 101}), "new value for")


@pytest.mark.parametrize("v", [V11, V12], ids=["v11", "v12"])
def test_power_levels_event_needs_its_required_level(v: RoomVersion) -> None:
    """Power levels are state: the sender must first reach their required level (state_default
    or events["m.room.power_levels"]) before the change rules apply."""
    room = make_room(v, members=[BOB], users={BOB: 40}, events={"m.room.power_levels": 50})
    forbidden(room, current(room), "required power level", sender=BOB)
