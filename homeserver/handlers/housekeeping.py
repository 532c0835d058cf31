"""AccountsHousekeeping: a Service that deletes expired UIA sessions, login tokens and
3PID validation sessions.

Expired rows are already refused when used; this only keeps the tables from
growing. Runs every `interval` seconds (hourly by default) and is safe to
run in several processes at once.
"""

from __future__ import annotations

import logging

from twisted.application.service import Service
from twisted.internet import defer, task

from homeserver.clock import Clock
from homeserver.handlers.threepids import ThreepidHandler
from homeserver.handlers.ui_auth import UserInteractiveAuth
from homeserver.storage.stores.tokens import TokenStore

logger = logging.getLogger(__name__)


class AccountsHousekeeping(Service):
    name = "accounts_housekeeping"

    def __init__(
        self,
        clock: Clock,
        uia: UserInteractiveAuth,
        tokens: TokenStore,
        threepids: ThreepidHandler | None = None,
        interval: float = 3600.0,
    ) -> None:
        self._clock = clock
        self._threepids = threepids
        self._uia = uia
        self._tokens = tokens
        self._interval = interval
        self._loop: task.LoopingCall | None = None
        self._running: defer.Deferred[None] | None = None

    async def run_once(self) -> None:
        try:
            expired = await self._uia.expire_sessions()
            await self._tokens.delete_expired_login_tokens(self._clock.time_msec())
            if self._threepids is not None:
                await self._threepids.expire_sessions()
        except Exception:
            logger.warning("Accounts housekeeping failed", exc_info=True)
            return
        if expired:
            logger.info("Deleted %d expired user-interactive auth sessions", expired)

    def _tick(self) -> defer.Deferred[None]:
        d = defer.ensureDeferred(self.run_once())
        self._running = d

        def done(result: None) -> None:
            self._running = None
            return result

        return d.addBoth(done)

    def startService(self) -> None:
        super().startService()
        self._loop = self._clock.looping_call(self._tick, self._interval)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        running = self._running
        return running if running is not None else defer.succeed(None)
