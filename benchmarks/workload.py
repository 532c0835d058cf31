"""The rooms workload: the same sequence of client requests against any homeserver.

`run_workload(reactor, base_url, sizes)` drives one server over HTTP and
returns its figures. Every step checks what it measures (the events sent are
the events received, pages chain without gaps), so a wrong answer fails the
run rather than producing a fast figure. The roles:

    owner     creates every room, long-polls /sync for the latency step and
              pages back through the busy room
    syncer    joins exactly `sizes.sync_rooms` rooms; its initial sync is timed
    senders   `sizes.senders` users who all join one public room and send into
              it at once (the throughput step); the first one also sends the
              latency pings

Timings are wall-clock on the client side (time.perf_counter), so they include
the HTTP round trip on loopback, as a client would see it.
"""

from __future__ import annotations

import math
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, task

from benchmarks.client import JsonDict, MatrixHttp

PASSWORD = "benchmark password 1"

# Matches Synapse's default timeline limit, named explicitly so that both
# servers do the same work whatever their own default is.
SYNC_FILTER: JsonDict = {"room": {"timeline": {"limit": 10}}}

# A long-poll can wake for something else (a receipt, a state change); a
# ping that has not arrived after this many wake-ups never will.
MAX_POLLS_PER_PING = 10


@dataclass(frozen=True)
class Sizes:
    senders: int = 20
    messages: int = 1000  # in the throughput step, spread over the senders
    sync_rooms: int = 50
    messages_per_sync_room: int = 3
    latency_sends: int = 200
    pagination_pages: int = 20
    page_size: int = 50
    initial_sync_repeats: int = 5


@dataclass(frozen=True)
class Measurement:
    """One figure; `higher_is_better` orients the comparison."""

    key: str
    label: str
    value: float
    unit: str
    higher_is_better: bool = False


@dataclass
class Results:
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, label: str, value: float, unit: str, higher_is_better: bool = False) -> None:
        self.measurements.append(Measurement(key, label, value, unit, higher_is_better))

    def get(self, key: str) -> Measurement | None:
        return next((m for m in self.measurements if m.key == key), None)


@dataclass(frozen=True)
class User:
    user_id: str
    token: str


class WorkloadError(Exception):
    """The server's answers do not match what the workload sent."""


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile by the nearest-rank method (p95 of 200 samples is the 190th)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


async def _timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await fn()
    return (time.perf_counter() - started) * 1000.0, result


def _timeline(sync: JsonDict, room_id: str) -> list[JsonDict]:
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    events: list[JsonDict] = room.get("timeline", {}).get("events", [])
    return events


async def run_workload(
    reactor: Any,
    base_url: str,
    sizes: Sizes,
    progress: Callable[[str], None] = lambda message: None,
) -> Results:
    http = MatrixHttp(reactor, base_url, max_connections=max(64, sizes.senders * 2))
    try:
        return await _Workload(reactor, http, sizes, progress).run()
    finally:
        await http.close()


