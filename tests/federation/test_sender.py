"""The federation sender end to end: a real HomeServer sending to fake remote servers.

Each fake remote is a twisted.web server over TLS on 127.0.0.1 (server name
"127.0.0.1:<port>") that records every PUT /_matrix/federation/v1/send/{txnId}
and answers as the test says: 200, an error status, held until released, or
after a short delay. Remote users join rooms through events persisted as a
peer would send them. Time for the backoff is the server's TestClock; the
sender is woken by hand (`wake_due_destinations`) as its timer would.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY
from signedjson.key import generate_signing_key
from twisted.internet import defer
from twisted.web import resource, server

from homeserver.handlers.event_persistence import EventToPersist, PersistedEvent
from homeserver.server import HomeServer
from homeserver.state.auth_rules import auth_types_from_fields
from homeserver.types.event_builder import build_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import run_on_reactor
from tests.federation_harness import TlsServer

SEND_PREFIX = "/_matrix/federation/v1/send/"
ALICE = "@alice:test"
REMOTE_KEY = generate_signing_key("remote")
MIN_RETRY_S = 60
MAX_RETRY_S = 300

# TLS without certificate checks to 127.0.0.1, keys from no notary, and a short backoff.
SENDER_CONFIG: dict[str, Any] = {
    "federation_verify_certificates": False,
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
    "ip_range_whitelist": ["127.0.0.0/8"],
    "federation": {
        "destination_min_retry_interval": f"{MIN_RETRY_S}s",
        "destination_retry_multiplier": 2,
        "destination_max_retry_interval": f"{MAX_RETRY_S}s",
    },
}


@dataclass
class Received:
    txn_id: str
    body: dict[str, Any]

    @property
    def pdus(self) -> list[dict[str, Any]]:
        return self.body["pdus"]  # type: ignore[no-any-return]

    @property
    def edus(self) -> list[dict[str, Any]]:
        return self.body.get("edus", [])  # type: ignore[no-any-return]


class FakeRemote(resource.Resource):
    """Records transactions; answers `status` now, after `delay` seconds, or when released."""

    isLeaf = True

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor
        self.transactions: list[Received] = []
        self.status = 200
        self.hold = False
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._held: list[server.Request] = []
        self._waiters: list[tuple[int, defer.Deferred[None]]] = []
        self.tls: TlsServer | None = None

    @property
    def name(self) -> str:
        assert self.tls is not None
        return f"127.0.0.1:{self.tls.port}"

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    def render_PUT(self, request: server.Request) -> Any:
        path = request.path.decode()
        if not path.startswith(SEND_PREFIX):
            request.setResponseCode(404)
            return b'{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}'
        assert request.content is not None
        self.transactions.append(
            Received(path[len(SEND_PREFIX) :], json.loads(request.content.read()))
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        request.notifyFinish().addBoth(self._finished)
        for count, waiter in list(self._waiters):
            if len(self.transactions) >= count:
                self._waiters.remove((count, waiter))
                waiter.callback(None)
        if self.hold:
            self._held.append(request)
        elif self.delay:
            self.reactor.callLater(self.delay, self._answer, request)
        else:
            self._answer(request)
        return server.NOT_DONE_YET

    def _finished(self, _: object) -> None:
        self.in_flight -= 1

    def _answer(self, request: server.Request) -> None:
        if request.finished or request._disconnected:  # type: ignore[attr-defined]
            return
        request.setResponseCode(self.status)
        request.setHeader("Content-Type", "application/json")
        if self.status == 200:
            request.write(b'{"pdus": {}}')
        else:
            request.write(b'{"errcode": "M_UNKNOWN", "error": "scripted failure"}')
        request.finish()

    def release(self) -> None:
        """Answer the held requests, and the ones to come as they arrive."""
        self.hold = False
        held, self._held = self._held, []
        for request in held:
            self._answer(request)

    async def wait_for(self, count: int, timeout: float = 15.0) -> None:
        """Until `count` transactions have arrived in all."""
        if len(self.transactions) >= count:
            return
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append((count, waiter))
        await waiter.addTimeout(timeout, self.reactor)

    def pdu_ids(self) -> list[list[str]]:
        """The event IDs of the PDUs of each transaction, in order."""
        return [[event_id_of(p) for p in t.pdus] for t in self.transactions]


_known_ids: dict[str, str] = {}


def event_id_of(pdu: dict[str, Any]) -> str:
    """The ID of a PDU we built or stored (v3+ PDUs do not carry it)."""
    return _known_ids[pdu_key(pdu)]


def pdu_key(pdu: dict[str, Any]) -> str:
    return json.dumps(pdu["hashes"], sort_keys=True)


def remember(persisted: PersistedEvent) -> str:
    _known_ids[pdu_key(persisted.event.pdu_json())] = persisted.event_id
    return persisted.event_id


@pytest.fixture
def remotes(reactor: Any) -> Iterator[Any]:
    """A function starting a fake remote; all are stopped after the test."""
    started: list[FakeRemote] = []

    def start() -> FakeRemote:
        remote = FakeRemote(reactor)
        remote.tls = TlsServer(reactor, remote, "localhost")
        started.append(remote)
        return remote

    yield start

    async def stop_all() -> None:
        for remote in started:
            remote.release()
            assert remote.tls is not None
            await remote.tls.stop()

    run_on_reactor(stop_all())


async def start_server(homeserver_factory: Any, **overrides: Any) -> HomeServer:
    hs: HomeServer = await homeserver_factory.start(**{**SENDER_CONFIG, **overrides})
    await hs.federation_sender.wait_until_idle()
    return hs


# -- rooms with remote members


async def make_room(hs: HomeServer, **create_content: Any) -> str:
    """A public room created by ALICE, who is joined."""
    create = await hs.event_persister.create_room(ALICE, content=create_content)
    room_id = create.room_id
    await hs.event_persister.create_and_persist(
        room_id, "m.room.member", ALICE, ALICE, {"membership": "join"}
    )
    await hs.event_persister.create_and_persist(
        room_id, "m.room.join_rules", "", ALICE, {"join_rule": "public"}
    )
    return room_id


async def remote_event(
    hs: HomeServer,
    room_id: str,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    state_key: str | None = None,
) -> PersistedEvent:
    """Persist an event of `sender`'s server as that server would send it to us."""
    storage = hs.room_storage
    info = await storage.rooms.get_room(room_id)
    assert info is not None
    version = KNOWN_ROOM_VERSIONS[info.room_version]
    state = await storage.state.get_current_state_ids(room_id)
    keys = auth_types_from_fields(version, event_type, sender, state_key, content)
    extremities = await storage.events.get_forward_extremities(room_id)
    event = build_event(
        room_version=version,
        type=event_type,
        state_key=state_key,
        sender=sender,
        content=content,
        room_id=room_id,
        prev_event_ids=sorted(extremities),
        auth_event_ids=[state[k] for k in sorted(keys) if k in state],
        depth=max(extremities.values()) + 1,
        origin_server_ts=hs.clock.time_msec(),
        server_name=sender.split(":", 1)[1],
        signing_key=REMOTE_KEY,
    )
    (persisted,) = await hs.event_persister.persist([EventToPersist(event)])
    return persisted


