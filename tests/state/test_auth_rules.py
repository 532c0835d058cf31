"""Authorization rules other than membership and power levels, per room version.

Spec: rooms/v1.md .. v12.md "Authorisation rules"; server-server API "Auth
events selection". Each rule has a test that it allows and one that it
forbids, over the room versions where it applies (and both sides where it
changes). Membership rules are in test_auth_rules_membership.py, power levels
in test_auth_rules_power_levels.py.
"""

from __future__ import annotations

import pytest

from homeserver.state.auth_rules import (
    AuthError,
    auth_types_for_event,
    check_auth_events_selection,
    check_auth_rules,
    create_event_id_for_room,
    select_auth_events,
)
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.events import InvalidEvent
from homeserver.types.room_versions import EventFormat, RoomVersion
from tests.state.room_builder import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    RoomBuilder,
    make_room,
    versions,
)

PRE_V12 = versions(lambda v: not v.auth.room_id_from_create_event)
V12_UP = versions(lambda v: v.auth.room_id_from_create_event)
ALIASES_SPECIAL = versions(lambda v: v.auth.special_case_aliases)
ALIASES_PLAIN = versions(lambda v: not v.auth.special_case_aliases)
DOMAIN_EVENT_IDS = versions(lambda v: v.event_format.format is EventFormat.V1)
HASH_EVENT_IDS = versions(lambda v: v.event_format.format is not EventFormat.V1)
CREATOR_REQUIRED = versions(lambda v: not v.auth.implicit_room_creator)
CREATOR_IMPLICIT = versions(lambda v: v.auth.implicit_room_creator)
CREATORS_V12 = versions(lambda v: v.auth.creator_power)
NO_CREATOR_POWER = versions(lambda v: not v.auth.creator_power)


def forbidden(room: RoomBuilder, event: object, match: str) -> AuthError:
    with pytest.raises(AuthError, match=match) as info:
        room.check(event)  # type: ignore[arg-type]
    return info.value


# --- "If type is m.room.create" ----------------------------------------------------


@pytest.mark.parametrize("v", versions())
def test_create_without_prev_events_is_allowed(v: RoomVersion) -> None:
    """A create event with no prev_events, a known room_version and (v1-v10) a creator passes."""
    room = RoomBuilder(v)
    create = room.create()
    assert room.state[("m.room.create", "")] is create


@pytest.mark.parametrize("v", versions())
def test_create_with_prev_events_is_rejected(v: RoomVersion) -> None:
    """Spec: "If it has any prev_events, reject."""
    room = RoomBuilder(v)
    first = room.create()
    again = room.build(
        "m.room.create", ALICE, dict(first.content), "", prev_events=[first.event_id]
    )
    forbidden(room, again, "it has prev_events")


@pytest.mark.parametrize("v", PRE_V12)
def test_create_room_id_domain_must_match_sender(v: RoomVersion) -> None:
    """v1-v11: "If the domain of the room_id does not match the domain of the sender, reject."."""
    room = RoomBuilder(v)
    room.room_id = "!room:b.test"
    event = room.build("m.room.create", ALICE, {"creator": ALICE, "room_version": v.identifier}, "")
    forbidden(room, event, "domain of the room_id does not match")
    room.room_id = "!room:a.test"
    room.check(room.build("m.room.create", ALICE, {"creator": ALICE}, ""))


@pytest.mark.parametrize("v", V12_UP)
def test_v12_create_has_no_room_id(v: RoomVersion) -> None:
    """v12: "If the event has a room_id, reject." The event format refuses such a PDU outright,
    and the room ID of an accepted create event is its event ID with `!`."""
    room = RoomBuilder(v)
    with pytest.raises(InvalidEvent, match="must not have a room_id"):
        room.build(
            "m.room.create",
            ALICE,
            {"room_version": v.identifier},
            "",
            extra={"room_id": "!room:a.test"},
        )
    create = room.create()
    assert create.room_id == "!" + create.event_id[1:]
    assert create_event_id_for_room(create.room_id) == create.event_id


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("room_version", ["99", 12, None])
def test_create_with_unknown_room_version_is_rejected(v: RoomVersion, room_version: object) -> None:
    """Spec: "If content.room_version is present and is not a recognised version, reject."."""
    room = RoomBuilder(v)
    content = {"creator": ALICE, "room_version": room_version}
    forbidden(room, room.build("m.room.create", ALICE, content, ""), "is not recognised")


