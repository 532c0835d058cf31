"""Room versions v1..v12 as frozen data.

Spec: "Room Versions" (rooms/_index.md and rooms/v1.md .. v12.md).

A room version is a bundle of rule choices grouped by concern: how events are
formatted and identified, which keys redaction keeps, which authorization rule
variants apply, which state resolution algorithm runs, and how signatures and
canonical JSON are checked. Each version is the previous one with a few
changes (`dataclasses.replace`), so the diff between versions reads like the
spec's changelog. Code branches on these flags, never on version strings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class EventFormat(enum.Enum):
    """How event IDs (and, from v12, room IDs) are made.

    V1: `$localpart:server` chosen by the origin (v1, v2).
    V2: `$` + standard unpadded base64 of the reference hash (v3).
    V3: `$` + URL-safe unpadded base64 of the reference hash (v4..v11).
    V4: as V3, and the room ID is `!` + the create event's reference hash;
        the create event carries no `room_id` and is not listed in
        `auth_events` (v12).
    """

    V1 = 1
    V2 = 2
    V3 = 3
    V4 = 4


class StateResAlgorithm(enum.Enum):
    V1 = "v1"
    V2 = "v2"
    # Room v12 (MSC4297): v2 with the conflicted state subgraph and an empty
    # starting state for the iterative auth checks.
    V2_1 = "v2.1"


@dataclass(frozen=True, slots=True)
class EventFormatRules:
    format: EventFormat
    # v6+: reject events whose JSON is not canonical-JSON-safe (integers outside
    # [-(2**53)+1, 2**53-1], floats).
    strict_canonical_json: bool
    # v11+ (MSC2174): `redacts` of m.room.redaction moves from the top level
    # into `content`.
    redacts_in_content: bool


@dataclass(frozen=True, slots=True)
class RedactionRules:
    # v1..v5: m.room.aliases keeps `aliases` (removed by MSC2432 in v6).
    keep_aliases_content: bool
    # v8+: m.room.join_rules keeps `allow`.
    keep_join_rules_allow: bool
    # v9+: m.room.member keeps `join_authorised_via_users_server`.
    keep_member_authorised_via: bool
    # v11+ (MSC2176/MSC3821/MSC3989): create keeps all content; power_levels
    # keeps `invite`; member keeps `third_party_invite.signed`; m.room.redaction
    # keeps `redacts` in content; top-level `origin`, `membership` and
    # `prev_state` are no longer kept.
    updated_rules_v11: bool


@dataclass(frozen=True, slots=True)
class AuthRules:
    # v1..v5: special rules for m.room.aliases events.
    special_case_aliases: bool
    # v5+: reject events signed with an expired key (`valid_until_ts`).
    enforce_key_validity: bool
    # v6+: `notifications` in power levels is checked like other levels.
    limit_notifications_power_levels: bool
    # v7+: the `knock` join rule and membership.
    knock_join_rule: bool
    # v8+: the `restricted` join rule.
    restricted_join_rule: bool
    # v10+: the `knock_restricted` join rule.
    knock_restricted_join_rule: bool
    # v10+: power levels must be integers, not strings of digits.
    integer_power_levels: bool
    # v11+: the creator is the create event's `sender`; `content.creator` is
    # not required.
    implicit_room_creator: bool
    # v12 (MSC4289): the create event's sender and `additional_creators` have
    # infinite power and cannot be listed in `users` of power levels.
    creator_power: bool
    # v12 (MSC4291): the create event is not in `auth_events`; the room ID is
    # derived from it.
    room_id_from_create_event: bool


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    stable: bool
    event_format: EventFormatRules
    redaction: RedactionRules
    auth: AuthRules
    state_res: StateResAlgorithm


V1 = RoomVersion(
    identifier="1",
    stable=True,
    event_format=EventFormatRules(
        format=EventFormat.V1, strict_canonical_json=False, redacts_in_content=False
    ),
    redaction=RedactionRules(
        keep_aliases_content=True,
        keep_join_rules_allow=False,
        keep_member_authorised_via=False,
        updated_rules_v11=False,
    ),
    auth=AuthRules(
        special_case_aliases=True,
        enforce_key_validity=False,
        limit_notifications_power_levels=False,
        knock_join_rule=False,
        restricted_join_rule=False,
        knock_restricted_join_rule=False,
        integer_power_levels=False,
        implicit_room_creator=False,
        creator_power=False,
        room_id_from_create_event=False,
    ),
    state_res=StateResAlgorithm.V1,
)

V2 = replace(V1, identifier="2", state_res=StateResAlgorithm.V2)

V3 = replace(
    V2,
    identifier="3",
    event_format=replace(V2.event_format, format=EventFormat.V2),
)

V4 = replace(
    V3,
    identifier="4",
    event_format=replace(V3.event_format, format=EventFormat.V3),
)

V5 = replace(V4, identifier="5", auth=replace(V4.auth, enforce_key_validity=True))

V6 = replace(
    V5,
    identifier="6",
    event_format=replace(V5.event_format, strict_canonical_json=True),
    redaction=replace(V5.redaction, keep_aliases_content=False),
    auth=replace(
        V5.auth,
        special_case_aliases=False,
        limit_notifications_power_levels=True,
    ),
)

V7 = replace(V6, identifier="7", auth=replace(V6.auth, knock_join_rule=True))

V8 = replace(
    V7,
    identifier="8",
    redaction=replace(V7.redaction, keep_join_rules_allow=True),
    auth=replace(V7.auth, restricted_join_rule=True),
)

V9 = replace(
    V8,
    identifier="9",
    # v9 fixes v8's restricted joins on the redaction side only: redaction now
    # keeps `join_authorised_via_users_server`; the auth rules are v8's.
    redaction=replace(V8.redaction, keep_member_authorised_via=True),
)

V10 = replace(
    V9,
    identifier="10",
    auth=replace(V9.auth, knock_restricted_join_rule=True, integer_power_levels=True),
)

V11 = replace(
    V10,
    identifier="11",
    event_format=replace(V10.event_format, redacts_in_content=True),
    redaction=replace(V10.redaction, updated_rules_v11=True),
    auth=replace(V10.auth, implicit_room_creator=True),
)

V12 = replace(
    V11,
    identifier="12",
    event_format=replace(V11.event_format, format=EventFormat.V4),
    auth=replace(V11.auth, creator_power=True, room_id_from_create_event=True),
    state_res=StateResAlgorithm.V2_1,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v for v in (V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12)
}

# The spec's recommended default for new rooms (rooms/_index.md, v1.19).
DEFAULT_ROOM_VERSION = V12


def room_version(identifier: str) -> RoomVersion | None:
    """The room version with this identifier, or None if this server does not know it."""
    return KNOWN_ROOM_VERSIONS.get(identifier)