async def remote_membership(
    hs: HomeServer, room_id: str, user_id: str, membership: str = "join"
) -> PersistedEvent:
    """`user_id`'s own membership event, from its server."""
    return await remote_event(
        hs, room_id, user_id, "m.room.member", {"membership": membership}, user_id
    )


async def say(hs: HomeServer, room_id: str, body: str, sender: str = ALICE) -> str:
    persisted = await hs.event_persister.create_and_persist(
        room_id, "m.room.message", None, sender, {"msgtype": "m.text", "body": body}
    )
    return remember(persisted)


async def assigned(hs: HomeServer) -> None:
    await hs.event_persister.wait_until_idle()
    await hs.federation_sender.wait_until_assigned()


async def settled(hs: HomeServer) -> None:
    await hs.event_persister.wait_until_idle()
    await hs.federation_sender.wait_until_idle()


def backing_off_gauge() -> float | None:
    return REGISTRY.get_sample_value("homeserver_federation_destinations_backing_off")


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"homeserver_federation_{name}_total", labels) or 0.0


# -- which events go where


async def test_events_go_to_the_other_servers_joined_at_the_event(
    homeserver_factory: Any, remotes: Any
) -> None:
    a, b, c = remotes(), remotes(), remotes()
    hs = await start_server(homeserver_factory)
    room_id = await make_room(hs)
    for remote in (a, b, c):
        joined = await remote_membership(hs, room_id, remote.user("u"))
        assert joined.rejected_reason is None
    # c's user leaves on their own: its leave is c's event, which we do not relay.
    await remote_membership(hs, room_id, c.user("u"), "leave")
    # A second user of a: still one destination.
    await remote_membership(hs, room_id, a.user("v"))
    await settled(hs)
    assert a.transactions == b.transactions == c.transactions == []

    first = await say(hs, room_id, "hello")
    await settled(hs)
    for remote in (a, b):
        assert remote.pdu_ids() == [[first]]
        (txn,) = remote.transactions
        assert txn.body["origin"] == "test"
        assert isinstance(txn.body["origin_server_ts"], int)
        assert "edus" not in txn.body
        stored = await hs.room_storage.events.get_event(first)
        assert stored is not None and txn.pdus == [stored.pdu_json()]
    assert c.transactions == []

    # Kicking b's user: b was in the room before the kick, so it hears of it; then no more.
    kick = await hs.event_persister.create_and_persist(
        room_id, "m.room.member", b.user("u"), ALICE, {"membership": "leave"}
    )
    remember(kick)
    second = await say(hs, room_id, "after the kick")
    await settled(hs)
    assert a.pdu_ids() == [[first], [kick.event_id], [second]]
    assert b.pdu_ids() == [[first], [kick.event_id]]
    assert c.transactions == []
    assert len({t.txn_id for t in a.transactions}) == 3


