"""Backfill: a local client's /messages past the start of what we hold fetches older
history with GET /backfill from a fake remote on loopback (both engines).

The room is the remote's: created by @bob:<remote>, with history before
@alice:test joined. We hold its state (as outliers, as a join over
federation leaves it) and alice's join; the messages before her join are
only on the remote.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import pytest
from signedjson.key import generate_signing_key

from homeserver.handlers.event_persistence import EventToPersist
from homeserver.server import HomeServer
from homeserver.state.auth_rules import auth_types_from_fields
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase
from homeserver.types.room_versions import V11
from tests.conftest import run_on_reactor
from tests.federation.test_receiver_harness import FED, Remote
from tests.homeserver_harness import HomeServerFactory, TestClient

_BACKFILL = re.compile(f"^{FED}/backfill/(?P<room_id>[^/]+)$")


class BackfillRemote(Remote):
    """The harness's remote, also answering GET /backfill from its model (or `backfill_answer`)."""

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor)
        self.backfill_answer: list[Any] | None = None

    def answer(self, method: str, path: str, uri: str, body: bytes) -> tuple[int, Any]:
        match = _BACKFILL.match(path)
        if match is None:
            return super().answer(method, path, uri, body)
        if "backfill" in self.failing:
            return 500, {"errcode": "M_UNKNOWN", "error": "Internal server error"}
        query = parse_qs(urlparse(uri).query)
        if self.backfill_answer is not None:
            pdus = self.backfill_answer
        else:
            limit = int(query["limit"][0])
            pdus = [e.pdu_json() for e in self._before(query["v"], limit)]
        assert unquote(match.group("room_id")) == self.room.room_id
        return 200, {"origin": self.name, "origin_server_ts": 1, "pdus": pdus}

    def _before(self, seeds: list[str], limit: int) -> list[EventBase]:
        found: dict[str, EventBase] = {}
        frontier = [self.served[s] for s in seeds if s in self.served]
        while frontier and len(found) < limit:
            frontier.sort(key=lambda e: -e.depth)
            event = frontier.pop(0)
            if event.event_id in found:
                continue
            found[event.event_id] = event
            frontier.extend(self.served[p] for p in event.prev_event_ids if p in self.served)
        return list(found.values())


@dataclass
class History:
    hs: HomeServer
    client: TestClient
    remote: BackfillRemote
    room_id: str
    token: str
    old: list[EventBase]
    join: EventBase

    async def messages(self, **query: str) -> Any:
        response = await self.client.get(
            f"/rooms/{quote(self.room_id, safe='')}/messages",
            query={"dir": "b", "limit": "20", **query},
            token=self.token,
        )
        assert response.status == 200, response
        return response.json


async def start_history(factory: HomeServerFactory, reactor: Any) -> History:
    remote = BackfillRemote(reactor)
    hs = await factory.start(
        federation_verify_certificates=False,
        ip_range_whitelist=["127.0.0.0/8"],
        trusted_key_servers=[],
    )
    client = factory.client(hs)
    token = (await client.register("alice"))["access_token"]
    alice = "@alice:test"
    bob = remote.user("bob")
    room_id = f"!history:{remote.name}"
    create = build_event(
        room_version=V11,
        type="m.room.create",
        state_key="",
        sender=bob,
        content={"room_version": V11.identifier},
        room_id=room_id,
        prev_event_ids=[],
        auth_event_ids=[],
        depth=1,
        origin_server_ts=1_600_000_000_000,
        server_name=remote.name,
        signing_key=remote.signing_key,
    )
    remote.record(create)
    state_events = [
        create,
        remote.event("m.room.member", {"membership": "join"}, sender=bob, state_key=bob),
        remote.event("m.room.power_levels", {"users": {bob: 100}}, sender=bob, state_key=""),
        remote.event("m.room.join_rules", {"join_rule": "public"}, sender=bob, state_key=""),
        remote.event(
            "m.room.history_visibility", {"history_visibility": "shared"}, sender=bob, state_key=""
        ),
    ]
    old = remote.chain(5, sender=bob, prefix="old")

    # Alice joins as a join over federation leaves us: the state as outliers, then her join.
    heads = remote.heads()
    state = remote.room.state_before(heads)
    content = {"membership": "join"}
    keys = auth_types_from_fields(V11, "m.room.member", alice, alice, content)
    join = build_event(
        room_version=V11,
        type="m.room.member",
        state_key=alice,
        sender=alice,
        content=content,
        room_id=room_id,
        prev_event_ids=heads,
        auth_event_ids=[state[k] for k in sorted(keys) if k in state],
        depth=max(remote.room.events[h].depth for h in heads) + 1,
        origin_server_ts=1_700_000_000_000,
        server_name="test",
        signing_key=hs.signing_key,
    )
    await hs.event_persister.persist([EventToPersist(e, outlier=True) for e in state_events])
    (persisted,) = await hs.event_persister.persist([EventToPersist(join, state_before=state)])
    assert persisted.rejected_reason is None
    remote.record(join)
    return History(hs, client, remote, room_id, token, old, join)


@pytest.fixture
def history(homeserver_factory: HomeServerFactory, reactor: Any) -> Iterator[History]:
    started = run_on_reactor(start_history(homeserver_factory, reactor))
    yield started
    run_on_reactor(started.remote.stop())


def bodies(chunk: list[Any]) -> list[str | None]:
    return [e["content"].get("body") for e in chunk]


