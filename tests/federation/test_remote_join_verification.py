"""Checking a resident's send_join answer: forged, unauthorised or inconsistent state is refused.

The room is modelled by NaiveRoom (tests/storage/events_helpers): created by
@bob:remote.test, whose events are signed with remote.test's key; our join is
@alice:test.local's, signed with test.local's key. The key source knows both.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pytest
from signedjson.key import generate_signing_key, get_verify_key

from homeserver.crypto.server_keys import FetchedKey
from homeserver.federation.join_verification import (
    InvalidJoinResponse,
    verify_send_join_response,
)
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, V11, EventFormat, RoomVersion
from homeserver.types.signing import sign_event_dict
from tests.storage.events_helpers import (
    ALICE,
    BOB,
    CAROL,
    LOCAL,
    LOCAL_KEY,
    REMOTE,
    REMOTE_KEY,
    NaiveRoom,
    creator_users,
)

StateKey = tuple[str, str]
ATTACKER_KEY = generate_signing_key("remote")  # same key ID as remote.test's, another key


class Keys:
    """A key source knowing test.local's and remote.test's keys."""

    def __init__(self) -> None:
        self.keys = {
            LOCAL: {f"ed25519:{LOCAL_KEY.version}": get_verify_key(LOCAL_KEY)},
            REMOTE: {f"ed25519:{REMOTE_KEY.version}": get_verify_key(REMOTE_KEY)},
        }

    async def get_server_keys(
        self, server_name: str, key_ids: Collection[str], minimum_valid_until_ts: int
    ) -> Mapping[str, FetchedKey]:
        known = self.keys.get(server_name, {})
        return {k: FetchedKey(known[k], 2**62) for k in key_ids if k in known}


class Room:
    """A remote public room with bob in it, and our join over its head."""

    def __init__(self, version: RoomVersion = V11, join_rule: str = "public") -> None:
        self.version = version
        self.model = NaiveRoom(version)
        self.head = self.model.create(BOB).event_id
        self.add("m.room.member", BOB, {"membership": "join"}, state_key=BOB)
        self.add(
            "m.room.power_levels",
            BOB,
            {"users": creator_users(version, BOB), "state_default": 50},
            state_key="",
        )
        self.add("m.room.join_rules", BOB, {"join_rule": join_rule}, state_key="")

    @property
    def room_id(self) -> str:
        assert self.model.room_id is not None
        return self.model.room_id

    def add(self, event_type: str, sender: str, content: dict[str, Any], **kw: Any) -> EventBase:
        event = self.model.make(event_type, sender, content, prevs=[self.head], **kw)
        assert self.model.add(event)
        self.head = event.event_id
        return event

    def state(self) -> dict[StateKey, str]:
        return dict(self.model.after[self.head])

    def join(self, user: str = ALICE, prevs: list[str] | None = None) -> EventBase:
        prevs = prevs or [self.head]
        state = self.model.state_before(prevs)
        content = {"membership": "join"}
        return build_event(
            room_version=self.version,
            type="m.room.member",
            state_key=user,
            sender=user,
            content=content,
            room_id=self.room_id,
            prev_event_ids=prevs,
            auth_event_ids=self.model.auth_ids("m.room.member", user, user, content, state),
            depth=max(self.model.events[p].depth for p in prevs) + 1,
            origin_server_ts=1_700_000_100_000,
            server_name=LOCAL,
            signing_key=LOCAL_KEY,
            event_id_localpart="ourjoin"
            if self.version.event_format.format is EventFormat.V1
            else None,
        )

    def chain_of(self, events: Collection[EventBase]) -> list[EventBase]:
        seen: dict[str, EventBase] = {}
        frontier = [a for e in events for a in e.auth_event_ids]
        for auth_id in frontier:
            seen[auth_id] = self.model.events[auth_id]
        while frontier:
            event = self.model.events[frontier.pop()]
            for auth_id in event.auth_event_ids:
                if auth_id not in seen:
                    seen[auth_id] = self.model.events[auth_id]
                    frontier.append(auth_id)
        return list(seen.values())

    def response(self, state: list[EventBase] | None = None) -> dict[str, Any]:
        if state is None:
            state = [self.model.events[i] for i in self.state().values()]
        chain = self.chain_of(state)
        return {
            "state": [e.pdu_json() for e in state],
            "auth_chain": [e.pdu_json() for e in chain],
        }


def forged(room: Room, event_type: str, content: dict[str, Any], **kw: Any) -> EventBase:
    """An event claiming to be remote.test's but signed with another key."""
    honest = room.model.make(event_type, BOB, content, prevs=[room.head], **kw)
    pdu = honest.pdu_json()
    pdu.pop("signatures")
    resigned = sign_event_dict(room.version, pdu, REMOTE, ATTACKER_KEY)
    return make_event(resigned, room.version)


