"""FederationSender: sends our room events (and EDUs) to the other servers in the room.

Spec: server-server API, "Transactions" and "PDUs". A Twisted Service,
started and stopped with the HomeServer.

Which events go where. The sender follows the "events" stream, from a
position stored in the database: it is woken by the event persister's
listener and reads what was persisted since its position (up to the
stream's current token, below which everything is committed). Of those,
the events that originated here (the sender is one of our users) are sent;
events we received from others are theirs to send, except those we relay.
The destinations of an event are the servers with a user joined to the room
in the state after the event or before it (so a server whose last user just
left, was kicked or banned hears about it), except ourselves.

Relaying. A server joining, leaving or knocking through us (send_join,
send_leave, send_knock: homeserver/federation/resident.py) hands its event
only to us, so we must send it to the rest of the room, as for our own
events. Before persisting such an event the resident side marks it
(FederationSenderStore.add_relayed: a row of `federation_relayed_events`,
with its origin); when the sender reaches the event on the stream it sends
it like ours, except to its origin, and drops the mark in the transaction
that records the destinations. Marking before persisting means the sender cannot pass the
event unmarked, and a restart at any point loses nothing: the mark, then the
`destination_rooms` rows, outlive it. Events received in /send transactions
are never marked, so never relayed. Nothing of a room whose
m.room.create event says `"m.federate": false` leaves the server. The
joined servers are computed per state group and cached (most events share
the group of the event before them).

For each destination and room, the newest event owed is recorded in
`destination_rooms`, in the same database transaction that moves the
sender's position: a crash or restart loses nothing, and a destination that
was down is caught up from there (see homeserver/federation/transaction_queue.py,
one DestinationQueue per destination, one transaction in flight at a time).

Destinations that fail are backed off (homeserver/federation/backoff.py).
Every `wake_interval` seconds, and at start, destinations that are owed
events and whose backoff is over are woken to catch up; so are those that
get new events, and `on_remote_server_up` wakes a destination at once.

`send_edu(destination, edu_type, content)` queues an EDU (typing,
receipts, ...) in memory; it goes with the next transaction.

THE SINGLE-SENDER ASSUMPTION lives here: one process sends for the whole
server (`instance_name` keys its stream position); several would each send
everything. Sharding destinations between processes would split the queues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task

from homeserver import metrics
from homeserver.clock import Clock
from homeserver.federation.backoff import RetrySchedule
from homeserver.federation.client import FederationClient
from homeserver.federation.transaction_queue import DestinationQueue
from homeserver.federation.transaction_sender import Edu, RedactionLookup, TransactionSender
from homeserver.handlers.event_persistence import PersistedEvent
from homeserver.storage.lru import LruCache
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.events import StoredEvent
from homeserver.storage.stores.federation_sender import (
    DestinationRoom,
    FederationSenderStore,
    NewEvent,
)
from homeserver.types.events import EventBase

logger = logging.getLogger(__name__)

MEMBER = "m.room.member"

DEFAULT_WAKE_INTERVAL_SECONDS = 60.0
EVENTS_PER_READ = 500
"""How many rows of the events stream the sender reads at a time."""
WAKES_PER_PAGE = 100
RELAYED_MEMBERSHIPS = frozenset({"join", "leave", "knock"})
"""The memberships a server hands a resident server to send for it."""


def _may_be_relayed(event: EventBase) -> bool:
    """Whether the event may have come through send_join/send_leave/send_knock: a user's
    own membership change (only then need the sender look for a relay mark)."""
    return (
        event.type == MEMBER
        and event.state_key == event.sender
        and event.content.get("membership") in RELAYED_MEMBERSHIPS
    )


def _server_of(user_id: str) -> str | None:
    _, sep, server = user_id.partition(":")
    return server if sep and server else None


class FederationSender(Service):
    """Our events and EDUs to other servers (see the module docstring)."""

    name = "federation_sender"

    def __init__(
        self,
        server_name: str,
        clock: Clock,
        room_storage: RoomStorage,
        store: FederationSenderStore,
        client: FederationClient,
        applied_redactions: RedactionLookup,
        schedule: RetrySchedule,
        *,
        instance_name: str = "master",
        wake_interval: float = DEFAULT_WAKE_INTERVAL_SECONDS,
        hosts_cache_size: int = 100_000,
    ) -> None:
        self.server_name = server_name
        self.clock = clock
        self.store = store
        self.schedule = schedule
        self.transactions = TransactionSender(client, clock, server_name, applied_redactions)
        self._rooms = room_storage
        self._instance_name = instance_name
        self._wake_interval = wake_interval
        self._queues: dict[str, DestinationQueue] = {}
        self._position: int | None = None
        self._stored_position: int | None = None
        self._more_events = False
        self._distributor: defer.Deferred[None] | None = None
        self._startup: defer.Deferred[None] | None = None
        self._waking: defer.Deferred[None] | None = None
        self._wake_loop: task.LoopingCall | None = None
        self._stopping = False
        self._failing: set[str] = set()
        # State group -> {server: joined users}, for the servers other than ours.
        self._hosts: LruCache[int, Mapping[str, int]] = LruCache(
            hosts_cache_size, lambda hosts: len(hosts) + 1
        )
        self._federated: LruCache[str, bool] = LruCache(10_000)

    # -- the service

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._startup = defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        try:
            await self._start_sending()
        except Exception:
            logger.exception("The federation sender failed to start")

    async def _start_sending(self) -> None:
        position = await self.store.get_position(self._instance_name)
        if position is None:
            # A new database (or one from before the sender existed): send what comes from now.
            position = await self.store.init_position(
                self._instance_name, self._rooms.events.current_token()
            )
        self._position = self._stored_position = position
        self._failing = set(await self.store.get_failing_destinations())
        metrics.FEDERATION_DESTINATIONS_BACKING_OFF.set(len(self._failing))
        if self._stopping:
            return
        self._kick_distributor()
        await self.wake_due_destinations()
        if not self._stopping:
            self._wake_loop = self.clock.looping_call(self._wake_tick, self._wake_interval)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self._stopping = True
        if self._wake_loop is not None and self._wake_loop.running:
            self._wake_loop.stop()
        self._wake_loop = None
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        # Reading and assigning events only waits on the database: let them finish.
        for pending in (self._startup, self._distributor, self._waking):
            if pending is not None:
                await pending
        await self._store_position()
        await defer.gatherResults([queue.close() for queue in self._queues.values()])

    # -- what other components call

    def on_events_persisted(self, room_id: str, events: Sequence[PersistedEvent]) -> None:
        """The event persister's listener: new events may be ours to send (or to relay)."""
        if any(
            not e.outlier
            and e.rejected_reason is None
            and (self.is_ours(e.event.sender) or _may_be_relayed(e.event))
            for e in events
        ):
            self._kick_distributor()

    def send_edu(self, destination: str, edu_type: str, content: Mapping[str, Any]) -> None:
        """Queue an EDU for `destination` (in memory: lost on restart, as EDUs may be)."""
        if destination == self.server_name:
            logger.debug("Not sending a %s EDU to ourselves", edu_type)
            return
        queue = self._queue(destination)
        if queue is not None:
            queue.add_edu(Edu(edu_type, content))

    async def on_remote_server_up(self, destination: str) -> None:
        """`destination` is answering again (it sent us something): stop backing it off.

        Cheap for a destination that is not failing (nothing happens), so it may be
        called for every request a server sends us.
        """
        if destination not in self._failing:
            return
        queue = self._queue(destination)
        if queue is not None:
            await queue.reset_backoff()

    async def wake_due_destinations(self) -> list[str]:
        """Wake the destinations owed events whose backoff is over, and those with EDUs queued.

        Runs at start and every `wake_interval` seconds; returns the destinations woken.
        """
        woken: list[str] = []
        after = ""
        while not self._stopping:
            page = await self.store.get_owed_destinations(
                self.clock.time_msec(), after=after, limit=WAKES_PER_PAGE
            )
            for destination in page:
                queue = self._queue(destination)
                if queue is not None:
                    queue.wake(catch_up=True)
                    woken.append(destination)
            if len(page) < WAKES_PER_PAGE:
                break
            after = page[-1]
        for destination, queue in list(self._queues.items()):
            if queue.has_pending() and not queue.transmitting and not queue.is_backing_off():
                queue.wake()
                woken.append(destination)
        return woken

    async def wait_until_assigned(self) -> None:
        """Wait until every event persisted so far is queued for (or recorded as owed to)
        its destinations."""
        await self._wait_for(lambda: [self._startup, self._distributor])

    async def wait_until_idle(self) -> None:
        """Wait until nothing is being read, assigned or sent."""
        await self._wait_for(
            lambda: [
                self._startup,
                self._distributor,
                self._waking,
                *(queue.loop for queue in self._queues.values()),
            ]
        )

    @staticmethod
    async def _wait_for(
        running: Callable[[], Sequence[defer.Deferred[None] | None]],
    ) -> None:
        while busy := [d for d in running() if d is not None and not d.called]:
            await defer.DeferredList(busy)

    def is_ours(self, user_id: str) -> bool:
        return _server_of(user_id) == self.server_name

    # -- for the queues (QueueHost)

    def position(self) -> int:
        return self._position or 0

    def set_failing(self, destination: str, failing: bool) -> None:
        if failing:
            self._failing.add(destination)
        else:
            self._failing.discard(destination)
        metrics.FEDERATION_DESTINATIONS_BACKING_OFF.set(len(self._failing))

    async def catch_up_events(
        self, destination: str, room: DestinationRoom, after: int, before: int | None
    ) -> list[StoredEvent]:
        """Our forward extremities of the room newer than `after` (and older than `before`)
        at which `destination` is in the room; else our newest event it is owed."""
        extremities = await self._rooms.events.get_forward_extremities(room.room_id)
        stored = await self._rooms.events.get_stored_events([*extremities, room.event_id])
        owed = stored.get(room.event_id)
        if room.event_id in extremities:
            return [owed] if owed is not None else []
        newer = [
            s
            for event_id in extremities
            if (s := stored.get(event_id)) is not None
            and self.is_ours(s.event.sender)
            and s.stream_ordering > after
            and (before is None or s.stream_ordering < before)
        ]
        if newer:
            groups = await self._rooms.state.get_state_groups_for_events(
                [s.event_id for s in newer]
            )
            joined = []
            for s in newer:
                if s.event_id in groups and destination in await self._joined_servers(
                    groups[s.event_id][1]
                ):
                    joined.append(s)
            if joined:
                return sorted(joined, key=lambda s: s.stream_ordering)
        return [owed] if owed is not None else []

    # -- following the events stream

    def _queue(self, destination: str) -> DestinationQueue | None:
        if self._stopping:
            return None
        queue = self._queues.get(destination)
        if queue is None:
            queue = self._queues[destination] = DestinationQueue(destination, self)
        return queue

    def _kick_distributor(self) -> None:
        self._more_events = True
        if self._distributor is not None or self._position is None or self._stopping:
            return
        distributor = defer.ensureDeferred(self._distribute_logged())
        self._distributor = distributor

        def done(_: object) -> None:
            if self._distributor is distributor:
                self._distributor = None

        distributor.addBoth(done)

    async def _distribute_logged(self) -> None:
        try:
            await self._distribute()
        except Exception:
            # Tried again at the next event or wake tick.
            logger.exception("The federation sender failed to assign new events")

    async def _distribute(self) -> None:
        while self._more_events and not self._stopping:
            self._more_events = False
            while not self._stopping:
                assert self._position is not None
                up_to = self._rooms.events.current_token()
                if up_to <= self._position:
                    break
                new = await self.store.get_new_events(self._position, up_to, EVENTS_PER_READ)
                position = new[-1].stream_ordering if len(new) == EVENTS_PER_READ else up_to
                await self._assign(new, position)

    async def _assign(self, new: Sequence[NewEvent], position: int) -> None:
        """Record which destinations are owed which of these events; then queue them."""
        relayed = await self.store.get_relayed(
            [e.event_id for e in new if not self.is_ours(e.sender)]
        )
        ours = [e for e in new if self.is_ours(e.sender) or e.event_id in relayed]
        stored = await self._rooms.events.get_stored_events([e.event_id for e in ours])
        groups = await self._rooms.state.get_state_groups_for_events(list(stored))
        by_destination: dict[str, list[StoredEvent]] = {}
        rows: list[DestinationRoom] = []
        for e in ours:
            event = stored.get(e.event_id)
            if event is None or e.event_id not in groups or not await self._is_federated(e.room_id):
                continue
            before, after = groups[e.event_id]
            destinations = set(await self._joined_servers(after))
            if before is not None and before != after:
                destinations.update(await self._joined_servers(before))
            if e.event_id in relayed:
                destinations.discard(relayed[e.event_id])
            for destination in sorted(destinations):
                by_destination.setdefault(destination, []).append(event)
                rows.append(DestinationRoom(destination, e.room_id, e.stream_ordering, e.event_id))
        if rows or relayed:
            await self.store.record(self._instance_name, rows, position, relayed=relayed)
            self._stored_position = position
        # Otherwise the position is stored later: reading these events again after a
        # crash would find nothing to send again.
        self._position = position
        for destination, events in by_destination.items():
            queue = self._queue(destination)
            if queue is not None:
                queue.add_pdus(events)

    async def _is_federated(self, room_id: str) -> bool:
        """Whether the room may leave the server (its m.room.create `m.federate`)."""
        known = self._federated.get(room_id)
        if known is not None:
            return known
        room = await self._rooms.rooms.get_room(room_id)
        create = None
        if room is not None and room.create_event_id is not None:
            create = await self._rooms.events.get_event(room.create_event_id)
        if create is None:
            return True  # we can't tell; a server in the room is in a federated room
        federated = bool(create.content.get("m.federate", True))
        self._federated.set(room_id, federated)
        return federated

    async def _joined_servers(self, group_id: int) -> Collection[str]:
        """The servers other than ours with a user joined in the state group's state."""
        known = self._hosts.get(group_id)
        if known is not None:
            return known.keys()
        state_store = self._rooms.state
        group = (await state_store.get_state_groups([group_id]))[group_id]
        parent = self._hosts.get(group.prev) if group.prev is not None else None
        if parent is not None and group.prev is not None:
            changed = [key for key in group.delta if key[0] == MEMBER and not self.is_ours(key[1])]
            counts = dict(parent)
            if changed:
                parent_state = await state_store.get_state_for_group(group.prev)
                old = {key: parent_state.get(key) for key in changed}
                memberships = await self.store.get_memberships(
                    {i for i in old.values() if i is not None}
                    | {i for key in changed if (i := group.delta[key]) is not None}
                )
                for key in changed:
                    server = _server_of(key[1])
                    if server is None:
                        continue
                    old_id, new_id = old[key], group.delta[key]
                    if old_id is not None and memberships.get(old_id) == "join":
                        left = counts.pop(server, 0) - 1
                        if left > 0:
                            counts[server] = left
                    if new_id is not None and memberships.get(new_id) == "join":
                        counts[server] = counts.get(server, 0) + 1
        else:
            state = await state_store.get_state_for_group(group_id)
            members = {
                event_id: server
                for (event_type, state_key), event_id in state.items()
                if event_type == MEMBER
                and (server := _server_of(state_key)) is not None
                and server != self.server_name
            }
            memberships = await self.store.get_memberships(members)
            counts = {}
            for event_id, membership in memberships.items():
                if membership == "join":
                    counts[members[event_id]] = counts.get(members[event_id], 0) + 1
        hosts = MappingProxyType(counts)
        self._hosts.set(group_id, hosts)
        return hosts.keys()

    # -- waking destinations

    def _wake_tick(self) -> defer.Deferred[None]:
        self._kick_distributor()  # in case a read failed: try again
        waking = defer.ensureDeferred(self._wake_quietly())
        self._waking = waking
        return waking

    async def _wake_quietly(self) -> None:
        try:
            await self._store_position()
            await self.wake_due_destinations()
        except Exception:
            logger.exception("Failed to wake the destinations owed events")

    async def _store_position(self) -> None:
        position = self._position
        if position is not None and position != self._stored_position:
            await self.store.set_position(self._instance_name, position)
            self._stored_position = position
