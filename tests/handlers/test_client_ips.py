"""ClientIpTracker: last-seen details buffered in memory and written in batches."""

from __future__ import annotations

from typing import Any

from homeserver.clock import Clock
from homeserver.handlers.client_ips import ClientIpTracker
from homeserver.storage.database import Database
from homeserver.storage.stores import Storage
from homeserver.storage.stores.tokens import NewAccessToken


async def make(database: Database, reactor: Any, interval: float = 3600) -> tuple[Storage, ClientIpTracker]:
    storage = Storage(database)
    await storage.users.create_user("@a:test", None, 0)
    await storage.devices.add_session("@a:test", "DEV", None, 0, NewAccessToken("h1", None))
    return storage, ClientIpTracker(Clock(reactor), storage.devices, storage.tokens, interval)


async def test_records_are_written_only_when_flushed(database: Database, reactor: Any) -> None:
    storage, tracker = await make(database, reactor)
    for ip in ("10.0.0.1", "10.0.0.2"):
        tracker.record("@a:test", "DEV", "h1", ip, "UA")
    before = await storage.devices.get_device("@a:test", "DEV")
    assert before.last_seen_ip is None
    # Reads merge what is not written yet.
    assert tracker.with_pending(before).last_seen_ip == "10.0.0.2"
    await tracker.flush()
    after = await storage.devices.get_device("@a:test", "DEV")
    assert (after.last_seen_ip, after.last_seen_user_agent) == ("10.0.0.2", "UA")
    assert tracker.with_pending(after) == after


async def test_records_of_deleted_devices_are_dropped(database: Database, reactor: Any) -> None:
    storage, tracker = await make(database, reactor)
    tracker.record("@a:test", "DEV", "h1", "10.0.0.1", None)
    await storage.devices.delete_devices("@a:test", ["DEV"])
    await tracker.flush()
    assert await storage.devices.get_device("@a:test", "DEV") is None


async def test_service_writes_periodically_and_when_stopped(database: Database, reactor: Any) -> None:
    storage, tracker = await make(database, reactor, interval=0.05)
    tracker.startService()
    tracker.record("@a:test", "DEV", "h1", "10.0.0.1", None)
    await Clock(reactor).sleep(0.2)
    assert (await storage.devices.get_device("@a:test", "DEV")).last_seen_ip == "10.0.0.1"
    tracker.record("@a:test", "DEV", "h1", "10.0.0.9", None)
    await tracker.stopService()
    assert (await storage.devices.get_device("@a:test", "DEV")).last_seen_ip == "10.0.0.9"