@pytest.mark.parametrize("v", versions())
def test_create_with_recognised_or_absent_room_version_is_allowed(v: RoomVersion) -> None:
    """A recognised room_version (here "1", not the room's own) and an absent one both pass."""
    room = RoomBuilder(v)
    room.check(room.build("m.room.create", ALICE, {"creator": ALICE, "room_version": "1"}, ""))
    room.check(room.build("m.room.create", ALICE, {"creator": ALICE}, ""))


@pytest.mark.parametrize("v", CREATOR_REQUIRED)
def test_v1_to_v10_create_needs_creator(v: RoomVersion) -> None:
    """v1-v10: "If content has no creator property, reject."."""
    room = RoomBuilder(v)
    event = room.build("m.room.create", ALICE, {"room_version": v.identifier}, "")
    forbidden(room, event, "content has no creator property")


@pytest.mark.parametrize("v", CREATOR_IMPLICIT)
def test_v11_up_create_without_creator_is_allowed(v: RoomVersion) -> None:
    """v11+: the creator is the sender, so a create event without `creator` passes."""
    room = RoomBuilder(v)
    room.check(room.build("m.room.create", ALICE, {"room_version": v.identifier}, ""))


@pytest.mark.parametrize("v", CREATORS_V12)
@pytest.mark.parametrize(
    "additional",
    [BOB, [BOB, 5], ["bob"], ["@bob"], [f"@{'x' * 250}:b.test"], ["@bob:"]],
    ids=["not-a-list", "non-string", "no-sigil", "no-server", "too-long", "empty-server"],
)
def test_v12_invalid_additional_creators_are_rejected(v: RoomVersion, additional: object) -> None:
    """v12: "If additional_creators is present in content and is not an array of strings where
    each string passes the same user ID validation applied to sender, reject."."""
    room = RoomBuilder(v)
    event = room.build("m.room.create", ALICE, {"additional_creators": additional}, "")
    forbidden(room, event, "additional_creators")


@pytest.mark.parametrize("v", CREATORS_V12)
def test_v12_valid_additional_creators_are_allowed(v: RoomVersion) -> None:
    """Valid user IDs (historical localparts too) and an empty array pass."""
    room = RoomBuilder(v)
    for additional in ([BOB, CAROL, "@Old.User:[::1]:8448"], []):
        room.check(room.build("m.room.create", ALICE, {"additional_creators": additional}, ""))


@pytest.mark.parametrize("v", NO_CREATOR_POWER)
def test_additional_creators_mean_nothing_before_v12(v: RoomVersion) -> None:
    """Before v12 `additional_creators` is just content: even a malformed one is allowed."""
    room = RoomBuilder(v)
    room.check(room.build("m.room.create", ALICE, {"creator": ALICE, "additional_creators": 5}, ""))


# --- the create event among the auth events; the room ID ------------------------------


@pytest.mark.parametrize("v", PRE_V12)
def test_without_create_event_in_auth_events_rejected(v: RoomVersion) -> None:
    """v1-v11: "If there is no m.room.create event among the entries, reject."."""
    room = make_room(v)
    event = room.build("m.room.message", ALICE, {"body": "hi"})
    auth = room.auth_map(event)
    check_auth_rules(v, event, auth)
    del auth[("m.room.create", "")]
    with pytest.raises(AuthError, match="no m.room.create event"):
        check_auth_rules(v, event, auth)


