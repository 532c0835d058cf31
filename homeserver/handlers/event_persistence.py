"""EventPersister: the one way room events enter storage; queued per room, batched, serialised.

Every event (remote ones from federation, local ones created here) goes
through a per-room queue. One worker per room takes whatever is queued (up to
`max_batch_size` events), computes the state before and after each event, the
auth outcome, the new forward extremities and current state
(`homeserver.handlers.room_batch`), and stores the whole batch in ONE
transaction (`EventStore.persist_batch`). Callers are answered only after that
transaction committed, so an event acknowledged to a client or a remote
server survives `kill -9`. Then the listeners are told (the notifier, later).

Local events (`create_and_persist`) are built by the room's worker, in queue
order, against the head of the room as it stands after the events before them
in the batch: prev_events are the forward extremities (at most 10, deepest
first), auth_events come from the state before, depth is one more than the
deepest prev_event. So concurrent local senders in a room never fork the DAG:
each event's prev_events is the one before it. A local event the rules forbid
is refused (AuthError) and not stored; a remote one is stored as rejected.

THE SINGLE-WRITER-PER-ROOM ASSUMPTION LIVES HERE: the serialisation is within
this process, and the room views (extremities, current state) cached between
batches are right only while this process is the only one persisting events
of the room. Several persister processes must shard rooms between them (as
Synapse's event persister instances do). The persist transaction still checks
the extremities it started from, so a second writer makes batches retry
(`StaleExtremitiesError`) instead of corrupting the DAG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signedjson.types import SigningKey
from twisted.internet import defer

from homeserver.clock import Clock
from homeserver.handlers.room_batch import BatchBuilder, LocalDraft, RoomView, load_room_view
from homeserver.state.auth_common import CREATE
from homeserver.state.auth_rules import check_auth_rules
from homeserver.storage.lru import LruCache
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.event_batch import ClientTxn, StaleExtremitiesError
from homeserver.storage.stores.state import StateMap
from homeserver.types.event_builder import build_event, random_event_id_localpart
from homeserver.types.events import EventBase
from homeserver.types.room_versions import DEFAULT_ROOM_VERSION, EventFormat, RoomVersion

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventToPersist:
    """An event to store, with what the caller already knows about it."""

    event: EventBase
    outlier: bool = False
    """Store without state (an auth event or invite fetched on its own)."""
    rejected_reason: str | None = None
    """Already rejected by earlier checks (signatures, its own auth_events)."""
    state_before: StateMap | None = None
    """The state before the event, when we lack the state after its prev_events."""
    soft_failed: bool = False
    """Fails auth against the room's current state: if accepted, stored but kept out of
    the forward extremities and from the listeners (server-server API "Soft failure")."""
    backfilled: bool = False
    """Older history fetched with /backfill: stored at a negative stream position (below
    everything, so /sync never reports it as new), never a forward extremity, and not
    announced to the listeners."""


@dataclass(frozen=True, slots=True)
class PersistedEvent:
    """What storing an event gave."""

    event: EventBase
    stream_ordering: int
    outlier: bool
    rejected_reason: str | None
    duplicate: bool = False
    """We already had it; these are the positions it was stored at then."""
    soft_failed: bool = False
    """Stored soft-failed (see EventToPersist.soft_failed)."""

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def room_id(self) -> str:
        return self.event.room_id

    @property
    def topological_ordering(self) -> tuple[int, int]:
        return (self.event.depth, self.stream_ordering)


Listener = Callable[[str, Sequence[PersistedEvent]], None]
"""Called with a room ID and the events just stored in it, after the commit."""


class _Work:
    __slots__ = ("item", "draft", "done")

    def __init__(self, item: EventToPersist | None = None, draft: LocalDraft | None = None) -> None:
        self.item = item
        self.draft = draft
        self.done: defer.Deferred[PersistedEvent] = defer.Deferred()


class EventPersister:
    """Queues, batches and serialises event persistence per room; builds local events."""

    max_batch_size = 100
    """The most events stored in one transaction."""
    max_stale_retries = 5

    def __init__(
        self,
        storage: RoomStorage,
        clock: Clock,
        server_name: str,
        signing_key: SigningKey,
        *,
        room_view_cache_size: int = 1000,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._server_name = server_name
        self._signing_key = signing_key
        self._queues: dict[str, list[_Work]] = {}
        self._workers: dict[str, defer.Deferred[None]] = {}
        self._views: LruCache[str, RoomView] = LruCache(room_view_cache_size)
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- entry points

    async def persist(self, events: Sequence[EventToPersist]) -> list[PersistedEvent]:
        """Store these events (of any rooms; in order within a room); their positions, in order.

        Every event is tried; if some fail (an event whose state can't be
        computed, a database error) the first error is raised once all are done.
        """
        waits = [self._enqueue(item.event.room_id, _Work(item=item)) for item in events]
        results: list[Any] = []
        for wait in waits:
            try:
                results.append(await wait)
            except Exception as error:
                results.append(error)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def create_and_persist(
        self,
        room_id: str,
        type: str,
        state_key: str | None,
        sender: str,
        content: Mapping[str, Any],
        *,
        redacts: str | None = None,
        txn: ClientTxn | None = None,
    ) -> PersistedEvent:
        """Build a local event at the head of the room, check it, sign it and store it.

        With `txn`, a second call for the same client transaction (in this
        room) returns the first call's event (`duplicate=True`) and builds
        nothing: the transaction ID is stored with the event, so this holds
        across restarts.

        Raises AuthError if the rules forbid it (nothing is stored), MatrixError
        M_NOT_FOUND for a room we have no state of, InvalidEvent for a malformed one.
        """
        if sender.partition(":")[2] != self._server_name:
            raise ValueError(f"{sender} is not a local user of {self._server_name}")
        draft = LocalDraft(type, state_key, sender, content, redacts, txn)
        return await self._enqueue(room_id, _Work(draft=draft))

    async def build_template(
        self,
        room_id: str,
        type: str,
        state_key: str | None,
        sender: str,
        content: Mapping[str, Any],
    ) -> tuple[EventBase, StateMap]:
        """An event at the head of the room for another server to complete (make_join,
        make_leave, make_knock): (the event, the state before it). Never stored.

        Built as `create_and_persist` builds a local event (prev_events, auth_events,
        depth), but for any sender; it carries our signature only so that it is a
        valid event to check: the other server signs its own copy. Raises AuthError
        if the rules forbid it against the state before it, MatrixError M_NOT_FOUND
        for a room we have no state of.
        """
        view = await self._view(room_id)
        builder = BatchBuilder(self._storage, view, self._clock.time_msec())
        draft = LocalDraft(type, state_key, sender, content)
        event, (_, state) = await builder.build_local(
            draft,
            server_name=self._server_name,
            signing_key=self._signing_key,
            now_ms=self._clock.time_msec(),
        )
        await builder.check_auth(event, state)
        return event, state

    async def create_room(
        self,
        creator: str,
        *,
        room_version: RoomVersion = DEFAULT_ROOM_VERSION,
        content: Mapping[str, Any] | None = None,
        room_id: str | None = None,
    ) -> PersistedEvent:
        """Create a room: build and store its m.room.create event (read the room ID from it)."""
        body = dict(content or {})
        body["room_version"] = room_version.identifier
        if not room_version.auth.implicit_room_creator:
            body.setdefault("creator", creator)
        if room_version.event_format.format is EventFormat.V4:
            room_id = None  # derived from the create event's ID
        elif room_id is None:
            room_id = f"!{random_event_id_localpart()}:{self._server_name}"
        event = build_event(
            room_version=room_version,
            type=CREATE,
            state_key="",
            sender=creator,
            content=body,
            room_id=room_id,
            prev_event_ids=[],
            auth_event_ids=[],
            depth=1,
            origin_server_ts=self._clock.time_msec(),
            server_name=self._server_name,
            signing_key=self._signing_key,
        )
        check_auth_rules(room_version, event, {})
        (persisted,) = await self.persist([EventToPersist(event)])
        return persisted

    async def wait_until_idle(self) -> None:
        """Wait for every queued event to be handled (shutdown, tests)."""
        while self._workers:
            await defer.gatherResults(list(self._workers.values()))

    # -- the per-room queues

    def _enqueue(self, room_id: str, work: _Work) -> defer.Deferred[PersistedEvent]:
        self._queues.setdefault(room_id, []).append(work)
        if room_id not in self._workers:
            self._start_worker(room_id)
        return work.done

    def _start_worker(self, room_id: str) -> None:
        worker: defer.Deferred[None] = defer.Deferred()
        self._workers[room_id] = worker
        defer.ensureDeferred(self._run(room_id)).addBoth(lambda _: worker.callback(None))

    async def _run(self, room_id: str) -> None:
        queue = self._queues[room_id]
        try:
            while queue:
                work = queue[: self.max_batch_size]
                del queue[: len(work)]
                await self._process(room_id, work)
        finally:
            del self._workers[room_id]
            if queue:  # only after an unexpected error: don't strand the rest
                self._start_worker(room_id)
            else:
                del self._queues[room_id]

    async def _view(self, room_id: str) -> RoomView:
        view = self._views.get(room_id)
        if view is None:
            view = await load_room_view(self._storage, room_id)
        return view

    async def _process(self, room_id: str, work: list[_Work]) -> None:
        outcomes: list[PersistedEvent | Exception] = []
        for _attempt in range(self.max_stale_retries):
            try:
                outcomes = await self._try_batch(room_id, work)
                break
            except StaleExtremitiesError:
                logger.info("room %s changed under us; recomputing a batch", room_id)
                self._views.pop(room_id)
            except Exception as error:
                logger.exception("failed to persist a batch of %d in %s", len(work), room_id)
                self._views.pop(room_id)
                outcomes = [error] * len(work)
                break
        else:
            outcomes = [RuntimeError(f"room {room_id} kept changing")] * len(work)
        # Listeners first, so that whoever the callers tell (a client, a
        # remote server) can already find the events through the notifier.
        # Soft-failed events are not relayed to clients, so nobody is told of them.
        stored = [
            o
            for o in outcomes
            if isinstance(o, PersistedEvent)
            and not o.duplicate
            and not o.soft_failed
            and o.stream_ordering > 0  # backfilled history is not news
        ]
        if stored:
            for listener in list(self._listeners):
                try:
                    listener(room_id, stored)
                except Exception:
                    logger.exception("event listener %r failed", listener)
        for item, outcome in zip(work, outcomes, strict=True):
            if isinstance(outcome, Exception):
                item.done.errback(outcome)
            else:
                item.done.callback(outcome)

    async def _try_batch(self, room_id: str, work: list[_Work]) -> list[PersistedEvent | Exception]:
        view = await self._view(room_id)
        builder = BatchBuilder(self._storage, view, self._clock.time_msec())
        given = [w.item for w in work if w.item is not None]
        existing = await self._storage.events.get_stored_events([i.event.event_id for i in given])
        txns = [w.draft.txn for w in work if w.draft is not None and w.draft.txn is not None]
        sent = await self._storage.events.get_event_ids_for_txns(room_id, txns) if txns else {}
        sent_events = await self._storage.events.get_stored_events(list(sent.values()))
        batch_txns: dict[ClientTxn, EventBase] = {}
        await builder.prepare(
            [i.event.event_id for i in given if not i.outlier and i.event.event_id not in existing]
        )
        pending: list[tuple[EventBase, bool, bool] | PersistedEvent | Exception] = []
        for w in work:
            try:
                if w.draft is not None:
                    txn = w.draft.txn
                    if txn is not None and txn in sent and sent[txn] in sent_events:
                        s = sent_events[sent[txn]]
                        pending.append(
                            PersistedEvent(
                                s.event, s.stream_ordering, s.outlier, s.rejected_reason, True
                            )
                        )
                        continue
                    if txn is not None and txn in batch_txns:
                        pending.append((batch_txns[txn], False, True))
                        continue
                    event, before = await builder.build_local(
                        w.draft,
                        server_name=self._server_name,
                        signing_key=self._signing_key,
                        now_ms=self._clock.time_msec(),
                    )
                    await builder.add(event, before=before, local=True, txn=txn)
                    if txn is not None:
                        batch_txns[txn] = event
                    pending.append((event, False, False))
                    continue
                assert w.item is not None
                item = w.item
                event_id = item.event.event_id
                if event_id in existing:
                    s = existing[event_id]
                    pending.append(
                        PersistedEvent(
                            s.event, s.stream_ordering, s.outlier, s.rejected_reason, True
                        )
                    )
                elif builder.contains(event_id):
                    pending.append((item.event, item.outlier, True))
                else:
                    await builder.add(
                        item.event,
                        outlier=item.outlier,
                        rejected_reason=item.rejected_reason,
                        state_before=item.state_before,
                        soft_failed=item.soft_failed,
                        backfilled=item.backfilled,
                    )
                    pending.append((item.event, item.outlier, False))
            except Exception as error:
                pending.append(error)

        positions: dict[str, int] = {}
        rejected: dict[str, str | None] = {}
        soft_failed: set[str] = set()
        if builder.writes:
            batch = await builder.finish()
            result = await self._storage.events.persist_batch(batch)
            positions = result.positions
            rejected = {w.event.event_id: w.rejected_reason for w in batch.events}
            soft_failed = {w.event.event_id for w in batch.events if w.soft_failed}
            view = builder.updated_view(result.groups)
            self._views.set(room_id, view)
            # Keep the full states at the new extremities: the next batch starts there.
            provisional = {stored: planned for planned, stored in result.groups.items()}
            self._storage.state.remember_groups(
                (),
                {
                    g: builder.group_states[provisional[g]]
                    for g in set(view.extremity_groups.values())
                    if g in provisional
                },
            )
        outcomes: list[PersistedEvent | Exception] = []
        for entry in pending:
            if isinstance(entry, tuple):
                event, outlier, duplicate = entry
                if event.event_id not in positions:  # a copy earlier in the batch failed
                    outcomes.append(RuntimeError(f"{event.event_id} was not stored"))
                    continue
                outcomes.append(
                    PersistedEvent(
                        event,
                        positions[event.event_id],
                        outlier,
                        rejected[event.event_id],
                        duplicate,
                        soft_failed=event.event_id in soft_failed,
                    )
                )
            else:
                outcomes.append(entry)
        return outcomes