VERSIONS = [KNOWN_ROOM_VERSIONS[v] for v in ("1", "6", "11", "12")]


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
async def test_an_honest_answer_gives_the_state_and_our_join(version: RoomVersion) -> None:
    room = Room(version)
    join = room.join()
    verified = await verify_send_join_response(Keys(), version, join, room.response())
    assert dict(verified.state) == room.state()
    assert verified.join == join
    assert not verified.rejected
    # Each event comes after its auth events, so they can be stored in order.
    placed: set[str] = set()
    for event in verified.events:
        assert set(event.auth_event_ids) <= placed
        placed.add(event.event_id)


async def test_a_forged_state_event_is_dropped_and_its_absence_refuses_the_join() -> None:
    """A join_rules event not signed by remote.test's key is dropped; without it, no join."""
    room = Room()
    state = [room.model.events[i] for k, i in room.state().items() if k[0] != "m.room.join_rules"]
    fake_rules = forged(room, "m.room.join_rules", {"join_rule": "public"}, state_key="")
    with pytest.raises(InvalidJoinResponse, match="does not allow our join"):
        await verify_send_join_response(
            Keys(), V11, room.join(), room.response([*state, fake_rules])
        )


async def test_a_forged_create_event_is_refused() -> None:
    room = Room()
    response = room.response()
    create = room.model.events[room.state()[("m.room.create", "")]]
    pdu = create.pdu_json()
    pdu.pop("signatures")
    fake = sign_event_dict(V11, pdu, REMOTE, ATTACKER_KEY)
    response["state"] = [p for p in response["state"] if p["type"] != "m.room.create"] + [fake]
    response["auth_chain"] = [p for p in response["auth_chain"] if p["type"] != "m.room.create"]
    with pytest.raises(InvalidJoinResponse, match="no accepted m.room.create"):
        await verify_send_join_response(Keys(), V11, room.join(), response)


async def test_an_unauthorised_state_event_is_rejected_and_left_out_of_the_state() -> None:
    """carol, never in the room, 'sets' the room name: signed properly, but the rules refuse it."""
    room = Room()
    state = [room.model.events[i] for i in room.state().values()]
    name = room.model.make("m.room.name", CAROL, {"name": "pwned"}, prevs=[room.head], state_key="")
    verified = await verify_send_join_response(
        Keys(), V11, room.join(), room.response([*state, name])
    )
    assert name.event_id in verified.rejected
    assert ("m.room.name", "") not in verified.state
    assert dict(verified.state) == room.state()


async def test_a_state_event_whose_auth_events_are_withheld_is_rejected() -> None:
    room = Room()
    topic = room.add("m.room.topic", BOB, {"topic": "t"}, state_key="")
    response = room.response()
    # Only the create event is given as the auth chain: the rest cannot be checked.
    response["auth_chain"] = [p for p in response["auth_chain"] if p["type"] == "m.room.create"]
    response["state"] = [
        p for p in response["state"] if p["type"] in ("m.room.create", "m.room.topic")
    ]
    with pytest.raises(InvalidJoinResponse):
        await verify_send_join_response(Keys(), V11, room.join(), response)
    # Given on its own terms, the topic is rejected rather than believed.
    response = room.response()
    response["auth_chain"] = [
        p for p in response["auth_chain"] if p["type"] != "m.room.power_levels"
    ]
    response["state"] = [p for p in response["state"] if p["type"] != "m.room.power_levels"]
    with pytest.raises(InvalidJoinResponse):
        await verify_send_join_response(Keys(), V11, room.join(), response)
    assert topic.event_id