@pytest.mark.parametrize("v", V12_UP)
def test_v12_room_id_must_be_the_create_event_id(v: RoomVersion) -> None:
    """v12: "If the event's room_id is not an event ID for an accepted m.room.create event, with
    the sigil ! instead of $, reject." Another room's create event does not do."""
    room = make_room(v)
    other = make_room(v, creator=BOB)
    event = room.build("m.room.message", ALICE, {"body": "hi"})
    auth = room.auth_map(event)
    check_auth_rules(v, event, auth)
    forbidden_auth = dict(auth)
    forbidden_auth[("m.room.create", "")] = other.state[("m.room.create", "")]
    with pytest.raises(AuthError, match="room_id is not the event ID of the m.room.create"):
        check_auth_rules(v, event, forbidden_auth)
    del forbidden_auth[("m.room.create", "")]
    with pytest.raises(AuthError, match="room_id is not the event ID of the m.room.create"):
        check_auth_rules(v, event, forbidden_auth)


@pytest.mark.parametrize("v", versions())
def test_auth_event_from_another_room_is_rejected(v: RoomVersion) -> None:
    """Spec: "If any event in auth_events has a room_id which does not match that of the event being
    authorised, reject." Bob's power levels from another room give him nothing here."""
    room = make_room(v, members=[BOB])
    other = make_room(v, creator=BOB)
    event = room.build("m.room.topic", BOB, {"topic": "mine"}, "")
    auth = room.auth_map(event)
    auth[("m.room.power_levels", "")] = other.state[("m.room.power_levels", "")]
    with pytest.raises(AuthError, match="room_id which does not match"):
        check_auth_rules(v, event, auth)


def test_auth_error_is_a_forbidden_matrix_error() -> None:
    """AuthError carries M_FORBIDDEN and 403, so handlers can return it as is."""
    error = AuthError("the sender's current membership state is not join")
    assert isinstance(error, MatrixError)
    assert (error.errcode, error.status) == (Codes.FORBIDDEN, 403)


# --- "Considering the event's auth_events" (the event's own list) ---------------------


def _events(room: RoomBuilder, event_ids: tuple[str, ...]) -> list:  # type: ignore[type-arg]
    by_id = {e.event_id: e for e in room.events}
    return [by_id[e] for e in event_ids]


@pytest.mark.parametrize("v", versions())
def test_selected_auth_events_pass(v: RoomVersion) -> None:
    """An event whose auth_events are exactly the selection passes the auth_events rule."""
    room = make_room(v, members=[BOB])
    event = room.build("m.room.message", BOB, {"body": "hi"})
    check_auth_events_selection(v, event, _events(room, event.auth_event_ids))
    assert len(event.auth_event_ids) == (2 if v.auth.room_id_from_create_event else 3)


@pytest.mark.parametrize("v", versions())
def test_duplicate_auth_event_types_are_rejected(v: RoomVersion) -> None:
    """Spec: "If there are duplicate entries for a given type and state_key pair, reject."."""
    room = make_room(v, members=[BOB])
    old_pl = room.state[("m.room.power_levels", "")]
    room.set_power_levels(dict(old_pl.content, ban=60))
    event = room.build("m.room.message", BOB, {"body": "hi"})
    ids = (*event.auth_event_ids, old_pl.event_id)
    doubled = room.build("m.room.message", BOB, {"body": "hi"}, auth_event_ids=ids)
    with pytest.raises(AuthError, match="duplicate entries"):
        check_auth_events_selection(v, doubled, _events(room, ids))


@pytest.mark.parametrize("v", versions())
def test_unexpected_auth_event_is_rejected(v: RoomVersion) -> None:
    """Spec: "If there are entries whose type and state_key don't match those specified by the auth
    events selection algorithm, reject." A message does not cite the join rules."""
    room = make_room(v, members=[BOB])
    event = room.build("m.room.message", BOB, {"body": "hi"})
    ids = (*event.auth_event_ids, room.state[("m.room.join_rules", "")].event_id)
    extra = room.build("m.room.message", BOB, {"body": "hi"}, auth_event_ids=ids)
    with pytest.raises(AuthError, match="does not match the auth events selection"):
        check_auth_events_selection(v, extra, _events(room, ids))


