"""Creating rooms: POST /createRoom, and the new room of an upgrade.

Spec: client-server API "Creation" (POST /createRoom: the order of the
events, the presets), room versions v11 (the creator is the create event's
sender) and v12 (the room ID is derived from the create event; creators have
infinite power and are not listed in power levels; m.room.tombstone needs
more than `state_default`).

A new room's first events are built in memory, one after the other, each
checked against the authorization rules with the state the earlier ones make,
and only then stored, in one call to the event persister (so in one
transaction for up to 100 events). A request whose events the rules refuse
(say, a `power_level_content_override` that takes away the creator's power to
name the room) is 400 M_INVALID_ROOM_STATE and leaves nothing behind; so does
every other bad input, checked before anything is written. A requested alias
is checked to be free first (400 M_ROOM_IN_USE) and taken once the room is
stored (the room directory maps aliases only to rooms that exist); an
`m.room.canonical_alias` in `initial_state` may name only that alias, since
no other can point at the new room yet (400 M_BAD_ALIAS).

Where the spec leaves choices, this does what Synapse does: the default power
levels (the creator 100, `invite` 50 except in private presets, the levels of
the sensitive state events), `trusted_private_chat` invitees at the creator's
level (v12: added to `additional_creators` instead), no m.room.guest_access
event for `public_chat` (its absence means "forbidden"), an `m.room.power_levels`
in `initial_state` replacing the generated one, and one `rc_message` action
per room created, however many events it takes.

Invites go only to users of this server: inviting a user elsewhere needs the
federation invite exchange, which does not exist yet (400 M_INVALID_PARAM), and
so do third-party invites (`invite_3pid`), which need an identity server.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

from homeserver.clock import Clock
from homeserver.handlers.auth import Requester
from homeserver.handlers.event_persistence import EventPersister, EventToPersist, PersistedEvent
from homeserver.handlers.membership import profile_member_content
from homeserver.handlers.ratelimit import Ratelimiter
from homeserver.state.auth_common import (
    CREATE,
    INVITE,
    JOIN,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    AuthError,
    StateKey,
)
from homeserver.state.auth_rules import auth_types_from_fields, check_auth_rules, select_auth_events
from homeserver.storage.stores.profiles import ProfileStore
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.event_builder import build_event, random_event_id_localpart
from homeserver.types.events import EventBase, InvalidEvent
from homeserver.types.hashing import compute_reference_hash
from homeserver.types.identifiers import InvalidIdentifier, parse_room_alias, parse_user_id
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

NAME = "m.room.name"
TOPIC = "m.room.topic"
AVATAR = "m.room.avatar"
CANONICAL_ALIAS = "m.room.canonical_alias"
HISTORY_VISIBILITY = "m.room.history_visibility"
GUEST_ACCESS = "m.room.guest_access"
TOMBSTONE = "m.room.tombstone"
SERVER_ACL = "m.room.server_acl"
ENCRYPTION = "m.room.encryption"

PRIVATE_CHAT = "private_chat"
TRUSTED_PRIVATE_CHAT = "trusted_private_chat"
PUBLIC_CHAT = "public_chat"


@dataclass(frozen=True, slots=True)
class Preset:
    """What a createRoom preset sets (spec: the presets table; Synapse's extras)."""

    join_rule: str
    history_visibility: str
    guest_can_join: bool
    # Invitees get the creator's power (v12: they become additional creators).
    invitees_are_creators: bool
    # Applied over the default power levels, before the request's override:
    # top-level levels, and levels of event types.
    levels: Mapping[str, int]
    event_levels: Mapping[str, int]


PRESETS: Mapping[str, Preset] = {
    PRIVATE_CHAT: Preset("invite", "shared", True, False, {"invite": 0}, {}),
    TRUSTED_PRIVATE_CHAT: Preset("invite", "shared", True, True, {"invite": 0}, {}),
    # Call invites ring every member's device: moderators only in public rooms (as
    # Synapse means to; it puts the level at the top level, where it does nothing).
    PUBLIC_CHAT: Preset("public", "shared", False, False, {}, {"m.call.invite": 50}),
}


def default_power_levels(room_version: RoomVersion, creator: str) -> JsonDict:
    """The m.room.power_levels content of a new room before presets and overrides (Synapse's)."""
    events: JsonDict = {
        NAME: 50,
        POWER_LEVELS: 100,
        HISTORY_VISIBILITY: 100,
        CANONICAL_ALIAS: 50,
        AVATAR: 50,
        # v12 creators have infinite power: the spec wants a tombstone above
        # state_default and above the 100 other admins may hold.
        TOMBSTONE: 150 if room_version.auth.creator_power else 100,
        SERVER_ACL: 100,
        ENCRYPTION: 100,
    }
    return {
        # v12: creators must not be listed (the auth rules refuse it).
        "users": {} if room_version.auth.creator_power else {creator: 100},
        "users_default": 0,
        "events": events,
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50,
    }


def merge_power_levels(base: JsonDict, override: Mapping[str, Any]) -> JsonDict:
    """`base` with `override`'s top-level keys replacing its own (as the spec's override does)."""
    merged = dict(base)
    merged.update(override)
    return merged


def topic_content(topic: str) -> JsonDict:
    """m.room.topic content with the plain-text representation the spec (v1.15+) adds."""
    return {"topic": topic, "m.topic": {"m.text": [{"body": topic, "mimetype": "text/plain"}]}}


# -- the request


def _bad_json(message: str) -> MatrixError:
    return MatrixError(Codes.BAD_JSON, message)


def _optional(body: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise _bad_json(f"'{key}' must be {what}")
    return value


@dataclass(frozen=True, slots=True)
class InitialStateEvent:
    type: str
    state_key: str
    content: JsonDict


@dataclass(frozen=True, slots=True)
class CreateRoomRequest:
    """A checked POST /createRoom body."""

    room_version: RoomVersion
    preset: str
    public: bool
    alias_localpart: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: tuple[str, ...] = ()
    is_direct: bool = False
    initial_state: tuple[InitialStateEvent, ...] = ()
    creation_content: JsonDict = field(default_factory=dict)
    power_level_content_override: JsonDict | None = None

    @classmethod
    def from_json(
        cls, body: Mapping[str, Any], *, default_room_version: RoomVersion
    ) -> CreateRoomRequest:
        """Check a request body; 400 M_BAD_JSON (or the spec's errcode) naming the problem."""
        visibility = _optional(body, "visibility", str, "'public' or 'private'") or "private"
        if visibility not in ("public", "private"):
            raise _bad_json("'visibility' must be 'public' or 'private'")
        preset = _optional(body, "preset", str, "a string")
        if preset is None:
            preset = PUBLIC_CHAT if visibility == "public" else PRIVATE_CHAT
        if preset not in PRESETS:
            raise _bad_json(f"'{preset}' is not a valid preset")

        version_id = _optional(body, "room_version", str, "a string")
        room_version = (
            default_room_version if version_id is None else KNOWN_ROOM_VERSIONS.get(version_id)
        )
        if room_version is None:
            raise MatrixError(
                Codes.UNSUPPORTED_ROOM_VERSION,
                f"Your homeserver does not support room version {version_id!r}",
            )

        alias_localpart = _optional(body, "room_alias_name", str, "a string")
        if alias_localpart is not None:
            if any(c in alias_localpart for c in string.whitespace) or ":" in alias_localpart:
                raise MatrixError(
                    Codes.INVALID_PARAM,
                    "'room_alias_name' is the alias's local part: no ':' or whitespace"
                    " ('wombat', not '#wombat:example.com')",
                )

        invite = _optional(body, "invite", list, "a list of user IDs") or []
        for user_id in invite:
            if not isinstance(user_id, str):
                raise _bad_json("'invite' must be a list of user IDs")
            try:
                parse_user_id(user_id)
            except InvalidIdentifier as e:
                raise MatrixError(Codes.INVALID_PARAM, f"Invalid user ID in 'invite': {e}") from e
        if _optional(body, "invite_3pid", list, "a list"):
            raise MatrixError(
                Codes.INVALID_PARAM,
                "'invite_3pid': third-party invites need an identity server binding,"
                " which this server does not have",
            )

        initial_state = []
        for entry in _optional(body, "initial_state", list, "a list of state events") or []:
            if not isinstance(entry, dict):
                raise _bad_json("Each 'initial_state' entry must be an object")
            event_type = entry.get("type")
            state_key = entry.get("state_key", "")
            content = entry.get("content")
            if not isinstance(event_type, str) or not event_type:
                raise _bad_json("Each 'initial_state' entry needs a 'type' string")
            if not isinstance(state_key, str):
                raise _bad_json("'state_key' in 'initial_state' must be a string")
            if not isinstance(content, dict):
                raise _bad_json("Each 'initial_state' entry needs a 'content' object")
            initial_state.append(InitialStateEvent(event_type, state_key, content))

        return cls(
            room_version=room_version,
            preset=preset,
            public=visibility == "public",
            alias_localpart=alias_localpart,
            name=_optional(body, "name", str, "a string"),
            topic=_optional(body, "topic", str, "a string"),
            invite=tuple(dict.fromkeys(invite)),
            is_direct=bool(_optional(body, "is_direct", bool, "a boolean")),
            initial_state=tuple(initial_state),
            creation_content=_optional(body, "creation_content", dict, "an object") or {},
            power_level_content_override=_optional(
                body, "power_level_content_override", dict, "an object"
            ),
        )


# -- building a room in memory


class NewRoomBuilder:
    """A new room's first events, built and checked in memory, nothing stored.

    Each event follows the previous one (its only prev_event), names the auth
    events the selection algorithm picks from the state so far, and must pass
    the authorization rules against that state (AuthError otherwise).
    """

    def __init__(
        self,
        room_version: RoomVersion,
        *,
        server_name: str,
        signing_key: SigningKey,
        now_ms: int,
    ) -> None:
        self.room_version = room_version
        self._server_name = server_name
        self._signing_key = signing_key
        self._now_ms = now_ms
        self.events: list[EventBase] = []
        self.state: dict[StateKey, EventBase] = {}
        self.room_id: str | None = None

    def add(
        self, event_type: str, state_key: str | None, sender: str, content: Mapping[str, Any]
    ) -> EventBase:
        """Build the next event; AuthError if the rules refuse it, InvalidEvent if malformed."""
        room_version = self.room_version
        if self.events and event_type == CREATE:
            raise AuthError("m.room.create: a room has one, its first event")
        if not self.events:
            if event_type != CREATE:
                raise ValueError("a room starts with its m.room.create event")
            # From v12 the room ID is derived from the create event.
            if room_version.event_format.format is not EventFormat.V4:
                self.room_id = f"!{random_event_id_localpart()}:{self._server_name}"
        prev = self.events[-1:]
        types = auth_types_from_fields(room_version, event_type, sender, state_key, content)
        auth = [self.state[key] for key in sorted(types) if key in self.state]
        hashes: dict[str, dict[str, str]] = {}
        if room_version.event_format.format is EventFormat.V1:
            hashes = {
                e.event_id: {
                    "sha256": encode_base64(compute_reference_hash(room_version, e.pdu_json()))
                }
                for e in (*prev, *auth)
            }
        event = build_event(
            room_version=room_version,
            type=event_type,
            state_key=state_key,
            sender=sender,
            content=content,
            room_id=self.room_id,
            prev_event_ids=[e.event_id for e in prev],
            auth_event_ids=[e.event_id for e in auth],
            depth=len(self.events) + 1,
            origin_server_ts=self._now_ms,
            server_name=self._server_name,
            signing_key=self._signing_key,
            reference_hashes=hashes,
        )
        check_auth_rules(room_version, event, select_auth_events(room_version, event, self.state))
        if event_type == CREATE:
            self.room_id = event.room_id
        self.events.append(event)
        if state_key is not None:
            self.state[(event_type, state_key)] = event
        return event


def _without_alias(content: Mapping[str, Any], alias: str | None) -> JsonDict:
    """m.room.canonical_alias content without the alias being made for the new room.

    That alias will point at the room, but cannot yet: the room directory
    takes aliases only for rooms that exist. Any other alias cannot point at a
    room that does not exist yet, so the directory refuses it (M_BAD_ALIAS).
    """
    result = dict(content)
    if alias is not None:
        if result.get("alias") == alias:
            del result["alias"]
        alt_aliases = result.get("alt_aliases")
        if isinstance(alt_aliases, list):
            result["alt_aliases"] = [a for a in alt_aliases if a != alias]
    return result


def _invalid_state(event_type: str, state_key: str | None, error: AuthError) -> MatrixError:
    where = event_type if not state_key else f"{event_type} ({state_key})"
    return MatrixError(
        Codes.INVALID_ROOM_STATE, f"The new room's {where} event is not allowed: {error.message}"
    )


@dataclass(frozen=True, slots=True)
class RoomEventSpec:
    """One event of a room to build: its type, state key, sender and content."""

    type: str
    state_key: str | None
    sender: str
    content: JsonDict


class RoomDirectory(Protocol):
    """What room creation and upgrades need of the room directory (hs.room_directory)."""

    async def create_alias(
        self, requester_user_id: str, alias: str, room_id: str, *, check_permission: bool = True
    ) -> None: ...

    async def delete_alias(self, alias: str, requester_user_id: str | None) -> object: ...

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]] | None: ...

    async def get_local_aliases(self, room_id: str) -> list[str]: ...

    async def set_visibility(self, room_id: str, visibility: str) -> None: ...

    async def get_visibility(self, room_id: str) -> str: ...

    async def validate_canonical_alias(self, room_id: str, content: Mapping[str, Any]) -> None: ...


