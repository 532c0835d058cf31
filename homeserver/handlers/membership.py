"""Membership: joining, inviting, leaving, kicking, banning, unbanning, knocking, forgetting.

Spec: client-server API "Room membership" (joining, knocking, restricted
rooms, leaving, inviting, kicking, banning), the m.room.member event, "Guest
access", and the authorization rules of each room version, which decide every
transition: the event persister checks them when it builds the event (a
refusal is 403 M_FORBIDDEN naming the rule). Around them, as Synapse does:

- `kick` and `unban` are `leave` events about someone else; kicking a user
  who is not in the room is 403 M_FORBIDDEN, unbanning one who is not banned
  and anything but ban/unban/leave on a banned user 403 M_BAD_STATE;
- a membership the target already has, sent by the same sender with the very
  content given, sends nothing and answers with the existing event (the
  endpoints give only a `reason`, never the whole content, so POST .../join
  when joined sends a fresh join, which also refreshes the profile in it);
- join, invite and knock events carry the target's displayname and
  avatar_url from their profile unless the content gives them;
  `join_authorised_via_users_server` given by a client is dropped;
- a guest's events say `kind: guest`, and guests join only rooms whose
  m.room.guest_access is `can_join` (403 M_FORBIDDEN otherwise);
- restricted rooms (v8+ `restricted`, v10+ `knock_restricted`): a user who is
  neither invited nor joined may join if they are joined to one of the rooms
  the join rule's `allow` lists (403 M_FORBIDDEN otherwise); the join then
  names, in `join_authorised_via_users_server`, the local member with the most
  power who may invite (400 M_UNABLE_TO_GRANT_JOIN if there is none);
- a client transaction ID makes a change idempotent: a retry from the same
  device (or access token) answers with the first request's event, even after
  a restart and even if the change could no longer be made;
- membership changes count against `rc_message`, like every event a client
  sends.

Rooms on other servers and users of other servers go through federation
(`homeserver.handlers.remote_membership`): when no local user is joined to the
room and there is another server to ask, a user's own join, knock or leave
(rejecting an invite, withdrawing a knock) is made through the servers the
client named (`via`), the alias resolved to, the room ID's server and the
server that invited the user; an invite of another server's user is sent to
that server to sign before it is stored. With no server to ask, a room this
server does not hold is 404 M_NOT_FOUND. Third-party invites
(`third_party_signed`) need an identity server binding: 400 M_INVALID_PARAM.

Forgetting (`forget`) is allowed once the user has left or been banned (400
M_UNKNOWN while they are still in the room, as Synapse answers); the room
stays forgotten until their membership changes again (see
`homeserver.storage.stores.forgotten_rooms`).

Profile changes reach the rooms: `propagate_profile` sends a fresh join into
every room the user is joined to (the ProfileHandler calls it after a
displayname or avatar_url change).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from homeserver.handlers.auth import Requester
from homeserver.handlers.event_persistence import EventPersister, PersistedEvent
from homeserver.handlers.profile import MAX_AVATAR_URL_LEN, MAX_DISPLAYNAME_LEN
from homeserver.handlers.ratelimit import Ratelimiter
from homeserver.handlers.remote_membership import RemoteMembershipHandler, servers_of
from homeserver.handlers.room_events import has_txn_scope, txn_scope
from homeserver.state.auth_common import (
    AUTHORISING_USER,
    BAN,
    CREATE_KEY,
    INVITE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK,
    KNOCK_RESTRICTED,
    LEAVE,
    MEMBER,
    POWER_LEVELS_KEY,
    RESTRICTED,
)
from homeserver.state.power_levels import PowerLevels
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.event_batch import ClientTxn
from homeserver.storage.stores.profiles import ProfileStore
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.events import EventBase, InvalidEvent
from homeserver.types.frozen import thaw
from homeserver.types.identifiers import (
    InvalidIdentifier,
    parse_room_alias,
    parse_room_id,
    parse_user_id,
)
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

KICK: Final = "kick"
UNBAN: Final = "unban"
ACTIONS: Final = (INVITE, JOIN, LEAVE, KICK, BAN, UNBAN, KNOCK)
# The membership each action sends.
_MEMBERSHIP_OF_ACTION: Final = {KICK: LEAVE, UNBAN: LEAVE}
# Memberships whose events carry the target's profile.
_WITH_PROFILE: Final = (JOIN, INVITE, KNOCK)
# The user is still in the room: forgetting it is refused.
_STILL_IN_ROOM: Final = (JOIN, INVITE, KNOCK)

GUEST_ACCESS_KEY: Final = ("m.room.guest_access", "")
ROOM_MEMBERSHIP_CONDITION: Final = "m.room_membership"


class AliasResolver(Protocol):
    """What joining by alias needs of the room directory (hs.room_directory)."""

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]] | None: ...


async def profile_member_content(profiles: ProfileStore, user_id: str) -> JsonDict:
    """The user's displayname and avatar_url as m.room.member content (none for remote users)."""
    profile = await profiles.get_profile(user_id)
    content: JsonDict = {}
    if profile is not None:
        if profile.displayname is not None:
            content["displayname"] = profile.displayname
        if profile.avatar_url is not None:
            content["avatar_url"] = profile.avatar_url
    return content


