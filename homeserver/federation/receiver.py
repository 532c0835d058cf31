"""Receiving federation transactions: their PDUs checked and stored, their EDUs dispatched.

Spec: server-server API "Transactions" (PUT /_matrix/federation/v1/send/{txnId}:
at most 50 PDUs and 100 EDUs; the answer is `{"pdus": {event_id: {} or
{"error": ...}}}` whatever happened to each PDU), "Checks performed on
receipt of a PDU", "Rejection", "Soft failure", "EDUs", and "Server Access
Control Lists (ACLs)".

A transaction is answered once per (origin, txnId): the answer is stored and
a retry gets it again without anything being processed twice (answers are
kept a day; housekeeping deletes older ones). Two copies of one transaction
arriving at once are handled one after the other.

Each PDU, grouped by room (rooms in parallel, up to `room_concurrency`;
within a room one PDU at a time, in the transaction's order), goes through:

- the room: one we know (its version decides the event format), else the PDU
  is ignored with an error, as Synapse does; the origin must be allowed by
  the room's m.room.server_acl, else every PDU of the room gets an error;
- steps 1 to 3 (homeserver.federation.event_checks): an invalid event or a
  bad signature drops it (error, nothing stored); a content hash mismatch
  makes us go on with its redacted copy;
- its prev_events: when some are missing, POST /get_missing_events to the
  origin (only above the lowest depth we hold), and the events it returns
  are handled first, oldest first, as PDUs are (without asking for their own
  missing events), as Synapse does: the event's auth events are usually
  among them;
- step 4: its auth events (fetched from the origin when we still lack them,
  homeserver.federation.missing_events); failing the rules against them
  stores it as rejected (as an outlier if prev_events are still missing);
  auth events that can't be had drop it;
- if prev_events are still missing, the state before the event is built
  from the origin's /state_ids and given to the persister;
- step 5 is the persister's (homeserver.handlers.event_persistence): against
  the state before the event; failing it stores the event as rejected, and a
  rejected event never changes the room's state;
- step 6: an event that passes the rules against the state before it but not
  against the room's current state (resolved with the state before it when
  that came from the origin) is soft-failed: stored, but no forward
  extremity and not relayed to clients.

Rejected and soft-failed PDUs are answered `{}` like accepted ones (the spec:
a rejection is not an error of the transaction); dropped ones get an error.

EDUs go to the handler registered for their type
(`register_edu_handler(edu_type, handler)`, called with the origin and the
content), in order; unknown types are ignored. Handlers of room EDUs (typing,
receipts) check `server_allowed_in_room` themselves, as the spec asks.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task

from homeserver.clock import Clock
from homeserver.federation.event_checks import (
    DroppedPdu,
    KeySource,
    check_auth_events,
    check_signatures_and_hash,
    parse_pdu,
    pdu_event_id,
)
from homeserver.federation.missing_events import FederationFetcher, GapFiller, StoredEventSource
from homeserver.handlers.event_persistence import EventPersister, EventToPersist
from homeserver.state.auth_common import CREATE_KEY
from homeserver.state.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from homeserver.state.loader import StateKey
from homeserver.state.store_loader import resolve_state_from_source
from homeserver.storage.room_storage import RoomStorage
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.events import EventBase
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.types.server_acl import SERVER_ACL, server_allowed_by_acl

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
DAY_MS = 24 * 3600 * 1000

EduHandler = Callable[[str, Mapping[str, Any]], Awaitable[None] | None]
"""Called with the origin server's name and the EDU's content."""

JsonDict = dict[str, Any]


class _KeyedLocks:
    """One DeferredLock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Any, tuple[defer.DeferredLock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Any) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (defer.DeferredLock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class FederationReceiver(Service):
    """Handles received transactions (see the module docstring); deletes old answers while running."""

    name = "federation_receiver"

    def __init__(
        self,
        clock: Clock,
        storage: RoomStorage,
        persister: EventPersister,
        keys: KeySource,
        client: FederationFetcher,
        *,
        transaction_retention_ms: int = DAY_MS,
        cleanup_interval_seconds: float = 30 * 60,
        room_concurrency: int = 10,
    ) -> None:
        self._clock = clock
        self._storage = storage
        self._received = storage.federation_received
        self._persister = persister
        self._keys = keys
        self.gaps = GapFiller(client, keys, storage, persister)
        self._retention_ms = transaction_retention_ms
        self._cleanup_interval = cleanup_interval_seconds
        self._room_concurrency = room_concurrency
        self._edu_handlers: dict[str, EduHandler] = {}
        self._origin_listeners: list[Callable[[str], Awaitable[None]]] = []
        self._transaction_locks = _KeyedLocks()
        self._room_locks = _KeyedLocks()
        self._cleanup_call: task.LoopingCall | None = None

    # --- the service: housekeeping ---------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._cleanup_call = self._clock.looping_call(
            self._delete_old_transactions, self._cleanup_interval
        )

    def stopService(self) -> None:
        if self._cleanup_call is not None and self._cleanup_call.running:
            self._cleanup_call.stop()
        self._cleanup_call = None
        return super().stopService()  # type: ignore[no-any-return, no-untyped-call]

    async def delete_old_transactions(self) -> int:
        """Forget the answers older than the retention; how many were deleted."""
        return await self._received.delete_transactions_before(
            self._clock.time_msec() - self._retention_ms
        )

    def _delete_old_transactions(self) -> defer.Deferred[Any]:
        d = defer.ensureDeferred(self.delete_old_transactions())
        d.addErrback(lambda f: logger.error("Deleting old transactions failed: %s", f.value))
        return d

    def add_origin_listener(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Call `listener(origin)` for each transaction a server sends us: it is up (the
        federation sender stops backing off from it)."""
        self._origin_listeners.append(listener)

    # --- EDUs -------------------------------------------------------------------

    def register_edu_handler(self, edu_type: str, handler: EduHandler) -> None:
        """Send the EDUs of this type to `handler` (one handler per type)."""
        if edu_type in self._edu_handlers:
            raise ValueError(f"an EDU handler for {edu_type} is already registered")
        self._edu_handlers[edu_type] = handler

    async def _handle_edus(self, origin: str, edus: Sequence[Any]) -> None:
        for index, edu in enumerate(edus):
            edu_type = edu.get("edu_type") if isinstance(edu, Mapping) else None
            content = edu.get("content") if isinstance(edu, Mapping) else None
            if not isinstance(edu_type, str) or not isinstance(content, Mapping):
                logger.info("Ignoring malformed EDU %d from %s", index, origin)
                continue
            handler = self._edu_handlers.get(edu_type)
            if handler is None:
                logger.debug("Ignoring EDU of unknown type %s from %s", edu_type, origin)
                continue
            try:
                outcome = handler(origin, content)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                logger.exception("Handling a %s EDU from %s failed", edu_type, origin)

    # --- transactions -----------------------------------------------------------

    async def on_send_transaction(
        self, origin: str, transaction_id: str, body: Mapping[str, Any]
    ) -> tuple[int, JsonDict]:
        """PUT /send/{txnId} from `origin` (already authenticated): (status, answer).

        Raises MatrixError for a transaction that can't be accepted as a
        whole (nothing of it is processed or remembered).
        """
        pdus, edus = _validate_transaction(origin, body)
        for listener in self._origin_listeners:
            try:
                await listener(origin)
            except Exception:
                logger.exception("Origin listener %r failed for %s", listener, origin)
        async with self._transaction_locks.hold((origin, transaction_id)):
            answered = await self._received.get_transaction_response(
                origin,
                transaction_id,
                not_before_ts=self._clock.time_msec() - self._retention_ms,
            )
            if answered is not None:
                logger.info("Transaction %s from %s was answered already", transaction_id, origin)
                return answered
            # EDUs (typing, to-device messages) don't wait behind PDUs fetching history.
            edus_done = defer.ensureDeferred(self._handle_edus(origin, edus))
            try:
                pdu_results = await self._handle_pdus(origin, pdus)
            finally:
                await edus_done
            response: JsonDict = {"pdus": pdu_results}
            await self._received.set_transaction_response(
                origin, transaction_id, 200, response, self._clock.time_msec()
            )
            return 200, response

    async def _handle_pdus(self, origin: str, pdus: Sequence[Any]) -> dict[str, JsonDict]:
        results: dict[str, JsonDict] = {}
        by_room: dict[str, list[Any]] = {}
        for pdu in pdus:
            room_id = pdu.get("room_id") if isinstance(pdu, Mapping) else None
            if not isinstance(room_id, str):
                logger.info("Ignoring a PDU from %s without a room_id", origin)
                continue
            by_room.setdefault(room_id, []).append(pdu)
        semaphore = defer.DeferredSemaphore(self._room_concurrency)

        async def one_room(room_id: str, room_pdus: list[Any]) -> None:
            await semaphore.acquire()
            try:
                await self._handle_room_pdus(origin, room_id, room_pdus, results)
            finally:
                semaphore.release()

        await defer.gatherResults(
            [defer.ensureDeferred(one_room(r, p)) for r, p in by_room.items()],
            consumeErrors=True,
        )
        return results

    async def _handle_room_pdus(
        self, origin: str, room_id: str, pdus: list[Any], results: dict[str, JsonDict]
    ) -> None:
        version_id = await self._storage.rooms.get_room_version(room_id)
        room_version = KNOWN_ROOM_VERSIONS.get(version_id) if version_id is not None else None
        if room_version is None:
            # Without the room's version the event IDs of v3+ PDUs can't be
            # computed: only PDUs that carry their ID get the error.
            logger.info("Ignoring %d PDUs from %s for unknown room %s", len(pdus), origin, room_id)
            for pdu in pdus:
                event_id = pdu.get("event_id")
                if isinstance(event_id, str):
                    results[event_id] = {"error": f"Unknown room {room_id}"}
            return
        if not await self.server_allowed_in_room(origin, room_id):
            logger.warning("Ignoring PDUs for room %s from banned server %s", room_id, origin)
            for pdu in pdus:
                event_id = pdu_event_id(pdu, room_version)
                if event_id is not None:
                    results[event_id] = {
                        "errcode": Codes.FORBIDDEN,
                        "error": "Server is banned from room",
                    }
            return
        async with self._room_locks.hold(room_id):
            for pdu in pdus:
                try:
                    event = parse_pdu(pdu, room_version)
                except DroppedPdu as e:
                    logger.warning("Dropping a PDU from %s: %s", origin, e)
                    event_id = pdu_event_id(pdu, room_version)
                    if event_id is not None:
                        results[event_id] = {"error": str(e)}
                    continue
                results[event.event_id] = await self._handle_pushed_pdu(origin, event)

    async def _handle_pushed_pdu(self, origin: str, event: EventBase) -> JsonDict:
        try:
            await self.receive_pdu(origin, event)
        except DroppedPdu as e:
            logger.warning("Dropping PDU %s from %s: %s", event.event_id, origin, e)
            return {"error": str(e)}
        except Exception as e:
            logger.exception("Failed to handle PDU %s from %s", event.event_id, origin)
            return {"error": f"Failed to handle the event: {e}"}
        return {}

    async def server_allowed_in_room(self, server_name: str, room_id: str) -> bool:
        """Whether the room's current m.room.server_acl (if any) lets `server_name` take part."""
        state = await self._storage.state.get_current_state_ids(room_id)
        acl_id = state.get((SERVER_ACL, ""))
        if acl_id is None:
            return True
        acl = await self._storage.events.get_event(acl_id)
        return server_allowed_by_acl(server_name, None if acl is None else acl.content)

    # --- one PDU --------------------------------------------------------------------

    async def receive_pdu(self, origin: str, event: EventBase, *, pulled: bool = False) -> None:
        """Checks and stores one event of a known room that `origin` sent (or we pulled from it).

        The caller holds the room's lock (events of a room one at a time).
        Raises DroppedPdu when the event is not stored.
        """
        held = await self._storage.events.get_stored_events([event.event_id])
        if event.event_id in held:
            # An event we hold as an outlier stays one: the persister stores an
            # event once.
            logger.debug("Already have %s", event.event_id)
            return
        event, redacted = await check_signatures_and_hash(self._keys, event)
        if redacted:
            logger.warning(
                "Event %s from %s fails its content hash: going on with its redacted copy",
                event.event_id,
                origin,
            )
        missing = await self._missing_prev_events(event)
        if missing and not pulled:
            # Before its auth events: those are usually among the missing
            # events, and come into the timeline this way rather than as outliers.
            await self._pull_missing_prev_events(origin, event, missing)
            missing = await self._missing_prev_events(event)

        auth_events = await self.gaps.auth_events_for(origin, event)
        rejected: str | None = None
        try:
            check_auth_events(event, auth_events)
        except AuthError as e:
            rejected = f"auth_events: {e.message}"
            logger.warning("Rejecting %s from %s: %s", event.event_id, origin, rejected)

        state_before = None
        if missing and rejected is not None:
            # Rejected whatever came before it: no state is fetched for it,
            # and it is kept as an outlier.
            await self._persister.persist(
                [EventToPersist(event, outlier=True, rejected_reason=rejected)]
            )
            return
        if missing:
            logger.info(
                "Still missing prev_events %s of %s: asking %s for the state",
                missing,
                event.event_id,
                origin,
            )
            state_before = await self.gaps.state_before(origin, event, missing)

        soft_failed = rejected is None and await self._fails_current_state(event, state_before)
        (persisted,) = await self._persister.persist(
            [
                EventToPersist(
                    event,
                    rejected_reason=rejected,
                    state_before=state_before,
                    soft_failed=soft_failed,
                )
            ]
        )
        if persisted.rejected_reason is not None and rejected is None:
            logger.warning(
                "Rejected %s from %s: %s", event.event_id, origin, persisted.rejected_reason
            )

    async def _missing_prev_events(self, event: EventBase) -> list[str]:
        """The prev_events we don't hold in the timeline (outliers have no state)."""
        prevs = list(dict.fromkeys(event.prev_event_ids))
        stored = await self._storage.events.get_stored_events(prevs)
        return [p for p in prevs if p not in stored or stored[p].outlier]

    async def _pull_missing_prev_events(
        self, origin: str, event: EventBase, missing: Sequence[str]
    ) -> None:
        room_id = event.room_id
        min_depth = await self._received.get_min_depth(room_id)
        # Below the oldest event we hold lies history from before we were in
        # the room (or before what we backfilled): not fetched for a new event.
        if min_depth is None or event.depth <= min_depth:
            return
        extremities = await self._storage.events.get_forward_extremities(room_id)
        seen = {p for p in event.prev_event_ids if p not in missing}
        pulled = await self.gaps.pull_missing_prev_events(
            origin, event, set(extremities) | seen, min_depth
        )
        for missing_event in pulled:
            try:
                await self.receive_pdu(origin, missing_event, pulled=True)
            except DroppedPdu as e:
                logger.warning(
                    "Dropping %s from /get_missing_events of %s: %s",
                    missing_event.event_id,
                    origin,
                    e,
                )
            except Exception:
                logger.exception(
                    "Failed to handle %s from /get_missing_events of %s",
                    missing_event.event_id,
                    origin,
                )

    async def _fails_current_state(
        self, event: EventBase, state_before: Mapping[StateKey, str] | None
    ) -> bool:
        """Step 6: whether the event fails the rules against the room's current state."""
        room_id = event.room_id
        room_version: RoomVersion = event.room_version
        extremities = await self._storage.events.get_forward_extremities(room_id)
        if state_before is None and set(event.prev_event_ids) == set(extremities):
            return False  # the state before it is the current state: step 5 decides
        current: Mapping[StateKey, str] = await self._storage.state.get_current_state_ids(room_id)
        if state_before is not None:
            # The state before it came from the origin: what the room's state
            # would be with it (as Synapse does).
            current = await resolve_state_from_source(
                room_version, [current, state_before], StoredEventSource(self._storage)
            )
        keys = auth_types_for_event(room_version, event) | {CREATE_KEY}
        ids = {key: current[key] for key in keys if key in current}
        stored = await self._storage.events.get_stored_events(list(ids.values()))
        auth_events = {
            key: stored[i].event
            for key, i in ids.items()
            if i in stored and stored[i].rejected_reason is None
        }
        try:
            check_auth_rules(room_version, event, auth_events)
        except AuthError as e:
            logger.warning("Soft-failing %s: %s", event.event_id, e.message)
            return True
        return False


def _validate_transaction(origin: str, body: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """The PDUs and EDUs of a transaction body; MatrixError if the body can't be accepted."""
    claimed = body.get("origin")
    if not isinstance(claimed, str):
        raise MatrixError(Codes.BAD_JSON, "The transaction's 'origin' must be a string")
    if claimed != origin:
        raise MatrixError(
            Codes.FORBIDDEN,
            f"The transaction's origin {claimed!r} is not the server that signed the request",
        )
    ts = body.get("origin_server_ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise MatrixError(Codes.BAD_JSON, "The transaction's 'origin_server_ts' must be an integer")
    pdus = body.get("pdus")
    if not isinstance(pdus, list):
        raise MatrixError(Codes.BAD_JSON, "The transaction's 'pdus' must be a list")
    edus = body.get("edus")
    if edus is None:
        edus = []
    if not isinstance(edus, list):
        raise MatrixError(Codes.BAD_JSON, "The transaction's 'edus' must be a list")
    if len(pdus) > MAX_PDUS:
        raise MatrixError(
            Codes.BAD_JSON, f"A transaction may hold at most {MAX_PDUS} PDUs, not {len(pdus)}"
        )
    if len(edus) > MAX_EDUS:
        raise MatrixError(
            Codes.BAD_JSON, f"A transaction may hold at most {MAX_EDUS} EDUs, not {len(edus)}"
        )
    return pdus, edus
