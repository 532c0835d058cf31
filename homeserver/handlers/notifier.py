"""Notifier: wakes long-polling /sync requests when something they report has happened.

A /sync that finds nothing new waits here (`wait_for_events`) for its user,
with the rooms it reports. It is woken, within the reactor turn of the
commit, by:

- new events in one of those rooms (the event persister calls
  `notify_new_room_events` after each commit);
- a membership event about the user in any room (an invite, a kick, a ban,
  their join elsewhere), so that rooms the waiting sync did not list appear;
- the user's account data changing (`notify_account_data`).

Positions, not just calls: a waiter is only woken once the stream's current
token has reached the change, so the sync it wakes can read it. A change
written while an earlier position of the same stream is still being written
(another room's batch) waits, re-checked every few milliseconds, until the
token catches up.

Recent changes are remembered per room and per user (a bounded map of the
last position each changed at), so a sync that registers just after a change
it did not read still returns at once, and an incremental sync can skip the
rooms where nothing happened. Changes older than what the maps remember, and
anything before the first use (this process's start), count as "maybe
changed".

THE SINGLE-PROCESS ASSUMPTION LIVES HERE: only events and account data
written by this process wake its waiters. Several processes need the
stream positions relayed between them (Redis pub/sub, as DESIGN.md says).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Sequence
from typing import Generic, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from homeserver.clock import Clock
from homeserver.handlers.event_persistence import PersistedEvent
from homeserver.state.auth_common import MEMBER
from homeserver.types.stream_tokens import SyncToken

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# How often changes waiting for their stream's token to catch up are re-checked.
_CATCH_UP_SECONDS = 0.005


class ChangeCache(Generic[K]):
    """entity -> the last stream position it changed at, for the most recent entities.

    Bounded: when full, the least recently changed entity is forgotten and
    every position up to its last change becomes "maybe changed for anyone".
    """

    def __init__(self, max_entries: int, known_from: int = 0) -> None:
        self._last: OrderedDict[K, int] = OrderedDict()
        self._max_entries = max_entries
        self._forgotten_up_to = known_from

    def record(self, entity: K, position: int) -> None:
        if position <= self._last.get(entity, -1):
            return
        self._last[entity] = position
        self._last.move_to_end(entity)
        while len(self._last) > self._max_entries:
            _, dropped = self._last.popitem(last=False)
            self._forgotten_up_to = max(self._forgotten_up_to, dropped)

    def changed_since(self, entity: K, position: int) -> bool:
        """Whether the entity may have changed at a position after `position`."""
        if position < self._forgotten_up_to:
            return True
        return self._last.get(entity, -1) > position


class _Waiter:
    """One waiting /sync."""

    __slots__ = ("user_id", "room_ids", "done")

    def __init__(self, user_id: str, room_ids: frozenset[str]) -> None:
        self.user_id = user_id
        self.room_ids = room_ids
        self.done: defer.Deferred[None] = defer.Deferred()

    def wake(self) -> None:
        if not self.done.called:
            self.done.callback(None)


class Notifier:
    """Per-user waiters for /sync, woken by new room events and account data."""

    def __init__(
        self,
        clock: Clock,
        events_token: Callable[[], int],
        account_data_token: Callable[[], int],
        *,
        change_cache_size: int = 100_000,
    ) -> None:
        self._clock = clock
        self._events_token = events_token
        self._account_data_token = account_data_token
        self._change_cache_size = change_cache_size
        # Built on first use, once the streams are loaded: what came before is unknown.
        self._room_changes: ChangeCache[str] | None = None
        self._membership_changes: ChangeCache[str] = ChangeCache(1)
        self._account_data_changes: ChangeCache[str] = ChangeCache(1)
        self._by_user: dict[str, set[_Waiter]] = {}
        self._by_room: dict[str, set[_Waiter]] = {}
        self._pending_events: list[PersistedEvent] = []
        self._pending_account_data: list[tuple[str, int]] = []
        self._catch_up: IDelayedCall | None = None
        self.stopping = False
        """Set by `stop`: the server is shutting down and nothing waits any more."""

    def current_token(self) -> SyncToken:
        """The position of every stream /sync reports, up to which all writes have finished."""
        return SyncToken(self._events_token(), self._account_data_token())

    def _rooms_cache(self) -> ChangeCache[str]:
        if self._room_changes is None:
            start = self.current_token()
            size = self._change_cache_size
            self._room_changes = ChangeCache(size, start.events)
            self._membership_changes = ChangeCache(size, start.events)
            self._account_data_changes = ChangeCache(size, start.account_data)
        return self._room_changes

    # -- being told

    def notify_new_room_events(self, room_id: str, events: Sequence[PersistedEvent]) -> None:
        """Events of `room_id` were just committed (an event persister listener)."""
        self._pending_events.extend(e for e in events if e.rejected_reason is None)
        self._release()

    def notify_account_data(self, user_id: str, position: int) -> None:
        """The user's account data changed at `position` of the "account_data" stream."""
        self._pending_account_data.append((user_id, position))
        self._release()

    def _release(self) -> None:
        """Record and announce the pending changes whose stream token has caught up."""
        rooms = self._rooms_cache()
        token = self.current_token()
        woken: set[_Waiter] = set()
        waiting_events: list[PersistedEvent] = []
        for persisted in self._pending_events:
            if persisted.stream_ordering > token.events:
                waiting_events.append(persisted)
                continue
            event = persisted.event
            position = persisted.stream_ordering
            if not persisted.outlier:
                rooms.record(event.room_id, position)
                woken.update(self._by_room.get(event.room_id, ()))
            if event.type == MEMBER and event.state_key is not None:
                self._membership_changes.record(event.state_key, position)
                woken.update(self._by_user.get(event.state_key, ()))
        waiting_account_data: list[tuple[str, int]] = []
        for user_id, position in self._pending_account_data:
            if position > token.account_data:
                waiting_account_data.append((user_id, position))
                continue
            self._account_data_changes.record(user_id, position)
            woken.update(self._by_user.get(user_id, ()))
        self._pending_events = waiting_events
        self._pending_account_data = waiting_account_data
        for waiter in woken:
            waiter.wake()
        if (waiting_events or waiting_account_data) and self._catch_up is None:
            self._catch_up = self._clock.call_later(_CATCH_UP_SECONDS, self._retry_release)

    def _retry_release(self) -> None:
        self._catch_up = None
        self._release()

    # -- waiting

    def has_changes(self, user_id: str, since: SyncToken, room_ids: Collection[str]) -> bool:
        """Whether something for this user, in these rooms, may have happened after `since`."""
        rooms = self._rooms_cache()
        if self._account_data_changes.changed_since(user_id, since.account_data):
            return True
        if self._membership_changes.changed_since(user_id, since.events):
            return True
        return any(rooms.changed_since(r, since.events) for r in room_ids)

    def rooms_changed_since(self, room_ids: Collection[str], position: int) -> set[str]:
        """Those of the rooms that may have new events after the events stream `position`."""
        rooms = self._rooms_cache()
        return {r for r in room_ids if rooms.changed_since(r, position)}

    async def wait_for_events(
        self, user_id: str, since: SyncToken, timeout_ms: int, room_ids: Collection[str]
    ) -> SyncToken:
        """Wait until something for the user may have happened after `since`, or the timeout.

        `room_ids`: the rooms whose new events count (the user's joined
        rooms). Returns the current token, at once if something already has.
        """
        if self.stopping or timeout_ms <= 0 or self.has_changes(user_id, since, room_ids):
            return self.current_token()
        waiter = _Waiter(user_id, frozenset(room_ids))
        self._by_user.setdefault(user_id, set()).add(waiter)
        for room_id in waiter.room_ids:
            self._by_room.setdefault(room_id, set()).add(waiter)
        timer = self._clock.call_later(timeout_ms / 1000, waiter.wake)
        try:
            await waiter.done
        finally:
            if timer.active():
                timer.cancel()
            self._forget(waiter)
        return self.current_token()

    def _forget(self, waiter: _Waiter) -> None:
        for index, key in [
            (self._by_user, waiter.user_id),
            *((self._by_room, r) for r in waiter.room_ids),
        ]:
            waiters = index.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del index[key]

    def stop(self) -> None:
        """The server is shutting down: answer every waiting /sync now, and wait no more, so
        that long-polls do not hold up the shutdown."""
        self.stopping = True
        if self._catch_up is not None and self._catch_up.active():
            self._catch_up.cancel()
        self._catch_up = None
        for waiters in list(self._by_user.values()):
            for waiter in list(waiters):
                waiter.wake()

    def waiting_count(self) -> int:
        """How many /sync requests are waiting (for metrics and tests)."""
        return sum(len(w) for w in self._by_user.values())