async def test_destinations_follow_many_joins_and_leaves(
    homeserver_factory: Any, remotes: Any
) -> None:
    """Each message goes exactly to the servers with a joined user, whatever came before."""
    servers = [remotes() for _ in range(3)]
    hs = await start_server(homeserver_factory)
    room_id = await make_room(hs)
    rng = random.Random(7)
    joined: dict[str, bool] = {}
    expected: dict[str, list[str]] = {s.name: [] for s in servers}
    kicks = 0
    for step in range(30):
        remote = rng.choice(servers)
        user = remote.user(rng.choice(["u", "v"]))
        roll = rng.random()
        if roll < 0.2 and joined.get(user):
            # Our kick: to the servers in the room before it, the kicked one's included.
            kick = await hs.event_persister.create_and_persist(
                room_id, "m.room.member", user, ALICE, {"membership": "leave"}
            )
            for name in {u.split(":", 1)[1] for u, j in joined.items() if j}:
                expected[name].append(remember(kick))
            joined[user] = False
            kicks += 1
        elif roll < 0.7:
            membership = "leave" if joined.get(user) else "join"
            persisted = await remote_membership(hs, room_id, user, membership)
            assert persisted.rejected_reason is None
            joined[user] = membership == "join"
        message = await say(hs, room_id, f"step {step}")
        for name in {u.split(":", 1)[1] for u, j in joined.items() if j}:
            expected[name].append(message)
        await settled(hs)
    assert {s.name: [i for t in s.pdu_ids() for i in t] for s in servers} == expected
    assert all(expected.values()) and kicks


