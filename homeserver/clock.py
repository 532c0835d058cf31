"""The clock every component reads time from, over an injected reactor.

Tests pass a `twisted.internet.task.Clock` (or a memory reactor) and move time
by hand; nothing in the server calls `time.time()` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Clock:
    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor

    def time(self) -> float:
        """Seconds since the epoch."""
        return self._reactor.seconds()

    def time_msec(self) -> int:
        """Milliseconds since the epoch, as Matrix timestamps are."""
        return int(self._reactor.seconds() * 1000)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> IDelayedCall:
        return self._reactor.callLater(delay, fn, *args, **kwargs)

    def looping_call(self, fn: Callable[[], Any], interval: float) -> task.LoopingCall:
        """Call `fn` every `interval` seconds, first after one interval."""
        call = task.LoopingCall(fn)
        call.clock = self._reactor
        call.start(interval, now=False)
        return call

    async def sleep(self, seconds: float) -> None:
        await task.deferLater(self._reactor, seconds, lambda: None)

    def timeout(self, d: defer.Deferred[Any], seconds: float) -> defer.Deferred[Any]:
        """`d`, cancelled if it has not fired after `seconds`."""
        return d.addTimeout(seconds, self._reactor)
