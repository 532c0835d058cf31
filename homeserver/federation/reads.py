"""FederationReadHandler: what other servers may read of our rooms, and in what form.

Spec: server-server API "Retrieving events" (GET /event/{eventId}, GET
/state/{roomId}, GET /state_ids/{roomId}), "Backfilling and retrieving
missing events" (GET /backfill/{roomId}, POST /get_missing_events/{roomId}),
"Retrieving event authorisation information" (GET /event_auth/{roomId}/{eventId})
and "Server Access Control Lists (ACLs)".

Who may read, as Synapse decides it:

- the room's current m.room.server_acl must allow the origin, on every
  request (403 M_FORBIDDEN otherwise);
- the origin must have a user joined to the room now (403 M_FORBIDDEN
  "Host not in room" otherwise, also for a room we don't know);
- the events served from the timeline (/event, /backfill,
  /get_missing_events) pass history visibility for servers, judged in the
  state after each event: `world_readable` and `shared` history is visible to
  any server in the room; `invited` and `joined` history only to a server
  that had a user joined then (or, for `invited`, invited). An event the
  server may not see is served redacted, not left out, so that the DAG it
  walks has no holes (Synapse's `filter_events_for_server`).

State and auth chains are served whole: a server in the room needs them to
check events, and they are what it would get from any other member.

Events are served in PDU form; an event redacted by a valid m.room.redaction
is served pruned (the redaction algorithm), as Synapse does. Rejected events
are never served (we hold them only to know we rejected them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from homeserver.clock import Clock
from homeserver.state.auth_common import INVITE, JOIN, MEMBER, membership_of
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.events import StoredEvent
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.redaction import prune_event_dict

JsonDict = dict[str, Any]

RedactionLookup = Callable[[Iterable[StoredEvent]], Awaitable[Mapping[str, StoredEvent]]]
"""Event ID -> the redaction that applies to it, for the redacted ones among some events."""

AclCheck = Callable[[str, str], Awaitable[bool]]
"""(server name, room ID) -> whether the room's m.room.server_acl lets the server take part."""

MAX_BACKFILL_LIMIT = 100
"""The most events one /backfill or /get_missing_events answer holds, whatever is asked."""

_HISTORY_VISIBILITY_KEY = ("m.room.history_visibility", "")


def _domain(user_id: str) -> str:
    return user_id.partition(":")[2]


def _not_found(event_id: str) -> MatrixError:
    return MatrixError(Codes.NOT_FOUND, f"Event {event_id} not found")


