"""The notifier: which waiting /syncs a change wakes, and when (a fake clock, no database)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from homeserver.clock import Clock
from homeserver.handlers.event_persistence import PersistedEvent
from homeserver.handlers.notifier import ChangeCache, Notifier
from homeserver.types.events import make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.types.stream_tokens import SyncToken

ROOM = "!room:test"
OTHER_ROOM = "!other:test"


class Streams:
    """Stand-ins for the events and account data streams' current tokens."""

    def __init__(self) -> None:
        self.events = 10
        self.account_data = 5


def persisted(
    position: int,
    room_id: str = ROOM,
    *,
    event_type: str = "m.room.message",
    state_key: str | None = None,
    outlier: bool = False,
    rejected: str | None = None,
) -> PersistedEvent:
    pdu: dict[str, Any] = {
        "type": event_type,
        "room_id": room_id,
        "sender": "@alice:test",
        "content": {"membership": "invite"} if event_type == "m.room.member" else {"body": "x"},
        "origin_server_ts": 0,
        "depth": 2,
        "prev_events": ["$prev"],
        "auth_events": ["$create"],
        "hashes": {"sha256": "abc"},
        "signatures": {},
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    event = make_event(pdu, KNOWN_ROOM_VERSIONS["10"], event_id=f"$e{position}")
    return PersistedEvent(event, position, outlier, rejected)


def make_notifier() -> tuple[Notifier, task.Clock, Streams]:
    reactor = task.Clock()
    streams = Streams()
    notifier = Notifier(
        Clock(reactor), lambda: streams.events, lambda: streams.account_data
    )
    return notifier, reactor, streams


def start_wait(
    notifier: Notifier, user_id: str, since: SyncToken, rooms: list[str], timeout_ms: int = 30_000
) -> defer.Deferred[SyncToken]:
    return defer.ensureDeferred(notifier.wait_for_events(user_id, since, timeout_ms, rooms))


def test_change_cache_remembers_recent_changes_and_doubts_forgotten_ones() -> None:
    cache: ChangeCache[str] = ChangeCache(2)
    cache.record("a", 5)
    assert cache.changed_since("a", 4) and not cache.changed_since("a", 5)
    assert not cache.changed_since("b", 0)
    cache.record("b", 6)
    cache.record("c", 7)  # "a" (at 5) is forgotten
    assert cache.changed_since("a", 4) and cache.changed_since("zzz", 4)
    assert not cache.changed_since("zzz", 5) and not cache.changed_since("a", 5)
    cache.record("c", 3)  # older than what it has: ignored
    assert cache.changed_since("c", 6)


def test_room_event_wakes_members_waiting_on_that_room_only() -> None:
    notifier, _, streams = make_notifier()
    since = notifier.current_token()
    in_room = start_wait(notifier, "@bob:test", since, [ROOM])
    elsewhere = start_wait(notifier, "@carol:test", since, [OTHER_ROOM])
    assert notifier.waiting_count() == 2
    streams.events = 11
    notifier.notify_new_room_events(ROOM, [persisted(11)])
    assert in_room.called and in_room.result == SyncToken(11, 5)
    assert not elsewhere.called
    assert notifier.waiting_count() == 1


def test_membership_event_wakes_its_target_in_any_room() -> None:
    """An invite wakes the invitee, whose sync was not following that room."""
    notifier, _, streams = make_notifier()
    waiting = start_wait(notifier, "@bob:test", notifier.current_token(), [OTHER_ROOM])
    streams.events = 11
    notifier.notify_new_room_events(
        ROOM, [persisted(11, event_type="m.room.member", state_key="@bob:test", outlier=True)]
    )
    assert waiting.called


def test_rejected_events_wake_nobody() -> None:
    notifier, _, streams = make_notifier()
    waiting = start_wait(notifier, "@bob:test", notifier.current_token(), [ROOM])
    streams.events = 11
    notifier.notify_new_room_events(ROOM, [persisted(11, rejected="auth")])
    assert not waiting.called


def test_account_data_wakes_its_user() -> None:
    notifier, _, streams = make_notifier()
    since = notifier.current_token()
    bob = start_wait(notifier, "@bob:test", since, [ROOM])
    carol = start_wait(notifier, "@carol:test", since, [ROOM])
    streams.account_data = 6
    notifier.notify_account_data("@bob:test", 6)
    assert bob.called and bob.result == SyncToken(10, 6)
    assert not carol.called


def test_a_change_already_made_returns_at_once() -> None:
    """A sync that registers after a change it had not read does not wait for the next one."""
    notifier, _, streams = make_notifier()
    since = notifier.current_token()
    streams.events = 11
    notifier.notify_new_room_events(ROOM, [persisted(11)])
    early = start_wait(notifier, "@bob:test", since, [ROOM])
    assert early.called
    # Waiting from the new position does wait.
    later = start_wait(notifier, "@bob:test", SyncToken(11, 5), [ROOM])
    assert not later.called


def test_timeout_returns_the_current_token() -> None:
    notifier, reactor, streams = make_notifier()
    waiting = start_wait(notifier, "@bob:test", notifier.current_token(), [ROOM], timeout_ms=500)
    reactor.advance(0.4)
    assert not waiting.called
    streams.events = 12  # moved on in a room bob does not follow
    reactor.advance(0.2)
    assert waiting.called and waiting.result == SyncToken(12, 5)
    assert notifier.waiting_count() == 0


def test_zero_timeout_does_not_wait() -> None:
    notifier, _, _ = make_notifier()
    assert start_wait(notifier, "@bob:test", notifier.current_token(), [ROOM], 0).called


def test_waits_for_the_stream_to_catch_up() -> None:
    """A change above the current token (an earlier position still being written) wakes
    nobody until the token reaches it: the woken sync must be able to read it."""
    notifier, reactor, streams = make_notifier()
    waiting = start_wait(notifier, "@bob:test", notifier.current_token(), [ROOM])
    notifier.notify_new_room_events(ROOM, [persisted(12)])  # 11 is not finished: token is 10
    reactor.advance(0.05)
    assert not waiting.called
    streams.events = 12
    reactor.advance(0.01)
    assert waiting.called and waiting.result == SyncToken(12, 5)


def test_cancelled_wait_is_forgotten() -> None:
    """A client that goes away leaves no waiter behind."""
    notifier, _, _ = make_notifier()
    waiting = start_wait(notifier, "@bob:test", notifier.current_token(), [ROOM, OTHER_ROOM])
    waiting.cancel()
    waiting.addErrback(lambda f: f.trap(defer.CancelledError))
    assert notifier.waiting_count() == 0


def test_stop_answers_every_waiter_and_waits_no_more() -> None:
    notifier, _, _ = make_notifier()
    since = notifier.current_token()
    waiting = [start_wait(notifier, f"@u{n}:test", since, [ROOM]) for n in range(3)]
    notifier.stop()
    assert all(w.called for w in waiting) and notifier.waiting_count() == 0
    assert start_wait(notifier, "@late:test", since, [ROOM]).called