async def test_a_room_with_m_federate_false_never_leaves_the_server(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    local_only = await make_room(hs, **{"m.federate": False})
    federated = await make_room(hs)
    refused = await remote_membership(hs, local_only, a.user("u"))
    assert refused.rejected_reason is not None
    await remote_membership(hs, federated, a.user("u"))
    # An invite of a's user is allowed (the sender is ours), but goes nowhere.
    await hs.event_persister.create_and_persist(
        local_only, "m.room.member", a.user("w"), ALICE, {"membership": "invite"}
    )
    await say(hs, local_only, "private")
    sent = await say(hs, federated, "public")
    await settled(hs)
    assert a.pdu_ids() == [[sent]]
    owed = await hs.room_storage.federation_sender.get_owed_rooms(a.name, -1)
    assert [row.room_id for row in owed] == [federated]


async def test_events_of_other_servers_are_not_relayed(
    homeserver_factory: Any, remotes: Any
) -> None:
    a, b = remotes(), remotes()
    hs = await start_server(homeserver_factory)
    room_id = await make_room(hs)
    await remote_membership(hs, room_id, a.user("u"))
    await remote_membership(hs, room_id, b.user("u"))
    message = await remote_event(
        hs, room_id, b.user("u"), "m.room.message", {"msgtype": "m.text", "body": "from b"}
    )
    assert message.rejected_reason is None
    await settled(hs)
    assert a.transactions == [] and b.transactions == []
    assert await hs.room_storage.federation_sender.get_owed_rooms(a.name, -1) == []


# -- batching


async def test_events_queued_behind_a_transaction_go_fifty_at_a_time(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    room_id = await make_room(hs)
    await remote_membership(hs, room_id, a.user("u"))
    sent_before, pdus_before = counter("transactions", outcome="sent"), counter("pdus_sent")
    a.hold = True
    first = await say(hs, room_id, "first")
    await a.wait_for(1)
    later = [await say(hs, room_id, f"message {i}") for i in range(120)]
    await assigned(hs)
    assert len(a.transactions) == 1  # one transaction in flight, the rest queued

    a.delay = 0.02  # let a second, concurrent request show itself if there were one
    a.release()
    await settled(hs)
    assert a.pdu_ids() == [[first], later[:50], later[50:100], later[100:]]
    assert a.max_in_flight == 1
    assert counter("transactions", outcome="sent") - sent_before == 4
    assert counter("pdus_sent") - pdus_before == 121
    assert len({t.txn_id for t in a.transactions}) == 4
    destination = await hs.room_storage.federation_sender.get_destination(a.name)
    stored = await hs.room_storage.events.get_stored_events([later[-1]])
    assert destination is not None
    assert destination.last_successful_stream_ordering == stored[later[-1]].stream_ordering


async def test_edus_go_a_hundred_at_a_time_with_the_pdus(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    sender = hs.federation_sender
    a.hold = True
    sender.send_edu(a.name, "m.typing", {"n": 0})
    await a.wait_for(1)
    for n in range(1, 151):
        sender.send_edu(a.name, "m.typing", {"n": n})
    sender.send_edu("test", "m.typing", {"to": "ourselves"})  # never sent
    a.release()
    await settled(hs)
    assert [len(t.edus) for t in a.transactions] == [1, 100, 50]
    assert [e["content"]["n"] for t in a.transactions for e in t.edus] == list(range(151))
    assert all(e["edu_type"] == "m.typing" and t.pdus == [] for t in a.transactions for e in t.edus)


async def test_an_event_redacted_before_it_leaves_is_sent_pruned(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    room_id = await make_room(hs)
    await remote_membership(hs, room_id, a.user("u"))
    a.hold = True
    await say(hs, room_id, "first")
    await a.wait_for(1)
    secret = await say(hs, room_id, "a secret")
    redaction = await hs.event_persister.create_and_persist(
        room_id, "m.room.redaction", None, ALICE, {"reason": "oops"}, redacts=secret
    )
    remember(redaction)
    await assigned(hs)
    a.release()
    await settled(hs)
    assert len(a.transactions) == 2
    pruned, sent_redaction = a.transactions[1].pdus
    assert pruned["content"] == {}
    assert pruned["type"] == "m.room.message"
    assert event_id_of(sent_redaction) == redaction.event_id


# -- failures


async def test_a_4xx_answer_drops_the_transaction_without_backing_off(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    store = hs.room_storage.federation_sender
    room_id = await make_room(hs)
    await remote_membership(hs, room_id, a.user("u"))
    a.status = 400
    rejected_before = counter("transactions", outcome="rejected")
    dropped = await say(hs, room_id, "refused")
    await settled(hs)
    assert counter("transactions", outcome="rejected") - rejected_before == 1
    destination = await store.get_destination(a.name)
    assert destination is not None
    assert not destination.timings.failing
    assert await store.get_owed_rooms(a.name, destination.last_successful_stream_ordering) == []

    a.status = 200
    sent = await say(hs, room_id, "accepted")
    await settled(hs)
    assert a.pdu_ids() == [[dropped], [sent]]


@pytest.mark.parametrize("status", [500, 429, 401])
async def test_5xx_429_and_401_back_off(homeserver_factory: Any, remotes: Any, status: int) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    room_id = await make_room(hs)
    await remote_membership(hs, room_id, a.user("u"))
    a.status = status
    failed_before = counter("transactions", outcome="failed")
    await say(hs, room_id, "not now")
    await settled(hs)
    assert counter("transactions", outcome="failed") - failed_before == 1
    destination = await hs.room_storage.federation_sender.get_destination(a.name)
    assert destination is not None
    assert destination.timings.retry_interval == MIN_RETRY_S * 1000


async def test_the_backoff_grows_caps_and_resets_on_the_clock(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    sender = hs.federation_sender
    store = hs.room_storage.federation_sender
    room_id = await make_room(hs)
    await remote_membership(hs, room_id, a.user("u"))

    async def timings() -> Any:
        destination = await store.get_destination(a.name)
        assert destination is not None
        return destination.timings

    a.status = 500
    await say(hs, room_id, "one")
    await settled(hs)
    first = await timings()
    assert first.retry_interval == MIN_RETRY_S * 1000
    assert first.retry_last_ts == first.failure_ts
    assert backing_off_gauge() == 1

    # While backing off, new events are only recorded: the room's row moves on.
    newest = await say(hs, room_id, "two")
    await settled(hs)
    assert len(a.transactions) == 1
    (owed,) = await store.get_owed_rooms(a.name, -1)
    assert owed.event_id == newest
    hs.clock.advance(MIN_RETRY_S - 1)  # type: ignore[attr-defined]
    assert await sender.wake_due_destinations() == []
    await settled(hs)
    assert len(a.transactions) == 1

    # Each failed retry waits longer: x2 with a jitter of 0.8..1.4, up to the cap.
    intervals = [first.retry_interval]
    previous = first
    while intervals[-1] < MAX_RETRY_S * 1000:
        assert len(intervals) < 10
        hs.clock.advance(previous.retry_interval / 1000 + 1)  # type: ignore[attr-defined]
        assert await sender.wake_due_destinations() == [a.name]
        await settled(hs)
        # The retry catches up: our newest event in the room, not the backlog.
        assert a.pdu_ids()[-1] == [newest]
        current = await timings()
        assert current.failure_ts == first.failure_ts
        assert current.retry_last_ts > previous.retry_at()
        low = int(previous.retry_interval * 2 * 0.8)
        high = int(previous.retry_interval * 2 * 1.4)
        assert (
            min(low, MAX_RETRY_S * 1000) <= current.retry_interval <= min(high, MAX_RETRY_S * 1000)
        )
        intervals.append(current.retry_interval)
        previous = current
    assert intervals[-1] == MAX_RETRY_S * 1000

    # Answering again ends the backoff...
    a.status = 200
    count = len(a.transactions)
    hs.clock.advance(MAX_RETRY_S + 1)  # type: ignore[attr-defined]
    await sender.wake_due_destinations()
    await settled(hs)
    assert a.pdu_ids()[count:] == [[newest]]
    assert await timings() == type(first)()
    assert backing_off_gauge() == 0
    assert await sender.wake_due_destinations() == []

    # ... so the next failure starts again from the minimum.
    a.status = 500
    await say(hs, room_id, "three")
    await settled(hs)
    assert (await timings()).retry_interval == MIN_RETRY_S * 1000


async def test_a_remote_server_coming_back_is_caught_up_at_once(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    room_id = await make_room(hs)
    await remote_membership(hs, room_id, a.user("u"))
    a.status = 503
    await say(hs, room_id, "lost")
    newest = await say(hs, room_id, "newest")
    await settled(hs)
    assert len(a.transactions) == 1
    a.status = 200
    await hs.federation_sender.on_remote_server_up(a.name)
    await settled(hs)
    assert a.pdu_ids()[1:] == [[newest]]


# -- restarts


async def test_a_restart_catches_up_with_the_newest_event_of_each_room(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    rooms = [await make_room(hs), await make_room(hs)]
    for room_id in rooms:
        await remote_membership(hs, room_id, a.user("u"))
    a.hold = True
    await say(hs, rooms[0], "in flight")
    await a.wait_for(1)
    newest = []
    for room_id in rooms:
        for i in range(3):
            last = await say(hs, room_id, f"queued {i}")
        newest.append(last)
    await assigned(hs)
    # Stopping cancels the transaction in flight; what was queued is in the database.
    await homeserver_factory.stop(hs)
    a.release()
    assert len(a.transactions) == 1

    hs = await start_server(homeserver_factory)
    await settled(hs)
    assert len(a.transactions) == 2
    assert sorted(a.pdu_ids()[1]) == sorted(newest)
    assert await hs.federation_sender.wake_due_destinations() == []
    # Transaction IDs start afresh from the clock: never one the destination has seen.
    assert a.transactions[1].txn_id != a.transactions[0].txn_id


async def test_a_restart_keeps_backing_off_then_catches_up(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    rooms = [await make_room(hs), await make_room(hs)]
    for room_id in rooms:
        await remote_membership(hs, room_id, a.user("u"))
    a.status = 500
    newest = [await say(hs, rooms[0], "failed"), await say(hs, rooms[1], "while down")]
    newest[0] = await say(hs, rooms[0], "newer while down")
    await settled(hs)
    assert len(a.transactions) == 1
    await homeserver_factory.stop(hs)

    a.status = 200
    hs = await start_server(homeserver_factory)
    await settled(hs)
    assert len(a.transactions) == 1  # still backed off
    hs.clock.advance(MIN_RETRY_S + 1)  # type: ignore[attr-defined]
    assert await hs.federation_sender.wake_due_destinations() == [a.name]
    await settled(hs)
    assert len(a.transactions) == 2
    assert sorted(a.pdu_ids()[1]) == sorted(newest)


async def test_events_persisted_while_the_sender_was_down_are_sent_after_a_restart(
    homeserver_factory: Any, remotes: Any
) -> None:
    a = remotes()
    hs = await start_server(homeserver_factory)
    room_id = await make_room(hs)
    await remote_membership(hs, room_id, a.user("u"))
    # As if the process died between storing an event and assigning it.
    await hs.federation_sender.stopService()
    unsent = await say(hs, room_id, "stored, never assigned")
    await homeserver_factory.stop(hs)
    assert a.transactions == []

    hs = await start_server(homeserver_factory)
    await settled(hs)
    assert a.pdu_ids() == [[unsent]]
