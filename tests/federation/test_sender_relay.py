"""Relaying: events other servers hand us through send_join / send_leave go to the rest of
the room (both engines).

Our server "test" has a room with users of two fake remotes (`FakeRemote` from
tests/federation/test_sender.py, recording PUT /send). A third server (`Remote`
from tests/federation/test_receiver_harness.py, serving its signing key and
recording every request) has its user join, then leave, through our resident
side: the two remotes must get those events from us, the third must not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from homeserver.server import HomeServer
from homeserver.state.auth_rules import auth_types_from_fields
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import run_on_reactor
from tests.federation import test_sender
from tests.federation.test_receiver_harness import Remote
from tests.federation.test_sender import (
    FakeRemote,
    make_room,
    remote_membership,
    settled,
    start_server,
)

SEND_PATH = "/_matrix/federation/v1/send/"

remotes = test_sender.remotes  # the fixture starting fake remotes that record PUT /send


@pytest.fixture
def joiner(reactor: Any) -> Iterator[Remote]:
    remote = Remote(reactor)
    yield remote
    run_on_reactor(remote.stop())


async def own_membership(
    hs: HomeServer, room_id: str, joiner: Remote, membership: str
) -> EventBase:
    """The joiner's user's own membership event at the room's head, signed by the joiner."""
    storage = hs.room_storage
    info = await storage.rooms.get_room(room_id)
    assert info is not None
    version = KNOWN_ROOM_VERSIONS[info.room_version]
    user_id = joiner.user("carol")
    content = {"membership": membership}
    state = await storage.state.get_current_state_ids(room_id)
    keys = auth_types_from_fields(version, "m.room.member", user_id, user_id, content)
    extremities = await storage.events.get_forward_extremities(room_id)
    return build_event(
        room_version=version,
        type="m.room.member",
        state_key=user_id,
        sender=user_id,
        content=content,
        room_id=room_id,
        prev_event_ids=sorted(extremities),
        auth_event_ids=[state[k] for k in sorted(keys) if k in state],
        depth=max(extremities.values()) + 1,
        origin_server_ts=hs.clock.time_msec(),
        server_name=joiner.name,
        signing_key=joiner.signing_key,
    )


def received(remote: FakeRemote) -> list[list[str]]:
    """The event IDs of the PDUs of each transaction the remote got."""
    version = KNOWN_ROOM_VERSIONS["11"]
    return [[make_event(p, version).event_id for p in t.pdus] for t in remote.transactions]


def sends_to(joiner: Remote) -> list[str]:
    return [uri for method, uri, _ in joiner.requests if uri.startswith(SEND_PATH)]


async def room_with_two_remotes(hs: HomeServer, a: FakeRemote, b: FakeRemote) -> str:
    room_id = await make_room(hs)
    for remote in (a, b):
        joined = await remote_membership(hs, room_id, remote.user("u"))
        assert joined.rejected_reason is None
    await settled(hs)
    # Their joins came as ordinary received events: theirs to send, never relayed.
    assert a.transactions == b.transactions == []
    return room_id


async def test_send_join_and_send_leave_are_relayed_to_the_other_servers(
    homeserver_factory: Any, remotes: Any, joiner: Remote
) -> None:
    a, b = remotes(), remotes()
    hs = await start_server(homeserver_factory)
    room_id = await room_with_two_remotes(hs, a, b)

    join = await own_membership(hs, room_id, joiner, "join")
    await hs.resident_membership.send_join(joiner.name, room_id, join.event_id, join.pdu_json())
    await settled(hs)
    assert received(a) == received(b) == [[join.event_id]]
    assert a.transactions[0].body["origin"] == "test"

    leave = await own_membership(hs, room_id, joiner, "leave")
    await hs.resident_membership.send_leave(joiner.name, room_id, leave.event_id, leave.pdu_json())
    await settled(hs)
    expected = [[join.event_id], [leave.event_id]]
    assert received(a) == received(b) == expected
    # The joining server handed us both: it is sent neither.
    assert sends_to(joiner) == []
    assert (
        await hs.room_storage.federation_sender.get_relayed([join.event_id, leave.event_id]) == {}
    )


async def test_a_retried_send_join_is_relayed_once(
    homeserver_factory: Any, remotes: Any, joiner: Remote
) -> None:
    a, b = remotes(), remotes()
    hs = await start_server(homeserver_factory)
    room_id = await room_with_two_remotes(hs, a, b)
    join = await own_membership(hs, room_id, joiner, "join")
    for _ in range(2):
        await hs.resident_membership.send_join(joiner.name, room_id, join.event_id, join.pdu_json())
        await settled(hs)
    assert received(a) == received(b) == [[join.event_id]]