class MembershipHandler:
    """Changes users' memberships for local requesters."""

    def __init__(
        self,
        server_name: str,
        room_storage: RoomStorage,
        persister: EventPersister,
        profiles: ProfileStore,
        directory: AliasResolver,
        request_limiter: Ratelimiter,
    ) -> None:
        self._server_name = server_name
        self._storage = room_storage
        self._persister = persister
        self._profiles = profiles
        self._directory = directory
        self._limiter = request_limiter
        self._remote: RemoteMembershipHandler | None = None

    def use_remote(self, remote: RemoteMembershipHandler) -> None:
        """Make joins, leaves, knocks and invites that need other servers through `remote`.

        Set after construction: federation is built after the room handlers.
        """
        self._remote = remote

    def _is_local(self, user_id: str) -> bool:
        return user_id.partition(":")[2] == self._server_name

    async def resolve_room(self, room_id_or_alias: str) -> str:
        """The room an ID or alias names: 400 M_INVALID_PARAM if neither, 404 for an unknown alias."""
        return (await self.resolve_room_and_servers(room_id_or_alias))[0]

    async def resolve_room_and_servers(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """The room an ID or alias names and the servers an alias says to join it through."""
        try:
            if room_id_or_alias.startswith("#"):
                alias = str(parse_room_alias(room_id_or_alias))
                resolved = await self._directory.resolve_alias(alias)
                if resolved is None:
                    raise MatrixError(Codes.NOT_FOUND, f"Room alias {alias} not found")
                return resolved[0], list(resolved[1])
            return str(parse_room_id(room_id_or_alias)), []
        except InvalidIdentifier as e:
            raise MatrixError(Codes.INVALID_PARAM, f"{room_id_or_alias!r}: {e}") from e

    async def join(
        self,
        requester: Requester,
        room_id_or_alias: str,
        *,
        reason: str | None = None,
        third_party_signed: Mapping[str, Any] | None = None,
        servers: Sequence[str] = (),
    ) -> str:
        """POST /join/{roomIdOrAlias} and POST /rooms/{roomId}/join: the joined room's ID.

        `servers` (the `via` hints) are where to join through if the room is
        on other servers only.
        """
        room_id, alias_servers = await self.resolve_room_and_servers(room_id_or_alias)
        await self.update_membership(
            requester,
            requester.user_id,
            room_id,
            JOIN,
            reason=reason,
            third_party_signed=third_party_signed,
            servers=[*servers, *alias_servers],
        )
        return room_id

    async def knock(
        self,
        requester: Requester,
        room_id_or_alias: str,
        *,
        reason: str | None = None,
        servers: Sequence[str] = (),
    ) -> str:
        """POST /knock/{roomIdOrAlias}: the knocked room's ID."""
        room_id, alias_servers = await self.resolve_room_and_servers(room_id_or_alias)
        await self.update_membership(
            requester,
            requester.user_id,
            room_id,
            KNOCK,
            reason=reason,
            servers=[*servers, *alias_servers],
        )
        return room_id

    async def update_membership(
        self,
        requester: Requester,
        target_user_id: str,
        room_id: str,
        action: str,
        *,
        reason: str | None = None,
        txn_id: str | None = None,
        content: Mapping[str, Any] | None = None,
        third_party_signed: Mapping[str, Any] | None = None,
        ratelimit: bool = True,
        servers: Sequence[str] = (),
    ) -> PersistedEvent:
        """Make `action` happen to `target_user_id` in the room, as the requester; the event.

        `content` is the m.room.member content to start from (PUT
        .../state/m.room.member gives a whole one); `reason` goes into it.
        `servers` are other servers to go through if the room is not ours.
        Raises MatrixError (see the module docstring for which).
        """
        if action not in ACTIONS:
            raise MatrixError(Codes.BAD_JSON, f"Unknown membership action {action!r}")
        if third_party_signed is not None:
            raise MatrixError(
                Codes.INVALID_PARAM,
                "'third_party_signed': third-party invites need an identity server binding,"
                " which this server does not have",
            )
        try:
            parse_user_id(target_user_id)
        except InvalidIdentifier as e:
            raise MatrixError(Codes.INVALID_PARAM, f"Invalid user ID: {e}") from e
        txn = None
        if txn_id is not None and has_txn_scope(requester):
            txn = ClientTxn(requester.user_id, txn_scope(requester), txn_id)
            # A retry answers with what the first request did, even if the
            # checks below would now refuse it (an unban, once done, is not).
            earlier = await self._event_for_txn(room_id, txn)
            if earlier is not None:
                return earlier
        membership = _MEMBERSHIP_OF_ACTION.get(action, action)
        given: JsonDict = thaw(content) if content is not None else {}
        if reason is not None:
            given["reason"] = reason
        _check_profile_fields(given)
        # Only a server can vouch for a restricted join, and only with its signature.
        given.pop(AUTHORISING_USER, None)

        if (
            self._remote is not None
            and target_user_id == requester.user_id
            and action in (JOIN, LEAVE, KNOCK)
        ):
            remote_servers = await self._remote_servers(room_id, requester.user_id, action, servers)
            if remote_servers:
                body = await self._member_content(requester, target_user_id, action, given)
                if ratelimit:
                    self._limiter.check(requester.user_id, consume=False)
                change = {
                    JOIN: self._remote.join,
                    LEAVE: self._remote.leave,
                    KNOCK: self._remote.knock,
                }[action]
                sent = await change(room_id, requester.user_id, remote_servers, body)
                if ratelimit:
                    self._limiter.record(requester.user_id)
                return sent

        room_version = await self._room_version(room_id)
        current = await self._storage.state.get_current_state_ids(room_id)
        old = await self._event(current.get((MEMBER, target_user_id)))
        old_membership = old.content.get("membership") if old is not None else None
        if action == UNBAN and old_membership != BAN:
            raise MatrixError(
                Codes.BAD_STATE,
                f"Cannot unban user who was not banned (membership={old_membership})",
                status=403,
            )
        if old_membership == BAN and action not in (BAN, UNBAN, LEAVE):
            raise MatrixError(Codes.BAD_STATE, f"Cannot {action} user who was banned", status=403)
        if (
            old is not None
            and old.sender == requester.user_id
            and old_membership == membership
            and given == thaw(old.content)
        ):
            return PersistedEvent(*await self._stored(old.event_id), duplicate=True)
        if action == KICK and old_membership not in (JOIN, INVITE, KNOCK):
            raise MatrixError(Codes.FORBIDDEN, "The target user is not in the room")

        if membership == INVITE and not self._is_local(target_user_id) and self._remote is None:
            raise MatrixError(
                Codes.INVALID_PARAM,
                f"Cannot invite {target_user_id}: this server does not federate",
            )
        if membership == JOIN:
            if requester.is_guest and not await self._guests_can_join(current):
                raise MatrixError(Codes.FORBIDDEN, "Guest access not allowed")
            authoriser = await self._restricted_join_authoriser(
                room_version, room_id, current, target_user_id, old_membership
            )
            if authoriser is not None:
                given[AUTHORISING_USER] = authoriser

        body = await self._member_content(requester, target_user_id, membership, given)

        if ratelimit:
            self._limiter.check(requester.user_id, consume=False)
        if membership == INVITE and not self._is_local(target_user_id):
            assert self._remote is not None
            invited = await self._remote.invite(room_id, requester.user_id, target_user_id, body)
            if ratelimit:
                self._limiter.record(requester.user_id)
            return invited
        try:
            sent = await self._persister.create_and_persist(
                room_id, MEMBER, target_user_id, requester.user_id, body, txn=txn
            )
        except InvalidEvent as e:
            raise MatrixError(e.errcode, str(e)) from e
        if ratelimit and not sent.duplicate:
            self._limiter.record(requester.user_id)
        return sent

    async def _member_content(
        self, requester: Requester, target_user_id: str, membership: str, given: JsonDict
    ) -> JsonDict:
        """The m.room.member content to send: what was given, the membership, kind, profile."""
        body = dict(given)
        body["membership"] = membership
        if requester.is_guest:
            body["kind"] = "guest"
        if membership in _WITH_PROFILE:
            for key, value in (
                await profile_member_content(self._profiles, target_user_id)
            ).items():
                body.setdefault(key, value)
        return body

    async def _remote_servers(
        self, room_id: str, user_id: str, action: str, hints: Sequence[str]
    ) -> list[str]:
        """The servers to make the user's own change through; [] when it is a local change.

        Local when one of our users is joined to the room (our copy of it is
        live), and when there is nobody else to ask. A leave goes through other
        servers only for an invite or knock we hold nothing else of.
        """
        if any(self._is_local(m.user_id) for m in await self._storage.rooms.get_members(room_id)):
            return []
        history = await self._storage.rooms.get_membership_history(room_id, user_id)
        latest = history[-1] if history else None
        if action == LEAVE and (latest is None or latest[1] not in (INVITE, KNOCK)):
            return []
        candidates = list(hints)
        if latest is not None and latest[1] == INVITE:
            invite = await self._event(latest[0])
            if invite is not None:
                candidates.extend(servers_of([invite.sender]))
        candidates.extend(servers_of([room_id]))
        return [s for s in dict.fromkeys(candidates) if s and s != self._server_name]

    async def _event_for_txn(self, room_id: str, txn: ClientTxn) -> PersistedEvent | None:
        sent = await self._storage.events.get_event_ids_for_txns(room_id, [txn])
        if txn not in sent:
            return None
        return PersistedEvent(*await self._stored(sent[txn]), duplicate=True)

    async def _room_version(self, room_id: str) -> RoomVersion:
        room = await self._storage.rooms.get_room(room_id)
        version = KNOWN_ROOM_VERSIONS.get(room.room_version) if room is not None else None
        extremities = await self._storage.events.get_forward_extremities(room_id)
        if version is None or not extremities:
            # Joining a room through another server is federation's, which does not exist yet.
            raise MatrixError(Codes.NOT_FOUND, f"Unknown room {room_id}")
        return version

    async def _event(self, event_id: str | None) -> EventBase | None:
        if event_id is None:
            return None
        return await self._storage.events.get_event(event_id)

    async def _stored(self, event_id: str) -> tuple[EventBase, int, bool, str | None]:
        stored = (await self._storage.events.get_stored_events([event_id]))[event_id]
        return stored.event, stored.stream_ordering, stored.outlier, stored.rejected_reason

    async def _guests_can_join(self, current: Mapping[tuple[str, str], str]) -> bool:
        event = await self._event(current.get(GUEST_ACCESS_KEY))
        return event is not None and event.content.get("guest_access") == "can_join"

    async def _restricted_join_authoriser(
        self,
        room_version: RoomVersion,
        room_id: str,
        current: Mapping[tuple[str, str], str],
        user_id: str,
        old_membership: str | None,
    ) -> str | None:
        """Who vouches for a join under a restricted join rule (None when none is needed).

        Spec: "Restricted rooms" > "Conditions"; the v8+ rule "If the join_rule
        is restricted": the authoriser must be joined and able to invite.
        """
        join_rules = await self._event(current.get(JOIN_RULES_KEY))
        rule = join_rules.content.get("join_rule") if join_rules is not None else None
        restricted = (rule == RESTRICTED and room_version.auth.restricted_join_rule) or (
            rule == KNOCK_RESTRICTED and room_version.auth.knock_restricted_join_rule
        )
        if not restricted or old_membership in (JOIN, INVITE):
            return None
        assert join_rules is not None
        allowed_rooms = _allowed_room_ids(join_rules.content.get("allow"))
        if not await self._joined_any(user_id, allowed_rooms):
            raise MatrixError(
                Codes.FORBIDDEN,
                "You do not belong to any of the required rooms/spaces to join this room.",
            )
        levels_events = await self._storage.events.get_events(
            [current[key] for key in (CREATE_KEY, POWER_LEVELS_KEY) if key in current]
        )
        levels = PowerLevels.from_events(
            room_version,
            levels_events.get(current.get(CREATE_KEY, "")),
            levels_events.get(current.get(POWER_LEVELS_KEY, "")),
        )
        invite_level = levels.named_level("invite")
        candidates = [
            m.user_id
            for m in await self._storage.rooms.get_members(room_id, (JOIN,))
            if self._is_local(m.user_id) and levels.user_level(m.user_id) >= invite_level
        ]
        if not candidates:
            raise MatrixError(
                Codes.UNABLE_TO_GRANT_JOIN,
                "Unable to find a user which could issue an invite",
                status=400,
            )
        return max(candidates, key=lambda u: (levels.user_level(u), u))

    async def _joined_any(self, user_id: str, room_ids: list[str]) -> bool:
        for room_id in room_ids:
            member = await self._storage.rooms.get_membership(room_id, user_id)
            if member is not None and member.membership == JOIN:
                return True
        return False

    # -- reading and forgetting

    async def get_joined_rooms(self, user_id: str) -> list[str]:
        """GET /joined_rooms."""
        return [m.room_id for m in await self._storage.rooms.get_rooms_for_user(user_id, (JOIN,))]

    async def forget(self, user_id: str, room_id: str) -> None:
        """POST /rooms/{roomId}/forget: 400 M_UNKNOWN while the user is still in the room."""
        membership = await self._storage.forgotten.forget(user_id, room_id)
        if membership in _STILL_IN_ROOM:
            raise MatrixError(Codes.UNKNOWN, f"User {user_id} is in room {room_id}", status=400)

    async def is_forgotten(self, user_id: str, room_id: str) -> bool:
        """Whether the user forgot the room and has had no membership change since."""
        return await self._storage.forgotten.is_forgotten(user_id, room_id)

    async def get_forgotten_rooms(self, user_id: str) -> set[str]:
        """The rooms /sync leaves out of the user's `leave` section."""
        return await self._storage.forgotten.get_forgotten_rooms(user_id)

    # -- profile changes

    async def propagate_profile(self, requester: Requester, user_id: str) -> None:
        """Send a fresh join, with the new profile, into each room the user is joined to.

        A room that refuses it (the user lost the right to change their own
        membership event there) is skipped; the others still get theirs.
        """
        for room_id in await self.get_joined_rooms(user_id):
            try:
                await self.update_membership(requester, user_id, room_id, JOIN, ratelimit=False)
            except Exception:
                logger.warning(
                    "Could not update %s's member event in %s", user_id, room_id, exc_info=True
                )


def _check_profile_fields(content: Mapping[str, Any]) -> None:
    """The limits profiles have, on the copies a member event carries (400 M_BAD_JSON)."""
    for key, limit in (("displayname", MAX_DISPLAYNAME_LEN), ("avatar_url", MAX_AVATAR_URL_LEN)):
        value = content.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise MatrixError(Codes.BAD_JSON, f"'{key}' must be a string")
        if len(value) > limit:
            raise MatrixError(Codes.BAD_JSON, f"'{key}' is too long (max {limit})")


def _allowed_room_ids(allow: object) -> list[str]:
    """The rooms an `allow` list of m.room.join_rules names with m.room_membership conditions."""
    if not isinstance(allow, list):
        return []
    return [
        entry["room_id"]
        for entry in allow
        if isinstance(entry, Mapping)
        and entry.get("type") == ROOM_MEMBERSHIP_CONDITION
        and isinstance(entry.get("room_id"), str)
    ]
