"""RoomEventHandler: a room's events and state as clients send and read them, one at a time.

Spec: client-server API "Sending events to a room" (PUT .../send/{eventType}/
{txnId}, PUT .../state/{eventType}/{stateKey}), "Redactions" (PUT .../redact/
{eventId}/{txnId}), "Getting events for a room" (GET .../event/{eventId},
.../state, .../state/{eventType}/{stateKey}, .../members,
.../joined_members), "Transaction identifiers", "Size limits".

Sending (`send_event`) checks what the authorization rules cannot see and
hands the event to the EventPersister, which builds it at the head of the
room, checks every authorization rule (a refusal is 403 M_FORBIDDEN with the
rule's words) and stores it durably before answering:

- the sender must be joined (membership events are the membership handler's);
- the content is a JSON object and the event fits in 65536 bytes (413
  M_TOO_LARGE); values the room version's canonical JSON refuses are 400;
- a client transaction ID makes the send idempotent: the same (user, device
  or access token, room, txnId) gives back the first event, also after a
  restart, since the ID is stored with the event;
- a state event identical to the current one from the same sender is not
  sent again: its event ID is returned (as Synapse does);
- `m.room.canonical_alias` aliases must point at the room (room directory);
- a redaction names an event of the same room, never an m.room.create or
  m.room.server_acl event, and, without the redact level, one's own event;
- `rc_message` limits each user's sends (429 M_LIMIT_EXCEEDED with
  retry_after_ms); only events actually sent count against it.

Reading follows the history visibility rules (`homeserver.handlers.visibility`):
the state and the members are the current ones for a member, and as they were
at the leave for a user who left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from homeserver.handlers.auth import Requester
from homeserver.handlers.event_persistence import EventPersister, PersistedEvent
from homeserver.handlers.ratelimit import Ratelimiter
from homeserver.handlers.visibility import (
    check_user_in_room_or_world_readable,
    filter_events_for_client,
)
from homeserver.state.auth_common import (
    BAN,
    CREATE,
    CREATE_KEY,
    INVITE,
    JOIN,
    KNOCK,
    LEAVE,
    MEMBER,
    POWER_LEVELS_KEY,
    REDACTION,
)
from homeserver.state.power_levels import PowerLevels
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.event_batch import ClientTxn
from homeserver.storage.stores.events import StoredEvent
from homeserver.storage.stores.state import StateMap
from homeserver.types.canonical_json import InvalidCanonicalJson, encode_canonical_json
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.events import MAX_PDU_SIZE, InvalidEvent
from homeserver.types.frozen import thaw
from homeserver.types.redaction import prune_content
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.types.stream_tokens import InvalidToken, RoomToken

if TYPE_CHECKING:
    # Only for typing: the serializer itself imports `txn_scope` from here.
    from homeserver.handlers.event_serializer import EventSerializer

JsonDict = dict[str, Any]

CANONICAL_ALIAS = "m.room.canonical_alias"
SERVER_ACL = "m.room.server_acl"
MEMBERSHIPS = (JOIN, INVITE, KNOCK, LEAVE, BAN)


def txn_scope(requester: Requester) -> str:
    """The scope of the requester's transaction IDs: its device, else its access token.

    Spec "Transaction identifiers": the scope is the device; requests without
    one (application services, tokens made by the admin API) use the access
    token, as Synapse does.
    """
    if requester.device_id is not None:
        return f"d:{requester.device_id}"
    if requester.access_token_id is not None:
        return f"t:{requester.access_token_id}"
    raise ValueError(f"requester {requester.user_id} has neither a device nor an access token")


def has_txn_scope(requester: Requester) -> bool:
    return requester.device_id is not None or requester.access_token_id is not None


class CanonicalAliasValidator(Protocol):
    """What sending m.room.canonical_alias needs of the room directory."""

    async def validate_canonical_alias(self, room_id: str, content: Mapping[str, Any]) -> None: ...


def _persisted(stored: StoredEvent) -> PersistedEvent:
    """An event we already had, as a send that created nothing answers it."""
    return PersistedEvent(
        stored.event, stored.stream_ordering, stored.outlier, stored.rejected_reason, True
    )


def _same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    try:
        return encode_canonical_json(a) == encode_canonical_json(b)
    except InvalidCanonicalJson:
        return False


class RoomEventHandler:
    """Sends events for local users; reads single events, state and members for them."""

    def __init__(
        self,
        room_storage: RoomStorage,
        persister: EventPersister,
        serializer: EventSerializer,
        message_limiter: Ratelimiter,
        room_directory: CanonicalAliasValidator,
    ) -> None:
        self._storage = room_storage
        self._persister = persister
        self._serializer = serializer
        self._message_limiter = message_limiter
        self._room_directory = room_directory

    # -- sending

    async def send_event(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        *,
        state_key: str | None = None,
        txn_id: str | None = None,
        redacts: str | None = None,
        ratelimit: bool = True,
    ) -> PersistedEvent:
        """Send an event as the requester; the stored event (or the earlier one it repeats).

        `redacts` names the event an m.room.redaction redacts (else it is read
        from `content.redacts`, as PUT .../send/m.room.redaction gives it).
        Raises MatrixError: 403 M_FORBIDDEN (not joined, or the rules refuse
        it), 400 M_BAD_JSON / M_INVALID_PARAM, 413 M_TOO_LARGE, 429
        M_LIMIT_EXCEEDED, and the room directory's errors for aliases.
        """
        if not isinstance(content, Mapping):
            raise MatrixError(Codes.BAD_JSON, "Content must be a JSON object.")
        user_id = requester.user_id
        txn = None
        if txn_id is not None and has_txn_scope(requester):
            txn = ClientTxn(user_id, txn_scope(requester), txn_id)
            earlier = await self._event_for_txn(room_id, txn)
            if earlier is not None:
                return earlier
        if event_type != MEMBER:
            await self._check_joined(room_id, user_id)
        room_version = await self._room_version(room_id)
        body: JsonDict = thaw(content)
        if event_type == REDACTION:
            redacts = await self._redaction_target(user_id, room_id, room_version, body, redacts)
        elif redacts is not None:
            raise MatrixError(Codes.INVALID_PARAM, "Only m.room.redaction events redact events.")
        self._check_size(body)
        if ratelimit:
            self._message_limiter.check(user_id, consume=False)
        if state_key is not None:
            unchanged = await self._unchanged_state(room_id, event_type, state_key, user_id, body)
            if unchanged is not None:
                return unchanged
            if event_type == CANONICAL_ALIAS and state_key == "":
                await self._room_directory.validate_canonical_alias(room_id, body)
        try:
            sent = await self._persister.create_and_persist(
                room_id, event_type, state_key, user_id, body, redacts=redacts, txn=txn
            )
        except InvalidEvent as e:
            raise MatrixError(e.errcode, str(e)) from e
        if ratelimit and not sent.duplicate:
            self._message_limiter.record(user_id)
        return sent

    async def _event_for_txn(self, room_id: str, txn: ClientTxn) -> PersistedEvent | None:
        sent = await self._storage.events.get_event_ids_for_txns(room_id, [txn])
        if txn not in sent:
            return None
        stored = await self._storage.events.get_stored_events([sent[txn]])
        return _persisted(stored[sent[txn]]) if sent[txn] in stored else None

    async def _check_joined(self, room_id: str, user_id: str) -> None:
        member = await self._storage.rooms.get_membership(room_id, user_id)
        if member is None or member.membership != JOIN:
            raise MatrixError(Codes.FORBIDDEN, f"User {user_id} not in room {room_id}")

    async def _room_version(self, room_id: str) -> RoomVersion:
        room = await self._storage.rooms.get_room(room_id)
        if room is None or room.room_version not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(Codes.NOT_FOUND, f"Unknown room {room_id}")
        return KNOWN_ROOM_VERSIONS[room.room_version]

    @staticmethod
    def _check_size(content: JsonDict) -> None:
        """Refuse content that alone breaks the 65536-byte event limit (the PDU is checked too)."""
        try:
            size = len(encode_canonical_json(content))
        except InvalidCanonicalJson as e:
            raise MatrixError(Codes.BAD_JSON, str(e)) from e
        if size > MAX_PDU_SIZE:
            raise MatrixError(
                Codes.TOO_LARGE,
                f"Event content is {size} bytes; events are limited to {MAX_PDU_SIZE}",
            )

    async def _unchanged_state(
        self, room_id: str, event_type: str, state_key: str, sender: str, content: JsonDict
    ) -> PersistedEvent | None:
        """The current state event at this key, if the sender sent it with this very content."""
        current = await self._storage.state.get_current_state_ids(room_id)
        event_id = current.get((event_type, state_key))
        if event_id is None:
            return None
        stored = (await self._storage.events.get_stored_events([event_id])).get(event_id)
        if stored is None or stored.event.sender != sender:
            return None
        current_content = stored.event.content
        # A redacted event's content is what is left of it: sending the text
        # again restores it.
        if await self._serializer.get_applied_redactions([stored]):
            current_content = prune_content(
                stored.event.room_version, stored.event.type, current_content
            )
        return _persisted(stored) if _same_content(current_content, content) else None

    async def _redaction_target(
        self,
        user_id: str,
        room_id: str,
        room_version: RoomVersion,
        content: JsonDict,
        redacts: str | None,
    ) -> str:
        """Check a redaction and put its target where the room version has it; the target's ID.

        Before room v11 `redacts` is a top-level key, so one given in the
        content (PUT .../send/m.room.redaction) moves out of it, as the spec
        asks; from v11 it is in the content.
        """
        target = redacts if redacts is not None else content.get("redacts")
        if target is None:
            raise MatrixError(Codes.MISSING_PARAM, "m.room.redaction needs 'redacts'")
        if not isinstance(target, str) or not target.startswith("$"):
            raise MatrixError(Codes.INVALID_PARAM, "'redacts' must be an event ID")
        if room_version.event_format.redacts_in_content:
            content["redacts"] = target
        else:
            content.pop("redacts", None)
        original = (await self._storage.events.get_stored_events([target])).get(target)
        if original is not None:
            if original.event.room_id != room_id:
                raise MatrixError(Codes.INVALID_PARAM, "Cannot redact an event of another room")
            if original.event.type == CREATE:
                raise MatrixError(Codes.FORBIDDEN, "Redacting create events is not permitted")
            if original.event.type == SERVER_ACL:
                raise MatrixError(Codes.FORBIDDEN, "Redacting server ACL events is not permitted")
        levels = await self._current_power_levels(room_id, room_version)
        if levels.user_level(user_id) < levels.named_level("redact"):
            # Without the redact level only one's own events; the event must
            # exist to tell (v3+ auth rules would let any redaction through).
            if original is None:
                raise MatrixError(Codes.NOT_FOUND, f"Could not find event {target}")
            if original.event.sender != user_id:
                raise MatrixError(Codes.FORBIDDEN, "You don't have permission to redact events")
        return target

    async def _current_power_levels(self, room_id: str, room_version: RoomVersion) -> PowerLevels:
        state = await self._storage.state.get_current_state_ids(room_id)
        ids = [state[key] for key in (CREATE_KEY, POWER_LEVELS_KEY) if key in state]
        found = await self._storage.events.get_events(ids)
        create = found.get(state[CREATE_KEY]) if CREATE_KEY in state else None
        power = found.get(state[POWER_LEVELS_KEY]) if POWER_LEVELS_KEY in state else None
        return PowerLevels.from_events(room_version, create, power)

    # -- reading

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> JsonDict:
        """GET .../event/{eventId}: 404 M_NOT_FOUND if unknown, of another room, or not visible."""
        stored = (await self._storage.events.get_stored_events([event_id])).get(event_id)
        if stored is not None and stored.event.room_id == room_id:
            visible = await filter_events_for_client(self._storage, requester.user_id, [stored])
            if visible:
                (event,) = await self._serializer.serialize_events(visible, requester=requester)
                return event
        raise MatrixError(Codes.NOT_FOUND, "Event not found.")

    async def _readable_state(self, requester: Requester, room_id: str) -> StateMap:
        """The state the requester reads: current, or as it was after their leave."""
        membership, membership_event_id = await check_user_in_room_or_world_readable(
            self._storage, room_id, requester.user_id, allow_departed_users=True
        )
        if membership != LEAVE:
            return await self._storage.state.get_current_state_ids(room_id)
        assert membership_event_id is not None
        state = await self._storage.state.get_state_ids_for_event(membership_event_id, after=True)
        if state is None:
            # A leave held without its state (an invite rejected over federation):
            # there is no room state this user ever saw.
            raise MatrixError(Codes.FORBIDDEN, f"User {requester.user_id} not in room {room_id}")
        return state

    async def _serialize_state(self, requester: Requester, event_ids: list[str]) -> list[JsonDict]:
        stored = await self._storage.events.get_stored_events(event_ids)
        return await self._serializer.serialize_events(
            [stored[i] for i in event_ids if i in stored], requester=requester
        )

    async def get_state(self, requester: Requester, room_id: str) -> list[JsonDict]:
        """GET .../state: every state event the requester may read (see `_readable_state`)."""
        state = await self._readable_state(requester, room_id)
        return await self._serialize_state(requester, [state[key] for key in sorted(state)])

    async def get_state_event(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        state_key: str,
        *,
        as_event: bool = False,
    ) -> JsonDict:
        """GET .../state/{eventType}/{stateKey}: the content (or the whole event); 404 if absent."""
        state = await self._readable_state(requester, room_id)
        event_id = state.get((event_type, state_key))
        found = await self._serialize_state(requester, [event_id] if event_id else [])
        if not found:
            raise MatrixError(
                Codes.NOT_FOUND, f"Event not found: no {event_type} state with key {state_key!r}"
            )
        return found[0] if as_event else found[0]["content"]

    async def get_members(
        self,
        requester: Requester,
        room_id: str,
        *,
        at: str | None = None,
        membership: str | None = None,
        not_membership: str | None = None,
    ) -> list[JsonDict]:
        """GET .../members: the m.room.member events of the state the requester reads.

        `at` (a sync or pagination token) asks for the state as of that point
        (the room's last event at or before it), if the requester could see
        the room then. With both `membership` and `not_membership` an event is
        kept if either holds, as the spec says.
        """
        for name, value in (("membership", membership), ("not_membership", not_membership)):
            if value is not None and value not in MEMBERSHIPS:
                raise MatrixError(
                    Codes.INVALID_PARAM, f"'{name}' must be one of {', '.join(MEMBERSHIPS)}"
                )
        state = (
            await self._state_at_token(requester, room_id, at)
            if at is not None
            else await self._readable_state(requester, room_id)
        )
        member_ids = [state[key] for key in sorted(state) if key[0] == MEMBER]
        events = await self._serialize_state(requester, member_ids)

        def wanted(event: JsonDict) -> bool:
            value = event["content"].get("membership")
            matches = [value == membership] if membership is not None else []
            if not_membership is not None:
                matches.append(value != not_membership)
            return not matches or any(matches)

        return [event for event in events if wanted(event)]

    async def _state_at_token(self, requester: Requester, room_id: str, at: str) -> StateMap:
        try:
            position = RoomToken.parse(at).stream
        except InvalidToken as e:
            raise MatrixError(Codes.INVALID_PARAM, f"Invalid 'at' token: {e}") from e
        last = await self._storage.events.get_room_events_stream(
            room_id, 0, position, 1, backwards=True
        )
        if not last:
            raise MatrixError(Codes.NOT_FOUND, f"Can't find an event for token {at}")
        if not await filter_events_for_client(self._storage, requester.user_id, last):
            raise MatrixError(
                Codes.FORBIDDEN,
                f"User {requester.user_id} not allowed to view events in room {room_id} at {at}",
            )
        state = await self._storage.state.get_state_ids_for_event(last[0].event_id, after=True)
        if state is None:
            raise MatrixError(Codes.NOT_FOUND, f"Can't find the state at token {at}")
        return state

    async def get_joined_members(self, requester: Requester, room_id: str) -> dict[str, JsonDict]:
        """GET .../joined_members: user ID -> display_name, avatar_url; current members only."""
        membership, _ = await check_user_in_room_or_world_readable(
            self._storage, room_id, requester.user_id
        )
        if membership != JOIN:
            raise MatrixError(
                Codes.FORBIDDEN,
                "Getting joined members while not being a current member of the room is forbidden.",
            )
        members = await self._storage.rooms.get_members(room_id, (JOIN,))
        stored = await self._storage.events.get_stored_events([m.event_id for m in members])
        redacted = await self._serializer.get_applied_redactions(stored.values())
        joined: dict[str, JsonDict] = {}
        for member in members:
            if member.event_id not in stored:
                continue
            event = stored[member.event_id].event
            content = event.content
            if member.event_id in redacted:
                content = prune_content(event.room_version, event.type, content)
            profile: JsonDict = {}
            for field, key in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                value = content.get(field)
                if isinstance(value, str):
                    profile[key] = value
            joined[member.user_id] = profile
        return joined