async def test_a_refused_send_join_leaves_nothing_to_relay(
    homeserver_factory: Any, remotes: Any, joiner: Remote
) -> None:
    a, b = remotes(), remotes()
    hs = await start_server(homeserver_factory)
    room_id = await room_with_two_remotes(hs, a, b)
    await hs.event_persister.create_and_persist(
        room_id, "m.room.member", joiner.user("carol"), "@alice:test", {"membership": "ban"}
    )
    await settled(hs)
    before = received(a)
    join = await own_membership(hs, room_id, joiner, "join")
    with pytest.raises(MatrixError) as refused:
        await hs.resident_membership.send_join(joiner.name, room_id, join.event_id, join.pdu_json())
    assert refused.value.errcode == Codes.FORBIDDEN
    await settled(hs)
    assert received(a) == before
    assert await hs.room_storage.federation_sender.get_relayed([join.event_id]) == {}


async def test_a_restart_between_accepting_and_sending_still_relays(
    homeserver_factory: Any, remotes: Any, joiner: Remote
) -> None:
    a, b = remotes(), remotes()
    hs = await start_server(homeserver_factory)
    room_id = await room_with_two_remotes(hs, a, b)
    # As if the process died after storing the join and before assigning it.
    await hs.federation_sender.stopService()
    join = await own_membership(hs, room_id, joiner, "join")
    await hs.resident_membership.send_join(joiner.name, room_id, join.event_id, join.pdu_json())
    await homeserver_factory.stop(hs)
    assert a.transactions == b.transactions == []

    hs = await start_server(homeserver_factory)
    await settled(hs)
    assert received(a) == received(b) == [[join.event_id]]
    assert sends_to(joiner) == []


async def test_a_restart_after_assigning_still_delivers(
    homeserver_factory: Any, remotes: Any, joiner: Remote
) -> None:
    a, b = remotes(), remotes()
    hs = await start_server(homeserver_factory)
    room_id = await room_with_two_remotes(hs, a, b)
    a.status = b.status = 500
    join = await own_membership(hs, room_id, joiner, "join")
    await hs.resident_membership.send_join(joiner.name, room_id, join.event_id, join.pdu_json())
    await settled(hs)
    await homeserver_factory.stop(hs)

    a.status = b.status = 200
    hs = await start_server(homeserver_factory)
    hs.clock.advance(3600)  # type: ignore[attr-defined]
    await hs.federation_sender.wake_due_destinations()
    await settled(hs)
    for remote in (a, b):
        assert received(remote)[-1] == [join.event_id]
    assert sends_to(joiner) == []


async def test_a_knock_is_relayed(homeserver_factory: Any, remotes: Any, joiner: Remote) -> None:
    a, b = remotes(), remotes()
    hs = await start_server(homeserver_factory)
    room_id = await room_with_two_remotes(hs, a, b)
    rules = await hs.event_persister.create_and_persist(
        room_id, "m.room.join_rules", "", "@alice:test", {"join_rule": "knock"}
    )
    await settled(hs)
    knock = await own_membership(hs, room_id, joiner, "knock")
    await hs.resident_membership.send_knock(joiner.name, room_id, knock.event_id, knock.pdu_json())
    await settled(hs)
    assert received(a) == received(b) == [[rules.event_id], [knock.event_id]]
    assert sends_to(joiner) == []


async def test_a_join_received_in_a_send_transaction_is_not_relayed(
    homeserver_factory: Any, remotes: Any, joiner: Remote
) -> None:
    """Its origin sends it to the room itself: only what came through send_join is ours."""
    a, b = remotes(), remotes()
    hs = await start_server(homeserver_factory)
    room_id = await room_with_two_remotes(hs, a, b)
    join = await own_membership(hs, room_id, joiner, "join")
    body = {
        "origin": joiner.name,
        "origin_server_ts": hs.clock.time_msec(),
        "pdus": [join.pdu_json()],
    }
    code, answer = await hs.federation_receiver.on_send_transaction(joiner.name, "txn1", body)
    assert code == 200 and answer["pdus"] == {join.event_id: {}}
    assert await hs.room_storage.events.get_event(join.event_id) is not None
    await settled(hs)
    assert a.transactions == b.transactions == []
    assert sends_to(joiner) == []
