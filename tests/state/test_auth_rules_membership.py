"""The authorization rule "If type is m.room.member", per room version.

Spec: rooms/v1.md .. v12.md, the m.room.member block (join, invite with and
without third_party_invite, leave, ban, knock, restricted joins). Each rule
has a test that it allows and one that it forbids, over the versions where
it applies, and both sides where a version changes it.
"""

from __future__ import annotations

from typing import Any

import pytest
from nacl.signing import SigningKey
from unpaddedbase64 import encode_base64

from homeserver.state.auth_rules import AuthError, join_authorising_server
from homeserver.state.membership_rules import signed_block_matches_public_keys
from homeserver.types.canonical_json import encode_canonical_json
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion
from tests.state.room_builder import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    EVE,
    RoomBuilder,
    make_room,
    versions,
)

KNOCK = versions(lambda v: v.auth.knock_join_rule)
NO_KNOCK = versions(lambda v: not v.auth.knock_join_rule)
RESTRICTED = versions(lambda v: v.auth.restricted_join_rule)
NO_RESTRICTED = versions(lambda v: not v.auth.restricted_join_rule)
KNOCK_RESTRICTED = versions(lambda v: v.auth.knock_restricted_join_rule)
NO_KNOCK_RESTRICTED = versions(lambda v: not v.auth.knock_restricted_join_rule)
EXPLICIT_CREATOR = versions(lambda v: not v.auth.implicit_room_creator)
IMPLICIT_CREATOR = versions(lambda v: v.auth.implicit_room_creator)
CREATOR_POWER = versions(lambda v: v.auth.creator_power)
NO_CREATOR_POWER = versions(lambda v: not v.auth.creator_power)


