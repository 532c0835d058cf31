"""DestinationQueue: everything on its way to one destination, sent one transaction at a time.

A queue holds the PDUs (our events, in stream order) and EDUs waiting for
its destination, and runs at most one transmission loop, so at most one
transaction is in flight per destination. Each transaction takes up to 50
PDUs and 100 EDUs from the front of the queues.

What the destination is owed is also in the database (`destination_rooms`:
the newest of our events per room; `last_successful_stream_ordering`: how far
it has been served), so the in-memory PDU queue is only a fast path:

- when a transaction FAILS, the destination is backed off
  (homeserver/federation/backoff.py) and the queued PDUs are dropped; while
  backing off, new events are not queued either (they are recorded in
  `destination_rooms` by the sender);
- the next attempt, after the interval (or after a restart), first CATCHES
  UP: for each room owed (oldest first, up to 50 rooms a transaction), it
  sends our newest event in the room, or our forward extremities if they
  are newer and the destination is in the room at them (the destination
  fetches the gap before them with get_missing_events). Only then does it
  send the PDUs queued meanwhile (catch-up covers the rooms up to the first
  of them).
- a transaction the destination REJECTS (a 4xx other than 401/429) is not
  retried: its PDUs count as delivered and its EDUs are dropped.

EDUs live only in memory; while a destination is backed off by more than an
hour, they are dropped (as Synapse does), since they would pile up.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from twisted.internet import defer

from homeserver.clock import Clock
from homeserver.federation.backoff import RetrySchedule
from homeserver.federation.transaction_sender import (
    MAX_EDUS_PER_TRANSACTION,
    MAX_PDUS_PER_TRANSACTION,
    Edu,
    Outcome,
    TransactionSender,
)
from homeserver.storage.stores.events import StoredEvent
from homeserver.storage.stores.federation_sender import (
    DestinationRoom,
    FederationSenderStore,
    RetryTimings,
)

logger = logging.getLogger(__name__)

MAX_PENDING_PDUS = 10_000
"""Past this, a destination that is slow to take them is caught up from the database instead."""
MAX_PENDING_EDUS = 10_000
"""Past this, the oldest queued EDUs are dropped."""
DROP_EDUS_AFTER_MS = 60 * 60 * 1000
"""EDUs for a destination backed off for longer than this are dropped."""


class QueueHost(Protocol):
    """What a queue needs from the federation sender."""

    clock: Clock
    store: FederationSenderStore
    transactions: TransactionSender
    schedule: RetrySchedule

    def position(self) -> int:
        """How far the sender has assigned events to destinations."""

    async def catch_up_events(
        self, destination: str, room: DestinationRoom, after: int, before: int | None
    ) -> list[StoredEvent]:
        """The events to send `destination` to catch it up on `room` (see the module docstring)."""

    def set_failing(self, destination: str, failing: bool) -> None:
        """Note whether the destination's last attempt failed (for the metrics)."""


