"""A HomeServer receiving federation from a fake remote homeserver on loopback (both engines).

`Remote` is a twisted.web server over TLS on 127.0.0.1 (server name
"127.0.0.1:<port>": an IP literal, so no DNS is involved) that serves its
signing keys (the real ServerKeyServlet) and answers, from an in-memory model
of the room, the reads the receiver makes: GET /event/{eventId}, POST
/get_missing_events/{roomId} and GET /state_ids/{roomId}. Its events are
signed with its own key. `failing` names the endpoints that answer 500; every
request is recorded.

The model (`NaiveRoom` from tests/storage/events_helpers) holds the room's
events, the local ones loaded from our storage (`catch_up`) and the remote's
own, and recomputes the state before and after each from scratch: it picks
the auth events of new remote events, and answers /state_ids.

`Harness` (fixture `fed`, built by `running_harness`): a started HomeServer ("test") that trusts the
remote's self-signed certificate, a public room created by @alice:test with
@bob:<remote> joined (his join persisted as if received), and helpers to
send transactions straight to the receiver or signed over HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from signedjson.key import generate_signing_key
from twisted.web import resource

from homeserver.api.http import Router
from homeserver.clock import Clock
from homeserver.crypto.server_keys import LocalServerKeys
from homeserver.crypto.x_matrix import sign_request
from homeserver.federation.keys import ServerKeyServlet
from homeserver.handlers.event_persistence import EventToPersist, PersistedEvent
from homeserver.server import HomeServer
from homeserver.state.auth_rules import auth_types_from_fields
from homeserver.storage.stores.events import StoredEvent
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase
from homeserver.types.room_versions import V11, EventFormat, RoomVersion
from tests.conftest import run_on_reactor
from tests.federation_harness import HOUR_MS, TlsServer
from tests.homeserver_harness import HomeServerFactory, TestClient
from tests.room_helpers import make_room
from tests.storage.events_helpers import NaiveRoom

StateKey = tuple[str, str]
FED = "/_matrix/federation/v1"
ALICE = "@alice:test"

_EVENT = re.compile(f"^{FED}/event/(?P<event_id>[^/]+)$")
_MISSING = re.compile(f"^{FED}/get_missing_events/(?P<room_id>[^/]+)$")
_STATE_IDS = re.compile(f"^{FED}/state_ids/(?P<room_id>[^/]+)$")


class _RemoteResource(resource.Resource):
    isLeaf = True

    def __init__(self, remote: Remote) -> None:
        super().__init__()
        self._remote = remote

    def render(self, request: Any) -> Any:
        path = request.path.decode()
        body = request.content.read() if request.content is not None else b""
        request.content.seek(0)
        self._remote.requests.append((request.method.decode(), request.uri.decode(), body))
        if path.startswith("/_matrix/key/"):
            return self._remote.key_router.render(request)
        answer = self._remote.answer(request.method.decode(), path, request.uri.decode(), body)
        status, payload = answer
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(payload).encode()


class Remote:
    """A remote homeserver on loopback with one room's DAG (see the module docstring)."""

    def __init__(self, reactor: Any, room_version: RoomVersion = V11) -> None:
        self.server = TlsServer(reactor, _RemoteResource(self), "origin.test")
        self.name = f"127.0.0.1:{self.server.port}"
        self.signing_key = generate_signing_key("remote")
        self.keys = LocalServerKeys(self.name, [self.signing_key], {}, HOUR_MS, Clock(reactor))
        self.key_router = Router()
        self.key_router.register(ServerKeyServlet(self.keys))
        self.room = NaiveRoom(room_version)
        self.served: dict[str, EventBase] = {}
        """Events /event and /get_missing_events answer with (the model's and any added)."""
        self.failing: set[str] = set()
        """Endpoints answering 500: "event", "get_missing_events", "state_ids"."""
        self.requests: list[tuple[str, str, bytes]] = []
        self._ts = 1_700_000_000_000

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    async def stop(self) -> None:
        await self.server.stop()

    # --- the model

    def record(self, event: EventBase) -> bool:
        """Add an event to the model (its prev_events first); whether the model accepts it."""
        self.served[event.event_id] = event
        return self.room.add(event)

    async def catch_up(self, hs: HomeServer, room_id: str) -> None:
        """Load the room's timeline events we hold that the model lacks, oldest first."""
        events = await hs.room_storage.events.get_room_events_topological(
            room_id, None, limit=10_000, backwards=False
        )
        for stored in events:
            if stored.event_id not in self.room.events:
                self.record(stored.event)

    def heads(self) -> list[str]:
        """The model's accepted events that no accepted event lists as a prev_event."""
        accepted = {i: e for i, e in self.room.events.items() if i not in self.room.rejected}
        referenced = {p for e in accepted.values() for p in e.prev_event_ids}
        return sorted(i for i in accepted if i not in referenced)

    def event(
        self,
        event_type: str,
        content: Mapping[str, Any],
        *,
        sender: str,
        state_key: str | None = None,
        prevs: Sequence[str] | None = None,
        auth: Sequence[str] | None = None,
        depth: int | None = None,
        record: bool = True,
        signing_key: Any = None,
        server_name: str | None = None,
    ) -> EventBase:
        """A remote event over `prevs` (default: the model's heads), signed by this remote.

        auth_events default to the model's selection from the state before it.
        With `record`, the event is added to the model (and served).
        """
        prev_ids = list(prevs) if prevs is not None else self.heads()
        if auth is None:
            state = self.room.state_before(prev_ids)
            keys = auth_types_from_fields(self.room.version, event_type, sender, state_key, content)
            auth = [state[k] for k in sorted(keys) if k in state]
        if depth is None:
            depth = max(self.room.events[p].depth for p in prev_ids) + 1
        self._ts += 1
        assert self.room.room_id is not None
        event = build_event(
            room_version=self.room.version,
            type=event_type,
            state_key=state_key,
            sender=sender,
            content=content,
            room_id=self.room.room_id,
            prev_event_ids=prev_ids,
            auth_event_ids=list(auth),
            depth=depth,
            origin_server_ts=self._ts,
            server_name=server_name or self.name,
            signing_key=signing_key or self.signing_key,
            event_id_localpart=(
                f"r{self._ts}" if self.room.version.event_format.format is EventFormat.V1 else None
            ),
        )
        if record:
            self.record(event)
        return event

    def chain(self, count: int, *, sender: str, prefix: str = "gap") -> list[EventBase]:
        """`count` messages, each over the previous (the first over the heads), recorded."""
        return [
            self.event("m.room.message", {"body": f"{prefix} {i}"}, sender=sender)
            for i in range(count)
        ]

    # --- the federation API it serves

    def answer(self, method: str, path: str, uri: str, body: bytes) -> tuple[int, Any]:
        for name, pattern in (
            ("event", _EVENT),
            ("get_missing_events", _MISSING),
            ("state_ids", _STATE_IDS),
        ):
            match = pattern.match(path)
            if match is None:
                continue
            if name in self.failing:
                return 500, {"errcode": "M_UNKNOWN", "error": "Internal server error"}
            args = {k: unquote(v) for k, v in match.groupdict().items()}
            query = {k: v[0] for k, v in parse_qs(urlparse(uri).query).items()}
            return getattr(self, f"_on_{name}")(args, query, body)
        return 404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}

    def _on_event(self, args: dict[str, str], query: dict[str, str], body: bytes) -> Any:
        event = self.served.get(args["event_id"])
        if event is None:
            return 404, {"errcode": "M_NOT_FOUND", "error": "Not found"}
        return 200, {"origin": self.name, "origin_server_ts": self._ts, "pdus": [event.pdu_json()]}

    def _on_get_missing_events(
        self, args: dict[str, str], query: dict[str, str], body: bytes
    ) -> Any:
        request = json.loads(body)
        earliest = set(request["earliest_events"])
        limit = request.get("limit", 10)
        min_depth = request.get("min_depth", 0)
        found: list[EventBase] = []
        seen = set(earliest)
        frontier = [p for e in request["latest_events"] for p in self.served[e].prev_event_ids]
        while frontier and len(found) < limit:
            next_frontier = []
            for event_id in frontier:
                if event_id in seen or event_id not in self.served:
                    continue
                seen.add(event_id)
                event = self.served[event_id]
                if event.depth < min_depth:
                    continue
                found.append(event)
                if len(found) == limit:
                    break
                next_frontier.extend(event.prev_event_ids)
            frontier = next_frontier
        return 200, {"events": [e.pdu_json() for e in found]}

    def _on_state_ids(self, args: dict[str, str], query: dict[str, str], body: bytes) -> Any:
        event_id = query.get("event_id", "")
        if event_id not in self.room.before:
            return 404, {"errcode": "M_NOT_FOUND", "error": f"Could not find event {event_id}"}
        state = self.room.before[event_id]
        chain: set[str] = set()
        frontier = list(state.values())
        while frontier:
            current = frontier.pop()
            for auth_id in self.room.events[current].auth_event_ids:
                if auth_id not in chain:
                    chain.add(auth_id)
                    frontier.append(auth_id)
        return 200, {"pdu_ids": sorted(state.values()), "auth_chain_ids": sorted(chain)}

    def requests_to(self, endpoint: str) -> list[tuple[str, str, bytes]]:
        return [r for r in self.requests if r[1].startswith(f"{FED}/{endpoint}/")]


