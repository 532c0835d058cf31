"""FederationBackfiller: fetching a room's older history from other servers (GET /backfill).

Spec: server-server API "Backfilling and retrieving missing events" and
"Checks performed on receipt of a PDU".

When a local client paginates back past the oldest events we hold (the
pagination handler calls `backfill`), we ask a server in the room for the
events before our backward extremities (the prev_events we lack):

- which extremities: the deepest of those at or below where the client
  reached (up to `max_extremities`), as Synapse picks them;
- which servers: those with users joined in the room's current state (the
  most members first), never ourselves; each in turn until one gives us
  events, up to `max_servers`, each request with its timeout;
- one request, `limit` events at most.

Each event returned must be of the room and one we don't hold; they are
handled oldest first, as the receiver handles PDUs (steps 1 to 4:
homeserver.federation.event_checks; auth events we lack fetched from the
same server by the receiver's GapFiller), except that an old event is not
judged against the room's current state (no soft failure: it was sent long
ago). An event whose prev_events we hold (or are among the batch) gets its
state from them; the others (the oldest, at the new edge of our history) get
the state before them from the server's /state_ids at the event itself.
Invalid, badly signed or unauthorisable events are dropped; events failing
the auth rules are stored rejected; nothing a server returns breaks the room.

Backfilled events are stored as history: the events we held already list
them as prev_events, so they become neither forward extremities nor current
state.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from homeserver.federation.client import FederationRequestError
from homeserver.federation.event_checks import (
    DroppedPdu,
    KeySource,
    check_auth_events,
    check_signatures_and_hash,
    parse_pdu,
)
from homeserver.federation.missing_events import FederationFetcher, GapFiller
from homeserver.handlers.event_persistence import EventPersister, EventToPersist
from homeserver.state.auth_rules import AuthError
from homeserver.state.loader import StateKey
from homeserver.storage.room_storage import RoomStorage
from homeserver.types.events import EventBase
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

logger = logging.getLogger(__name__)

FEDERATION_PREFIX = "/_matrix/federation/v1"


class FederationBackfiller:
    """Fetches, checks and stores older history of a room (see the module docstring)."""

    def __init__(
        self,
        server_name: str,
        storage: RoomStorage,
        client: FederationFetcher,
        keys: KeySource,
        persister: EventPersister,
        gaps: GapFiller,
        *,
        limit: int = 100,
        max_extremities: int = 5,
        max_servers: int = 5,
        timeout_ms: int = 20_000,
    ) -> None:
        self._server_name = server_name
        self._storage = storage
        self._client = client
        self._keys = keys
        self._persister = persister
        self._gaps = gaps
        self.limit = limit
        self.max_extremities = max_extremities
        self.max_servers = max_servers
        self._timeout_ms = timeout_ms

    async def backfill(self, room_id: str, reached_depth: int | None = None) -> bool:
        """One round of backfill in the room; whether it stored any new event.

        `reached_depth`: the depth the client paginated down to (None: anywhere).
        Never raises for what other servers do; failures are logged.
        """
        version_id = await self._storage.rooms.get_room_version(room_id)
        room_version = KNOWN_ROOM_VERSIONS.get(version_id) if version_id is not None else None
        if room_version is None:
            return False
        extremities = await self._choose_extremities(room_id, reached_depth)
        if not extremities:
            return False
        for server in (await self._servers_in_room(room_id))[: self.max_servers]:
            events = await self._request(server, room_version, room_id, extremities)
            if not events:
                continue
            try:
                stored = await self._store(server, room_version, events)
            except Exception:
                logger.exception("Backfilling %s from %s failed", room_id, server)
                continue
            if stored:
                logger.info("Backfilled %d events of %s from %s", stored, room_id, server)
                return True
        return False

    async def _choose_extremities(self, room_id: str, reached_depth: int | None) -> list[str]:
        depths = await self._storage.federation_reads.get_backward_extremity_depths(room_id)
        if reached_depth is not None:
            below = {e: d for e, d in depths.items() if d <= reached_depth}
            depths = below or depths
        deepest = sorted(depths.items(), key=lambda item: (-item[1], item[0]))
        return [event_id for event_id, _ in deepest[: self.max_extremities]]

    async def _servers_in_room(self, room_id: str) -> list[str]:
        members = await self._storage.rooms.get_members(room_id, ("join",))
        counts = Counter(m.user_id.partition(":")[2] for m in members)
        counts.pop(self._server_name, None)
        return [s for s, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]

    async def _request(
        self, server: str, room_version: RoomVersion, room_id: str, extremities: Sequence[str]
    ) -> list[EventBase]:
        """GET /backfill from `server`: the valid events of the room we don't hold, oldest first."""
        try:
            answer = await self._client.get_json(
                server,
                f"{FEDERATION_PREFIX}/backfill/{quote(room_id, safe='')}",
                {"v": list(extremities), "limit": str(self.limit)},
                timeout_ms=self._timeout_ms,
            )
        except FederationRequestError as e:
            logger.info("Cannot backfill %s from %s: %s", room_id, server, e)
            return []
        pdus = answer.get("pdus") if isinstance(answer, Mapping) else None
        if not isinstance(pdus, list):
            logger.info("%s answered /backfill without a pdus list", server)
            return []
        events: dict[str, EventBase] = {}
        for pdu in pdus[: self.limit]:
            try:
                event = parse_pdu(pdu, room_version)
            except DroppedPdu as e:
                logger.info("Ignoring a backfilled event from %s: %s", server, e)
                continue
            if event.room_id != room_id:
                logger.info("Ignoring %s from %s: not of %s", event.event_id, server, room_id)
                continue
            events[event.event_id] = event
        held = await self._storage.events.have_events(list(events))
        return sorted(
            (e for i, e in events.items() if i not in held), key=lambda e: (e.depth, e.event_id)
        )

    async def _store(
        self, origin: str, room_version: RoomVersion, events: Sequence[EventBase]
    ) -> int:
        """Check the events (oldest first) and store those that pass; how many were stored."""
        to_store: list[EventToPersist] = []
        in_batch: set[str] = set()
        for event in events:
            try:
                item = await self._check(origin, event, in_batch)
            except DroppedPdu as e:
                logger.warning("Dropping backfilled %s from %s: %s", event.event_id, origin, e)
                continue
            except Exception:
                # One event we fail to check must not cost the others.
                logger.exception("Failed to check backfilled %s from %s", event.event_id, origin)
                continue
            to_store.append(item)
            if not item.outlier:
                in_batch.add(event.event_id)
        if to_store:
            await self._persister.persist(to_store)
        return len(to_store)

    async def _check(self, origin: str, event: EventBase, in_batch: set[str]) -> EventToPersist:
        event, redacted = await check_signatures_and_hash(self._keys, event)
        if redacted:
            logger.warning(
                "Backfilled %s from %s fails its content hash: going on with its redacted copy",
                event.event_id,
                origin,
            )
        auth_events = await self._gaps.auth_events_for(origin, event)
        rejected: str | None = None
        try:
            check_auth_events(event, auth_events)
        except AuthError as e:
            rejected = f"auth_events: {e.message}"
            logger.warning("Rejecting backfilled %s from %s: %s", event.event_id, origin, rejected)
        prevs = list(dict.fromkeys(event.prev_event_ids))
        held = await self._storage.events.get_stored_events(prevs)
        missing = [p for p in prevs if p not in in_batch and (p not in held or held[p].outlier)]
        if not missing:
            return EventToPersist(event, rejected_reason=rejected, backfilled=True)
        if rejected is not None:
            # Rejected whatever came before it: kept without state, as the receiver does.
            return EventToPersist(event, outlier=True, rejected_reason=rejected, backfilled=True)
        state = await self._state_before(origin, event)
        return EventToPersist(event, state_before=state, backfilled=True)

    async def _state_before(self, origin: str, event: EventBase) -> dict[StateKey, str]:
        """The state before `event` from the origin's /state_ids at it (its events fetched)."""
        room_id = event.room_id
        try:
            answer: Any = await self._client.get_json(
                origin,
                f"{FEDERATION_PREFIX}/state_ids/{quote(room_id, safe='')}",
                {"event_id": event.event_id},
                timeout_ms=self._timeout_ms,
            )
        except FederationRequestError as e:
            raise DroppedPdu(
                f"cannot get the state at {event.event_id} from {origin}: {e}"
            ) from None
        pdu_ids = _string_list(answer, "pdu_ids")
        auth_ids = _string_list(answer, "auth_chain_ids")
        if pdu_ids is None or auth_ids is None:
            raise DroppedPdu(f"{origin} answered /state_ids without pdu_ids/auth_chain_ids")
        if len(pdu_ids) + len(auth_ids) > self._gaps.max_state_ids:
            raise DroppedPdu(f"the state at {event.event_id} from {origin} is too large")
        await self._gaps.fetch_outliers(origin, event.room_version, room_id, [*pdu_ids, *auth_ids])
        stored = await self._storage.events.get_stored_events(pdu_ids)
        state: dict[StateKey, str] = {}
        for state_id in pdu_ids:
            held = stored.get(state_id)
            if held is None or held.rejected_reason is not None:
                # As the receiver does: a state event that can't be had is left out.
                logger.warning("Leaving %s out of the state at %s", state_id, event.event_id)
                continue
            state_event = held.event
            if state_event.state_key is None or state_event.room_id != room_id:
                continue
            state[(state_event.type, state_event.state_key)] = state_id
        return state


def _string_list(answer: Any, key: str) -> list[str] | None:
    value = answer.get(key) if isinstance(answer, Mapping) else None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value
