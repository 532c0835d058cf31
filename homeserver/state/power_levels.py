"""Power levels as the authorization rules read and check them.

Spec: server-server API "Checks performed on receipt of a PDU" > "Definitions"
(required power level; invite, kick, ban and redact levels); the
`m.room.power_levels` event schema (defaults, the creator's 100 when there is
no power levels event); rooms/fragments/v1-stringy-power-levels.md and
v1-floaty-power-levels.md (v1..v9 accept strings, v1..v5 floats); rooms v10
(integers only); rooms v12 (MSC4289: room creators have infinite power); and
the rule "If type is m.room.power_levels" of every room version's
authorization rules (`check_power_levels_event`).

Reading is lenient (a level that does not parse counts as absent, so its
default applies); checking a new m.room.power_levels event is strict, as the
rules say. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from homeserver.state.auth_common import (
    CREATE_KEY,
    POWER_LEVELS_KEY,
    AuthError,
    StateKey,
    is_valid_user_id,
)
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion

PowerLevel: TypeAlias = int | float
"""A user's power level: an int, or `CREATOR_POWER_LEVEL` for v12 room creators."""

CREATOR_POWER_LEVEL: Final[float] = math.inf
"""v12 (MSC4289): "The power level of room creators is infinitely high"."""

# The levels named at the top level of m.room.power_levels content, with their
# defaults (event schema: "Defaults to ... if unspecified"; the same defaults
# apply when the room has no power levels event at all).
NAMED_LEVEL_DEFAULTS: Final[Mapping[str, int]] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}

# v1 "the room's creator has a power level of 100" when there is no power levels event.
_CREATOR_LEVEL_WITHOUT_POWER_LEVELS: Final = 100

# v1-stringy-power-levels: base-10 digits, optional single sign; the
# surrounding whitespace is stripped first.
_STRINGY_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)


def parse_power_level(room_version: RoomVersion, value: object) -> int | None:
    """The integer a power level value stands for in this room version, or None if invalid.

    v10+ (`integer_power_levels`): only JSON integers. v1..v9 also accept
    strings holding a base-10 integer ("+100", " 0100 ") and, in versions
    that do not enforce canonical JSON (v1..v5), finite floats truncated at
    the decimal point. Booleans are never power levels.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if room_version.auth.integer_power_levels:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        return int(stripped) if _STRINGY_INT.fullmatch(stripped) else None
    if isinstance(value, float) and not room_version.event_format.strict_canonical_json:
        return int(value) if math.isfinite(value) else None
    return None


def get_room_creators(room_version: RoomVersion, create_event: EventBase | None) -> frozenset[str]:
    """The room's creators according to its m.room.create event.

    v1..v10: `content.creator`. v11+ (`implicit_room_creator`): the create
    event's `sender`. v12+ (`creator_power`): the sender plus every user ID
    in `content.additional_creators`. Empty if there is no create event.
    """
    if create_event is None:
        return frozenset()
    if not room_version.auth.implicit_room_creator:
        creator = create_event.content.get("creator")
        return frozenset((creator,)) if isinstance(creator, str) else frozenset()
    creators = {create_event.sender}
    if room_version.auth.creator_power:
        additional = create_event.content.get("additional_creators")
        if isinstance(additional, list):
            creators.update(u for u in additional if isinstance(u, str))
    return frozenset(creators)


@dataclass(frozen=True, slots=True)
class PowerLevels:
    """The power levels in force: the room's creators and its m.room.power_levels content.

    `content` is None when the room has no m.room.power_levels event, which
    the rules treat differently from an event with empty content (the v1..v11
    creator then has level 100).
    """

    room_version: RoomVersion
    creators: frozenset[str]
    content: Mapping[str, Any] | None

    @classmethod
    def from_events(
        cls,
        room_version: RoomVersion,
        create_event: EventBase | None,
        power_levels_event: EventBase | None,
    ) -> PowerLevels:
        return cls(
            room_version=room_version,
            creators=get_room_creators(room_version, create_event),
            content=power_levels_event.content if power_levels_event is not None else None,
        )

    @classmethod
    def from_auth_events(
        cls, room_version: RoomVersion, auth_events: Mapping[StateKey, EventBase]
    ) -> PowerLevels:
        """From a state map holding the m.room.create and m.room.power_levels events (if any)."""
        return cls.from_events(
            room_version, auth_events.get(CREATE_KEY), auth_events.get(POWER_LEVELS_KEY)
        )

    def _level(self, value: object) -> int | None:
        return parse_power_level(self.room_version, value)

    def user_level(self, user_id: str) -> PowerLevel:
        """The user's power level (the spec's "the sender's power level", "the target's")."""
        if self.room_version.auth.creator_power and user_id in self.creators:
            return CREATOR_POWER_LEVEL
        if self.content is None:
            if not self.room_version.auth.creator_power and user_id in self.creators:
                return _CREATOR_LEVEL_WITHOUT_POWER_LEVELS
            return NAMED_LEVEL_DEFAULTS["users_default"]
        users = self.content.get("users")
        if isinstance(users, Mapping) and user_id in users:
            level = self._level(users[user_id])
            if level is not None:
                return level
        return self.named_level("users_default")

    def named_level(self, name: str) -> int:
        """A top-level level such as "invite", "kick", "ban", "redact", with its default."""
        default = NAMED_LEVEL_DEFAULTS.get(name, 0)
        if self.content is None:
            return default
        level = self._level(self.content.get(name))
        return default if level is None else level

    def required_level(self, event_type: str, state_key: str | None) -> int:
        """The event type's "required power level": `events`, else state_default / events_default."""
        if self.content is not None:
            events = self.content.get("events")
            if isinstance(events, Mapping) and event_type in events:
                level = self._level(events[event_type])
                if level is not None:
                    return level
        return self.named_level("state_default" if state_key is not None else "events_default")