async def test_messages_backfills_the_history_before_our_join(history: History) -> None:
    before = await history.hs.room_storage.events.get_backward_extremities(history.room_id)
    assert before == [history.old[-1].event_id]

    page = await history.messages()
    chunk = page["chunk"]
    assert chunk[0]["event_id"] == history.join.event_id
    assert bodies(chunk[1:]) == ["old 4", "old 3", "old 2", "old 1", "old 0"]
    assert [e["event_id"] for e in chunk[1:]] == [e.event_id for e in reversed(history.old)]
    (request,) = history.remote.requests_to("backfill")
    query = parse_qs(urlparse(request[1]).query)
    assert query["v"] == [history.old[-1].event_id]
    assert query["limit"] == ["100"]

    # The backfilled events are history: neither forward extremities nor current state.
    storage = history.hs.room_storage
    assert set(await storage.events.get_forward_extremities(history.room_id)) == {
        history.join.event_id
    }
    stored = await storage.events.get_stored_events([e.event_id for e in history.old])
    assert all(not s.outlier and s.rejected_reason is None for s in stored.values())

    # What lies before is held (the room's state, as outliers): the next page ends it.
    assert "end" in page
    last = await history.messages(**{"from": page["end"]})
    assert last["chunk"] == []
    assert "end" not in last
    assert len(history.remote.requests_to("backfill")) == 2


async def test_backfilled_history_is_not_news_to_sync(history: History) -> None:
    """Backfilled events sit below every stream position: an incremental /sync after the
    backfill reports nothing, and they are never anybody's new events."""
    first = await history.client.get("/sync", token=history.token)
    assert first.status == 200, first
    since = first.json["next_batch"]
    current = history.hs.room_storage.events.current_token()

    page = await history.messages()
    assert bodies(page["chunk"][1:]) == ["old 4", "old 3", "old 2", "old 1", "old 0"]
    stored = await history.hs.room_storage.events.get_stored_events(
        [e.event_id for e in history.old]
    )
    assert all(s.stream_ordering < 0 for s in stored.values())
    assert history.hs.room_storage.events.current_token() == current

    later = await history.client.get(
        "/sync", query={"since": since, "timeout": "0"}, token=history.token
    )
    assert later.status == 200, later
    assert history.room_id not in later.json.get("rooms", {}).get("join", {})
    # Paginating again reads them back, in order, from what we now hold.
    again = await history.messages()
    assert bodies(again["chunk"][1:]) == ["old 4", "old 3", "old 2", "old 1", "old 0"]


async def test_only_a_page_reaching_the_start_of_what_we_hold_backfills(history: History) -> None:
    page = await history.messages(limit="1")
    assert [e["event_id"] for e in page["chunk"]] == [history.join.event_id]
    assert "end" in page
    assert len(history.remote.requests_to("backfill")) == 1
    # Older history is held now: reading it asks nobody.
    page = await history.messages(limit="3", **{"from": page["end"]})
    assert bodies(page["chunk"]) == ["old 4", "old 3", "old 2"]
    assert "end" in page
    assert len(history.remote.requests_to("backfill")) == 1


async def test_an_unreachable_server_leaves_the_page_as_it_was(history: History) -> None:
    history.remote.failing.add("backfill")
    page = await history.messages()
    assert [e["event_id"] for e in page["chunk"]] == [history.join.event_id]
    assert "end" not in page
    assert len(history.remote.requests_to("backfill")) == 1


async def test_forged_and_garbage_events_are_refused(history: History) -> None:
    remote = history.remote
    bob = remote.user("bob")
    last = history.old[-1].event_id
    forged = remote.event(
        "m.room.message",
        {"body": "forged"},
        sender=bob,
        prevs=[last],
        signing_key=generate_signing_key(remote.signing_key.version),
        record=False,
    )
    intruder = remote.user("carol")
    unauthorised = remote.event(
        "m.room.message", {"body": "intruder"}, sender=intruder, prevs=[last], record=False
    )
    elsewhere = history.old[1].pdu_json()
    elsewhere["room_id"] = "!elsewhere:test"
    remote.backfill_answer = [
        "not an event",
        {"type": "m.room.message"},
        elsewhere,
        forged.pdu_json(),
        unauthorised.pdu_json(),
        *(e.pdu_json() for e in reversed(history.old)),
    ]
    storage = history.hs.room_storage
    state_before = dict(await storage.state.get_current_state_ids(history.room_id))

    page = await history.messages()
    assert bodies(page["chunk"][1:]) == ["old 4", "old 3", "old 2", "old 1", "old 0"]
    held = await storage.events.get_stored_events([forged.event_id, unauthorised.event_id])
    assert forged.event_id not in held
    assert held[unauthorised.event_id].rejected_reason is not None
    assert dict(await storage.state.get_current_state_ids(history.room_id)) == state_before
    assert set(await storage.events.get_forward_extremities(history.room_id)) == {
        history.join.event_id
    }


async def test_a_tampered_event_is_kept_redacted(history: History) -> None:
    tampered = history.old[2].pdu_json()
    tampered["content"]["body"] = "tampered"
    history.remote.backfill_answer = [
        tampered if e is history.old[2] else e.pdu_json() for e in reversed(history.old)
    ]
    page = await history.messages()
    assert bodies(page["chunk"][1:]) == ["old 4", "old 3", None, "old 1", "old 0"]
