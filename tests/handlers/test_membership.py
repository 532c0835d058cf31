"""MembershipHandler.update_membership as other handlers call it, and the forgotten-rooms store."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.handlers.auth import Requester, hash_token
from homeserver.server import HomeServer
from homeserver.types.errors import MatrixError
from tests.conftest import run_on_reactor
from tests.homeserver_harness import NO_LIMIT, TestClient
from tests.room_helpers import User, register, room_path

JsonDict = dict[str, Any]


@pytest.fixture
def hs(homeserver_factory: Any) -> HomeServer:
    server: HomeServer = run_on_reactor(homeserver_factory.start(rc_message=NO_LIMIT))
    return server


@pytest.fixture
def http(homeserver_factory: Any, hs: HomeServer) -> TestClient:
    client: TestClient = homeserver_factory.client(hs)
    return client


def requester(user: User, device_id: str | None = None) -> Requester:
    return Requester(
        user.user_id, device_id or user.device_id, False, hash_token(user.access_token)
    )


async def public_room(http: TestClient, user: User) -> str:
    response = await http.post(
        "/createRoom", {"preset": "public_chat", "room_version": "11"}, token=user.access_token
    )
    assert response.status == 200, response
    return str(response.json["room_id"])


async def test_a_repeated_membership_with_the_same_content_sends_nothing(
    hs: HomeServer, http: TestClient
) -> None:
    """As PUT .../state/m.room.member gives it: the whole content, identical to the current one."""
    alice = await register(http, "alice")
    room_id = await public_room(http, alice)
    content = {"membership": "join", "displayname": "Al"}
    first = await hs.membership.update_membership(
        requester(alice), alice.user_id, room_id, "join", content=content
    )
    assert not first.duplicate
    again = await hs.membership.update_membership(
        requester(alice), alice.user_id, room_id, "join", content=content
    )
    assert again.duplicate
    assert again.event_id == first.event_id
    assert again.stream_ordering == first.stream_ordering
    # Without content (the /join endpoints), a fresh join goes out each time, as in Synapse.
    fresh = await hs.membership.update_membership(requester(alice), alice.user_id, room_id, "join")
    assert not fresh.duplicate and fresh.event_id != first.event_id


async def test_transaction_ids_make_a_change_idempotent(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    room_id = await public_room(http, alice)
    first = await hs.membership.update_membership(
        requester(bob), bob.user_id, room_id, "join", txn_id="t1"
    )
    retry = await hs.membership.update_membership(
        requester(bob), bob.user_id, room_id, "join", txn_id="t1"
    )
    assert retry.duplicate and retry.event_id == first.event_id
    other_device = await hs.membership.update_membership(
        requester(bob, "OTHER"), bob.user_id, room_id, "join", txn_id="t1"
    )
    assert not other_device.duplicate and other_device.event_id != first.event_id

    # A retried unban answers with the unban, though bob is no longer banned.
    await hs.membership.update_membership(requester(alice), bob.user_id, room_id, "ban")
    unban = await hs.membership.update_membership(
        requester(alice), bob.user_id, room_id, "unban", txn_id="u"
    )
    retry = await hs.membership.update_membership(
        requester(alice), bob.user_id, room_id, "unban", txn_id="u"
    )
    assert retry.duplicate and retry.event_id == unban.event_id
    with pytest.raises(MatrixError) as raised:
        await hs.membership.update_membership(requester(alice), bob.user_id, room_id, "unban")
    assert raised.value.errcode == "M_BAD_STATE"


async def test_content_is_checked_and_cleaned(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    room_id = await public_room(http, alice)
    me = requester(alice)

    # Only the server vouches for restricted joins, with its signature.
    sent = await hs.membership.update_membership(
        me,
        alice.user_id,
        room_id,
        "join",
        content={"membership": "join", "join_authorised_via_users_server": "@x:test", "a": 1},
    )
    assert dict(sent.event.content) == {"membership": "join", "a": 1, "displayname": "alice"}

    before = hs.room_storage.events.current_token()
    bad: list[tuple[str, JsonDict | None, str]] = [
        ("join", {"displayname": "x" * 257}, "M_BAD_JSON"),
        ("join", {"displayname": 5}, "M_BAD_JSON"),
        ("join", {"avatar_url": "mxc://" + "x" * 1000}, "M_BAD_JSON"),
        ("dance", None, "M_BAD_JSON"),
        ("join", {"big": "x" * 70000}, "M_TOO_LARGE"),
    ]
    for action, content, errcode in bad:
        with pytest.raises(MatrixError) as raised:
            await hs.membership.update_membership(
                me, alice.user_id, room_id, action, content=content
            )
        assert raised.value.errcode == errcode, (action, content)
    with pytest.raises(MatrixError) as raised:
        await hs.membership.update_membership(me, "not-a-user", room_id, "invite")
    assert raised.value.errcode == "M_INVALID_PARAM"
    assert hs.room_storage.events.current_token() == before


async def test_membership_through_put_state(hs: HomeServer, http: TestClient) -> None:
    """PUT .../state/m.room.member/{userId} changes memberships through this handler."""
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    room_id = await public_room(http, alice)
    path = room_path(room_id, "state", "m.room.member", bob.user_id)
    response = await http.put(path, {"membership": "join"}, token=bob.access_token)
    assert response.status == 200, response
    response = await http.put(path, {"membership": "ban", "reason": "r"}, token=alice.access_token)
    assert response.status == 200, response
    member = await hs.room_storage.rooms.get_membership(room_id, bob.user_id)
    assert member is not None and member.membership == "ban"
    # A leave of someone banned unbans them.
    response = await http.put(path, {"membership": "leave"}, token=alice.access_token)
    assert response.status == 200, response
    member = await hs.room_storage.rooms.get_membership(room_id, bob.user_id)
    assert member is not None and member.membership == "leave"


async def test_forgotten_rooms_store(hs: HomeServer, http: TestClient) -> None:
    """A room is forgotten while the leave (or ban) it was forgotten at is the current membership."""
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    rooms = [await public_room(http, alice) for _ in range(3)]
    store = hs.room_storage.forgotten
    me = requester(bob)

    assert await store.forget(bob.user_id, rooms[0]) is None  # never a member: nothing stored
    assert await store.get_forgotten_rooms(bob.user_id) == set()
    for room_id in rooms:
        await hs.membership.update_membership(me, bob.user_id, room_id, "join")
    assert await store.forget(bob.user_id, rooms[0]) == "join"
    assert await store.get_forgotten_rooms(bob.user_id) == set()

    for room_id in rooms:
        await hs.membership.update_membership(me, bob.user_id, room_id, "leave")
    for room_id in rooms[:2]:
        assert await store.forget(bob.user_id, room_id) == "leave"
    assert await store.get_forgotten_rooms(bob.user_id) == set(rooms[:2])
    assert await store.is_forgotten(bob.user_id, rooms[0])
    assert not await store.is_forgotten(bob.user_id, rooms[2])
    assert not await store.is_forgotten(alice.user_id, rooms[0])

    # A later membership ends it; forgetting again after leaving again works.
    await hs.membership.update_membership(me, bob.user_id, rooms[0], "join")
    assert await store.get_forgotten_rooms(bob.user_id) == {rooms[1]}
    await hs.membership.update_membership(me, bob.user_id, rooms[0], "leave")
    assert not await store.is_forgotten(bob.user_id, rooms[0])
    await store.forget(bob.user_id, rooms[0])
    assert await store.get_forgotten_rooms(bob.user_id) == set(rooms[:2])