@pytest.mark.parametrize("v", V12_UP)
def test_v12_create_event_must_not_be_an_auth_event(v: RoomVersion) -> None:
    """v12: "In this room version, m.room.create MUST NOT be selected"."""
    room = make_room(v, members=[BOB])
    event = room.build("m.room.message", BOB, {"body": "hi"})
    ids = (*event.auth_event_ids, room.state[("m.room.create", "")].event_id)
    with_create = room.build("m.room.message", BOB, {"body": "hi"}, auth_event_ids=ids)
    with pytest.raises(AuthError, match="does not match the auth events selection"):
        check_auth_events_selection(v, with_create, _events(room, ids))


@pytest.mark.parametrize("v", PRE_V12)
def test_missing_create_auth_event_is_rejected(v: RoomVersion) -> None:
    """v1-v11: "If there is no m.room.create event among the entries, reject."."""
    room = make_room(v, members=[BOB])
    create_id = room.state[("m.room.create", "")].event_id
    event = room.build("m.room.message", BOB, {"body": "hi"})
    ids = tuple(e for e in event.auth_event_ids if e != create_id)
    without = room.build("m.room.message", BOB, {"body": "hi"}, auth_event_ids=ids)
    with pytest.raises(AuthError, match="no m.room.create event among the entries"):
        check_auth_events_selection(v, without, _events(room, ids))


@pytest.mark.parametrize("v", versions())
def test_rejected_auth_event_is_rejected(v: RoomVersion) -> None:
    """Spec: "If there are entries which were themselves rejected ..., reject."."""
    room = make_room(v, members=[BOB])
    event = room.build("m.room.message", BOB, {"body": "hi"})
    rejected = {room.state[("m.room.member", BOB)].event_id}
    with pytest.raises(AuthError, match="was itself rejected"):
        check_auth_events_selection(v, event, _events(room, event.auth_event_ids), rejected)


@pytest.mark.parametrize("v", versions())
def test_auth_event_list_from_another_room_is_rejected(v: RoomVersion) -> None:
    """Spec: "If any event in auth_events has a room_id which does not match ..., reject." (own list)."""
    room = make_room(v, members=[BOB])
    other = make_room(v, creator=BOB)
    theirs = other.state[("m.room.power_levels", "")]
    event = room.build("m.room.message", BOB, {"body": "hi"})
    ids = tuple(
        theirs.event_id if e == room.state[("m.room.power_levels", "")].event_id else e
        for e in event.auth_event_ids
    )
    mixed = room.build("m.room.message", BOB, {"body": "hi"}, auth_event_ids=ids)
    with pytest.raises(AuthError, match="room_id which does not match"):
        check_auth_events_selection(v, mixed, [*room.events, theirs])


@pytest.mark.parametrize("v", versions())
def test_create_event_auth_events_are_not_considered(v: RoomVersion) -> None:
    """The create rule does not look at auth_events, and missing auth events are a caller error."""
    room = RoomBuilder(v)
    create = room.create()
    check_auth_events_selection(v, create, [])
    room.join(ALICE)
    event = room.build("m.room.message", ALICE, {"body": "hi"})
    with pytest.raises(ValueError, match="was not supplied"):
        check_auth_events_selection(v, event, [])


# --- m.federate ------------------------------------------------------------------


@pytest.mark.parametrize("v", versions())
def test_unfederated_room_rejects_other_domains(v: RoomVersion) -> None:
    """Spec: "If the content of the m.room.create event has m.federate set to false, and the sender
    domain of the event does not match the sender domain of the create event, reject."."""
    room = make_room(v, create_content={"m.federate": False})
    forbidden(room, room.member(BOB, BOB, "join"), "m.federate is false")
    room.join(DAVE)  # same domain as the creator


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("federate", [True, "false", None])
def test_only_federate_false_blocks_other_domains(v: RoomVersion, federate: object) -> None:
    """Anything but `false` (absent, true, a string) leaves the room federated."""
    content = {} if federate is None else {"m.federate": federate}
    room = make_room(v, create_content=content)
    room.join(BOB)


