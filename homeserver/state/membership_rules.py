"""The authorization rule "If type is m.room.member", for every room version.

Spec: rooms/fragments/v1-auth-rules.md rule 5 (v1, v2), v3-auth-rules.md
(v3..v5), rooms/v6.md and v7.md rule 4, rooms/fragments/v8-auth-rules.md
(v8, v9), rooms/v10.md, v11.md rule 4, rooms/v12.md rule 5; server-server API
"Third-party invites" > "Verifying the invite" for the signature check.

Version differences are flags on `RoomVersion.auth`: `knock_join_rule` (v7),
`restricted_join_rule` (v8), `knock_restricted_join_rule` (v10),
`implicit_room_creator` (v11), `creator_power` (v12, through `PowerLevels`).

Pure: the third-party invite's `signed` block is verified with the public keys
of the m.room.third_party_invite event (ed25519 via PyNaCl), no I/O. The rule
"If content has a join_authorised_via_users_server key: If the event is not
validly signed by the homeserver of the user ID denoted by the key, reject"
needs that server's keys, so it is enforced by the signature checks that run
before the authorization rules; `join_authorising_server` names the server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from unpaddedbase64 import decode_base64

from homeserver.state.auth_common import (
    AUTHORISING_USER,
    BAN,
    CREATE_KEY,
    INVITE,
    INVITE_RULE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK,
    KNOCK_RESTRICTED,
    KNOCK_RULE,
    LEAVE,
    MEMBER,
    PUBLIC,
    RESTRICTED,
    THIRD_PARTY_INVITE,
    AuthError,
    StateKey,
    domain_of,
    membership_of,
)
from homeserver.state.power_levels import PowerLevels
from homeserver.types.canonical_json import InvalidCanonicalJson, encode_canonical_json
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion


def join_authorising_server(room_version: RoomVersion, event: EventBase) -> str | None:
    """The server whose signature the member event needs for its `join_authorised_via_users_server`.

    Since v8 (`restricted_join_rule`), "If content has a
    join_authorised_via_users_server key: If the event is not validly signed
    by the homeserver of the user ID denoted by the key, reject." Signature
    verification needs that server's keys, so the caller's signature check
    adds this server to the ones that must have signed. None when the rule
    does not apply.
    """
    if not room_version.auth.restricted_join_rule or event.type != MEMBER:
        return None
    user_id = event.content.get(AUTHORISING_USER)
    if not isinstance(user_id, str):
        return None
    return domain_of(user_id)


def _membership_in(auth_events: Mapping[StateKey, EventBase], user_id: str) -> str | None:
    """The user's current membership in the given state, None if they have no member event."""
    member = auth_events.get((MEMBER, user_id))
    return membership_of(member.content) if member is not None else None


def _join_rule(auth_events: Mapping[StateKey, EventBase]) -> str:
    """The current join rule. With no (usable) m.room.join_rules event, "invite".

    The spec leaves the rule undefined before the first m.room.join_rules
    event; Synapse and ruma both read it as "invite", so invited users can
    join, and so does this server.
    """
    event = auth_events.get(JOIN_RULES_KEY)
    if event is None:
        return INVITE_RULE
    join_rule = event.content.get("join_rule")
    return join_rule if isinstance(join_rule, str) else INVITE_RULE