class RoomCreationHandler:
    """Builds new rooms and stores them whole."""

    def __init__(
        self,
        server_name: str,
        clock: Clock,
        signing_key: SigningKey,
        persister: EventPersister,
        profiles: ProfileStore,
        directory: RoomDirectory,
        request_limiter: Ratelimiter,
        default_room_version: RoomVersion,
    ) -> None:
        self._server_name = server_name
        self._clock = clock
        self._signing_key = signing_key
        self._persister = persister
        self._profiles = profiles
        self._directory = directory
        self._limiter = request_limiter
        self.default_room_version = default_room_version

    def _check_local_invitees(self, user_ids: Sequence[str]) -> None:
        remote = [u for u in user_ids if u.partition(":")[2] != self._server_name]
        if remote:
            raise MatrixError(
                Codes.INVALID_PARAM,
                f"Cannot invite {', '.join(remote)}: inviting users of other homeservers needs"
                " federation, which this server does not do yet",
            )

    # -- POST /createRoom

    async def create_room(
        self, requester: Requester, request: CreateRoomRequest
    ) -> tuple[str, str | None]:
        """Create the room; (room ID, the alias made for it if one was asked for)."""
        creator = requester.user_id
        self._limiter.check(creator, consume=False)
        alias = None
        if request.alias_localpart is not None:
            try:
                alias = str(parse_room_alias(f"#{request.alias_localpart}:{self._server_name}"))
            except InvalidIdentifier as e:
                raise MatrixError(Codes.INVALID_PARAM, f"Invalid room alias: {e}") from e
            if await self._directory.resolve_alias(alias) is not None:
                raise MatrixError(Codes.ROOM_IN_USE, "Room alias already taken")
        self._check_local_invitees(request.invite)
        creation_content, state = await self._room_events(request, creator, alias)
        builder = await self.build_room(creator, request.room_version, creation_content, state)
        room_id = builder.room_id
        assert room_id is not None

        for event in request.initial_state:
            if event.type == CANONICAL_ALIAS and event.state_key == "":
                await self._directory.validate_canonical_alias(
                    room_id, _without_alias(event.content, alias)
                )
        await self.store_room(builder)
        if alias is not None:
            await self._take_alias(creator, alias, room_id)
        if request.public:
            await self._directory.set_visibility(room_id, "public")
        self._limiter.record(creator)
        return room_id, alias

    async def _room_events(
        self, request: CreateRoomRequest, creator: str, alias: str | None
    ) -> tuple[JsonDict, list[RoomEventSpec]]:
        """The create event's content, and the events after the creator's join, in order."""
        version = request.room_version
        preset = PRESETS[request.preset]
        override = request.power_level_content_override
        if (
            override is not None
            and "users" in override
            and not version.auth.creator_power
            and (not isinstance(override["users"], dict) or creator not in override["users"])
        ):
            raise MatrixError(
                Codes.INVALID_ROOM_STATE,
                f"Not a valid power_level_content_override: 'users' did not contain {creator}",
            )

        creation_content = dict(request.creation_content)
        creator_power = version.auth.creator_power
        if creator_power and preset.invitees_are_creators and request.invite:
            given = creation_content.get("additional_creators", [])
            if not isinstance(given, list):
                raise _bad_json("'additional_creators' must be a list of user IDs")
            creation_content["additional_creators"] = list(dict.fromkeys([*given, *request.invite]))

        initial_state = {(e.type, e.state_key): e.content for e in request.initial_state}
        power_levels = initial_state.pop((POWER_LEVELS, ""), None)
        if power_levels is None:
            power_levels = default_power_levels(version, creator)
            if preset.invitees_are_creators and not creator_power:
                for invitee in request.invite:
                    power_levels["users"][invitee] = 100
            power_levels["events"].update(preset.event_levels)
            power_levels = merge_power_levels(power_levels, preset.levels)
            if override is not None:
                power_levels = merge_power_levels(power_levels, override)

        state: list[RoomEventSpec] = [RoomEventSpec(POWER_LEVELS, "", creator, power_levels)]
        if alias is not None and (CANONICAL_ALIAS, "") not in initial_state:
            state.append(RoomEventSpec(CANONICAL_ALIAS, "", creator, {"alias": alias}))
        preset_state: list[tuple[str, JsonDict]] = [
            (JOIN_RULES, {"join_rule": preset.join_rule}),
            (HISTORY_VISIBILITY, {"history_visibility": preset.history_visibility}),
        ]
        if preset.guest_can_join:
            preset_state.append((GUEST_ACCESS, {"guest_access": "can_join"}))
        state += [
            RoomEventSpec(t, "", creator, content)
            for t, content in preset_state
            if (t, "") not in initial_state
        ]
        state += [RoomEventSpec(t, k, creator, c) for (t, k), c in initial_state.items()]
        if request.name is not None:
            state.append(RoomEventSpec(NAME, "", creator, {"name": request.name}))
        if request.topic is not None:
            state.append(RoomEventSpec(TOPIC, "", creator, topic_content(request.topic)))
        for invitee in request.invite:
            profile = await profile_member_content(self._profiles, invitee)
            content: JsonDict = {"membership": INVITE, **profile}
            if request.is_direct:
                content["is_direct"] = True
            state.append(RoomEventSpec(MEMBER, invitee, creator, content))
        return creation_content, state

    async def _take_alias(self, creator: str, alias: str, room_id: str) -> None:
        try:
            await self._directory.create_alias(creator, alias, room_id, check_permission=False)
        except MatrixError as e:
            # Taken since the check above.
            if e.status == 409 or e.errcode == Codes.ROOM_IN_USE:
                raise MatrixError(Codes.ROOM_IN_USE, "Room alias already taken") from e
            raise

    # -- shared with upgrades

    async def build_room(
        self,
        creator: str,
        room_version: RoomVersion,
        creation_content: Mapping[str, Any],
        state: Sequence[RoomEventSpec],
    ) -> NewRoomBuilder:
        """Build a room in memory: create, the creator's join, then `state` in order.

        Raises MatrixError 400 M_INVALID_ROOM_STATE when the rules refuse an
        event, M_BAD_JSON / M_TOO_LARGE when one is malformed or too large.
        """
        builder = NewRoomBuilder(
            room_version,
            server_name=self._server_name,
            signing_key=self._signing_key,
            now_ms=self._clock.time_msec(),
        )
        create = dict(creation_content)
        create["room_version"] = room_version.identifier
        if room_version.auth.implicit_room_creator:
            # The sender is the creator; a `creator` here would only mislead (the spec
            # has the server overwrite it).
            create.pop("creator", None)
        else:
            create["creator"] = creator
        join = {"membership": JOIN, **await profile_member_content(self._profiles, creator)}
        events = [
            RoomEventSpec(CREATE, "", creator, create),
            RoomEventSpec(MEMBER, creator, creator, join),
            *state,
        ]
        for spec in events:
            try:
                builder.add(spec.type, spec.state_key, spec.sender, spec.content)
            except AuthError as e:
                raise _invalid_state(spec.type, spec.state_key, e) from e
            except InvalidEvent as e:
                raise MatrixError(e.errcode, f"The new room's {spec.type} event: {e}") from e
        return builder

    async def store_room(self, builder: NewRoomBuilder) -> list[PersistedEvent]:
        """Store a built room's events; they were checked, so none is rejected."""
        stored = await self._persister.persist([EventToPersist(e) for e in builder.events])
        refused = [s for s in stored if s.rejected_reason is not None]
        if refused:
            # The events were checked against the very state they are stored with.
            raise RuntimeError(
                f"new room {builder.room_id}: {refused[0].event_id} was rejected:"
                f" {refused[0].rejected_reason}"
            )
        return stored