# --- "If type is m.room.aliases" (v1-v5) ----------------------------------------------


@pytest.mark.parametrize("v", ALIASES_SPECIAL)
def test_v1_to_v5_aliases_for_own_domain_allowed_without_membership(v: RoomVersion) -> None:
    """v1-v5: aliases whose state_key is the sender's domain are allowed, even from a non-member."""
    room = make_room(v)
    room.check(room.build("m.room.aliases", BOB, {"aliases": ["#x:b.test"]}, "b.test"))


@pytest.mark.parametrize("v", ALIASES_SPECIAL)
def test_v1_to_v5_aliases_for_other_domain_rejected(v: RoomVersion) -> None:
    """v1-v5: "If sender's domain doesn't match state_key, reject." (the creator is no exception)."""
    room = make_room(v, members=[BOB])
    event = room.build("m.room.aliases", ALICE, {"aliases": ["#x:b.test"]}, "b.test")
    forbidden(room, event, "sender's domain doesn't match state_key")


@pytest.mark.parametrize("v", ALIASES_SPECIAL)
def test_v1_to_v5_aliases_without_state_key_rejected(v: RoomVersion) -> None:
    """v1-v5: "If event has no state_key, reject."."""
    room = make_room(v)
    forbidden(room, room.build("m.room.aliases", ALICE, {"aliases": []}), "has no state_key")


@pytest.mark.parametrize("v", ALIASES_PLAIN)
def test_v6_up_aliases_are_ordinary_state(v: RoomVersion) -> None:
    """v6+: the aliases rule is gone: a non-member is rejected, the creator may use any domain."""
    room = make_room(v)
    forbidden(room, room.build("m.room.aliases", BOB, {"aliases": []}, "b.test"), "not join")
    room.check(room.build("m.room.aliases", ALICE, {"aliases": []}, "b.test"))


# --- membership of the sender; third-party invite events; required power level ---------


@pytest.mark.parametrize("v", versions())
def test_non_member_cannot_send(v: RoomVersion) -> None:
    """Spec: "If the sender's current membership state is not join, reject." (never joined, or left)."""
    room = make_room(v, members=[BOB])
    forbidden(room, room.build("m.room.message", CAROL, {"body": "hi"}), "not join")
    room.set_member(BOB, BOB, "leave")
    forbidden(room, room.build("m.room.message", BOB, {"body": "hi"}), "not join")


@pytest.mark.parametrize("v", versions())
def test_member_can_send_message(v: RoomVersion) -> None:
    """A joined member at users_default may send a message (events_default 0)."""
    room = make_room(v, members=[BOB])
    room.check(room.build("m.room.message", BOB, {"body": "hi"}))


@pytest.mark.parametrize("v", versions())
def test_third_party_invite_event_needs_invite_level(v: RoomVersion) -> None:
    """m.room.third_party_invite: "Allow if and only if sender's current power level is greater
    than or equal to the invite level." (not state_default, which would be 50)."""
    room = make_room(v, members=[BOB])
    tpi = {"display_name": "x", "key_validity_url": "https://x", "public_key": "AAAA"}
    room.check(room.build("m.room.third_party_invite", BOB, tpi, "token"))
    room.set_power_levels(dict(room.state[("m.room.power_levels", "")].content, invite=5))
    forbidden(room, room.build("m.room.third_party_invite", BOB, tpi, "token"), "invite level")


@pytest.mark.parametrize("v", versions())
def test_state_event_needs_state_default(v: RoomVersion) -> None:
    """Spec: "If the event type's required power level is greater than the sender's, reject."
    state_default (50) applies to state events, events_default (0) to others."""
    room = make_room(v, members=[BOB])
    forbidden(room, room.build("m.room.topic", BOB, {"topic": "x"}, ""), "required power level")
    room.check(room.build("m.room.topic", ALICE, {"topic": "x"}, ""))
    room.check(room.build("m.room.topic", BOB, {"topic": "x"}))  # not state: events_default