def check_member_event(
    room_version: RoomVersion,
    event: EventBase,
    auth_events: Mapping[StateKey, EventBase],
    levels: PowerLevels,
) -> None:
    """Rule "If type is m.room.member"; returns if allowed, raises AuthError if not."""
    auth = room_version.auth

    # "If there is no state_key property, or no membership property in
    # content, reject."
    membership = membership_of(event.content)
    if event.state_key is None or membership is None:
        raise AuthError("m.room.member: there is no state_key property, or no membership property")
    target = event.state_key
    sender = event.sender

    # Since v8: "If content has a join_authorised_via_users_server key: If the
    # event is not validly signed by the homeserver of the user ID denoted by
    # the key, reject." Verified with the event's signatures, before these
    # rules run (see `join_authorising_server`).

    if membership == JOIN:
        _check_join(room_version, event, auth_events, levels)
        return

    sender_membership = _membership_in(auth_events, sender)
    target_membership = _membership_in(auth_events, target)

    if membership == INVITE:
        # "If content has a third_party_invite property:"
        if "third_party_invite" in event.content:
            _check_third_party_invite(event, auth_events, target_membership)
            return
        # "If the sender's current membership state is not join, reject."
        if sender_membership != JOIN:
            raise AuthError("invite: the sender's current membership state is not join")
        # "If target user's current membership state is join or ban, reject."
        if target_membership in (JOIN, BAN):
            raise AuthError(
                f"invite: the target user's current membership state is {target_membership}"
            )
        # "If the sender's power level is greater than or equal to the invite
        # level, allow. Otherwise, reject."
        if levels.user_level(sender) >= levels.named_level("invite"):
            return
        raise AuthError("invite: the sender's power level is below the invite level")

    if membership == LEAVE:
        # "If the sender matches state_key, allow if and only if that user's
        # current membership state is invite or join [v7+: or knock]."
        if sender == target:
            may_leave = {INVITE, JOIN, KNOCK} if auth.knock_join_rule else {INVITE, JOIN}
            if sender_membership in may_leave:
                return
            raise AuthError(
                f"leave: the sender's own current membership state is {sender_membership}, "
                f"not one of {sorted(may_leave)}"
            )
        # "If the sender's current membership state is not join, reject."
        if sender_membership != JOIN:
            raise AuthError("leave: the sender's current membership state is not join")
        sender_level = levels.user_level(sender)
        # "If the target user's current membership state is ban, and the
        # sender's power level is less than the ban level, reject."
        if target_membership == BAN and sender_level < levels.named_level("ban"):
            raise AuthError(
                "leave: the target user is banned and the sender's power level is "
                "less than the ban level"
            )
        # "If the sender's power level is greater than or equal to the kick
        # level, and the target user's power level is less than the sender's
        # power level, allow. Otherwise, reject."
        if sender_level >= levels.named_level("kick") and levels.user_level(target) < sender_level:
            return
        raise AuthError(
            "leave: the sender's power level is below the kick level, or the target "
            "user's power level is not less than the sender's"
        )

    if membership == BAN:
        # "If the sender's current membership state is not join, reject."
        if sender_membership != JOIN:
            raise AuthError("ban: the sender's current membership state is not join")
        # "If the sender's power level is greater than or equal to the ban
        # level, and the target user's power level is less than the sender's
        # power level, allow. Otherwise, reject."
        sender_level = levels.user_level(sender)
        if sender_level >= levels.named_level("ban") and levels.user_level(target) < sender_level:
            return
        raise AuthError(
            "ban: the sender's power level is below the ban level, or the target "
            "user's power level is not less than the sender's"
        )

    if membership == KNOCK and auth.knock_join_rule:
        # Since v7: "If the join_rule is anything other than knock [v10+: or
        # knock_restricted], reject."
        join_rule = _join_rule(auth_events)
        knock_rules = (
            {KNOCK_RULE, KNOCK_RESTRICTED} if auth.knock_restricted_join_rule else {KNOCK_RULE}
        )
        if join_rule not in knock_rules:
            raise AuthError(
                f"knock: the join_rule is {join_rule}, not one of {sorted(knock_rules)}"
            )
        # "If sender does not match state_key, reject."
        if sender != target:
            raise AuthError("knock: sender does not match state_key")
        # "If the sender's current membership is not ban, invite, or join,
        # allow. Otherwise, reject."
        if sender_membership not in (BAN, INVITE, JOIN):
            return
        raise AuthError(f"knock: the sender's current membership is {sender_membership}")

    # "Otherwise, the membership is unknown. Reject."
    raise AuthError(f"m.room.member: the membership {membership!r} is unknown")


def _check_join(
    room_version: RoomVersion,
    event: EventBase,
    auth_events: Mapping[StateKey, EventBase],
    levels: PowerLevels,
) -> None:
    """Rule "If membership is join"."""
    auth = room_version.auth
    target = event.state_key
    sender = event.sender

    # "If the only previous event is an m.room.create and the state_key is the
    # creator [v11+: the sender of the m.room.create], allow."
    create = auth_events.get(CREATE_KEY)
    if create is not None and event.prev_event_ids == (create.event_id,):
        creator = create.sender if auth.implicit_room_creator else create.content.get("creator")
        if target == creator:
            return

    # "If the sender does not match state_key, reject."
    if sender != target:
        raise AuthError("join: the sender does not match state_key")

    # "If the sender is banned, reject."
    sender_membership = _membership_in(auth_events, sender)
    if sender_membership == BAN:
        raise AuthError("join: the sender is banned")

    join_rule = _join_rule(auth_events)

    # "If the join_rule is invite [v7+: or knock] then allow if membership
    # state is invite or join."
    invite_rules = {INVITE_RULE, KNOCK_RULE} if auth.knock_join_rule else {INVITE_RULE}
    if join_rule in invite_rules:
        if sender_membership in (INVITE, JOIN):
            return
        raise AuthError(f"join: the join_rule is {join_rule} and the sender is not invited")

    # Since v8: "If the join_rule is restricted [v10+: or knock_restricted]:"
    restricted_rules: set[str] = set()
    if auth.restricted_join_rule:
        restricted_rules.add(RESTRICTED)
    if auth.knock_restricted_join_rule:
        restricted_rules.add(KNOCK_RESTRICTED)
    if join_rule in restricted_rules:
        # "If membership state is join or invite, allow."
        if sender_membership in (JOIN, INVITE):
            return
        # "If the join_authorised_via_users_server key in content is not a
        # user with sufficient permission to invite other users or is not a
        # joined member of the room, reject."
        authoriser = event.content.get(AUTHORISING_USER)
        if not isinstance(authoriser, str):
            raise AuthError(f"join: the join_rule is {join_rule} and {AUTHORISING_USER} is missing")
        if _membership_in(auth_events, authoriser) != JOIN:
            raise AuthError(f"join: {AUTHORISING_USER} {authoriser} is not a joined member")
        if levels.user_level(authoriser) < levels.named_level("invite"):
            raise AuthError(
                f"join: {AUTHORISING_USER} {authoriser} does not have sufficient "
                "permission to invite other users"
            )
        # "Otherwise, allow."
        return

    # "If the join_rule is public, allow."
    if join_rule == PUBLIC:
        return

    # "Otherwise, reject."
    raise AuthError(f"join: the join_rule {join_rule!r} does not allow the sender to join")


