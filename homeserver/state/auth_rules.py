"""The authorization rules for room events, per room version, and the auth events selection.

Spec: server-server API "Authorisation rules" and "Auth events selection";
the rules themselves are in each room version (rooms/fragments/v1-auth-rules.md
for v1/v2, v3-auth-rules.md for v3..v5, rooms/v6.md, v7.md,
fragments/v8-auth-rules.md for v8/v9, rooms/v10.md, v11.md, v12.md).

The rules are ordered as in the spec, each block opening with its words, and
branch on `RoomVersion.auth` flags. Entry points:

- `check_auth_rules(room_version, event, auth_events)`: the rules, checked
  against a (type, state_key)-keyed map of events: the event's own auth events
  (receipt step 4), the state before it (step 5), the current state (step 6,
  soft failure), or a partial state during state resolution. The map must
  hold the m.room.create event in every room version, v12 included (v12 events
  do not list it in `auth_events`; its ID comes from the room ID, see
  `create_event_id_for_room`). Extra entries are ignored.
- `check_auth_events_selection(room_version, event, auth_events)`: the
  rule "Considering the event's auth_events", on the event's actual list of
  auth events (duplicates, unexpected entries, rejected entries, room ID).
- `auth_types_for_event(room_version, event)`: which (type, state_key) pairs
  of the state before an event belong in its `auth_events`; `select_auth_events`
  picks them out of a state map for `check_auth_rules`.

Power levels are in `homeserver.state.power_levels`, membership rules in
`homeserver.state.membership_rules`. Pure: no I/O; signatures other than the
third-party invite's `signed` block are checked before these rules run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from homeserver.state.auth_common import (
    ALIASES,
    AUTHORISING_USER,
    CREATE,
    CREATE_KEY,
    INVITE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK,
    MEMBER,
    POWER_LEVELS,
    POWER_LEVELS_KEY,
    REDACTION,
    THIRD_PARTY_INVITE,
    AuthError,
    StateKey,
    domain_of,
    is_valid_user_id,
    membership_of,
)
from homeserver.state.membership_rules import check_member_event, join_authorising_server
from homeserver.state.power_levels import (
    CREATOR_POWER_LEVEL,
    NAMED_LEVEL_DEFAULTS,
    PowerLevel,
    PowerLevels,
    check_power_levels_event,
    get_named_level,
    get_required_power_level,
    get_room_creators,
    get_user_power_level,
    parse_power_level,
)
from homeserver.types.events import EventBase
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

__all__ = [
    "CREATOR_POWER_LEVEL",
    "NAMED_LEVEL_DEFAULTS",
    "AuthError",
    "PowerLevel",
    "PowerLevels",
    "StateKey",
    "auth_types_for_event",
    "auth_types_from_fields",
    "check_auth_events_selection",
    "check_auth_rules",
    "create_event_id_for_room",
    "get_named_level",
    "get_required_power_level",
    "get_room_creators",
    "get_user_power_level",
    "join_authorising_server",
    "parse_power_level",
    "select_auth_events",
]


# --- auth events selection -----------------------------------------------------


def auth_types_from_fields(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> set[StateKey]:
    """`auth_types_for_event` for an event that is not built yet (a handler's draft).

    Spec: server-server API "Auth events selection". Malformed content (a
    missing membership, a `third_party_invite` without `signed.token`) adds
    nothing: the rules reject such an event anyway.
    """
    # "The auth_events for the m.room.create event in a room is empty."
    if event_type == CREATE:
        return set()
    # "The current m.room.power_levels event, if any. The sender's current
    # m.room.member event, if any."
    types: set[StateKey] = {POWER_LEVELS_KEY, (MEMBER, sender)}
    # "Depending on the room version, the m.room.create event": every version
    # before v12; v12 (MSC4291) derives it from the room ID instead.
    if not room_version.auth.room_id_from_create_event:
        types.add(CREATE_KEY)
    # "If type is m.room.member:"
    if event_type == MEMBER and state_key is not None:
        membership = membership_of(content)
        # "The target's current m.room.member event, if any."
        types.add((MEMBER, state_key))
        # "If membership is join, invite or knock, the current
        # m.room.join_rules event, if any."
        if membership in (JOIN, INVITE, KNOCK):
            types.add(JOIN_RULES_KEY)
        # "If membership is invite and content contains a third_party_invite
        # property, the current m.room.third_party_invite event with state_key
        # matching content.third_party_invite.signed.token, if any."
        if membership == INVITE:
            token = _third_party_invite_token(content)
            if token is not None:
                types.add((THIRD_PARTY_INVITE, token))
        # "If membership is join, content.join_authorised_via_users_server is
        # present, and the room version supports restricted rooms, then the
        # m.room.member event with state_key matching
        # content.join_authorised_via_users_server."
        if membership == JOIN and room_version.auth.restricted_join_rule:
            authoriser = content.get(AUTHORISING_USER)
            if isinstance(authoriser, str):
                types.add((MEMBER, authoriser))
    return types


def _third_party_invite_token(content: Mapping[str, Any]) -> str | None:
    third_party_invite = content.get("third_party_invite")
    if not isinstance(third_party_invite, Mapping):
        return None
    signed = third_party_invite.get("signed")
    if not isinstance(signed, Mapping):
        return None
    token = signed.get("token")
    return token if isinstance(token, str) else None


def auth_types_for_event(room_version: RoomVersion, event: EventBase) -> set[StateKey]:
    """Which (type, state_key) pairs from the state before `event` belong in its auth_events.

    Spec: server-server API "Auth events selection". Empty for m.room.create;
    never includes m.room.create from v12.
    """
    return auth_types_from_fields(
        room_version, event.type, event.sender, event.state_key, event.content
    )


def create_event_id_for_room(room_id: str) -> str:
    """v12+ (MSC4291): the create event's ID, from the room ID (`!` becomes `$`)."""
    if not room_id.startswith("!"):
        raise ValueError(f"{room_id!r} is not a room ID")
    return "$" + room_id[1:]


def select_auth_events(
    room_version: RoomVersion, event: EventBase, state: Mapping[StateKey, EventBase]
) -> dict[StateKey, EventBase]:
    """The entries of `state` that `check_auth_rules` needs for `event`.

    The auth events selection, plus the m.room.create event in v12 (where it
    is not selected but the rules still read it).
    """
    keys = auth_types_for_event(room_version, event)
    keys.add(CREATE_KEY)
    return {key: state[key] for key in keys if key in state}


def check_auth_events_selection(
    room_version: RoomVersion,
    event: EventBase,
    auth_events: Sequence[EventBase],
    rejected_event_ids: Collection[str] = frozenset(),
) -> None:
    """The rule "Considering the event's auth_events"; raises AuthError if it fails.

    `auth_events` are the events named in `event.auth_event_ids` (in any
    order); `rejected_event_ids` those of them that were rejected on receipt.
    Raises ValueError if an auth event was not supplied (fetch them first).
    Does nothing for m.room.create, whose rule does not look at auth events.
    """
    if event.type == CREATE:
        return
    by_id = {e.event_id: e for e in auth_events}
    expected = auth_types_for_event(room_version, event)
    seen: set[StateKey] = set()
    for event_id in event.auth_event_ids:
        auth_event = by_id.get(event_id)
        if auth_event is None:
            raise ValueError(f"auth event {event_id} of {event.event_id} was not supplied")
        if auth_event.state_key is None:
            raise AuthError(f"auth_events: {event_id} is not a state event")
        key = (auth_event.type, auth_event.state_key)
        # "If there are duplicate entries for a given type and state_key pair,
        # reject."
        if key in seen:
            raise AuthError(f"auth_events: there are duplicate entries for {key}")
        seen.add(key)
        # "If there are entries whose type and state_key don't match those
        # specified by the auth events selection algorithm described in the
        # server specification, reject." (v12: m.room.create must not be
        # selected; it is not in `expected`.)
        if key not in expected:
            raise AuthError(
                f"auth_events: the entry {key} does not match the auth events selection"
            )
        # "If there are entries which were themselves rejected under the checks
        # performed on receipt of a PDU, reject."
        if event_id in rejected_event_ids:
            raise AuthError(f"auth_events: the entry {event_id} was itself rejected")
        # "If any event in auth_events has a room_id which does not match that
        # of the event being authorised, reject."
        if auth_event.room_id != event.room_id:
            raise AuthError(
                f"auth_events: {event_id} has a room_id which does not match the event's"
            )
    # v1..v11: "If there is no m.room.create event among the entries, reject."
    if not room_version.auth.room_id_from_create_event and CREATE_KEY not in seen:
        raise AuthError("auth_events: there is no m.room.create event among the entries")


# --- the rules -----------------------------------------------------------------


def check_auth_rules(
    room_version: RoomVersion,
    event: EventBase,
    auth_events: Mapping[StateKey, EventBase],
) -> None:
    """Check `event` against the authorization rules of `room_version`; AuthError if not allowed.

    `auth_events` maps (type, state_key) to the events to check against (see
    the module docstring); it must include m.room.create, in v12 too. The
    rule "Considering the event's auth_events" that looks at the event's own
    list is `check_auth_events_selection`; the parts of it that make sense
    for a map (the create event is present; entries are from this room) are
    checked here too.
    """
    auth = room_version.auth

    # "If type is m.room.create:"
    if event.type == CREATE:
        _check_create_event(room_version, event)
        return

    create = auth_events.get(CREATE_KEY)
    if auth.room_id_from_create_event:
        # Since v12: "If the event's room_id is not an event ID for an accepted
        # (not rejected) m.room.create event, with the sigil ! instead of $,
        # reject." (Acceptance is the caller's: rejected events are not passed.)
        if create is None or create.event_id != create_event_id_for_room(event.room_id):
            raise AuthError(
                "the event's room_id is not the event ID of the m.room.create event "
                "with the sigil ! instead of $"
            )
    elif create is None:
        # v1..v11: "If there is no m.room.create event among the entries, reject."
        raise AuthError("there is no m.room.create event among the auth events")

    # "If any event in auth_events has a room_id which does not match that of
    # the event being authorised, reject." (for the entries the rules read)
    for key in auth_types_for_event(room_version, event) | {CREATE_KEY}:
        auth_event = auth_events.get(key)
        if auth_event is not None and auth_event.room_id != event.room_id:
            raise AuthError(
                f"auth event {auth_event.event_id} for {key} has a room_id which does "
                "not match that of the event being authorised"
            )

    # "If the content of the m.room.create event in the room state has the
    # property m.federate set to false, and the sender domain of the event
    # does not match the sender domain of the create event, reject."
    if create.content.get("m.federate", True) is False and domain_of(event.sender) != domain_of(
        create.sender
    ):
        raise AuthError(
            "m.federate is false and the sender domain does not match the create event's"
        )

    # v1..v5: "If type is m.room.aliases:"
    if auth.special_case_aliases and event.type == ALIASES:
        # "If event has no state_key, reject."
        if event.state_key is None:
            raise AuthError("m.room.aliases: the event has no state_key")
        # "If sender's domain doesn't match state_key, reject."
        if domain_of(event.sender) != event.state_key:
            raise AuthError("m.room.aliases: the sender's domain doesn't match state_key")
        # "Otherwise, allow."
        return

    levels = PowerLevels.from_auth_events(room_version, auth_events)

    # "If type is m.room.member:"
    if event.type == MEMBER:
        check_member_event(room_version, event, auth_events, levels)
        return

    # "If the sender's current membership state is not join, reject."
    sender_member = auth_events.get((MEMBER, event.sender))
    if sender_member is None or membership_of(sender_member.content) != JOIN:
        raise AuthError("the sender's current membership state is not join")

    sender_level = levels.user_level(event.sender)

    # "If type is m.room.third_party_invite: Allow if and only if sender's
    # current power level is greater than or equal to the invite level."
    if event.type == THIRD_PARTY_INVITE:
        if sender_level >= levels.named_level("invite"):
            return
        raise AuthError(
            "m.room.third_party_invite: the sender's power level is below the invite level"
        )

    # "If the event type's required power level is greater than the sender's
    # power level, reject."
    required = levels.required_level(event.type, event.state_key)
    if required > sender_level:
        raise AuthError(
            f"the required power level for {event.type} ({required}) is greater than "
            f"the sender's power level ({sender_level})"
        )

    # "If the event has a state_key that starts with an @ and does not match
    # the sender, reject."
    if event.state_key is not None and event.state_key.startswith("@"):
        if event.state_key != event.sender:
            raise AuthError("the state_key starts with an @ and does not match the sender")

    # "If type is m.room.power_levels:"
    if event.type == POWER_LEVELS:
        check_power_levels_event(
            room_version,
            event,
            auth_events.get(POWER_LEVELS_KEY),
            sender_level,
            levels.creators,
        )
        return

    # v1, v2: "If type is m.room.redaction:" (removed in v3, whose event IDs
    # no longer carry a domain; from v3 the redact level is not considered by
    # the auth rules, only when the redaction is applied).
    if event.type == REDACTION and room_version.event_format.format is EventFormat.V1:
        # "If the sender's power level is greater than or equal to the redact
        # level, allow."
        if sender_level >= levels.named_level("redact"):
            return
        # "If the domain of the event_id of the event being redacted is the
        # same as the domain of the event_id of the m.room.redaction, allow."
        if event.redacts is not None and domain_of(event.redacts) == domain_of(event.event_id):
            return
        # "Otherwise, reject."
        raise AuthError(
            "m.room.redaction: the sender's power level is below the redact level and "
            "the redacted event is from another domain"
        )

    # "Otherwise, allow."


def _check_create_event(room_version: RoomVersion, event: EventBase) -> None:
    """Rule "If type is m.room.create"."""
    auth = room_version.auth
    # "If it has any prev_events, reject."
    if event.prev_event_ids:
        raise AuthError("m.room.create: it has prev_events")
    if auth.room_id_from_create_event:
        # Since v12: "If the event has a room_id, reject." (The event format
        # already refuses such a PDU; `make_event` derives the room ID.)
        if "room_id" in event.pdu_json():
            raise AuthError("m.room.create: the event has a room_id")
    # v1..v11: "If the domain of the room_id does not match the domain of the
    # sender, reject."
    elif domain_of(event.room_id) != domain_of(event.sender):
        raise AuthError(
            "m.room.create: the domain of the room_id does not match the domain of the sender"
        )
    # "If content.room_version is present and is not a recognised version,
    # reject."
    if "room_version" in event.content:
        version = event.content["room_version"]
        if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
            raise AuthError(f"m.room.create: content.room_version {version!r} is not recognised")
    # Since v12: "If additional_creators is present in content and is not an
    # array of strings where each string passes the same user ID validation
    # applied to sender, reject."
    if auth.creator_power and "additional_creators" in event.content:
        additional = event.content["additional_creators"]
        if not isinstance(additional, list) or not all(is_valid_user_id(u) for u in additional):
            raise AuthError("m.room.create: additional_creators is not an array of valid user IDs")
    # v1..v10: "If content has no creator property, reject."
    if not auth.implicit_room_creator and "creator" not in event.content:
        raise AuthError("m.room.create: content has no creator property")
    # "Otherwise, allow."
