"""RoomStatsUpdater: keeps the room directory's per-room summaries in step with room state.

The published room directory (`RoomDirectoryHandler.get_public_rooms`) lists
rooms from `room_stats`, one row per room, never from the rooms' state. This
Service keeps those rows right by following `current_state_delta_stream`:
each pass reads which rooms' current state changed since the position the
stats are at, summarises those rooms from their current state, and writes
the summaries together with the new position in one transaction.

So the stats are right after a crash: the event persister tells its listeners
only after the commit, and a crash in between loses nothing, because the
next start catches up from the stored position (rooms stored before this
table existed included: the position starts at 0). A pass runs at start, on
every batch of new events (the persister listener `on_new_events`), and on
`wait_until_current`, which readers call so that what a client was told has
been stored is also listed. Passes never overlap; a request for one while
another runs makes one more run afterwards.

THE SINGLE-UPDATER ASSUMPTION LIVES HERE: with several processes, exactly
one must run this Service (the others only read `room_stats`); two updaters
would not corrupt anything, as every pass recomputes from the current state
and the position never moves backwards, but could write an older summary
over a newer one until the room's state next changes.

Redacting a state event changes no current state, so a summary keeps the
redacted name or topic until the room's state next changes (as Synapse's
room stats do).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from homeserver.clock import Clock
from homeserver.handlers.event_persistence import PersistedEvent
from homeserver.state.auth_common import CREATE, JOIN_RULES
from homeserver.storage.stores.room_stats import RoomStats, RoomStatsStore, StatsInputs

logger = logging.getLogger(__name__)

NAME = "m.room.name"
TOPIC = "m.room.topic"
AVATAR = "m.room.avatar"
CANONICAL_ALIAS = "m.room.canonical_alias"
HISTORY_VISIBILITY = "m.room.history_visibility"
GUEST_ACCESS = "m.room.guest_access"

STATS_EVENT_TYPES = (
    CREATE,
    NAME,
    TOPIC,
    AVATAR,
    CANONICAL_ALIAS,
    JOIN_RULES,
    HISTORY_VISIBILITY,
    GUEST_ACCESS,
)
"""The state events (state key "") a summary is made from, besides the memberships."""


def _text(content: Mapping[str, Any] | None, key: str) -> str | None:
    """A non-empty string value; anything else counts as unset, as clients treat it."""
    if content is None:
        return None
    value = content.get(key)
    return value if isinstance(value, str) and value else None


def plain_text_topic(content: Mapping[str, Any] | None) -> str | None:
    """The topic in plain text: `topic`, else the text/plain representation in `m.topic`.

    Spec: m.room.topic (`topic` duplicates the text/plain `m.topic` body; a
    representation without a mimetype is text/plain).
    """
    topic = _text(content, "topic")
    if topic is not None or content is None:
        return topic
    block = content.get("m.topic")
    representations = block.get("m.text") if isinstance(block, Mapping) else None
    if not isinstance(representations, list):
        return None
    for representation in representations:
        if not isinstance(representation, Mapping):
            continue
        mimetype = representation.get("mimetype", "text/plain")
        if mimetype == "text/plain":
            body = _text(representation, "body")
            if body is not None:
                return body
    return None


def summarise(room_id: str, inputs: StatsInputs) -> RoomStats:
    """A room's directory summary from its current state."""
    state = inputs.contents
    return RoomStats(
        room_id=room_id,
        joined_members=inputs.joined_members,
        name=_text(state.get(NAME), "name"),
        topic=plain_text_topic(state.get(TOPIC)),
        avatar=_text(state.get(AVATAR), "url"),
        canonical_alias=_text(state.get(CANONICAL_ALIAS), "alias"),
        join_rules=_text(state.get(JOIN_RULES), "join_rule"),
        history_visibility=_text(state.get(HISTORY_VISIBILITY), "history_visibility"),
        guest_access=_text(state.get(GUEST_ACCESS), "guest_access"),
        room_type=_text(state.get(CREATE), "type"),
    )


class RoomStatsUpdater(Service):
    """Follows the state changes into `room_stats`, one pass at a time."""

    name = "room_stats"

    rooms_per_pass = 500
    """About how many state changes one transaction summarises (a catch-up takes several)."""
    retry_seconds = 10.0
    """After a failed pass, the next one starts this much later (or with the next events)."""

    def __init__(
        self, clock: Clock, store: RoomStatsStore, current_token: Callable[[], int]
    ) -> None:
        self._clock = clock
        self._store = store
        self._current_token = current_token
        self._position: int | None = None
        self._pass: defer.Deferred[None] | None = None
        self._again = False
        self._waiters: list[tuple[int, defer.Deferred[None]]] = []
        self._retry: IDelayedCall | None = None

    # -- triggers

    def on_new_events(self, room_id: str, events: Sequence[PersistedEvent]) -> None:
        """The event persister's listener: state may have changed, catch up."""
        self._kick()

    def startService(self) -> None:
        super().startService()
        self._kick()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._again = False
        running = self._pass
        if running is None:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()

        def finished(result: object) -> object:
            done.callback(None)
            return result

        running.addBoth(finished)
        return done

    async def wait_until_current(self, timeout: float = 10.0) -> None:
        """Wait (at most `timeout` seconds) for the stats to cover every event stored so far."""
        target = self._current_token()
        if not self.running or (self._position is not None and self._position >= target):
            return
        waiter: defer.Deferred[None] = defer.Deferred()
        entry = (target, waiter)
        self._waiters.append(entry)
        self._kick()
        try:
            await self._clock.timeout(waiter, timeout)
        except defer.TimeoutError:
            logger.warning("room stats still behind position %d after %.0fs", target, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    # -- the passes

    def _kick(self) -> None:
        if not self.running:
            return
        if self._pass is not None:
            self._again = True
            return
        self._pass = defer.ensureDeferred(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                try:
                    await self._catch_up()
                except Exception:
                    logger.exception("updating the room stats failed; retrying later")
                    self._schedule_retry()
                    return
                if not (self._again and self.running):
                    return
        finally:
            self._pass = None
            self._wake_waiters(everyone=not self.running)

    async def _catch_up(self) -> None:
        if self._position is None:
            self._position = await self._store.get_position()
        target = self._current_token()
        # When stopping, what is left waits for the next start.
        while self._position < target and self.running:
            rooms, reached = await self._store.get_changed_rooms(
                self._position, target, self.rooms_per_pass
            )
            if rooms:
                inputs = await self._store.get_stats_inputs(rooms, STATS_EVENT_TYPES)
                stats = [summarise(room_id, inputs[room_id]) for room_id in rooms]
                await self._store.write_stats(stats, reached)
            # Else only messages came: the stored position may lag, as
            # re-reading a stretch without state changes at start costs little.
            self._position = reached
            self._wake_waiters()

    def _schedule_retry(self) -> None:
        self._wake_waiters(everyone=True)
        if self.running and (self._retry is None or not self._retry.active()):
            self._retry = self._clock.call_later(self.retry_seconds, self._kick)

    def _wake_waiters(self, *, everyone: bool = False) -> None:
        """Fire the waiters the stats now cover (all of them when no pass will follow)."""
        position = self._position if self._position is not None else -1
        ready = [w for w in self._waiters if everyone or w[0] <= position]
        for entry in ready:
            self._waiters.remove(entry)
            if not entry[1].called:
                entry[1].callback(None)