@pytest.mark.parametrize("v", versions())
def test_events_map_overrides_defaults(v: RoomVersion) -> None:
    """An `events` entry sets the required level for its type, up or down."""
    room = make_room(v, members=[BOB], events={"m.room.topic": 0, "m.reaction": 10})
    room.check(room.build("m.room.topic", BOB, {"topic": "x"}, ""))
    forbidden(room, room.build("m.reaction", BOB, {}), "required power level")


@pytest.mark.parametrize("v", versions())
def test_no_power_levels_event_uses_defaults(v: RoomVersion) -> None:
    """Without m.room.power_levels the creator has 100 (v12: infinite) and others 0, so only the
    creator reaches state_default (50)."""
    room = RoomBuilder(v)
    room.create()
    room.join(ALICE)
    room.set_join_rule("public")
    room.join(BOB)
    room.check(room.build("m.room.name", ALICE, {"name": "x"}, ""))
    forbidden(room, room.build("m.room.name", BOB, {"name": "x"}, ""), "required power level")
    room.check(room.build("m.room.message", BOB, {"body": "hi"}))


@pytest.mark.parametrize("v", versions())
def test_state_key_of_another_user_rejected(v: RoomVersion) -> None:
    """Spec: "If the event has a state_key that starts with an @ and does not match the sender,
    reject." Even the creator cannot; a state_key equal to the sender is fine."""
    room = make_room(v, members=[BOB], events={"org.example.profile": 0})
    forbidden(room, room.build("org.example.profile", ALICE, {}, BOB), "starts with an @")
    room.check(room.build("org.example.profile", BOB, {}, BOB))
    room.check(room.build("org.example.profile", BOB, {}, "bob"))


# --- "If type is m.room.redaction" (v1, v2) --------------------------------------------


@pytest.mark.parametrize("v", DOMAIN_EVENT_IDS)
def test_v1_v2_redaction_of_own_domain_allowed_below_redact_level(v: RoomVersion) -> None:
    """v1/v2: "If the domain of the event_id of the event being redacted is the same as the
    domain of the event_id of the m.room.redaction, allow." (sender below the redact level)."""
    room = make_room(v, members=[BOB])
    message = room.add("m.room.message", BOB, {"body": "oops"})
    room.check(room.redaction(BOB, message.event_id))


@pytest.mark.parametrize("v", DOMAIN_EVENT_IDS)
def test_v1_v2_redaction_of_other_domain_rejected_below_redact_level(v: RoomVersion) -> None:
    """v1/v2: below the redact level, redacting another domain's event is rejected."""
    room = make_room(v, members=[BOB])
    message = room.add("m.room.message", ALICE, {"body": "mine"})
    forbidden(room, room.redaction(BOB, message.event_id), "redact level")


@pytest.mark.parametrize("v", DOMAIN_EVENT_IDS)
def test_v1_v2_redaction_allowed_at_redact_level(v: RoomVersion) -> None:
    """v1/v2: "If the sender's power level is greater than or equal to the redact level, allow."."""
    room = make_room(v, members=[BOB])
    message = room.add("m.room.message", BOB, {"body": "spam"})
    room.check(room.redaction(ALICE, message.event_id))


@pytest.mark.parametrize("v", HASH_EVENT_IDS)
def test_v3_up_redaction_ignores_redact_level(v: RoomVersion) -> None:
    """v3+: "the redact level is not considered by the auth rules": a member below it may send a
    redaction of anyone's event (whether to apply it is decided elsewhere)."""
    room = make_room(v, members=[BOB])
    message = room.add("m.room.message", ALICE, {"body": "mine"})
    room.check(room.redaction(BOB, message.event_id))


