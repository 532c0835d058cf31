"""Filling the gaps a received PDU leaves: its missing auth events, prev_events and state.

Spec: server-server API "Checks performed on receipt of a PDU" (steps 4 and
5 need the event's auth events and the state before it), "Retrieving event
authorisation information", "Backfilling and retrieving missing events"
(POST /get_missing_events) and "Retrieving events" (GET /event/{eventId},
GET /state_ids/{roomId}). Every request goes to the server that sent the
PDU, as Synapse does.

`GapFiller` does three things for the receiver (homeserver.federation.receiver):

- `fetch_outliers(origin, room_version, room_id, event_ids)`: GET /event/{id}
  for each event we lack, then for the auth events those need that we lack
  too, round by round up to `max_fetched_events` in all. Each fetched event
  must be the one asked for (its ID, its room) and passes steps 1 to 3 (see
  homeserver.federation.event_checks) or is dropped; the rest are checked
  against their own auth events in auth-DAG order (step 4: rejected if they
  fail) and stored as outliers. An event whose auth events can't all be had
  is not stored.
- `pull_missing_prev_events(origin, event, earliest, min_depth)`: POST
  /get_missing_events (limit 10) for the events between what we hold
  (`earliest`: our forward extremities and the prev_events we have) and the
  event; the valid events of the room it returns, oldest first, for the
  receiver to handle as it handles pushed PDUs.
- `state_before(origin, event, missing_prevs)`: for an event whose prev_events
  are still missing after that, the state after each missing prev_event from
  GET /state_ids (its events fetched as outliers, the prev_event itself
  added when it is an accepted state event), resolved with the states after
  the prev_events we hold: the state before the event, for the persister.

Bounds: at most `max_fetched_events` events fetched for one call, at most
`fetch_concurrency` requests to the origin at once, `max_state_ids` IDs in a
/state_ids answer; past them the PDU is dropped (`DroppedPdu`) rather than
the server swamped.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from twisted.internet import defer

from homeserver.crypto.keyring import KeyFetchClient
from homeserver.federation.client import FederationRequestError
from homeserver.federation.event_checks import (
    DroppedPdu,
    KeySource,
    auth_event_ids_needed,
    check_auth_events,
    check_signatures_and_hash,
    parse_pdu,
)
from homeserver.handlers.event_persistence import EventPersister, EventToPersist
from homeserver.state.auth_rules import AuthError
from homeserver.state.loader import StateKey
from homeserver.state.store_loader import resolve_state_from_source
from homeserver.storage.room_storage import RoomStorage
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion

logger = logging.getLogger(__name__)

FEDERATION_PREFIX = "/_matrix/federation/v1"
MISSING_EVENTS_LIMIT = 10
"""How many events one /get_missing_events asks for (Synapse's number)."""


FederationFetcher = KeyFetchClient
"""What the gap filler needs of homeserver.federation.client.FederationClient: the same JSON
GET and POST as the KeyRing. Failures (no answer, a non-2xx answer) raise
FederationRequestError."""


class StoredEventSource:
    """Stored events as a state resolution source (homeserver.state.store_loader.EventSource)."""

    def __init__(self, storage: RoomStorage) -> None:
        self._storage = storage

    async def fetch_events(self, event_ids: Collection[str]) -> dict[str, tuple[EventBase, bool]]:
        stored = await self._storage.events.get_stored_events(event_ids)
        return {i: (s.event, s.rejected_reason is not None) for i, s in stored.items()}


class GapFiller:
    """Fetches, checks and stores the events a received PDU needs (see the module docstring)."""

    def __init__(
        self,
        client: FederationFetcher,
        keys: KeySource,
        storage: RoomStorage,
        persister: EventPersister,
        *,
        max_fetched_events: int = 2000,
        max_state_ids: int = 20000,
        fetch_concurrency: int = 10,
        timeout_ms: int = 30_000,
    ) -> None:
        self._client = client
        self._keys = keys
        self._storage = storage
        self._persister = persister
        self.max_fetched_events = max_fetched_events
        self.max_state_ids = max_state_ids
        self._concurrency = fetch_concurrency
        self._timeout_ms = timeout_ms

    # --- auth events and state events, as outliers ------------------------------

    async def fetch_outliers(
        self, origin: str, room_version: RoomVersion, room_id: str, event_ids: Iterable[str]
    ) -> None:
        """Fetch the events we lack among `event_ids` (and their missing auth events); store them.

        Raises DroppedPdu when more than `max_fetched_events` would be needed.
        Events that can't be fetched or fail their checks are left out (logged).
        """
        wanted = list(dict.fromkeys(event_ids))
        held = await self._storage.events.have_events(wanted)
        queue = [i for i in wanted if i not in held]
        asked = set(queue)
        fetched: dict[str, EventBase] = {}
        while queue:
            if len(asked) > self.max_fetched_events:
                raise DroppedPdu(
                    f"more than {self.max_fetched_events} events missing in {room_id};"
                    f" not fetching them from {origin}"
                )
            results = await self._fetch_many(origin, room_version, room_id, queue)
            fetched.update((e.event_id, e) for e in results)
            referenced = {a for e in results for a in auth_event_ids_needed(e)}
            referenced -= asked
            held = await self._storage.events.have_events(referenced)
            queue = sorted(referenced - held)
            asked.update(queue)
        if fetched:
            await self._store_outliers(fetched)

    async def _fetch_many(
        self, origin: str, room_version: RoomVersion, room_id: str, event_ids: Sequence[str]
    ) -> list[EventBase]:
        semaphore = defer.DeferredSemaphore(self._concurrency)

        async def fetch(event_id: str) -> EventBase | None:
            await semaphore.acquire()
            try:
                return await self._fetch_event(origin, room_version, room_id, event_id)
            finally:
                semaphore.release()

        results = await defer.gatherResults(
            [defer.ensureDeferred(fetch(i)) for i in event_ids], consumeErrors=True
        )
        return [e for e in results if e is not None]

    async def _fetch_event(
        self, origin: str, room_version: RoomVersion, room_id: str, event_id: str
    ) -> EventBase | None:
        """GET /event/{eventId} from the origin: the event if it passes steps 1 to 3, else None."""
        try:
            answer = await self._client.get_json(
                origin,
                f"{FEDERATION_PREFIX}/event/{quote(event_id, safe='')}",
                timeout_ms=self._timeout_ms,
            )
        except FederationRequestError as e:
            logger.info("Cannot get event %s from %s: %s", event_id, origin, e)
            return None
        pdus = answer.get("pdus") if isinstance(answer, Mapping) else None
        if not isinstance(pdus, list) or not pdus:
            logger.info("%s answered GET /event/%s without a PDU", origin, event_id)
            return None
        try:
            event = parse_pdu(pdus[0], room_version)
            if event.event_id != event_id or event.room_id != room_id:
                raise DroppedPdu(
                    f"asked for {event_id} in {room_id}, got {event.event_id} in {event.room_id}"
                )
            checked, redacted = await check_signatures_and_hash(self._keys, event)
        except DroppedPdu as e:
            logger.warning("Dropping event %s fetched from %s: %s", event_id, origin, e)
            return None
        if redacted:
            logger.warning("Event %s from %s fails its content hash: redacted", event_id, origin)
        return checked

    async def _store_outliers(self, fetched: Mapping[str, EventBase]) -> None:
        """Step 4 for each fetched event, in auth-DAG order; store them as outliers."""
        outside = {a for e in fetched.values() for a in auth_event_ids_needed(e)} - fetched.keys()
        stored = await self._storage.events.get_stored_events(outside)
        known: dict[str, tuple[EventBase, bool]] = {
            i: (s.event, s.rejected_reason is not None) for i, s in stored.items()
        }
        to_store: list[EventToPersist] = []
        for event in _auth_order(fetched):
            if any(a not in known for a in auth_event_ids_needed(event)):
                logger.warning(
                    "Not storing %s: some of its auth events could not be had", event.event_id
                )
                continue
            rejected: str | None = None
            try:
                check_auth_events(event, known)
            except AuthError as e:
                rejected = f"auth_events: {e.message}"
                logger.warning("Rejecting fetched event %s: %s", event.event_id, e.message)
            known[event.event_id] = (event, rejected is not None)
            to_store.append(EventToPersist(event, outlier=True, rejected_reason=rejected))
        if to_store:
            await self._persister.persist(to_store)

    async def auth_events_for(
        self, origin: str, event: EventBase
    ) -> dict[str, tuple[EventBase, bool]]:
        """The events step 4 needs for `event` (fetched from the origin if we lack them).

        Raises DroppedPdu if some can't be had: whether the event is allowed
        can't be told, and the failure may be passing, so it is not rejected.
        """
        needed = auth_event_ids_needed(event)
        stored = await self._storage.events.get_stored_events(needed)
        if len(stored) < len(needed):
            await self.fetch_outliers(origin, event.room_version, event.room_id, needed)
            stored = await self._storage.events.get_stored_events(needed)
        missing = [i for i in needed if i not in stored]
        if missing:
            raise DroppedPdu(f"cannot get the auth events {missing} of {event.event_id}")
        return {i: (s.event, s.rejected_reason is not None) for i, s in stored.items()}

    # --- prev_events ------------------------------------------------------------

    async def pull_missing_prev_events(
        self, origin: str, event: EventBase, earliest: Collection[str], min_depth: int
    ) -> list[EventBase]:
        """POST /get_missing_events for what lies between `earliest` and `event`, oldest first.

        Failures are logged and give []: the receiver falls back on /state_ids.
        """
        room_id = event.room_id
        body = {
            "earliest_events": sorted(earliest),
            "latest_events": [event.event_id],
            "limit": MISSING_EVENTS_LIMIT,
            "min_depth": min_depth,
        }
        try:
            answer = await self._client.post_json(
                origin,
                f"{FEDERATION_PREFIX}/get_missing_events/{quote(room_id, safe='')}",
                body,
                timeout_ms=self._timeout_ms,
            )
        except FederationRequestError as e:
            logger.info("Cannot get the events missing before %s from %s: %s", event, origin, e)
            return []
        raw = answer.get("events") if isinstance(answer, Mapping) else None
        if not isinstance(raw, list):
            logger.info("%s answered /get_missing_events without an events list", origin)
            return []
        events: dict[str, EventBase] = {}
        # A server that sends more than asked for gets the oldest of them handled.
        for pdu in raw:
            try:
                missing = parse_pdu(pdu, event.room_version)
            except DroppedPdu as e:
                logger.info("Ignoring a missing event from %s: %s", origin, e)
                continue
            if missing.room_id == room_id and missing.event_id != event.event_id:
                events[missing.event_id] = missing
        ordered = sorted(events.values(), key=lambda e: (e.depth, e.event_id))
        return ordered[:MISSING_EVENTS_LIMIT]

    # --- the state before an event with missing prev_events ----------------------

    async def state_before(
        self, origin: str, event: EventBase, missing_prevs: Collection[str]
    ) -> dict[StateKey, str]:
        """The state before `event`, from the states after each of its prev_events.

        Those we hold come from storage; the missing ones from the origin's
        /state_ids. Raises DroppedPdu if a missing one's state can't be had.
        """
        room_version = event.room_version
        state_sets: list[Mapping[StateKey, str]] = []
        for prev in dict.fromkeys(event.prev_event_ids):
            if prev in missing_prevs:
                state_sets.append(await self._remote_state_after(origin, event, prev))
                continue
            held = await self._storage.state.get_state_ids_for_event(prev, after=True)
            if held is None:
                state_sets.append(await self._remote_state_after(origin, event, prev))
            else:
                state_sets.append(held)
        return await resolve_state_from_source(
            room_version, state_sets, StoredEventSource(self._storage)
        )

    async def _remote_state_after(
        self, origin: str, event: EventBase, prev: str
    ) -> dict[StateKey, str]:
        room_id = event.room_id
        try:
            answer = await self._client.get_json(
                origin,
                f"{FEDERATION_PREFIX}/state_ids/{quote(room_id, safe='')}",
                {"event_id": prev},
                timeout_ms=self._timeout_ms,
            )
        except FederationRequestError as e:
            raise DroppedPdu(
                f"cannot get the state at {prev} (a prev_event of {event.event_id}) from"
                f" {origin}: {e}"
            ) from None
        pdu_ids = _string_list(answer, "pdu_ids")
        auth_ids = _string_list(answer, "auth_chain_ids")
        if pdu_ids is None or auth_ids is None:
            raise DroppedPdu(
                f"{origin} answered /state_ids at {prev} without pdu_ids/auth_chain_ids"
            )
        if len(pdu_ids) + len(auth_ids) > self.max_state_ids:
            raise DroppedPdu(f"the state at {prev} from {origin} is too large")
        await self.fetch_outliers(origin, event.room_version, room_id, [prev, *pdu_ids, *auth_ids])
        stored = await self._storage.events.get_stored_events([prev, *pdu_ids])
        if prev not in stored:
            raise DroppedPdu(f"cannot get the prev_event {prev} of {event.event_id} from {origin}")
        state: dict[StateKey, str] = {}
        for state_id in pdu_ids:
            held = stored.get(state_id)
            if held is None or held.rejected_reason is not None:
                # As Synapse: a state event we could not get (or that was
                # rejected) is left out rather than failing the whole state.
                logger.warning("Leaving %s out of the state at %s", state_id, prev)
                continue
            state_event = held.event
            if state_event.state_key is None or state_event.room_id != room_id:
                logger.warning("%s is not a state event of %s; ignored", state_id, room_id)
                continue
            state[(state_event.type, state_event.state_key)] = state_id
        prev_event = stored[prev]
        if prev_event.event.state_key is not None and prev_event.rejected_reason is None:
            state[(prev_event.event.type, prev_event.event.state_key)] = prev
        return state


def _string_list(answer: Any, key: str) -> list[str] | None:
    value = answer.get(key) if isinstance(answer, Mapping) else None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _auth_order(events: Mapping[str, EventBase]) -> list[EventBase]:
    """The events, each after those of its auth events that are among them (cycles left out)."""
    waiting: dict[str, set[str]] = {}
    dependants: dict[str, list[str]] = {}
    for event_id, event in events.items():
        deps = {a for a in auth_event_ids_needed(event) if a in events and a != event_id}
        waiting[event_id] = deps
        for dep in deps:
            dependants.setdefault(dep, []).append(event_id)
    ready = sorted((i for i, deps in waiting.items() if not deps), reverse=True)
    ordered: list[EventBase] = []
    while ready:
        current = ready.pop()
        ordered.append(events[current])
        for dependant in dependants.get(current, ()):
            deps = waiting[dependant]
            deps.discard(current)
            if not deps:
                ready.append(dependant)
    return ordered