class _Workload:
    def __init__(
        self, reactor: Any, http: MatrixHttp, sizes: Sizes, progress: Callable[[str], None]
    ) -> None:
        self.reactor = reactor
        self.http = http
        self.sizes = sizes
        self.progress = progress
        self.results = Results()
        # Unique per run, so a run against a server with earlier data still works.
        self.run_id = uuid.uuid4().hex[:8]
        self.busy_room_messages: dict[str, tuple[int, int]] = {}

    async def run(self) -> Results:
        owner, syncer, senders = await self.register_users()
        sync_rooms = await self.create_rooms(owner, syncer)
        busy_room = await self.send_throughput(owner, senders)
        await self.send_to_sync_latency(owner, senders[0])
        await self.initial_sync(syncer, sync_rooms)
        await self.paginate(owner, busy_room)
        return self.results

    async def register_users(self) -> tuple[User, User, list[User]]:
        count = self.sizes.senders + 2
        self.progress(f"registering {count} users")
        timings: list[float] = []
        users: list[User] = []
        for i in range(count):
            elapsed, answer = await _timed(
                lambda i=i: self.http.register(f"bench{self.run_id}u{i}", PASSWORD)
            )
            timings.append(elapsed)
            users.append(User(answer["user_id"], answer["access_token"]))
        self.results.add("register", "register one user (median)", statistics.median(timings), "ms")
        return users[0], users[1], users[2:]

    async def create_rooms(self, owner: User, syncer: User) -> list[str]:
        """The rooms of the initial sync step: each created, joined by the syncer, with a few messages."""
        n = self.sizes.sync_rooms
        self.progress(f"creating {n} rooms")
        create_times: list[float] = []
        join_times: list[float] = []
        rooms: list[str] = []
        for i in range(n):
            elapsed, room_id = await _timed(
                lambda i=i: self.http.create_room(
                    owner.token,
                    preset="public_chat",
                    name=f"Room {i}",
                    topic=f"Benchmark room {i} of {n}",
                )
            )
            create_times.append(elapsed)
            rooms.append(room_id)
            elapsed, _ = await _timed(lambda room_id=room_id: self.http.join(syncer.token, room_id))
            join_times.append(elapsed)
            for j in range(self.sizes.messages_per_sync_room):
                await self.http.send_text(owner.token, room_id, f"r{i}m{j}", f"message {j} in room {i}")
        self.results.add("create_room", "createRoom (median)", statistics.median(create_times), "ms")
        self.results.add("join", "join a public room (median)", statistics.median(join_times), "ms")
        return rooms

    async def send_throughput(self, owner: User, senders: list[User]) -> str:
        room_id = await self.http.create_room(owner.token, preset="public_chat", name="Busy room")
        for sender in senders:
            await self.http.join(sender.token, room_id)
        per_sender = max(1, self.sizes.messages // len(senders))
        total = per_sender * len(senders)
        self.progress(f"sending {total} messages from {len(senders)} concurrent senders")
        sent: dict[str, tuple[int, int]] = {}

        async def send_all(index: int, sender: User) -> None:
            for k in range(per_sender):
                event_id = await self.http.send_text(sender.token, room_id, f"t{k}", f"s{index} m{k}")
                sent[event_id] = (index, k)

        started = time.perf_counter()
        try:
            await defer.gatherResults(
                [defer.ensureDeferred(send_all(i, s)) for i, s in enumerate(senders)],
                consumeErrors=True,
            )
        except defer.FirstError as e:
            e.subFailure.raiseException()  # the sender's own error, not the wrapper
        elapsed = time.perf_counter() - started
        if len(sent) != total:
            raise WorkloadError(f"{total} sends returned {len(sent)} distinct event IDs")
        self.results.add(
            "send_throughput",
            f"send, {len(senders)} concurrent senders",
            total / elapsed,
            "events/s",
            higher_is_better=True,
        )
        self.busy_room_messages = sent
        return room_id

    async def send_to_sync_latency(self, receiver: User, sender: User) -> None:
        """From just before a send to the receiver's long-poll /sync returning that event."""
        room_id = await self.http.create_room(receiver.token, preset="public_chat", name="Latency")
        await self.http.join(sender.token, room_id)
        since = (await self.http.sync(receiver.token, filter_json=SYNC_FILTER))["next_batch"]
        n = self.sizes.latency_sends
        self.progress(f"measuring send-to-sync latency over {n} sends")
        latencies: list[float] = []
        for i in range(n):
            body = f"ping {i}"
            poll = defer.ensureDeferred(
                self.http.sync(receiver.token, since=since, timeout_ms=30000, filter_json=SYNC_FILTER)
            )
            # Let the long-poll reach the server and park before the send starts.
            await task.deferLater(self.reactor, 0.02, lambda: None)
            started = time.perf_counter()
            event_id = await self.http.send_text(sender.token, room_id, f"ping{i}", body)
            for _ in range(MAX_POLLS_PER_PING):
                answer = await poll
                since = answer["next_batch"]
                if any(e.get("event_id") == event_id for e in _timeline(answer, room_id)):
                    latencies.append((time.perf_counter() - started) * 1000.0)
                    break
                poll = defer.ensureDeferred(
                    self.http.sync(receiver.token, since=since, timeout_ms=30000, filter_json=SYNC_FILTER)
                )
            else:
                raise WorkloadError(f"{event_id} never came down /sync")
        self.results.add("latency_p50", "send-to-sync delivery (median)", statistics.median(latencies), "ms")
        self.results.add("latency_p95", "send-to-sync delivery (p95)", percentile(latencies, 0.95), "ms")

    async def initial_sync(self, syncer: User, rooms: list[str]) -> None:
        repeats = self.sizes.initial_sync_repeats
        self.progress(f"initial sync of a user in {len(rooms)} rooms, {repeats} times")
        timings: list[float] = []
        for _ in range(repeats):
            elapsed, answer = await _timed(
                lambda: self.http.sync(syncer.token, filter_json=SYNC_FILTER)
            )
            timings.append(elapsed)
            joined = set(answer.get("rooms", {}).get("join", {}))
            if joined != set(rooms):
                raise WorkloadError(
                    f"initial sync shows {len(joined)} joined rooms, expected {len(rooms)}"
                )
            for room_id in rooms:
                bodies = [e["content"].get("body") for e in _timeline(answer, room_id) if e["type"] == "m.room.message"]
                if len(bodies) != self.sizes.messages_per_sync_room:
                    raise WorkloadError(f"initial sync of {room_id} has messages {bodies}")
        self.results.add(
            "initial_sync",
            f"initial sync, {len(rooms)} rooms (median)",
            statistics.median(timings),
            "ms",
        )

    async def paginate(self, owner: User, room_id: str) -> None:
        """Page back through the busy room with chained tokens, checking the order and that none is lost."""
        pages, size = self.sizes.pagination_pages, self.sizes.page_size
        self.progress(f"paging back through up to {pages} pages of {size} events")
        timings: list[float] = []
        seen: list[str] = []
        token: str | None = None
        for _ in range(pages):
            elapsed, answer = await _timed(
                lambda token=token: self.http.messages(owner.token, room_id, from_token=token, limit=size)
            )
            if not answer["chunk"]:
                break
            timings.append(elapsed)
            seen += [e["event_id"] for e in answer["chunk"] if e["type"] == "m.room.message"]
            token = answer.get("end")
            if token is None:
                break
        sent = self.busy_room_messages
        # The messages are the newest events of the room, so the pages hold exactly these many.
        expected_count = min(len(sent), pages * size)
        if len(seen) != len(set(seen)) or not set(seen) <= set(sent) or len(seen) != expected_count:
            raise WorkloadError(
                f"paging back found {len(set(seen))} distinct of the {expected_count} messages expected"
            )
        last_seen: dict[int, int] = {}
        for event_id in seen:
            sender, k = sent[event_id]
            if k >= last_seen.get(sender, k + 1):
                raise WorkloadError(f"/messages gave sender {sender}'s messages out of order")
            last_seen[sender] = k
        self.results.add("messages", f"/messages, {size} events (median)", statistics.median(timings), "ms")