async def test_altered_content_is_redacted() -> None:
    """A topic whose content no longer matches its hash is kept redacted (no topic)."""
    room = Room()
    topic = room.add("m.room.topic", BOB, {"topic": "real"}, state_key="")
    response = room.response()
    for pdu in response["state"]:
        if pdu["type"] == "m.room.topic":
            pdu["content"]["topic"] = "altered"
    verified = await verify_send_join_response(Keys(), V11, room.join(), response)
    kept = {e.event_id: e for e in verified.events}[topic.event_id]
    assert "topic" not in kept.content
    assert verified.state[("m.room.topic", "")] == topic.event_id


async def test_two_events_for_one_state_key_are_refused() -> None:
    room = Room()
    first = room.add("m.room.topic", BOB, {"topic": "one"}, state_key="")
    response = room.response()
    second = room.add("m.room.topic", BOB, {"topic": "two"}, state_key="")
    response["state"].append(second.pdu_json())
    assert first.event_id != second.event_id
    with pytest.raises(InvalidJoinResponse, match="two events"):
        await verify_send_join_response(Keys(), V11, room.join(), response)


async def test_a_create_event_of_another_version_is_refused() -> None:
    room = Room(KNOWN_ROOM_VERSIONS["4"])
    join = room.join()
    await verify_send_join_response(Keys(), room.version, join, room.response())
    # v5 differs from v4 in key validity only: the events pass as v5 events,
    # but a create event saying "4" makes it a v4 room, not the v5 the resident said.
    with pytest.raises(InvalidJoinResponse, match="version"):
        await verify_send_join_response(Keys(), KNOWN_ROOM_VERSIONS["5"], join, room.response())


async def test_a_state_that_does_not_let_us_join_is_refused() -> None:
    room = Room(join_rule="invite")
    with pytest.raises(InvalidJoinResponse, match="does not allow our join"):
        await verify_send_join_response(Keys(), V11, room.join(), room.response())


async def test_the_returned_event_must_be_our_join_and_validly_signed() -> None:
    room = Room()
    join = room.join()
    other = room.join(CAROL.replace(REMOTE, LOCAL))
    response = room.response()
    response["event"] = other.pdu_json()
    with pytest.raises(InvalidJoinResponse, match="not ours"):
        await verify_send_join_response(Keys(), V11, join, response)
    countersigned = sign_event_dict(V11, join.pdu_json(), REMOTE, REMOTE_KEY)
    response["event"] = countersigned
    verified = await verify_send_join_response(Keys(), V11, join, response)
    assert REMOTE in verified.join.signatures
    # Our signature replaced by one made with another key under our key ID.
    unsigned = join.pdu_json()
    unsigned.pop("signatures")
    response["event"] = sign_event_dict(V11, unsigned, LOCAL, generate_signing_key("local"))
    with pytest.raises(InvalidJoinResponse):
        await verify_send_join_response(Keys(), V11, join, response)


async def test_answers_of_the_wrong_shape_are_refused() -> None:
    room = Room()
    join = room.join()
    for answer in ([], {"state": []}, {"state": {}, "auth_chain": []}):
        with pytest.raises(InvalidJoinResponse):
            await verify_send_join_response(Keys(), V11, join, answer)
    response = room.response()
    response["state"].append({"type": "m.room.topic", "nonsense": True})
    verified = await verify_send_join_response(Keys(), V11, join, response)
    assert dict(verified.state) == room.state()