class Harness:
    """A HomeServer, the remote, and a room both are in (see the module docstring)."""

    def __init__(self, hs: HomeServer, client: TestClient, remote: Remote, room_id: str) -> None:
        self.hs = hs
        self.client = client
        self.remote = remote
        self.room_id = room_id
        self.bob = remote.user("bob")
        self._txn = 0

    @classmethod
    async def start(
        cls,
        factory: HomeServerFactory,
        reactor: Any,
        *,
        version: RoomVersion = V11,
        bob_power: int = 0,
    ) -> Harness:
        remote = Remote(reactor, version)
        hs = await factory.start(
            federation_verify_certificates=False,
            ip_range_whitelist=["127.0.0.0/8"],
            trusted_key_servers=[],
        )
        bob = remote.user("bob")
        room_id = await make_room(
            hs,
            ALICE,
            version=version,
            users={bob: bob_power},
            power_levels={"state_default": 50},
        )
        await remote.catch_up(hs, room_id)
        join = remote.event("m.room.member", {"membership": "join"}, sender=bob, state_key=bob)
        (persisted,) = await hs.event_persister.persist([EventToPersist(join)])
        assert persisted.rejected_reason is None
        return cls(hs, factory.client(hs), remote, room_id)

    # --- sending

    def transaction(
        self, pdus: Sequence[EventBase | Any] = (), edus: Sequence[Any] = (), **extra: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "origin": self.remote.name,
            "origin_server_ts": self.hs.clock.time_msec(),
            "pdus": [p.pdu_json() if isinstance(p, EventBase) else p for p in pdus],
        }
        if edus:
            body["edus"] = list(edus)
        body.update(extra)
        return body

    def next_txn_id(self) -> str:
        self._txn += 1
        return f"txn{self._txn}"

    async def send(
        self, *pdus: EventBase | Any, edus: Sequence[Any] = (), txn_id: str | None = None
    ) -> dict[str, Any]:
        """Hand a transaction to the receiver; the per-PDU results."""
        code, answer = await self.hs.federation_receiver.on_send_transaction(
            self.remote.name, txn_id or self.next_txn_id(), self.transaction(pdus, edus)
        )
        assert code == 200
        return answer["pdus"]  # type: ignore[no-any-return]

    async def put_transaction(
        self, body: Any, txn_id: str, *, origin: str | None = None, key: Any = None
    ) -> Any:
        """PUT /send/{txnId} over HTTP, signed by the remote (or `origin` with `key`)."""
        uri = f"{FED}/send/{txn_id}"
        header = sign_request(
            key or self.remote.signing_key,
            origin or self.remote.name,
            self.hs.config.server.server_name,
            "PUT",
            uri,
            body,
        )
        return await self.client.put(uri, body, headers={"Authorization": header})

    # --- looking at what we hold

    async def stored(self, event_id: str) -> StoredEvent | None:
        return (await self.hs.room_storage.events.get_stored_events([event_id])).get(event_id)

    async def state(self) -> dict[StateKey, str]:
        return dict(await self.hs.room_storage.state.get_current_state_ids(self.room_id))

    async def extremities(self) -> set[str]:
        return set(await self.hs.room_storage.events.get_forward_extremities(self.room_id))

    async def soft_failed(self, *event_ids: str) -> set[str]:
        return await self.hs.room_storage.federation_received.get_soft_failed(event_ids)

    async def local(
        self, event_type: str, content: Mapping[str, Any], state_key: str | None = None
    ) -> PersistedEvent:
        """An event of alice's, and the model told of it."""
        persisted = await self.hs.event_persister.create_and_persist(
            self.room_id, event_type, state_key, ALICE, content
        )
        await self.remote.catch_up(self.hs, self.room_id)
        return persisted

    async def stop(self) -> None:
        await self.remote.stop()


def running_harness(
    homeserver_factory: HomeServerFactory, reactor: Any, **options: Any
) -> Iterator[Harness]:
    """The body of each test module's `fed` fixture: a started Harness, stopped afterwards."""
    harness = run_on_reactor(Harness.start(homeserver_factory, reactor, **options))
    yield harness
    run_on_reactor(harness.stop())


@pytest.fixture
def fed(homeserver_factory: HomeServerFactory, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor)


async def test_the_remote_serves_its_keys_and_its_events(fed: Harness) -> None:
    """The fake remote works: our keyring gets its key, and it serves the events it made."""
    remote = fed.remote
    keys = await fed.hs.keyring.get_server_keys(
        remote.name, [f"ed25519:{remote.signing_key.version}"], 0
    )
    assert list(keys) == [f"ed25519:{remote.signing_key.version}"]
    (join_id,) = remote.heads()
    answer = await fed.hs.federation_client.get_json(remote.name, f"{FED}/event/{join_id}")
    assert answer["pdus"][0]["type"] == "m.room.member"
    assert await fed.extremities() == {join_id}
