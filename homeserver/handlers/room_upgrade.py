"""Room upgrades: POST /rooms/{roomId}/upgrade replaces a room with a new one of another version.

Spec: client-server API "Room Upgrades" > "Server behaviour", the
m.room.tombstone event and `predecessor` of m.room.create (its `event_id` is
deprecated: "the last known event in the old room", and may be left out for
v12+ rooms).

1. The requester must be allowed to send m.room.tombstone in the old room (403
   M_FORBIDDEN otherwise); an unknown version is 400 M_UNSUPPORTED_ROOM_VERSION,
   an unknown room 404 M_NOT_FOUND.
2. The new room is built (and checked) in memory, then stored whole: its
   create event names the `predecessor` (with, before v12, the old room's
   latest event: a v12 room's ID is the hash of its create event, which
   cannot name a tombstone that names the room), the old room's `type`,
   `m.federate: false` if the old room had it, and the request's
   `additional_creators` where the new version has them. Then the
   transferable state (Synapse's list: join rules, name, topic, history
   visibility, guest access, avatar, encryption, server ACL, power levels, and
   a space's children), and the bans.
3. The upgrader may need more power in the new room than they had in the old
   one to set all that: the copied power levels raise them to the highest
   level any of it needs, and are put back as they were once the state is in
   (as Synapse does). In a v12 room the creators are not listed (the rules
   forbid it); they have infinite power anyway.
4. The tombstone goes into the old room; its local aliases move to the new
   room, with its m.room.canonical_alias; a room published in the directory
   is published in its place.
5. The old room's power levels are raised so that ordinary members can no
   longer talk or invite: `events_default` and `invite` become the greater of
   50 and `users_default + 1`.

Members are not carried over (they join the new room themselves; servers
cannot join users of other servers); nor are invites.

As Synapse does, a second upgrade of the same room by the same user within
five minutes answers with the first one's new room, and an upgrade while
another user's upgrade of the room is under way is refused (400 M_UNKNOWN).
Unlike Synapse, the new room gets no state the old one did not have (Synapse
adds the private_chat preset's, giving guests access to rooms that had none).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from twisted.internet import defer

from homeserver.clock import Clock
from homeserver.handlers.auth import Requester
from homeserver.handlers.event_persistence import EventPersister
from homeserver.handlers.ratelimit import Ratelimiter
from homeserver.handlers.room_creation import (
    AVATAR,
    CANONICAL_ALIAS,
    ENCRYPTION,
    GUEST_ACCESS,
    HISTORY_VISIBILITY,
    NAME,
    SERVER_ACL,
    TOMBSTONE,
    TOPIC,
    RoomCreationHandler,
    RoomDirectory,
    RoomEventSpec,
    default_power_levels,
)
from homeserver.state.auth_common import (
    BAN,
    CREATE_KEY,
    JOIN,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    POWER_LEVELS_KEY,
    AuthError,
    StateKey,
)
from homeserver.state.power_levels import (
    CREATOR_POWER_LEVEL,
    NAMED_LEVEL_DEFAULTS,
    PowerLevels,
    get_room_creators,
    parse_power_level,
)
from homeserver.storage.room_storage import RoomStorage
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.events import EventBase
from homeserver.types.frozen import thaw
from homeserver.types.identifiers import InvalidIdentifier, parse_user_id
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

SPACE_CHILD: Final = "m.space.child"
SPACE_ROOM_TYPE: Final = "m.space"
FEDERATE: Final = "m.federate"
# The state an upgrade copies (Synapse's list), each with the empty state key.
TRANSFERRED: Final = (
    JOIN_RULES,
    NAME,
    TOPIC,
    HISTORY_VISIBILITY,
    GUEST_ACCESS,
    AVATAR,
    ENCRYPTION,
    SERVER_ACL,
)
RECENT_UPGRADE_SECONDS: Final = 300.0
"""How long a repeated upgrade request by the same user answers with the first's room."""


def normalise_power_levels(room_version: RoomVersion, content: Mapping[str, Any]) -> JsonDict:
    """Power levels content with every level an integer, as the old room read it.

    Versions before v10 accept levels written as strings ("50"); the new room
    may be v10+, which does not. A value that does not parse meant the
    default in the old room, so it is left out.
    """
    result: JsonDict = thaw(content)
    for name in NAMED_LEVEL_DEFAULTS:
        if name in result:
            level = parse_power_level(room_version, result[name])
            if level is None:
                del result[name]
            else:
                result[name] = level
    for name in ("users", "events", "notifications"):
        value = result.get(name)
        if not isinstance(value, dict):
            result.pop(name, None)
            continue
        levels = {k: parse_power_level(room_version, v) for k, v in value.items()}
        result[name] = {k: v for k, v in levels.items() if v is not None}
    return result


