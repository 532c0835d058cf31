"""The resident side of membership handshakes: other servers' users joining, leaving,
knocking on our rooms, and other servers inviting our users.

Spec: server-server API "Joining Rooms" (GET /v1/make_join, PUT /v1 and
/v2/send_join), "Restricted rooms", "Knocking upon a room" (make_knock,
send_knock), "Leaving Rooms (Rejecting Invites)" (make_leave, send_leave),
"Inviting to a room" (PUT /v2/invite) and "Server Access Control Lists": an
origin the room's m.room.server_acl denies gets 403 M_FORBIDDEN everywhere.

make_*: the user must be of the origin server and we must be in the room (a
local user joined: else 404 for a room we don't know, 403 for one we left);
the template is built at the head of the room as a local event would be
(`EventPersister.build_template`) and refused with 403 when the rules forbid
it against the current state (banned, invite-only, knocking not allowed).
Joins and knocks check the room's version against `ver` (400
M_INCOMPATIBLE_ROOM_VERSION naming it). In a restricted room, a user who is
neither invited nor joined must be joined to one of the rooms the join rule
allows (403 M_FORBIDDEN; 400 M_UNABLE_TO_AUTHORISE_JOIN when we are in none
of them); the template then names in `join_authorised_via_users_server` the
local member with the most power who may invite (400 M_UNABLE_TO_GRANT_JOIN
if none may), as Synapse does.

send_*: the event must be valid in the room's version, have the path's ID,
be the expected membership of a user of the origin about themselves, carry
the signatures of the servers that must sign it and an intact content hash
(400 M_INVALID_PARAM otherwise, as the spec suggests). A join that names one
of our users as its authoriser is checked again for the allow conditions
and signed by us. Its prev_events and auth_events must be events we hold;
it must pass the rules against its auth events and against the room's
current state (403 M_FORBIDDEN otherwise, nothing stored); then it is
persisted. A retry of an event we already stored gets the same answer.
send_join answers with the state before the join, the auth chain of that
state and of the join, our copy of the join and the servers in the room
(`omit_members` is ignored: the full state is sent, `members_omitted`
false); send_knock with the room's stripped state as full PDUs.

invite: the room's version must be one we support (400
M_INCOMPATIBLE_ROOM_VERSION); the event must be an invite, from a user of the
origin, of one of our users, signed by the origin with an intact hash (400
M_INVALID_PARAM). `invite_room_state` must hold valid events of the room
including its m.room.create (room versions 1 to 11, still migrating: only
warned about, as the spec asks). We sign the invite and answer with it. When
one of our users is joined to the room, the invite reaches us again in a
transaction from the inviting server, and is stored then, in the timeline;
otherwise we store it as an outlier with the room state in
`unsigned.invite_room_state`, and record it as the invitee's membership of
the room, which is what /sync reads.

THE RELAY OF ACCEPTED MEMBERSHIP EVENTS to the room's other servers ("The
resident server must also send the event to other servers participating in
the room") is the federation sender's; it sends only our users' events so
far, so those servers learn of the event through the next event of ours that
lists it in its prev_events.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from signedjson.types import SigningKey

from homeserver.federation.event_checks import (
    DroppedPdu,
    KeySource,
    auth_event_ids_needed,
    check_auth_events,
    check_content_hash,
    check_signatures,
    parse_pdu,
)
from homeserver.handlers.event_persistence import EventPersister, EventToPersist, PersistedEvent
from homeserver.handlers.sync_rooms import STRIPPED_STATE_KEYS
from homeserver.state.auth_common import (
    AUTHORISING_USER,
    CREATE,
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
from homeserver.state.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from homeserver.state.power_levels import PowerLevels
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.state import StateMap
from homeserver.storage.stores.sync import SyncStore
from homeserver.storage.stores.users import UserStore
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.events import EventBase, make_event
from homeserver.types.identifiers import InvalidIdentifier, domain_of
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.types.signing import sign_event_dict

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

ROOM_MEMBERSHIP_CONDITION = "m.room_membership"
"""The `allow` condition of restricted join rules: membership of another room."""

MIGRATING_ROOM_VERSIONS = frozenset(str(v) for v in range(1, 12))
"""Versions whose `invite_room_state` the spec (v1.16) asks only to warn about while
servers migrate to sending full PDUs."""

AUTH_CHAIN_BATCH = 500


class ResidentMembership:
    """Answers make_*/send_* and invites from other servers (see the module docstring)."""

    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        storage: RoomStorage,
        persister: EventPersister,
        keys: KeySource,
        sync_store: SyncStore,
        server_allowed_in_room: Callable[[str, str], Awaitable[bool]],
        users: UserStore,
    ) -> None:
        self._server_name = server_name
        self._signing_key = signing_key
        self._storage = storage
        self._persister = persister
        self._keys = keys
        self._sync_store = sync_store
        self._server_allowed_in_room = server_allowed_in_room
        self._users = users

    # --- make_join, make_leave, make_knock ---------------------------------------------

    async def make_membership(
        self,
        origin: str,
        room_id: str,
        user_id: str,
        membership: str,
        supported_versions: Collection[str] | None,
    ) -> JsonDict:
        """A template of `user_id`'s `membership` event: {"room_version", "event"}.

        `supported_versions` (the `ver` query) is checked for joins and knocks.
        """
        if _server_of(user_id) != origin:
            raise MatrixError(
                Codes.FORBIDDEN, f"User {user_id} is not of the requesting server {origin}"
            )
        room_version = await self._resident_room_version(origin, room_id)
        if supported_versions is not None and room_version.identifier not in supported_versions:
            raise MatrixError(
                Codes.INCOMPATIBLE_ROOM_VERSION,
                f"Your homeserver does not support the features required to {membership} this room",
                room_version=room_version.identifier,
            )
        if membership == KNOCK and not room_version.auth.knock_join_rule:
            raise MatrixError(
                Codes.FORBIDDEN, f"Room version {room_version.identifier} does not support knocking"
            )
        content: JsonDict = {"membership": membership}
        if membership == JOIN:
            current = await self._storage.state.get_current_state_ids(room_id)
            authoriser = await self._join_authoriser(room_version, room_id, current, user_id)
            if authoriser is not None:
                content[AUTHORISING_USER] = authoriser
        try:
            event, _ = await self._persister.build_template(
                room_id, MEMBER, user_id, user_id, content
            )
        except AuthError as e:
            raise MatrixError(Codes.FORBIDDEN, e.message) from None
        template = event.pdu_json()
        for key in ("hashes", "signatures", "unsigned"):
            template.pop(key, None)
        return {"room_version": room_version.identifier, "event": template}

    # --- send_join, send_leave, send_knock ---------------------------------------------

    async def send_join(self, origin: str, room_id: str, event_id: str, pdu: Any) -> JsonDict:
        """PUT /send_join: the v2 answer (v1 wraps it)."""
        room_version = await self._room_version(origin, room_id)
        event = await self._checked_membership_event(
            origin, room_id, event_id, pdu, room_version, JOIN
        )
        persisted = await self._accept(origin, event)
        state = await self._storage.state.get_state_ids_for_event(persisted.event_id)
        assert state is not None  # accepted into the timeline
        state_ids = list(state.values())
        chain = await self._auth_chain([*state_ids, *persisted.event.auth_event_ids])
        events = await self._storage.events.get_events([*state_ids, *chain])
        joined_servers = {
            _server_of(state_key)
            for (event_type, state_key), member_id in state.items()
            if event_type == MEMBER
            and member_id in events
            and events[member_id].content.get("membership") == JOIN
        }
        return {
            "origin": self._server_name,
            "state": [events[i].pdu_json() for i in state_ids if i in events],
            "auth_chain": [events[i].pdu_json() for i in chain if i in events],
            "event": persisted.event.pdu_json(),
            "members_omitted": False,
            "servers_in_room": sorted(s for s in joined_servers if s is not None),
        }

    async def send_leave(self, origin: str, room_id: str, event_id: str, pdu: Any) -> None:
        """PUT /send_leave."""
        room_version = await self._room_version(origin, room_id)
        event = await self._checked_membership_event(
            origin, room_id, event_id, pdu, room_version, LEAVE
        )
        await self._accept(origin, event)

    async def send_knock(self, origin: str, room_id: str, event_id: str, pdu: Any) -> JsonDict:
        """PUT /send_knock: {"knock_room_state": the room's stripped state, as PDUs}."""
        room_version = await self._room_version(origin, room_id)
        if not room_version.auth.knock_join_rule:
            raise MatrixError(
                Codes.FORBIDDEN, f"Room version {room_version.identifier} does not support knocking"
            )
        event = await self._checked_membership_event(
            origin, room_id, event_id, pdu, room_version, KNOCK
        )
        persisted = await self._accept(origin, event)
        state = await self._storage.state.get_state_ids_for_event(persisted.event_id)
        assert state is not None
        wanted = [state[key] for key in STRIPPED_STATE_KEYS if key in state]
        events = await self._storage.events.get_events(wanted)
        return {"knock_room_state": [events[i].pdu_json() for i in wanted if i in events]}

    # --- invites ---------------------------------------------------------------------------

    async def on_invite(
        self, origin: str, room_id: str, event_id: str, body: Mapping[str, Any]
    ) -> JsonDict:
        """PUT /v2/invite: {"event": the invite with our signature added}."""
        version_id = body.get("room_version")
        if not isinstance(version_id, str):
            raise MatrixError(Codes.MISSING_PARAM, "'room_version' must be a string")
        room_version = KNOWN_ROOM_VERSIONS.get(version_id)
        if room_version is None:
            raise MatrixError(
                Codes.INCOMPATIBLE_ROOM_VERSION,
                f"This server does not support room version {version_id}",
                room_version=version_id,
            )
        if await self._storage.rooms.get_room(room_id) is not None:
            await self._check_acl(origin, room_id)
        event = _parse(body.get("event"), room_version)
        _check_path(event, room_id, event_id)
        if event.type != MEMBER or event.content.get("membership") != INVITE:
            raise MatrixError(Codes.INVALID_PARAM, "The event is not an invite")
        target = event.state_key or ""
        if _server_of(target) != self._server_name or not await self._is_active_user(target):
            raise MatrixError(Codes.INVALID_PARAM, f"{target} is not a user of this server")
        if _server_of(event.sender) != origin:
            raise MatrixError(
                Codes.INVALID_PARAM, f"The inviter {event.sender} is not of the server {origin}"
            )
        await self._check_signed_and_intact(event)
        room_state = await self._invite_room_state(
            origin, room_version, room_id, body.get("invite_room_state")
        )
        signed = sign_event_dict(
            room_version, event.pdu_json(), self._server_name, self._signing_key
        )
        if not await self._local_user_joined(room_id):
            # parse_pdu drops what the sender put in `unsigned`: the room state is
            # added back after, as ours, for /sync to show.
            kept = {**signed, "unsigned": {"invite_room_state": room_state}}
            await self._store_out_of_band(make_event(kept, room_version))
        return {"event": signed}

    # --- the checks ------------------------------------------------------------------------

    async def _room_version(self, origin: str, room_id: str) -> RoomVersion:
        """The version of a room we hold, once the ACL lets the origin in (404, 403)."""
        room = await self._storage.rooms.get_room(room_id)
        room_version = KNOWN_ROOM_VERSIONS.get(room.room_version) if room is not None else None
        if room_version is None or not await self._storage.events.get_forward_extremities(room_id):
            raise MatrixError(Codes.NOT_FOUND, f"Unknown room {room_id}")
        await self._check_acl(origin, room_id)
        return room_version

    async def _resident_room_version(self, origin: str, room_id: str) -> RoomVersion:
        room_version = await self._room_version(origin, room_id)
        if not await self._local_user_joined(room_id):
            raise MatrixError(Codes.FORBIDDEN, f"This server is not in room {room_id}")
        return room_version

    async def _check_acl(self, origin: str, room_id: str) -> None:
        if not await self._server_allowed_in_room(origin, room_id):
            raise MatrixError(Codes.FORBIDDEN, "Server is banned from room")

    async def _is_active_user(self, user_id: str) -> bool:
        user = await self._users.get_user(user_id)
        return user is not None and not user.deactivated

    async def _local_user_joined(self, room_id: str) -> bool:
        members = await self._storage.rooms.get_members(room_id)
        return any(_server_of(m.user_id) == self._server_name for m in members)

    async def _check_signed_and_intact(self, event: EventBase) -> None:
        """Steps 2 and 3 on an event handed to us directly: both must pass (400 otherwise)."""
        await self._check_signatures(event)
        if check_content_hash(event)[1]:
            raise MatrixError(Codes.INVALID_PARAM, "The event's content hash does not match")

    async def _check_signatures(self, event: EventBase) -> None:
        try:
            await check_signatures(self._keys, event)
        except DroppedPdu as e:
            raise MatrixError(Codes.INVALID_PARAM, str(e)) from None

    async def _checked_membership_event(
        self,
        origin: str,
        room_id: str,
        event_id: str,
        pdu: Any,
        room_version: RoomVersion,
        membership: str,
    ) -> EventBase:
        """The event of a send_* request, checked; with our signature when we authorise it."""
        event = _parse(pdu, room_version)
        if event.type != MEMBER or event.content.get("membership") != membership:
            raise MatrixError(Codes.INVALID_PARAM, f"The event is not a {membership} event")
        if event.state_key != event.sender:
            raise MatrixError(Codes.INVALID_PARAM, "The state_key is not the sender")
        if _server_of(event.sender) != origin:
            raise MatrixError(
                Codes.INVALID_PARAM, f"The sender {event.sender} is not of the server {origin}"
            )
        authoriser = event.content.get(AUTHORISING_USER)
        if (
            membership == JOIN
            and room_version.auth.restricted_join_rule
            and isinstance(authoriser, str)
            and _server_of(authoriser) == self._server_name
        ):
            current = await self._storage.state.get_current_state_ids(room_id)
            if not await self._invited_or_joined(current, event.sender):
                await self._check_allow_conditions(room_version, current, event.sender)
            event = parse_pdu(
                sign_event_dict(
                    room_version, event.pdu_json(), self._server_name, self._signing_key
                ),
                room_version,
            )
        _check_path(event, room_id, event_id)
        await self._check_signed_and_intact(event)
        return event

    async def _accept(self, origin: str, event: EventBase) -> PersistedEvent:
        """Store a membership event the origin hands us, if the rules allow it (403 otherwise)."""
        stored = await self._storage.events.get_stored_events([event.event_id])
        if event.event_id in stored and not stored[event.event_id].outlier:
            held = stored[event.event_id]
            if held.rejected_reason is not None:
                raise MatrixError(
                    Codes.FORBIDDEN, f"The event was rejected: {held.rejected_reason}"
                )
            return PersistedEvent(held.event, held.stream_ordering, False, None, True)
        prevs = await self._storage.events.get_stored_events(list(event.prev_event_ids))
        unknown = [p for p in event.prev_event_ids if p not in prevs or prevs[p].outlier]
        if unknown:
            raise MatrixError(Codes.INVALID_PARAM, f"Unknown prev_events {unknown}")
        wanted = auth_event_ids_needed(event)
        auth = await self._storage.events.get_stored_events(wanted)
        missing = [a for a in wanted if a not in auth]
        if missing:
            raise MatrixError(Codes.INVALID_PARAM, f"Unknown auth_events {missing}")
        try:
            check_auth_events(
                event, {i: (s.event, s.rejected_reason is not None) for i, s in auth.items()}
            )
            current = await self._storage.state.get_current_state_ids(event.room_id)
            await self._check_against(event, current)
        except AuthError as e:
            raise MatrixError(Codes.FORBIDDEN, e.message) from None
        # The origin only talks to us: the other servers in the room hear of the event
        # from our federation sender (see "Relaying" in homeserver/federation/sender.py).
        relays = self._storage.federation_sender
        await relays.add_relayed(event.event_id, origin)
        try:
            (persisted,) = await self._persister.persist([EventToPersist(event)])
        except Exception:
            # Unless it was stored after all: then the mark must stay for the sender.
            held = await self._storage.events.get_stored_events([event.event_id])
            if event.event_id not in held or held[event.event_id].outlier:
                await relays.delete_relayed([event.event_id])
            raise
        if persisted.rejected_reason is not None:
            await relays.delete_relayed([event.event_id])
            raise MatrixError(
                Codes.FORBIDDEN, f"The event was rejected: {persisted.rejected_reason}"
            )
        logger.info(
            "Accepted %s of %s in %s from %s",
            event.content.get("membership"),
            event.sender,
            event.room_id,
            origin,
        )
        return persisted

    async def _check_against(self, event: EventBase, state: StateMap) -> None:
        keys = auth_types_for_event(event.room_version, event) | {CREATE_KEY}
        ids = {key: state[key] for key in keys if key in state}
        stored = await self._storage.events.get_stored_events(list(ids.values()))
        auth_events = {
            key: stored[i].event
            for key, i in ids.items()
            if i in stored and stored[i].rejected_reason is None
        }
        check_auth_rules(event.room_version, event, auth_events)

    # --- restricted rooms ---------------------------------------------------------------------

    async def _join_authoriser(
        self, room_version: RoomVersion, room_id: str, current: StateMap, user_id: str
    ) -> str | None:
        """The local user to vouch for a join under a restricted join rule (None if none is needed)."""
        if not await self._is_restricted(room_version, current):
            return None
        if await self._invited_or_joined(current, user_id):
            return None
        await self._check_allow_conditions(room_version, current, user_id)
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
            for m in await self._storage.rooms.get_members(room_id)
            if _server_of(m.user_id) == self._server_name
            and levels.user_level(m.user_id) >= invite_level
        ]
        if not candidates:
            raise MatrixError(
                Codes.UNABLE_TO_GRANT_JOIN,
                "This server has no user who may invite you",
                status=400,
            )
        return max(candidates, key=lambda u: (levels.user_level(u), u))

    async def _invited_or_joined(self, current: StateMap, user_id: str) -> bool:
        """Whether the user may join without anyone vouching for them (restricted rooms)."""
        member_id = current.get((MEMBER, user_id))
        member = await self._storage.events.get_event(member_id) if member_id else None
        return member is not None and member.content.get("membership") in (JOIN, INVITE)

    async def _is_restricted(self, room_version: RoomVersion, current: StateMap) -> bool:
        rules_id = current.get(JOIN_RULES_KEY)
        rules = await self._storage.events.get_event(rules_id) if rules_id else None
        rule = rules.content.get("join_rule") if rules is not None else None
        return (rule == RESTRICTED and room_version.auth.restricted_join_rule) or (
            rule == KNOCK_RESTRICTED and room_version.auth.knock_restricted_join_rule
        )

    async def _check_allow_conditions(
        self, room_version: RoomVersion, current: StateMap, user_id: str
    ) -> None:
        """Spec "Restricted rooms": the user is joined to one of the allowed rooms we are in."""
        rules_id = current.get(JOIN_RULES_KEY)
        rules = await self._storage.events.get_event(rules_id) if rules_id else None
        allow = rules.content.get("allow") if rules is not None else None
        allowed = [
            entry["room_id"]
            for entry in (allow if isinstance(allow, Sequence) else ())
            if isinstance(entry, Mapping)
            and entry.get("type") == ROOM_MEMBERSHIP_CONDITION
            and isinstance(entry.get("room_id"), str)
        ]
        known = [r for r in allowed if await self._local_user_joined(r)]
        if not known:
            raise MatrixError(
                Codes.UNABLE_TO_AUTHORISE_JOIN,
                "This server is in none of the rooms that allow joining this one",
                status=400,
            )
        for allowed_room in known:
            member = await self._storage.rooms.get_membership(allowed_room, user_id)
            if member is not None and member.membership == JOIN:
                return
        raise MatrixError(
            Codes.FORBIDDEN,
            "You do not belong to any of the required rooms/spaces to join this room.",
        )

    # --- invite room state and out-of-band invites ----------------------------------------------

    async def _invite_room_state(
        self, origin: str, room_version: RoomVersion, room_id: str, given: Any
    ) -> list[JsonDict]:
        """The `invite_room_state` to keep, checked as the spec asks of the room's version."""
        strict = room_version.identifier not in MIGRATING_ROOM_VERSIONS
        problems: list[str] = []
        kept: list[JsonDict] = []
        has_create = False
        if given is not None and not isinstance(given, list):
            raise MatrixError(Codes.INVALID_PARAM, "'invite_room_state' must be a list")
        for item in given or ():
            if not isinstance(item, Mapping):
                problems.append("an entry is not an object")
                continue
            try:
                event = parse_pdu(item, room_version)
            except DroppedPdu as e:
                problems.append(str(e))
                if not strict and isinstance(item.get("type"), str):
                    kept.append(dict(item))
                continue
            if event.room_id != room_id:
                problems.append(f"{event.event_id} is not of room {room_id}")
                continue
            if strict:
                await self._check_signatures(event)
            has_create = has_create or (event.type == CREATE and event.state_key == "")
            kept.append(event.pdu_json())
        if not has_create:
            problems.append("it has no m.room.create event")
        if problems and strict:
            errcode = Codes.MISSING_PARAM if not has_create else Codes.INVALID_PARAM
            raise MatrixError(errcode, f"Bad 'invite_room_state': {'; '.join(problems)}")
        if problems:
            logger.warning(
                "Invite to %s from %s has a bad invite_room_state: %s",
                room_id,
                origin,
                "; ".join(problems),
            )
        return kept

    async def _store_out_of_band(self, invite: EventBase) -> None:
        """Store an invite to a room we are not in, as the invitee's membership of it."""
        if await self._storage.events.have_events([invite.event_id]):
            return  # a retry: recorded the first time, and maybe superseded since
        assert invite.state_key is not None
        # The membership goes in first, at the current position: a /sync woken by
        # the event's arrival must find it, or an incremental sync would never
        # show the invite. Until the event is stored, /sync skips a membership
        # whose event it can't read; after, its position is corrected.
        await self._sync_store.record_out_of_band_membership(
            invite.room_id,
            invite.state_key,
            INVITE,
            invite.event_id,
            self._storage.events.current_token(),
        )
        (persisted,) = await self._persister.persist([EventToPersist(invite, outlier=True)])
        await self._sync_store.record_out_of_band_membership(
            invite.room_id, invite.state_key, INVITE, persisted.event_id, persisted.stream_ordering
        )

    # --- auth chains ------------------------------------------------------------------------------

    async def _auth_chain(self, event_ids: Collection[str]) -> list[str]:
        """Every event the given events' auth_events lead to (not the events themselves)."""
        chain: dict[str, None] = {}
        frontier = list(dict.fromkeys(event_ids))
        seen = set(frontier)
        while frontier:
            batch, frontier = frontier[:AUTH_CHAIN_BATCH], frontier[AUTH_CHAIN_BATCH:]
            events = await self._storage.events.get_events(batch)
            for event in events.values():
                for auth_id in event.auth_event_ids:
                    chain.setdefault(auth_id)
                    if auth_id not in seen:
                        seen.add(auth_id)
                        frontier.append(auth_id)
        return list(chain)


def _parse(pdu: Any, room_version: RoomVersion) -> EventBase:
    """Step 1 on an event handed to us directly (400 M_BAD_JSON if it is not a valid one)."""
    try:
        return parse_pdu(pdu, room_version)
    except DroppedPdu as e:
        raise MatrixError(Codes.BAD_JSON, str(e)) from None


def _check_path(event: EventBase, room_id: str, event_id: str) -> None:
    """The event is the one the request's path names."""
    if event.event_id != event_id:
        raise MatrixError(
            Codes.INVALID_PARAM, f"The event's ID is {event.event_id}, not {event_id}"
        )
    if event.room_id != room_id:
        raise MatrixError(Codes.INVALID_PARAM, f"The event is not of room {room_id}")


def _server_of(user_id: str) -> str | None:
    try:
        return domain_of(user_id)
    except (InvalidIdentifier, ValueError):
        return None
