"""ClientIpTracker: when, from where and with what each device and token was last used.

Every authenticated request is recorded in memory; a Twisted Service writes
what changed to the database every `flush_interval` seconds (and once more
when it stops), so a busy client costs one write per interval, not one per
request. Reads that show last-seen details (GET /devices) merge the unwritten
records over what the database holds, so they are never behind.

Several processes: each buffers its own requests and writes them; the last
write wins, which is as good as "last seen" needs.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task

from homeserver.clock import Clock
from homeserver.storage.stores.devices import DeviceInfo, DeviceStore, LastSeen
from homeserver.storage.stores.tokens import TokenStore

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL_SECONDS = 5.0


class ClientIpTracker(Service):
    name = "client_ips"

    def __init__(
        self,
        clock: Clock,
        devices: DeviceStore,
        tokens: TokenStore,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_SECONDS,
    ) -> None:
        self._clock = clock
        self._devices = devices
        self._tokens = tokens
        self._flush_interval = flush_interval
        # (user_id, device_id) -> the latest request from that device.
        self._device_seen: dict[tuple[str, str], LastSeen] = {}
        # token hash -> time of its latest use.
        self._token_used: dict[str, int] = {}
        self._loop: task.LoopingCall | None = None
        self._flushing: defer.Deferred[None] | None = None

    def record(
        self,
        user_id: str,
        device_id: str | None,
        token_hash: str | None,
        ip: str,
        user_agent: str | None,
    ) -> None:
        """Note a request; written at the next flush."""
        now = self._clock.time_msec()
        if device_id is not None:
            self._device_seen[(user_id, device_id)] = LastSeen(user_id, device_id, now, ip, user_agent)
        if token_hash is not None:
            self._token_used[token_hash] = now

    def with_pending(self, device: DeviceInfo) -> DeviceInfo:
        """`device` with its not-yet-written last-seen details, if any."""
        seen = self._device_seen.get((device.user_id, device.device_id))
        if seen is None:
            return device
        return DeviceInfo(
            user_id=device.user_id,
            device_id=device.device_id,
            display_name=device.display_name,
            last_seen_ts=seen.ts,
            last_seen_ip=seen.ip,
            last_seen_user_agent=seen.user_agent,
        )

    async def flush(self) -> None:
        """Write everything recorded so far."""
        devices, self._device_seen = self._device_seen, {}
        tokens, self._token_used = self._token_used, {}
        if not devices and not tokens:
            return
        try:
            if devices:
                await self._devices.update_last_seen(list(devices.values()))
            if tokens:
                await self._tokens.update_last_used(tokens)
        except Exception:
            # Losing a few last-seen times is better than growing without bound.
            logger.warning("Could not write last-seen details of %d devices", len(devices), exc_info=True)

    def _flush_in_background(self) -> defer.Deferred[None] | None:
        if self._flushing is not None:
            return None  # the previous flush is still running
        d = defer.ensureDeferred(self.flush())
        self._flushing = d

        def done(result: Any) -> Any:
            self._flushing = None
            return result

        d.addBoth(done)
        return d

    def startService(self) -> None:
        super().startService()
        self._loop = self._clock.looping_call(self._flush_in_background, self._flush_interval)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

        async def final_flush() -> None:
            if self._flushing is not None:
                await self._flushing
            await self.flush()

        return defer.ensureDeferred(final_flush())