def forbidden(room: RoomBuilder, event: EventBase, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        room.check(event)


# --- basics ---------------------------------------------------------------------------


@pytest.mark.parametrize("v", versions())
def test_member_event_without_membership_rejected(v: RoomVersion) -> None:
    """Spec: "If there is no state_key property, or no membership property in content, reject."."""
    room = make_room(v)
    forbidden(room, room.build("m.room.member", BOB, {}, BOB), "no membership property")
    forbidden(room, room.build("m.room.member", BOB, {"membership": 1}, BOB), "no membership")
    forbidden(room, room.build("m.room.member", BOB, {"membership": "join"}), "no state_key")


@pytest.mark.parametrize("v", versions())
def test_unknown_membership_rejected(v: RoomVersion) -> None:
    """Spec: "Otherwise, the membership is unknown. Reject." (even from the creator)."""
    room = make_room(v, members=[BOB])
    forbidden(room, room.member(ALICE, BOB, "shun"), "membership 'shun' is unknown")


# --- join -------------------------------------------------------------------------------


@pytest.mark.parametrize("v", versions())
def test_creator_first_join_after_create_allowed(v: RoomVersion) -> None:
    """Spec: "If the only previous event is an m.room.create and the state_key is the creator, allow."
    (there are no join rules yet, which would otherwise default to invite)."""
    room = RoomBuilder(v)
    room.create()
    room.check(room.member(ALICE, ALICE, "join"))


@pytest.mark.parametrize("v", versions())
def test_other_user_first_join_after_create_rejected(v: RoomVersion) -> None:
    """Only the creator gets the first join; anyone else finds the (default) invite rule."""
    room = RoomBuilder(v)
    room.create()
    forbidden(room, room.member(BOB, BOB, "join"), "not invited")


@pytest.mark.parametrize("v", EXPLICIT_CREATOR)
def test_v1_to_v10_first_join_follows_content_creator(v: RoomVersion) -> None:
    """v1-v10: "the creator" is content.creator, which need not be the create event's sender."""
    room = RoomBuilder(v)
    room.create({"creator": DAVE})
    forbidden(room, room.member(ALICE, ALICE, "join"), "not invited")
    room.check(room.member(DAVE, DAVE, "join"))


@pytest.mark.parametrize("v", IMPLICIT_CREATOR)
def test_v11_up_first_join_follows_create_sender(v: RoomVersion) -> None:
    """v11+: "the state_key is the sender of the m.room.create"; content.creator means nothing."""
    room = RoomBuilder(v)
    room.create({"creator": DAVE})
    forbidden(room, room.member(DAVE, DAVE, "join"), "not invited")
    room.check(room.member(ALICE, ALICE, "join"))


@pytest.mark.parametrize("v", versions())
def test_join_for_someone_else_rejected(v: RoomVersion) -> None:
    """Spec: "If the sender does not match state_key, reject." (in a public room, by the creator)."""
    room = make_room(v)
    forbidden(room, room.member(ALICE, BOB, "join"), "sender does not match state_key")


@pytest.mark.parametrize("v", versions())
def test_banned_user_cannot_join(v: RoomVersion) -> None:
    """Spec: "If the sender is banned, reject." (the room is public)."""
    room = make_room(v, members=[BOB])
    room.set_member(ALICE, BOB, "ban")
    forbidden(room, room.member(BOB, BOB, "join"), "sender is banned")


@pytest.mark.parametrize("v", versions())
def test_public_room_join_allowed(v: RoomVersion) -> None:
    """Spec: "If the join_rule is public, allow." (also a re-join after leaving)."""
    room = make_room(v)
    room.join(BOB)
    room.set_member(BOB, BOB, "leave")
    room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("v", versions())
def test_invite_only_room_join_needs_invite(v: RoomVersion) -> None:
    """Spec: "If the join_rule is invite ... then allow if membership state is invite or join."."""
    room = make_room(v, join_rule="invite")
    forbidden(room, room.member(BOB, BOB, "join"), "not invited")
    room.invite(ALICE, BOB)
    room.join(BOB)
    room.check(room.member(BOB, BOB, "join", displayname="Bob"))  # already joined


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("join_rule", ["private", "secret"])
def test_unknown_join_rule_rejects_join(v: RoomVersion, join_rule: str) -> None:
    """Spec: "Otherwise, reject." A join rule the version does not know lets nobody join uninvited."""
    room = make_room(v, join_rule=join_rule)
    forbidden(room, room.member(BOB, BOB, "join"), "does not allow the sender to join")


@pytest.mark.parametrize("v", KNOCK)
def test_v7_up_knock_room_join_needs_invite(v: RoomVersion) -> None:
    """v7+: "If the join_rule is invite or knock then allow if membership state is invite or join"."""
    room = make_room(v, join_rule="knock")
    forbidden(room, room.member(BOB, BOB, "join"), "not invited")
    room.invite(ALICE, BOB)
    room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("v", NO_KNOCK)
def test_v1_to_v6_knock_join_rule_lets_nobody_join(v: RoomVersion) -> None:
    """v1-v6 do not know the knock join rule: even an invited user cannot join under it."""
    room = make_room(v, join_rule="knock")
    room.invite(ALICE, BOB)
    forbidden(room, room.member(BOB, BOB, "join"), "does not allow the sender to join")


# --- restricted joins -------------------------------------------------------------------


def _restricted_room(v: RoomVersion, join_rule: str = "restricted", **levels: Any) -> RoomBuilder:
    allow = [{"type": "m.room_membership", "room_id": "!space:a.test"}]
    room = make_room(v, members=[DAVE], **levels)  # public while Dave joins
    room.set_join_rule(join_rule, allow=allow)
    return room


@pytest.mark.parametrize("v", RESTRICTED)
def test_restricted_join_authorised_by_joined_inviter_allowed(v: RoomVersion) -> None:
    """v8+: "If the join_rule is restricted: ... Otherwise, allow." when
    join_authorised_via_users_server is a joined member who can invite."""
    room = _restricted_room(v)
    room.check(room.member(BOB, BOB, "join", join_authorised_via_users_server=DAVE))


@pytest.mark.parametrize("v", RESTRICTED)
def test_restricted_join_without_authoriser_rejected(v: RoomVersion) -> None:
    """v8+: without join_authorised_via_users_server there is no one who authorised it."""
    room = _restricted_room(v)
    forbidden(room, room.member(BOB, BOB, "join"), "join_authorised_via_users_server is missing")


@pytest.mark.parametrize("v", RESTRICTED)
def test_restricted_join_authoriser_must_be_joined(v: RoomVersion) -> None:
    """v8+: "... or is not a joined member of the room, reject." (Carol was only invited)."""
    room = _restricted_room(v)
    room.invite(ALICE, CAROL)
    event = room.member(BOB, BOB, "join", join_authorised_via_users_server=CAROL)
    forbidden(room, event, "is not a joined member")


@pytest.mark.parametrize("v", RESTRICTED)
def test_restricted_join_authoriser_must_reach_invite_level(v: RoomVersion) -> None:
    """v8+: "If join_authorised_via_users_server is not a user with sufficient permission to
    invite other users ..., reject."."""
    room = _restricted_room(v, invite=10)
    event = room.member(BOB, BOB, "join", join_authorised_via_users_server=DAVE)
    forbidden(room, event, "sufficient permission to invite")
    room.check(room.member(BOB, BOB, "join", join_authorised_via_users_server=ALICE))


@pytest.mark.parametrize("v", RESTRICTED)
def test_restricted_join_of_invited_user_needs_no_authoriser(v: RoomVersion) -> None:
    """v8+: "If membership state is join or invite, allow."."""
    room = _restricted_room(v)
    room.invite(ALICE, BOB)
    room.check(room.member(BOB, BOB, "join"))


@pytest.mark.parametrize("v", NO_RESTRICTED)
def test_v1_to_v7_restricted_join_rule_lets_nobody_join(v: RoomVersion) -> None:
    """Before v8 the restricted rule is unknown: an authorised join is still rejected."""
    room = _restricted_room(v)
    event = room.member(BOB, BOB, "join", join_authorised_via_users_server=DAVE)
    forbidden(room, event, "does not allow the sender to join")


@pytest.mark.parametrize("v", KNOCK_RESTRICTED)
def test_v10_up_knock_restricted_join_like_restricted(v: RoomVersion) -> None:
    """v10+: "If the join_rule is restricted or knock_restricted:" the same checks apply."""
    room = _restricted_room(v, "knock_restricted")
    room.check(room.member(BOB, BOB, "join", join_authorised_via_users_server=DAVE))
    forbidden(room, room.member(BOB, BOB, "join"), "join_authorised_via_users_server is missing")


@pytest.mark.parametrize("v", NO_KNOCK_RESTRICTED)
def test_v1_to_v9_knock_restricted_join_rule_lets_nobody_join(v: RoomVersion) -> None:
    """Before v10 knock_restricted is unknown: an authorised join is rejected."""
    room = _restricted_room(v, "knock_restricted")
    event = room.member(BOB, BOB, "join", join_authorised_via_users_server=DAVE)
    forbidden(room, event, "does not allow the sender to join")


@pytest.mark.parametrize("v", versions())
def test_join_authorising_server_names_the_server_to_verify(v: RoomVersion) -> None:
    """v8+: the authorising user's server must have signed the event (checked with the
    signatures); join_authorising_server names it, and nothing before v8."""
    room = _restricted_room(v)
    event = room.member(BOB, BOB, "join", join_authorised_via_users_server=DAVE)
    expected = "a.test" if v.auth.restricted_join_rule else None
    assert join_authorising_server(v, event) == expected
    assert join_authorising_server(v, room.member(BOB, BOB, "join")) is None


# --- invite -----------------------------------------------------------------------------


@pytest.mark.parametrize("v", versions())
def test_member_at_invite_level_can_invite(v: RoomVersion) -> None:
    """Spec: "If the sender's power level is greater than or equal to the invite level, allow."."""
    room = make_room(v, join_rule="invite", members=[BOB])
    room.check(room.member(BOB, CAROL, "invite"))


@pytest.mark.parametrize("v", versions())
def test_member_below_invite_level_cannot_invite(v: RoomVersion) -> None:
    """Spec: "Otherwise, reject." (invite level raised to 1; Bob has 0)."""
    room = make_room(v, join_rule="invite", members=[BOB], invite=1)
    forbidden(room, room.member(BOB, CAROL, "invite"), "below the invite level")


@pytest.mark.parametrize("v", versions())
def test_non_member_cannot_invite(v: RoomVersion) -> None:
    """Spec: "If the sender's current membership state is not join, reject." (Bob is only invited)."""
    room = make_room(v, join_rule="invite")
    room.invite(ALICE, BOB)
    forbidden(
        room, room.member(BOB, CAROL, "invite"), "sender's current membership state is not join"
    )


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("current", ["join", "ban"])
def test_cannot_invite_joined_or_banned_user(v: RoomVersion, current: str) -> None:
    """Spec: "If target user's current membership state is join or ban, reject."."""
    room = make_room(v, members=[BOB])
    if current == "ban":
        room.set_member(ALICE, BOB, "ban")
    forbidden(room, room.member(ALICE, BOB, "invite"), f"membership state is {current}")


@pytest.mark.parametrize("v", versions())
def test_can_reinvite_after_leave(v: RoomVersion) -> None:
    """A user who left may be invited again (their state is leave)."""
    room = make_room(v, members=[BOB])
    room.set_member(BOB, BOB, "leave")
    room.check(room.member(ALICE, BOB, "invite"))


# --- invite with third_party_invite ------------------------------------------------------

_IS_KEY = SigningKey(b"\x01" * 32)  # the identity server's key
_OTHER_KEY = SigningKey(b"\x02" * 32)


def _public(key: SigningKey, urlsafe: bool = False) -> str:
    return encode_base64(bytes(key.verify_key), urlsafe=urlsafe)


def _signed(mxid: str, token: str, key: SigningKey = _IS_KEY, key_id: str = "ed25519:0") -> dict:  # type: ignore[type-arg]
    block: dict[str, Any] = {"mxid": mxid, "token": token}
    signature = key.sign(encode_canonical_json(block)).signature
    block["signatures"] = {"id.example": {key_id: encode_base64(signature)}}
    return block


def _tpi_room(v: RoomVersion, **tpi_content: Any) -> RoomBuilder:
    """An invite-only room where Alice issued a third-party invite with token "tok"."""
    room = make_room(v, join_rule="invite", members=[DAVE])
    content = {
        "display_name": "b...@example.org",
        "key_validity_url": "https://id.example/_matrix/identity/v2/pubkey/isvalid",
        "public_key": _public(_IS_KEY),
        **tpi_content,
    }
    room.add("m.room.third_party_invite", ALICE, content, "tok")
    return room


def _tpi_invite(room: RoomBuilder, sender: str, target: str, signed: Any) -> EventBase:
    tpi = {"display_name": "b...@example.org", "signed": signed}
    return room.member(sender, target, "invite", third_party_invite=tpi)


@pytest.mark.parametrize("v", versions())
def test_third_party_invite_with_valid_signature_allowed(v: RoomVersion) -> None:
    """Spec: "If any signature in signed matches any public key in the m.room.third_party_invite
    event, allow." The invite then lets Bob join the invite-only room."""
    room = _tpi_room(v)
    room.apply(_tpi_invite(room, ALICE, BOB, _signed(BOB, "tok")))
    room.check(room.member(ALICE, BOB, "invite"))  # sanity: Bob is now invited, not joined
    room.join(BOB)


@pytest.mark.parametrize("v", versions())
def test_third_party_invite_is_allowed_without_sender_membership_checks(v: RoomVersion) -> None:
    """The third_party_invite block decides alone: the issuer need not be joined any more, nor
    at the invite level (the rules for plain invites come after it)."""
    room = make_room(v, join_rule="invite", members=[DAVE])
    content = {
        "display_name": "b...",
        "key_validity_url": "https://x",
        "public_key": _public(_IS_KEY),
    }
    room.add("m.room.third_party_invite", DAVE, content, "tok")
    room.set_power_levels(dict(room.state[("m.room.power_levels", "")].content, invite=50))
    room.set_member(DAVE, DAVE, "leave")
    room.check(_tpi_invite(room, DAVE, BOB, _signed(BOB, "tok")))
    forbidden(room, room.member(DAVE, BOB, "invite"), "not join")


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("where", ["public_keys", "urlsafe"])
def test_third_party_invite_keys_from_public_keys_list(v: RoomVersion, where: str) -> None:
    """Public keys come from `public_key` and from `public_keys`; URL-safe base64 is accepted."""
    if where == "public_keys":
        room = _tpi_room(
            v,
            public_key=_public(_OTHER_KEY),
            public_keys=[{"public_key": "not base64!"}, {"public_key": _public(_IS_KEY)}],
        )
    else:
        room = _tpi_room(v, public_key=_public(_IS_KEY, urlsafe=True))
    room.check(_tpi_invite(room, ALICE, BOB, _signed(BOB, "tok")))


@pytest.mark.parametrize("v", versions())
def test_third_party_invite_target_banned_rejected(v: RoomVersion) -> None:
    """Spec: "If target user is banned, reject."."""
    room = _tpi_room(v)
    room.set_member(ALICE, BOB, "ban")
    forbidden(room, _tpi_invite(room, ALICE, BOB, _signed(BOB, "tok")), "target user is banned")


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("signed", [None, "signed", ["x"]])
def test_third_party_invite_without_signed_rejected(v: RoomVersion, signed: Any) -> None:
    """Spec: "If content.third_party_invite does not have a signed property, reject."."""
    room = _tpi_room(v)
    forbidden(room, _tpi_invite(room, ALICE, BOB, signed), "has no signed property")
    bare = room.member(ALICE, BOB, "invite", third_party_invite="yes")
    forbidden(room, bare, "has no signed property")


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("missing", ["mxid", "token"])
def test_third_party_invite_without_mxid_or_token_rejected(v: RoomVersion, missing: str) -> None:
    """Spec: "If signed does not have mxid and token properties, reject."."""
    room = _tpi_room(v)
    signed = _signed(BOB, "tok")
    del signed[missing]
    forbidden(room, _tpi_invite(room, ALICE, BOB, signed), "does not have mxid and token")


@pytest.mark.parametrize("v", versions())
def test_third_party_invite_mxid_must_match_state_key(v: RoomVersion) -> None:
    """Spec: "If mxid does not match state_key, reject." (signed for Carol, used to invite Bob)."""
    room = _tpi_room(v)
    forbidden(room, _tpi_invite(room, ALICE, BOB, _signed(CAROL, "tok")), "mxid does not match")


@pytest.mark.parametrize("v", versions())
def test_third_party_invite_needs_matching_invite_event(v: RoomVersion) -> None:
    """Spec: "If there is no m.room.third_party_invite event in the current room state with state_key
    matching token, reject."."""
    room = _tpi_room(v)
    event = _tpi_invite(room, ALICE, BOB, _signed(BOB, "other"))
    forbidden(room, event, "no m.room.third_party_invite event")


@pytest.mark.parametrize("v", versions())
def test_third_party_invite_sender_must_match_issuer(v: RoomVersion) -> None:
    """Spec: "If sender does not match sender of the m.room.third_party_invite, reject." (Dave, a
    joined member, tries to use Alice's invite)."""
    room = _tpi_room(v)
    forbidden(room, _tpi_invite(room, DAVE, BOB, _signed(BOB, "tok")), "sender does not match")


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("problem", ["wrong-key", "tampered", "not-ed25519", "no-signatures"])
def test_third_party_invite_bad_signature_rejected(v: RoomVersion, problem: str) -> None:
    """Spec: "Otherwise, reject." when no signature verifies under the invite's public keys."""
    room = _tpi_room(v)
    if problem == "wrong-key":
        signed = _signed(BOB, "tok", key=_OTHER_KEY)
    elif problem == "tampered":
        signed = _signed(BOB, "tok")
        signed["extra"] = "added after signing"
    elif problem == "not-ed25519":
        signed = _signed(BOB, "tok", key_id="curve25519:0")
    else:
        signed = {"mxid": BOB, "token": "tok"}
    forbidden(room, _tpi_invite(room, ALICE, BOB, signed), "no signature in signed matches")


def test_signed_block_verification_ignores_malformed_signatures() -> None:
    """Garbage signatures and keys are skipped, not errors; a good pair still verifies."""
    good = _signed(BOB, "tok")
    sigs = dict(good["signatures"]["id.example"])
    sigs["ed25519:bad"] = "!!!"
    sigs["ed25519:short"] = "AAAA"
    sigs["ed25519:num"] = 5
    signed = dict(good, signatures={"junk": "x", "id.example": sigs})
    assert signed_block_matches_public_keys(signed, ["short", _public(_IS_KEY)])
    assert not signed_block_matches_public_keys(signed, ["short", _public(_OTHER_KEY)])


# --- leave --------------------------------------------------------------------------------


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("current", ["join", "invite"])
def test_user_can_leave_or_reject_invite(v: RoomVersion, current: str) -> None:
    """Spec: "If the sender matches state_key, allow if and only if that user's current membership
    state is invite or join [v7+: or knock]."."""
    room = make_room(v, join_rule="invite")
    room.invite(ALICE, BOB)
    if current == "join":
        room.join(BOB)
    room.check(room.member(BOB, BOB, "leave"))


@pytest.mark.parametrize("v", versions())
@pytest.mark.parametrize("current", ["leave", "ban", None])
def test_user_cannot_leave_when_not_in_room(v: RoomVersion, current: str | None) -> None:
    """Leaving from leave, ban or no membership at all is rejected (a ban cannot be lifted so)."""
    room = make_room(v, members=[BOB])
    if current == "leave":
        room.set_member(BOB, BOB, "leave")
    elif current == "ban":
        room.set_member(ALICE, BOB, "ban")
    target = BOB if current else CAROL
    forbidden(room, room.member(target, target, "leave"), "own current membership state")


@pytest.mark.parametrize("v", KNOCK)
def test_v7_up_knocking_user_can_rescind_knock(v: RoomVersion) -> None:
    """v7+: a knocking user may leave (rescind the knock)."""
    room = make_room(v, join_rule="knock")
    room.set_member(BOB, BOB, "knock")
    room.check(room.member(BOB, BOB, "leave"))


@pytest.mark.parametrize("v", versions())
def test_moderator_can_kick_lower_member(v: RoomVersion) -> None:
    """Spec: "If the sender's power level is greater than or equal to the kick level, and the target
    user's power level is less than the sender's power level, allow."."""
    room = make_room(v, members=[BOB, CAROL], users={CAROL: 50})
    room.check(room.member(CAROL, BOB, "leave"))
    room.check(room.member(ALICE, CAROL, "leave"))


@pytest.mark.parametrize("v", versions())
def test_kick_needs_kick_level(v: RoomVersion) -> None:
    """Spec: "Otherwise, reject." Carol (40) is above Bob but below the kick level (50)."""
    room = make_room(v, members=[BOB, CAROL], users={CAROL: 40})
    forbidden(room, room.member(CAROL, BOB, "leave"), "below the kick level")


@pytest.mark.parametrize("v", versions())
def test_kick_needs_higher_level_than_target(v: RoomVersion) -> None:
    """Spec: "Otherwise, reject." Equal levels (both 50) do not let one kick the other."""
    room = make_room(v, members=[BOB, CAROL], users={BOB: 50, CAROL: 50})
    forbidden(room, room.member(CAROL, BOB, "leave"), "not less than the sender's")


@pytest.mark.parametrize("v", versions())
def test_kick_needs_sender_joined(v: RoomVersion) -> None:
    """Spec: "If the sender's current membership state is not join, reject." (Carol has 100 but left)."""
    room = make_room(v, members=[BOB, CAROL], users={CAROL: 90})
    room.set_member(CAROL, CAROL, "leave")
    forbidden(
        room, room.member(CAROL, BOB, "leave"), "sender's current membership state is not join"
    )


@pytest.mark.parametrize("v", versions())
def test_unban_needs_ban_level(v: RoomVersion) -> None:
    """Spec: "If the target user's current membership state is ban, and the sender's power level is
    less than the ban level, reject." Carol may kick (kick 50) but not unban (ban 60)."""
    room = make_room(v, members=[BOB, CAROL], users={CAROL: 50}, ban=60)
    room.set_member(ALICE, BOB, "ban")
    forbidden(room, room.member(CAROL, BOB, "leave"), "target user is banned")
    room.check(room.member(ALICE, BOB, "leave"))


# --- ban ------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", versions())
def test_ban_at_ban_level_of_lower_user_allowed(v: RoomVersion) -> None:
    """Spec: "If the sender's power level is greater than or equal to the ban level, and the target
    user's power level is less than the sender's power level, allow." (also a non-member)."""
    room = make_room(v, members=[BOB, CAROL], users={CAROL: 50})
    room.check(room.member(CAROL, BOB, "ban"))
    room.check(room.member(CAROL, EVE, "ban"))


@pytest.mark.parametrize("v", versions())
def test_ban_below_ban_level_rejected(v: RoomVersion) -> None:
    """Spec: "Otherwise, reject." Carol (49) is below the ban level (50)."""
    room = make_room(v, members=[BOB, CAROL], users={CAROL: 49})
    forbidden(room, room.member(CAROL, BOB, "ban"), "below the ban level")


@pytest.mark.parametrize("v", versions())
def test_ban_of_equal_user_rejected(v: RoomVersion) -> None:
    """Spec: "Otherwise, reject." when the target's level is not less than the sender's."""
    room = make_room(v, members=[BOB, CAROL], users={BOB: 60, CAROL: 60})
    forbidden(room, room.member(CAROL, BOB, "ban"), "not less than the sender's")


@pytest.mark.parametrize("v", versions())
def test_ban_needs_sender_joined(v: RoomVersion) -> None:
    """Spec: "If the sender's current membership state is not join, reject."."""
    room = make_room(v, members=[BOB], users={CAROL: 90})
    forbidden(room, room.member(CAROL, BOB, "ban"), "sender's current membership state is not join")


# --- knock ------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", KNOCK)
def test_v7_up_knock_allowed_under_knock_rule(v: RoomVersion) -> None:
    """v7+: under the knock join rule a user who is not invited, joined or banned may knock
    (also after leaving)."""
    room = make_room(v, join_rule="knock")
    room.check(room.member(BOB, BOB, "knock"))
    room.invite(ALICE, CAROL)
    room.set_member(CAROL, CAROL, "leave")
    room.check(room.member(CAROL, CAROL, "knock"))


@pytest.mark.parametrize("v", KNOCK)
@pytest.mark.parametrize("join_rule", ["invite", "public", "restricted"])
def test_v7_up_knock_rejected_under_other_rules(v: RoomVersion, join_rule: str) -> None:
    """v7+: "If the join_rule is anything other than knock [or knock_restricted], reject."."""
    room = make_room(v, join_rule=join_rule)
    forbidden(room, room.member(BOB, BOB, "knock"), "knock: the join_rule is")


@pytest.mark.parametrize("v", KNOCK_RESTRICTED)
def test_v10_up_knock_allowed_under_knock_restricted(v: RoomVersion) -> None:
    """v10+: knock_restricted also allows knocking."""
    room = make_room(v, join_rule="knock_restricted")
    room.check(room.member(BOB, BOB, "knock"))


@pytest.mark.parametrize(
    "v", versions(lambda v: v.auth.knock_join_rule and not v.auth.knock_restricted_join_rule)
)
def test_v7_to_v9_knock_rejected_under_knock_restricted(v: RoomVersion) -> None:
    """v7-v9 do not know knock_restricted: knocking under it is rejected."""
    room = make_room(v, join_rule="knock_restricted")
    forbidden(room, room.member(BOB, BOB, "knock"), "knock: the join_rule is")


@pytest.mark.parametrize("v", KNOCK)
def test_v7_up_knock_for_someone_else_rejected(v: RoomVersion) -> None:
    """v7+: "If sender does not match state_key, reject."."""
    room = make_room(v, join_rule="knock", members=[DAVE])
    forbidden(room, room.member(DAVE, BOB, "knock"), "sender does not match state_key")


@pytest.mark.parametrize("v", KNOCK)
@pytest.mark.parametrize("current", ["ban", "invite", "join"])
def test_v7_up_knock_rejected_when_banned_invited_or_joined(v: RoomVersion, current: str) -> None:
    """v7+: "If the sender's current membership is not ban, invite, or join, allow. Otherwise,
    reject."."""
    room = make_room(v, join_rule="knock")
    if current == "ban":
        room.set_member(ALICE, BOB, "ban")
    else:
        room.invite(ALICE, BOB)
        if current == "join":
            room.join(BOB)
    forbidden(room, room.member(BOB, BOB, "knock"), f"current membership is {current}")


@pytest.mark.parametrize("v", NO_KNOCK)
def test_v1_to_v6_knock_membership_is_unknown(v: RoomVersion) -> None:
    """Before v7 knock is not a membership: "the membership is unknown. Reject."."""
    room = make_room(v, join_rule="knock")
    forbidden(room, room.member(BOB, BOB, "knock"), "membership 'knock' is unknown")


# --- room creators (v12) ------------------------------------------------------------------------


@pytest.mark.parametrize("v", CREATOR_POWER)
def test_v12_creators_cannot_be_kicked_or_banned(v: RoomVersion) -> None:
    """v12: creators have infinite power: a 100 admin can neither kick nor ban an additional
    creator, while an additional creator can kick the admin."""
    room = make_room(
        v, members=[BOB, CAROL], users={CAROL: 100}, create_content={"additional_creators": [BOB]}
    )
    forbidden(room, room.member(CAROL, BOB, "leave"), "not less than the sender's")
    forbidden(room, room.member(CAROL, BOB, "ban"), "not less than the sender's")
    room.check(room.member(BOB, CAROL, "ban"))


@pytest.mark.parametrize("v", CREATOR_POWER)
def test_v12_creators_cannot_kick_each_other(v: RoomVersion) -> None:
    """v12: two creators both have infinite power, so neither is below the other."""
    room = make_room(v, members=[BOB], create_content={"additional_creators": [BOB]})
    forbidden(room, room.member(ALICE, BOB, "leave"), "not less than the sender's")


@pytest.mark.parametrize("v", NO_CREATOR_POWER)
def test_before_v12_creator_is_an_ordinary_100(v: RoomVersion) -> None:
    """Before v12 the creator's power is just their entry (100): another 100 cannot kick them,
    and once the creator lowers their own entry to 50, they can be kicked."""
    room = make_room(v, members=[BOB], users={BOB: 100})
    forbidden(room, room.member(BOB, ALICE, "leave"), "not less than the sender's")
    pl = dict(room.state[("m.room.power_levels", "")].content)
    room.set_power_levels(dict(pl, users={ALICE: 50, BOB: 100}))
    room.check(room.member(BOB, ALICE, "leave"))