@pytest.mark.parametrize("v", versions())
def test_redaction_subject_to_events_levels(v: RoomVersion) -> None:
    """Redactions are "subject to auth rules in the same way as any other event": an
    `events` level for m.room.redaction applies."""
    room = make_room(v, members=[BOB], events={"m.room.redaction": 20})
    message = room.add("m.room.message", BOB, {"body": "oops"})
    forbidden(room, room.redaction(BOB, message.event_id), "required power level")


# --- auth events selection --------------------------------------------------------


@pytest.mark.parametrize("v", versions())
def test_auth_types_for_create_is_empty(v: RoomVersion) -> None:
    """Spec: "The auth_events for the m.room.create event in a room is empty."."""
    room = RoomBuilder(v)
    assert auth_types_for_event(v, room.create()) == set()


@pytest.mark.parametrize("v", versions())
def test_auth_types_for_message(v: RoomVersion) -> None:
    """Power levels, the sender's member event and (before v12 only) the create event."""
    room = make_room(v, members=[BOB])
    event = room.build("m.room.message", BOB, {"body": "hi"})
    expected = {("m.room.power_levels", ""), ("m.room.member", BOB)}
    if not v.auth.room_id_from_create_event:
        expected.add(("m.room.create", ""))
    assert auth_types_for_event(v, event) == expected


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize(
    ("membership", "join_rules"),
    [("join", True), ("invite", True), ("knock", True), ("leave", False), ("ban", False)],
)
def test_auth_types_for_membership(v: RoomVersion, membership: str, join_rules: bool) -> None:
    """Member events add the target's member event, and the join rules for join/invite/knock."""
    room = make_room(v)
    types = auth_types_for_event(v, room.member(ALICE, BOB, membership))
    assert ("m.room.member", BOB) in types
    assert ("m.room.member", ALICE) in types
    assert (("m.room.join_rules", "") in types) is join_rules
    assert (("m.room.create", "") in types) is (not v.auth.room_id_from_create_event)


@pytest.mark.parametrize("v", versions())
def test_auth_types_for_third_party_invite(v: RoomVersion) -> None:
    """An invite with third_party_invite adds the m.room.third_party_invite for signed.token;
    one without a usable token adds nothing."""
    room = make_room(v)
    tpi = {"display_name": "b", "signed": {"mxid": BOB, "token": "tok", "signatures": {}}}
    types = auth_types_for_event(v, room.member(ALICE, BOB, "invite", third_party_invite=tpi))
    assert ("m.room.third_party_invite", "tok") in types
    broken = room.member(ALICE, BOB, "invite", third_party_invite={"signed": "x"})
    assert not any(t == "m.room.third_party_invite" for t, _ in auth_types_for_event(v, broken))


@pytest.mark.parametrize("v", versions())
def test_auth_types_for_restricted_join(v: RoomVersion) -> None:
    """join_authorised_via_users_server adds that user's member event only in versions with
    restricted rooms (v8+), and only for joins."""
    room = make_room(v)
    join = room.member(BOB, BOB, "join", join_authorised_via_users_server=ALICE + "x")
    has = ("m.room.member", ALICE + "x") in auth_types_for_event(v, join)
    assert has is v.auth.restricted_join_rule
    leave = room.member(BOB, BOB, "leave", join_authorised_via_users_server=ALICE + "x")
    assert ("m.room.member", ALICE + "x") not in auth_types_for_event(v, leave)


@pytest.mark.parametrize("v", versions())
def test_select_auth_events_includes_create_for_the_rules(v: RoomVersion) -> None:
    """select_auth_events picks the selection out of a state map, plus the create event (which
    v12 does not select but the rules read); other state is left out."""
    room = make_room(v, members=[BOB])
    room.add("m.room.topic", ALICE, {"topic": "t"}, "")
    event = room.build("m.room.message", BOB, {"body": "hi"})
    selected = select_auth_events(v, event, room.state)
    assert set(selected) == {
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.member", BOB),
    }
    assert selected[("m.room.member", BOB)] is room.state[("m.room.member", BOB)]