def _check_third_party_invite(
    event: EventBase,
    auth_events: Mapping[StateKey, EventBase],
    target_membership: str | None,
) -> None:
    """Rule "If membership is invite" > "If content has a third_party_invite property"."""
    # "If target user is banned, reject."
    if target_membership == BAN:
        raise AuthError("third-party invite: the target user is banned")
    # "If content.third_party_invite does not have a signed property, reject."
    third_party_invite = event.content["third_party_invite"]
    signed = third_party_invite.get("signed") if isinstance(third_party_invite, Mapping) else None
    if not isinstance(signed, Mapping):
        raise AuthError("third-party invite: content.third_party_invite has no signed property")
    # "If signed does not have mxid and token properties, reject."
    mxid = signed.get("mxid")
    token = signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third-party invite: signed does not have mxid and token properties")
    # "If mxid does not match state_key, reject."
    if mxid != event.state_key:
        raise AuthError("third-party invite: mxid does not match state_key")
    # "If there is no m.room.third_party_invite event in the current room state
    # with state_key matching token, reject."
    invite_event = auth_events.get((THIRD_PARTY_INVITE, token))
    if invite_event is None:
        raise AuthError(
            "third-party invite: there is no m.room.third_party_invite event with "
            "state_key matching token"
        )
    # "If sender does not match sender of the m.room.third_party_invite, reject."
    if event.sender != invite_event.sender:
        raise AuthError(
            "third-party invite: sender does not match sender of the m.room.third_party_invite"
        )
    # "If any signature in signed matches any public key in the
    # m.room.third_party_invite event, allow. Otherwise, reject."
    if signed_block_matches_public_keys(signed, public_keys_of_invite(invite_event.content)):
        return
    raise AuthError(
        "third-party invite: no signature in signed matches a public key in the "
        "m.room.third_party_invite event"
    )


def public_keys_of_invite(content: Mapping[str, Any]) -> list[str]:
    """The public keys of m.room.third_party_invite content: `public_key` and each `public_keys`."""
    keys = []
    if isinstance(content.get("public_key"), str):
        keys.append(content["public_key"])
    public_keys = content.get("public_keys")
    if isinstance(public_keys, list):
        for entry in public_keys:
            if isinstance(entry, Mapping) and isinstance(entry.get("public_key"), str):
                keys.append(entry["public_key"])
    return keys


def _signatures(signed: Mapping[str, Any]) -> Iterator[bytes]:
    """The decoded ed25519 signatures in a `signed` block (any server, any ed25519 key ID)."""
    by_server = signed.get("signatures")
    if not isinstance(by_server, Mapping):
        return
    for by_key in by_server.values():
        if not isinstance(by_key, Mapping):
            continue
        for key_id, signature in by_key.items():
            if not (isinstance(key_id, str) and key_id.startswith("ed25519:")):
                continue
            if not isinstance(signature, str):
                continue
            try:
                yield decode_base64(signature)
            except ValueError:  # binascii.Error, or non-ASCII text
                continue


def signed_block_matches_public_keys(signed: Mapping[str, Any], public_keys: list[str]) -> bool:
    """Whether any ed25519 signature in `signed` verifies under any of the public keys.

    Spec: "If any signature in signed matches any public key in the
    m.room.third_party_invite event, allow." The signed bytes are the
    canonical JSON of `signed` without `signatures` and `unsigned`
    (appendices, "Signing JSON"). Keys and signatures are unpadded base64,
    standard or URL-safe.
    """
    try:
        message = encode_canonical_json(
            {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
        )
    except InvalidCanonicalJson:
        return False
    signatures = list(_signatures(signed))
    for public_key in public_keys:
        try:
            verify_key = VerifyKey(decode_base64(public_key))
        except (ValueError, TypeError):  # bad base64, or not 32 bytes
            continue
        for signature in signatures:
            try:
                verify_key.verify(message, signature)
            except (BadSignatureError, ValueError, TypeError):
                continue
            return True
    return False