def get_user_power_level(
    room_version: RoomVersion, user_id: str, auth_events: Mapping[StateKey, EventBase]
) -> PowerLevel:
    """The user's power level given a state map with the create and power levels events."""
    return PowerLevels.from_auth_events(room_version, auth_events).user_level(user_id)


def get_named_level(
    room_version: RoomVersion, auth_events: Mapping[StateKey, EventBase], name: str
) -> int:
    """A named level ("invite", "kick", "ban", "redact", "state_default", ...) with its default."""
    return PowerLevels.from_auth_events(room_version, auth_events).named_level(name)


def get_required_power_level(
    room_version: RoomVersion,
    auth_events: Mapping[StateKey, EventBase],
    event_type: str,
    state_key: str | None,
) -> int:
    """The required power level to send an event of this type (state if `state_key` is not None)."""
    return PowerLevels.from_auth_events(room_version, auth_events).required_level(
        event_type, state_key
    )


# --- "If type is m.room.power_levels" ------------------------------------------

_INT_FIELDS: Final = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)


def _changed_entries(
    room_version: RoomVersion, current: object, new: object, what: str
) -> list[tuple[str, int | None, int | None]]:
    """(key, current value, new value) for each entry added to, changed in or removed from a map.

    Values that do not parse count as absent on the current side; on the new
    side they make the event invalid (it cannot be compared).
    """
    cur = current if isinstance(current, Mapping) else {}
    nxt = new if isinstance(new, Mapping) else {}
    changes = []
    for key in sorted(set(cur) | set(nxt)):
        old_level = parse_power_level(room_version, cur[key]) if key in cur else None
        new_level = None
        if key in nxt:
            new_level = parse_power_level(room_version, nxt[key])
            if new_level is None:
                raise AuthError(f"m.room.power_levels: {what}[{key!r}] is not a valid power level")
        if old_level != new_level:
            changes.append((key, old_level, new_level))
    return changes


def _is_int_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value.values()
    )


