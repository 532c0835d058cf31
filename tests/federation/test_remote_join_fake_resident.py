"""Joining through a resident we script: lies in its send_join answer store nothing (both engines).

The resident is tests/federation/test_receiver_harness.py's `Remote` (a TLS
server on loopback with its own key and an in-memory model of its room),
answering make_join and v2 send_join as well. With `forge` set, its send_join
answer swaps the room's join rules for a copy signed with another key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from signedjson.key import generate_signing_key

from homeserver.handlers.auth import Requester
from homeserver.server import HomeServer
from homeserver.state.auth_rules import auth_types_from_fields
from homeserver.types.errors import MatrixError
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import V11
from homeserver.types.signing import add_hashes_and_signatures
from tests.conftest import run_on_reactor
from tests.federation.test_receiver_harness import FED, Remote
from tests.homeserver_harness import HomeServerFactory

ALICE = "@alice:test"
FED_V2 = "/_matrix/federation/v2"


class Resident(Remote):
    """A Remote that is the resident of a public room and answers joins (see the module docstring)."""

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor, V11)
        self.forge = False
        self.bob = self.user("bob")
        create = build_event(
            room_version=V11,
            type="m.room.create",
            state_key="",
            sender=self.bob,
            content={"room_version": "11"},
            room_id=f"!lobby:{self.name}",
            prev_event_ids=[],
            auth_event_ids=[],
            depth=1,
            origin_server_ts=1_700_000_000_000,
            server_name=self.name,
            signing_key=self.signing_key,
        )
        self.record(create)
        self.event("m.room.member", {"membership": "join"}, sender=self.bob, state_key=self.bob)
        self.event("m.room.power_levels", {"users": {self.bob: 100}}, sender=self.bob, state_key="")
        self.event("m.room.join_rules", {"join_rule": "public"}, sender=self.bob, state_key="")

    @property
    def room_id(self) -> str:
        assert self.room.room_id is not None
        return self.room.room_id

    def answer(self, method: str, path: str, uri: str, body: bytes) -> tuple[int, Any]:
        make_join = f"{FED}/make_join/"
        send_join = f"{FED_V2}/send_join/"
        if method == "GET" and path.startswith(make_join):
            _, user_id = (unquote(p) for p in path[len(make_join) :].split("/"))
            return 200, {"room_version": "11", "event": self._template(user_id)}
        if method == "PUT" and path.startswith(send_join):
            return 200, self._send_join(json.loads(body))
        return super().answer(method, path, uri, body)

    def _template(self, user_id: str) -> dict[str, Any]:
        heads = self.heads()
        state = self.room.state_before(heads)
        content = {"membership": "join"}
        keys = auth_types_from_fields(V11, "m.room.member", user_id, user_id, content)
        return {
            "type": "m.room.member",
            "room_id": self.room_id,
            "sender": user_id,
            "state_key": user_id,
            "content": content,
            "prev_events": heads,
            "auth_events": [state[k] for k in sorted(keys) if k in state],
            "depth": max(self.room.events[h].depth for h in heads) + 1,
            "origin_server_ts": 0,
        }

    def _send_join(self, pdu: dict[str, Any]) -> dict[str, Any]:
        join = make_event(pdu, V11)
        state_ids = self.room.state_before(join.prev_event_ids)
        state = [self.room.events[i] for i in state_ids.values()]
        if self.forge:
            state = [self._forged(e) if e.type == "m.room.join_rules" else e for e in state]
        else:
            self.record(join)
        chain: dict[str, EventBase] = {}
        frontier = [a for e in state for a in e.auth_event_ids]
        while frontier:
            event = self.room.events[frontier.pop()]
            if event.event_id not in chain:
                chain[event.event_id] = event
                frontier.extend(event.auth_event_ids)
        return {
            "origin": self.name,
            "state": [e.pdu_json() for e in state],
            "auth_chain": [e.pdu_json() for e in chain.values()],
            "members_omitted": False,
        }

    def _forged(self, event: EventBase) -> EventBase:
        pdu = event.pdu_json()
        pdu.pop("signatures")
        pdu["content"] = {"join_rule": "public", "forged": True}
        signed = add_hashes_and_signatures(V11, pdu, self.name, generate_signing_key("remote"))
        return make_event(signed, V11)


@pytest.fixture
def started(
    homeserver_factory: HomeServerFactory, reactor: Any
) -> Iterator[tuple[HomeServer, Resident]]:
    resident = Resident(reactor)
    hs = run_on_reactor(
        homeserver_factory.start(
            federation_verify_certificates=False,
            ip_range_whitelist=["127.0.0.0/8"],
            trusted_key_servers=[],
        )
    )
    try:
        yield hs, resident
    finally:
        run_on_reactor(resident.stop())


async def test_a_forged_send_join_answer_stores_nothing_and_an_honest_one_joins(
    started: tuple[HomeServer, Resident],
) -> None:
    hs, resident = started
    alice = Requester(ALICE, None, False, None)
    await hs.registration.register_user("alice")

    resident.forge = True
    with pytest.raises(MatrixError) as caught:
        await hs.membership.join(alice, resident.room_id, servers=[resident.name])
    assert (caught.value.status, caught.value.errcode) == (502, "M_UNKNOWN")
    assert await hs.room_storage.rooms.get_room(resident.room_id) is None
    assert await hs.room_storage.state.get_current_state_ids(resident.room_id) == {}

    resident.forge = False
    await hs.membership.join(alice, resident.room_id, servers=[resident.name])
    state = await hs.room_storage.state.get_current_state_ids(resident.room_id)
    rules = await hs.room_storage.events.get_event(state[("m.room.join_rules", "")])
    assert rules is not None and "forged" not in rules.content
    assert ("m.room.member", ALICE) in state and ("m.room.member", resident.bob) in state
    member = await hs.room_storage.rooms.get_membership(resident.room_id, ALICE)
    assert member is not None and member.membership == "join"


async def test_the_join_event_follows_the_template(started: tuple[HomeServer, Resident]) -> None:
    """Our join has the template's prev/auth events, our timestamp and displayname, our signature."""
    hs, resident = started
    await hs.registration.register_user("alice")
    await hs.storage.profiles.set_field(ALICE, "displayname", "Alice")
    heads = resident.heads()
    await hs.membership.join(
        Requester(ALICE, None, False, None), resident.room_id, servers=[resident.name]
    )
    member = await hs.room_storage.rooms.get_membership(resident.room_id, ALICE)
    assert member is not None
    join = await hs.room_storage.events.get_event(member.event_id)
    assert join is not None
    assert list(join.prev_event_ids) == heads
    assert join.content["displayname"] == "Alice"
    assert join.origin_server_ts > 0
    assert "test" in join.signatures