def _highest_level(levels: Mapping[str, Any]) -> int:
    """The highest level power levels content gives anyone or asks for anything (at least 100)."""
    values: list[int] = [levels.get(name, 0) for name in NAMED_LEVEL_DEFAULTS]
    for name in ("users", "events"):
        values.extend(levels.get(name, {}).values())
    return max([100, *values])


def restricted_power_levels(content: Mapping[str, Any]) -> JsonDict | None:
    """The old room's power levels with talking and inviting for moderators only (None: already)."""
    result = dict(content)
    users_default = result.get("users_default", 0)
    restricted = max(users_default + 1, 50)
    changed = False
    for name in ("invite", "events_default"):
        if result.get(name, NAMED_LEVEL_DEFAULTS[name]) < restricted:
            result[name] = restricted
            changed = True
    return result if changed else None


def _forbidden(reason: str) -> MatrixError:
    return MatrixError(Codes.FORBIDDEN, f"You cannot upgrade this room: {reason}")


class RoomUpgradeHandler:
    def __init__(
        self,
        server_name: str,
        clock: Clock,
        room_storage: RoomStorage,
        persister: EventPersister,
        creation: RoomCreationHandler,
        directory: RoomDirectory,
        request_limiter: Ratelimiter,
    ) -> None:
        self._server_name = server_name
        self._clock = clock
        self._storage = room_storage
        self._persister = persister
        self._creation = creation
        self._directory = directory
        self._limiter = request_limiter
        # old room ID -> (upgrader, the same upgrader's repeated requests waiting for it)
        self._in_progress: dict[str, tuple[str, list[defer.Deferred[str]]]] = {}
        # (old room ID, upgrader) -> (new room ID, until when it is the answer)
        self._recent: dict[tuple[str, str], tuple[str, float]] = {}

    async def upgrade_room(
        self,
        requester: Requester,
        room_id: str,
        new_version_id: str,
        additional_creators: Sequence[str] = (),
    ) -> str:
        """Upgrade the room; the new room's ID."""
        user_id = requester.user_id
        new_version = KNOWN_ROOM_VERSIONS.get(new_version_id)
        if new_version is None:
            raise MatrixError(
                Codes.UNSUPPORTED_ROOM_VERSION, "This server does not support that room version"
            )
        for creator in additional_creators:
            try:
                parse_user_id(creator)
            except InvalidIdentifier as e:
                raise MatrixError(
                    Codes.INVALID_PARAM, f"Invalid user ID in 'additional_creators': {e}"
                ) from e
        under_way = self._in_progress.get(room_id)
        if under_way is not None:
            if under_way[0] != user_id:
                raise MatrixError(
                    Codes.UNKNOWN, "An upgrade for this room is currently in progress", status=400
                )
            waiter: defer.Deferred[str] = defer.Deferred()
            under_way[1].append(waiter)
            return await waiter
        now = self._clock.time()
        self._recent = {k: v for k, v in self._recent.items() if v[1] > now}
        recent = self._recent.get((room_id, user_id))
        if recent is not None:
            return recent[0]
        self._limiter.check(user_id, consume=False)
        waiters: list[defer.Deferred[str]] = []
        self._in_progress[room_id] = (user_id, waiters)
        try:
            new_room_id = await self._upgrade(user_id, room_id, new_version, additional_creators)
        except Exception as error:
            for waiter in waiters:
                waiter.errback(error)
            raise
        finally:
            del self._in_progress[room_id]
        for waiter in waiters:
            waiter.callback(new_room_id)
        self._recent[(room_id, user_id)] = (
            new_room_id,
            self._clock.time() + RECENT_UPGRADE_SECONDS,
        )
        self._limiter.record(user_id)
        return new_room_id

    async def _upgrade(
        self,
        user_id: str,
        room_id: str,
        new_version: RoomVersion,
        additional_creators: Sequence[str],
    ) -> str:
        room = await self._storage.rooms.get_room(room_id)
        old_version = KNOWN_ROOM_VERSIONS.get(room.room_version) if room is not None else None
        current = await self._storage.state.get_current_state_ids(room_id)
        if old_version is None or CREATE_KEY not in current:
            raise MatrixError(Codes.NOT_FOUND, f"Unknown room id {room_id}")
        state = await self._old_room_state(room_id, current, user_id)
        self._check_may_tombstone(old_version, state, user_id)
        create = state[CREATE_KEY]

        creation_content: JsonDict = {"predecessor": await self._predecessor(room_id, new_version)}
        if not create.content.get(FEDERATE, True):
            creation_content[FEDERATE] = False
        room_type = create.content.get("type")
        if room_type is not None:
            creation_content["type"] = thaw(room_type)
        new_creators = {user_id}
        if new_version.auth.creator_power and additional_creators:
            creation_content["additional_creators"] = list(dict.fromkeys(additional_creators))
            new_creators.update(additional_creators)

        final_levels = self._new_power_levels(
            old_version, new_version, create, state.get(POWER_LEVELS_KEY), user_id, new_creators
        )
        initial_levels = self._raised_for_copying(new_version, final_levels, user_id)
        copied = [RoomEventSpec(POWER_LEVELS, "", user_id, initial_levels)]
        copied += [
            RoomEventSpec(t, "", user_id, thaw(state[(t, "")].content))
            for t in TRANSFERRED
            if (t, "") in state
        ]
        if room_type == SPACE_ROOM_TYPE:
            # A child whose event was emptied has been removed from the space.
            copied += [
                RoomEventSpec(SPACE_CHILD, key[1], user_id, thaw(event.content))
                for key, event in sorted(state.items())
                if key[0] == SPACE_CHILD and event.content
            ]
        builder = await self._creation.build_room(user_id, new_version, creation_content, copied)
        for key, event in sorted(state.items()):
            if key[0] == MEMBER and event.content.get("membership") == BAN:
                try:
                    builder.add(MEMBER, key[1], user_id, {**thaw(event.content), "membership": BAN})
                except (AuthError, ValueError) as e:
                    logger.warning(
                        "Not carrying the ban of %s into the upgraded room: %s", key[1], e
                    )
        await self._creation.store_room(builder)
        new_room_id = builder.room_id
        assert new_room_id is not None
        logger.info("Upgraded %s to %s (version %s)", room_id, new_room_id, new_version.identifier)

        await self._persister.create_and_persist(
            room_id,
            TOMBSTONE,
            "",
            user_id,
            {"body": "This room has been replaced", "replacement_room": new_room_id},
        )
        await self._move_aliases(user_id, room_id, new_room_id)
        if await self._directory.get_visibility(room_id) == "public":
            await self._directory.set_visibility(room_id, "private")
            await self._directory.set_visibility(new_room_id, "public")

        old_levels = state.get(POWER_LEVELS_KEY)
        if old_levels is not None:
            quiet = restricted_power_levels(normalise_power_levels(old_version, old_levels.content))
            if quiet is not None:
                await self._send_or_log(room_id, POWER_LEVELS, user_id, quiet)
        if initial_levels != final_levels:
            await self._send_or_log(new_room_id, POWER_LEVELS, user_id, final_levels)
        return new_room_id

    async def _old_room_state(
        self, room_id: str, current: Mapping[StateKey, str], user_id: str
    ) -> dict[StateKey, EventBase]:
        """The old room's state events an upgrade reads (not every member event)."""
        wanted = {
            CREATE_KEY,
            POWER_LEVELS_KEY,
            (CANONICAL_ALIAS, ""),
            (MEMBER, user_id),
            *((t, "") for t in TRANSFERRED),
        }
        banned = {
            (MEMBER, m.user_id) for m in await self._storage.rooms.get_members(room_id, (BAN,))
        }
        keys = [key for key in current if key in wanted or key in banned or key[0] == SPACE_CHILD]
        found = await self._storage.events.get_events([current[key] for key in keys])
        return {key: found[current[key]] for key in keys if current[key] in found}

    @staticmethod
    def _check_may_tombstone(
        room_version: RoomVersion, state: Mapping[StateKey, EventBase], user_id: str
    ) -> None:
        """The authorization rules for the requester's m.room.tombstone, before anything is made."""
        member = state.get((MEMBER, user_id))
        if member is None or member.content.get("membership") != JOIN:
            raise _forbidden(f"{user_id} is not in the room")
        levels = PowerLevels.from_events(
            room_version, state.get(CREATE_KEY), state.get(POWER_LEVELS_KEY)
        )
        required = levels.required_level(TOMBSTONE, "")
        if levels.user_level(user_id) < required:
            raise _forbidden(f"sending {TOMBSTONE} needs power level {required}")

    async def _predecessor(self, room_id: str, new_version: RoomVersion) -> JsonDict:
        predecessor: JsonDict = {"room_id": room_id}
        if new_version.event_format.format is not EventFormat.V4:
            extremities = await self._storage.events.get_forward_extremities(room_id)
            if extremities:
                predecessor["event_id"] = max(extremities.items(), key=lambda i: (i[1], i[0]))[0]
        return predecessor

    @staticmethod
    def _new_power_levels(
        old_version: RoomVersion,
        new_version: RoomVersion,
        create: EventBase,
        old_levels: EventBase | None,
        user_id: str,
        new_creators: set[str],
    ) -> JsonDict:
        """The new room's power levels once the upgrade is done: the old room's, as the new version takes them."""
        if old_levels is None:
            return default_power_levels(new_version, user_id)
        levels = normalise_power_levels(old_version, old_levels.content)
        users = levels.setdefault("users", {})
        if new_version.auth.creator_power:
            for creator in new_creators:
                users.pop(creator, None)
        elif user_id in get_room_creators(old_version, create) and (
            PowerLevels.from_events(old_version, create, old_levels).user_level(user_id)
            == CREATOR_POWER_LEVEL
        ):
            # Infinite power does not carry into a version without it: the room's top level does.
            users[user_id] = _highest_level(levels)
        return levels

    @staticmethod
    def _raised_for_copying(new_version: RoomVersion, levels: JsonDict, user_id: str) -> JsonDict:
        """`levels` with the upgrader raised to every level the copied state needs."""
        if new_version.auth.creator_power:
            return levels
        events = levels.get("events", {})
        needed = max(
            levels.get("state_default", NAMED_LEVEL_DEFAULTS["state_default"]),
            levels.get("ban", NAMED_LEVEL_DEFAULTS["ban"]),
            max(events.values(), default=0),
        )
        users = levels.get("users", {})
        if users.get(user_id, levels.get("users_default", 0)) >= needed:
            return levels
        return {**levels, "users": {**users, user_id: needed}}

    def _is_local_alias(self, alias: object) -> bool:
        return isinstance(alias, str) and alias.partition(":")[2] == self._server_name

    async def _move_aliases(self, user_id: str, old_room_id: str, new_room_id: str) -> None:
        """Move the old room's local aliases, and its canonical alias, to the new room."""
        for alias in await self._directory.get_local_aliases(old_room_id):
            await self._directory.delete_alias(alias, None)
            await self._directory.create_alias(user_id, alias, new_room_id, check_permission=False)
        current = await self._storage.state.get_current_state_ids(old_room_id)
        canonical_id = current.get((CANONICAL_ALIAS, ""))
        canonical = await self._storage.events.get_event(canonical_id) if canonical_id else None
        if canonical is None:
            return
        old_content: JsonDict = thaw(canonical.content)
        new_content: JsonDict = {}
        if self._is_local_alias(old_content.get("alias")):
            new_content["alias"] = old_content.pop("alias")
        alt_aliases = old_content.get("alt_aliases")
        if isinstance(alt_aliases, list):
            moved = [a for a in alt_aliases if self._is_local_alias(a)]
            if moved:
                new_content["alt_aliases"] = moved
                kept = [a for a in alt_aliases if a not in moved]
                if kept:
                    old_content["alt_aliases"] = kept
                else:
                    del old_content["alt_aliases"]
        if old_content != thaw(canonical.content):
            await self._send_or_log(old_room_id, CANONICAL_ALIAS, user_id, old_content)
        if new_content:
            await self._send_or_log(new_room_id, CANONICAL_ALIAS, user_id, new_content)

    async def _send_or_log(
        self, room_id: str, event_type: str, user_id: str, content: JsonDict
    ) -> None:
        """Send a follow-up state event; the upgrade has happened, so a refusal is only logged."""
        try:
            await self._persister.create_and_persist(room_id, event_type, "", user_id, content)
        except MatrixError as e:
            logger.warning("Upgrade: could not send %s in %s: %s", event_type, room_id, e)