class DestinationQueue:
    """The queues and the transmission loop of one destination (see the module docstring)."""

    def __init__(self, destination: str, host: QueueHost) -> None:
        self.destination = destination
        self._host = host
        self._pending_pdus: deque[StoredEvent] = deque()
        self._pending_edus: deque[Edu] = deque()
        # Loaded from the database by the first run of the loop.
        self._timings: RetryTimings | None = None
        # None while the destination has no row in `destinations`.
        self._last_successful: int | None = None
        # Until checked, the database may owe the destination events.
        self._needs_catch_up = True
        self._loop: defer.Deferred[None] | None = None
        self._closed = False

    # -- what the sender calls

    @property
    def transmitting(self) -> bool:
        return self._loop is not None

    @property
    def loop(self) -> defer.Deferred[None] | None:
        """The running transmission loop, if any (fires when it stops)."""
        return self._loop

    def has_pending(self) -> bool:
        return bool(self._pending_pdus or self._pending_edus)

    def is_backing_off(self) -> bool:
        return self._timings is not None and self._timings.is_backing_off(
            self._host.clock.time_msec()
        )

    def add_pdus(self, events: Sequence[StoredEvent]) -> None:
        """Queue our events (already recorded as owed), oldest first."""
        if self._closed or self.is_backing_off():
            return  # owed in the database; caught up after the backoff
        self._pending_pdus.extend(events)
        if len(self._pending_pdus) > MAX_PENDING_PDUS:
            logger.warning(
                "%d PDUs queued for %s: catching it up instead",
                len(self._pending_pdus),
                self.destination,
            )
            self._pending_pdus.clear()
            self._needs_catch_up = True
        self.wake()

    def add_edu(self, edu: Edu) -> None:
        if self._closed:
            return
        if len(self._pending_edus) >= MAX_PENDING_EDUS:
            dropped = self._pending_edus.popleft()
            logger.warning(
                "Too many EDUs queued for %s: dropped a %s", self.destination, dropped.edu_type
            )
        self._pending_edus.append(edu)
        self.wake()

    def wake(self, *, catch_up: bool = False) -> None:
        """Start the transmission loop unless it runs or the destination is backed off.

        `catch_up`: the database says the destination is owed events; check.
        """
        if catch_up:
            self._needs_catch_up = True
        if self._closed or self._loop is not None or self.is_backing_off():
            return
        loop = defer.ensureDeferred(self._run_logged())
        self._loop = loop
        loop.addBoth(self._loop_done, loop)

    async def reset_backoff(self) -> None:
        """The destination is known to be up again: forget the backoff and catch it up."""
        if self._timings is not None and not self._timings.failing:
            return
        await self._host.store.set_retry_timings(
            self.destination, RetryTimings(), position_if_new=self._host.position()
        )
        if self._timings is not None:
            self._timings = RetryTimings()
        self._host.set_failing(self.destination, False)
        self.wake(catch_up=True)

    def close(self) -> defer.Deferred[None]:
        """Stop: cancel the transaction in flight (what it held stays owed in the database)."""
        self._closed = True
        loop = self._loop
        if loop is None:
            return defer.succeed(None)
        loop.cancel()
        return loop

    def _loop_done(self, result: object, loop: defer.Deferred[None]) -> None:
        if self._loop is loop:
            self._loop = None

    # -- the transmission loop

    async def _run_logged(self) -> None:
        try:
            await self._run()
        except defer.CancelledError:
            logger.debug("Transmission loop for %s stopped: the queue was closed", self.destination)
        except Exception:
            logger.exception("Transmission loop for %s failed", self.destination)

    async def _run(self) -> None:
        store = self._host.store
        if self._timings is None:
            row = await store.get_destination(self.destination)
            self._timings = row.timings if row is not None else RetryTimings()
            if row is not None:
                self._last_successful = row.last_successful_stream_ordering
        while not self._closed:
            if self.is_backing_off():
                self._pending_pdus.clear()
                self._needs_catch_up = True
                return
            if self._needs_catch_up:
                if await self._catch_up_once():
                    continue
                self._needs_catch_up = False
            pdus: list[StoredEvent] = []
            while self._pending_pdus and len(pdus) < MAX_PDUS_PER_TRANSACTION:
                event = self._pending_pdus.popleft()
                # Catch-up may already have sent it.
                if self._last_successful is None or event.stream_ordering > self._last_successful:
                    pdus.append(event)
            edus = self._take_edus()
            if not pdus and not edus:
                if self._pending_pdus:
                    continue
                return
            await self._transmit(pdus, edus, max((p.stream_ordering for p in pdus), default=None))

    def _take_edus(self) -> list[Edu]:
        count = min(len(self._pending_edus), MAX_EDUS_PER_TRANSACTION)
        return [self._pending_edus.popleft() for _ in range(count)]

    async def _catch_up_once(self) -> bool:
        """Send one transaction of what the database says is owed; False if nothing is."""
        store = self._host.store
        if self._last_successful is None:
            row = await store.get_destination(self.destination)
            if row is None:
                return False
            self._last_successful = row.last_successful_stream_ordering
        after = self._last_successful
        # Rooms with a queued event are left to the queue.
        before = self._pending_pdus[0].stream_ordering if self._pending_pdus else None
        rooms = await store.get_owed_rooms(
            self.destination, after, before=before, limit=MAX_PDUS_PER_TRANSACTION
        )
        if not rooms:
            return False
        pdus: dict[str, StoredEvent] = {}
        covered: list[DestinationRoom] = []
        for room in rooms:
            events = await self._host.catch_up_events(self.destination, room, after, before)
            if covered and len(pdus) + len(events) > MAX_PDUS_PER_TRANSACTION:
                break
            for event in events[-MAX_PDUS_PER_TRANSACTION:]:
                pdus[event.event_id] = event
            covered.append(room)
        up_to = max(r.stream_ordering for r in covered)
        if not pdus:  # the events are gone (the room was purged): nothing left to owe
            self._last_successful = up_to
            await store.set_last_successful_stream_ordering(self.destination, up_to)
            return True
        logger.info(
            "Catching up %s on %d rooms with %d PDUs", self.destination, len(covered), len(pdus)
        )
        await self._transmit(list(pdus.values()), self._take_edus(), up_to)
        return True

    async def _transmit(self, pdus: list[StoredEvent], edus: list[Edu], up_to: int | None) -> None:
        """Send one transaction; `up_to`: the stream position it serves the destination to."""
        try:
            outcome = await self._host.transactions.send(self.destination, pdus, edus)
        except defer.CancelledError:
            raise
        except Exception:
            logger.exception("TX [%s] could not be sent", self.destination)
            outcome = Outcome.FAILED
        if self._closed:
            # Cancelled by close(), which the client may report as a failed request:
            # not the destination's fault. What the transaction held stays owed.
            raise defer.CancelledError()
        if outcome is Outcome.FAILED:
            await self._record_failure(edus)
            return
        # Delivered, or refused for good: either way, not to be sent again.
        if up_to is not None:
            self._last_successful = max(up_to, self._last_successful or up_to)
            await self._host.store.set_last_successful_stream_ordering(self.destination, up_to)
        timings = self._timings
        if outcome is Outcome.SENT and timings is not None and timings.failing:
            logger.info("%s is answering again", self.destination)
            self._timings = RetryTimings()
            await self._host.store.set_retry_timings(
                self.destination, self._timings, position_if_new=self._host.position()
            )
            self._host.set_failing(self.destination, False)

    async def _record_failure(self, edus: list[Edu]) -> None:
        host = self._host
        self._timings = host.schedule.after_failure(
            self._timings or RetryTimings(), host.clock.time_msec()
        )
        # What the dropped PDUs served is owed in the database.
        self._pending_pdus.clear()
        self._needs_catch_up = True
        if self._timings.retry_interval > DROP_EDUS_AFTER_MS:
            if edus or self._pending_edus:
                logger.info(
                    "Dropping %d EDUs for %s", len(edus) + len(self._pending_edus), self.destination
                )
            self._pending_edus.clear()
        else:
            self._pending_edus.extendleft(reversed(edus))
            while len(self._pending_edus) > MAX_PENDING_EDUS:
                self._pending_edus.popleft()
        logger.info(
            "Backing off %s for %.0fs", self.destination, self._timings.retry_interval / 1000
        )
        host.set_failing(self.destination, True)
        await host.store.set_retry_timings(
            self.destination, self._timings, position_if_new=host.position()
        )