def check_power_levels_event(
    room_version: RoomVersion,
    event: EventBase,
    current_power_levels_event: EventBase | None,
    sender_level: PowerLevel,
    creators: frozenset[str],
) -> None:
    """Rule "If type is m.room.power_levels" (v1: rule 10, v6..v11: 9, v12: 10); AuthError if not allowed.

    `sender_level` is the sender's power level before the event, `creators`
    the room's creators (only used from v12).
    """
    content = event.content
    auth = room_version.auth

    if auth.integer_power_levels:
        # Since v10: "If any of the properties users_default, events_default,
        # state_default, ban, redact, kick, or invite in content are present
        # and not an integer, reject."
        for name in _INT_FIELDS:
            if name in content and parse_power_level(room_version, content[name]) is None:
                raise AuthError(f"m.room.power_levels: {name} is present and not an integer")
        # Since v10: "If either of the properties events or notifications in
        # content are present and not an object with values that are integers,
        # reject."
        for name in ("events", "notifications"):
            if name in content and not _is_int_map(content[name]):
                raise AuthError(
                    f"m.room.power_levels: {name} is present and not an object "
                    "with values that are integers"
                )

    # Since v1: "If the users property in content is not an object with keys
    # that are valid user IDs with values that are integers (or a string that
    # is an integer [v1..v9]), reject."
    users = content.get("users", {})
    if not isinstance(users, Mapping):
        raise AuthError("m.room.power_levels: users is not an object")
    for user_id, level in users.items():
        if not is_valid_user_id(user_id):
            raise AuthError(f"m.room.power_levels: users key {user_id!r} is not a valid user ID")
        if parse_power_level(room_version, level) is None:
            raise AuthError(f"m.room.power_levels: users value for {user_id!r} is not an integer")

    # Since v12: "If the users property in content contains the sender of the
    # m.room.create event or any of the additional_creators array (if
    # present) from the content of the m.room.create event, reject."
    if auth.creator_power:
        listed = sorted(creators.intersection(users))
        if listed:
            raise AuthError(f"m.room.power_levels: users lists room creator(s) {listed}")

    # "If there is no previous m.room.power_levels event in the room, allow."
    if current_power_levels_event is None:
        return
    current = current_power_levels_event.content

    # "For the properties users_default, events_default, state_default, ban,
    # redact, kick, invite check if they were added, changed or removed. For
    # each found alteration: If the current value is higher than the sender's
    # current power level, reject. If the new value is higher than the
    # sender's current power level, reject."
    for name in _INT_FIELDS:
        for _, old_level, new_level in _changed_entries(
            room_version,
            {name: current[name]} if name in current else {},
            {name: content[name]} if name in content else {},
            name,
        ):
            if old_level is not None and old_level > sender_level:
                raise AuthError(
                    f"m.room.power_levels: the current value of {name} ({old_level}) "
                    "is higher than the sender's current power level"
                )
            if new_level is not None and new_level > sender_level:
                raise AuthError(
                    f"m.room.power_levels: the new value of {name} ({new_level}) "
                    "is higher than the sender's current power level"
                )

    # "For each entry being changed in, or removed from, the events [v6+: or
    # notifications] properties: If the current value is greater than the
    # sender's current power level, reject."
    # "For each entry being added to, or changed in, the events [v6+: or
    # notifications] properties: If the new value is greater than the
    # sender's current power level, reject."
    maps = ["events"]
    if auth.limit_notifications_power_levels:
        maps.append("notifications")
    for name in maps:
        for key, old_level, new_level in _changed_entries(
            room_version, current.get(name), content.get(name), name
        ):
            if old_level is not None and old_level > sender_level:
                raise AuthError(
                    f"m.room.power_levels: the current value of {name}[{key!r}] ({old_level}) "
                    "is greater than the sender's current power level"
                )
            if new_level is not None and new_level > sender_level:
                raise AuthError(
                    f"m.room.power_levels: the new value of {name}[{key!r}] ({new_level}) "
                    "is greater than the sender's current power level"
                )

    # "For each entry being changed in, or removed from, the users property,
    # other than the sender's own entry: If the current value is greater than
    # or equal to the sender's current power level, reject."
    # "For each entry being added to, or changed in, the users property: If
    # the new value is greater than the sender's current power level, reject."
    for user_id, old_level, new_level in _changed_entries(
        room_version, current.get("users"), users, "users"
    ):
        if user_id != event.sender and old_level is not None and old_level >= sender_level:
            raise AuthError(
                f"m.room.power_levels: the current value for {user_id} ({old_level}) is "
                "greater than or equal to the sender's current power level"
            )
        if new_level is not None and new_level > sender_level:
            raise AuthError(
                f"m.room.power_levels: the new value for {user_id} ({new_level}) is "
                "greater than the sender's current power level"
            )

    # "Otherwise, allow."