class FederationReadHandler:
    """Answers other servers' reads of rooms and events (see the module docstring)."""

    def __init__(
        self,
        server_name: str,
        clock: Clock,
        storage: RoomStorage,
        applied_redactions: RedactionLookup,
        server_allowed_in_room: AclCheck,
    ) -> None:
        self._server_name = server_name
        self._clock = clock
        self._storage = storage
        self._applied_redactions = applied_redactions
        self._acl_allows = server_allowed_in_room

    # --- the endpoints ------------------------------------------------------------

    async def get_event(self, origin: str, event_id: str) -> JsonDict:
        """GET /event/{eventId}: a transaction holding the one PDU."""
        stored = await self._stored(event_id)
        if stored is None:
            raise _not_found(event_id)
        await self._check_origin(origin, stored.event.room_id)
        (pdu,) = await self._pdus_for_server(origin, [stored])
        return self._transaction([pdu])

    async def get_state_ids(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        """GET /state_ids/{roomId}?event_id=: the state before the event, and its auth chain."""
        await self._check_origin(origin, room_id)
        state_ids = await self._state_before(room_id, event_id)
        auth_chain = await self._storage.federation_reads.get_auth_chain_ids(state_ids)
        held = await self._storage.events.get_stored_events(auth_chain)
        return {
            "pdu_ids": state_ids,
            "auth_chain_ids": [i for i in auth_chain if i in held and _servable(held[i])],
        }

    async def get_state(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        """GET /state/{roomId}?event_id=: the events of /state_ids."""
        await self._check_origin(origin, room_id)
        state_ids = await self._state_before(room_id, event_id)
        auth_chain = await self._storage.federation_reads.get_auth_chain_ids(state_ids)
        return {
            "pdus": await self._pdus(state_ids),
            "auth_chain": await self._pdus(auth_chain),
        }

    async def get_event_auth(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        """GET /event_auth/{roomId}/{eventId}: the event's auth events, recursively."""
        await self._check_origin(origin, room_id)
        stored = await self._stored(event_id)
        if stored is None or stored.event.room_id != room_id:
            raise _not_found(event_id)
        auth_chain = await self._storage.federation_reads.get_auth_chain_ids([event_id])
        return {"auth_chain": await self._pdus(auth_chain)}

    async def backfill(
        self, origin: str, room_id: str, event_ids: Collection[str], limit: int
    ) -> JsonDict:
        """GET /backfill/{roomId}?v=&limit=: the given events and those before them, newest first."""
        await self._check_origin(origin, room_id)
        ids = await self._storage.federation_reads.get_backfill_ids(
            room_id, event_ids, min(limit, MAX_BACKFILL_LIMIT)
        )
        found = await self._storage.events.get_stored_events(ids)
        events = [found[i] for i in ids if i in found and _servable(found[i])]
        return self._transaction(await self._pdus_for_server(origin, events))

    async def get_missing_events(
        self,
        origin: str,
        room_id: str,
        earliest: Collection[str],
        latest: Collection[str],
        limit: int,
        min_depth: int,
    ) -> JsonDict:
        """POST /get_missing_events/{roomId}: the events between earliest and latest, oldest first."""
        await self._check_origin(origin, room_id)
        ids = await self._storage.federation_reads.get_missing_event_ids(
            room_id, earliest, latest, min(limit, MAX_BACKFILL_LIMIT), min_depth
        )
        found = await self._storage.events.get_stored_events(ids)
        events = [found[i] for i in ids if i in found and _servable(found[i])]
        return {"events": await self._pdus_for_server(origin, events)}

    # --- who may read ---------------------------------------------------------------

    async def _check_origin(self, origin: str, room_id: str) -> None:
        """403 M_FORBIDDEN unless the room's ACL allows the origin and it has a member joined."""
        if not await self._acl_allows(origin, room_id):
            raise MatrixError(Codes.FORBIDDEN, "Server is banned from room")
        members = await self._storage.rooms.get_members(room_id, (JOIN,))
        if not any(_domain(m.user_id) == origin for m in members):
            raise MatrixError(Codes.FORBIDDEN, "Host not in room.")

    async def _visible_to_server(self, origin: str, events: Sequence[StoredEvent]) -> set[str]:
        """The IDs of those of `events` whose history visibility lets `origin` see them."""
        timeline = [e for e in events if not e.outlier]
        groups = await self._storage.state.get_state_groups_for_events(
            [e.event_id for e in timeline]
        )
        states = await self._storage.state.get_state_for_groups({g[1] for g in groups.values()})
        wanted: set[str] = set()
        for state in states.values():
            for (event_type, state_key), state_event_id in state.items():
                if (event_type, state_key) == _HISTORY_VISIBILITY_KEY or (
                    event_type == MEMBER and _domain(state_key) == origin
                ):
                    wanted.add(state_event_id)
        state_events = await self._storage.events.get_stored_events(wanted)
        visible = {e.event_id for e in events if e.outlier}
        for stored in timeline:
            group = groups.get(stored.event_id)
            if group is None:
                continue
            state = states[group[1]]
            visibility_id = state.get(_HISTORY_VISIBILITY_KEY)
            visibility_event = state_events.get(visibility_id) if visibility_id else None
            visibility = (
                visibility_event.event.content.get("history_visibility")
                if visibility_event is not None
                else None
            )
            if visibility not in ("invited", "joined"):
                # world_readable, shared, or not understood (read as shared).
                visible.add(stored.event_id)
                continue
            for (event_type, state_key), state_event_id in state.items():
                if event_type != MEMBER or _domain(state_key) != origin:
                    continue
                member = state_events.get(state_event_id)
                membership = None if member is None else membership_of(member.event.content)
                if membership == JOIN or (membership == INVITE and visibility == "invited"):
                    visible.add(stored.event_id)
                    break
        return visible

    # --- shaping the answers --------------------------------------------------------

    async def _stored(self, event_id: str) -> StoredEvent | None:
        stored = (await self._storage.events.get_stored_events([event_id])).get(event_id)
        return stored if stored is not None and _servable(stored) else None

    async def _state_before(self, room_id: str, event_id: str) -> list[str]:
        stored = await self._stored(event_id)
        if stored is None or stored.event.room_id != room_id or stored.outlier:
            raise _not_found(event_id)
        state = await self._storage.state.get_state_ids_for_event(event_id)
        if state is None:
            raise _not_found(event_id)
        return sorted(state.values())

    async def _pdus(self, event_ids: Sequence[str]) -> list[JsonDict]:
        found = await self._storage.events.get_stored_events(event_ids)
        return await self._to_pdus(
            [found[i] for i in event_ids if i in found and _servable(found[i])]
        )

    async def _pdus_for_server(self, origin: str, events: Sequence[StoredEvent]) -> list[JsonDict]:
        visible = await self._visible_to_server(origin, events)
        return await self._to_pdus(events, hidden={e.event_id for e in events} - visible)

    async def _to_pdus(
        self, events: Sequence[StoredEvent], hidden: Collection[str] = ()
    ) -> list[JsonDict]:
        redacted = await self._applied_redactions(events)
        return [
            prune_event_dict(s.event.room_version, s.event.pdu_json())
            if s.event_id in redacted or s.event_id in hidden
            else s.event.pdu_json()
            for s in events
        ]

    def _transaction(self, pdus: list[JsonDict]) -> JsonDict:
        return {
            "origin": self._server_name,
            "origin_server_ts": self._clock.time_msec(),
            "pdus": pdus,
        }


def _servable(stored: StoredEvent) -> bool:
    return stored.rejected_reason is None
