"""GET /sync long-polling: woken within milliseconds by what concerns the user (both engines).

Times are read from the server's clock (the reactor's, plus a test offset
that stays put here).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet import defer

from homeserver.server import HomeServer
from tests.api.client.sync_helpers import bodies, sync
from tests.homeserver_harness import HomeServerFactory, Response, TestClient
from tests.room_helpers import invite, join, make_room, register, send

WAKE_WITHIN_SECONDS = 0.1


def start_sync(
    client: TestClient, token: str, since: str, timeout_ms: int = 30_000
) -> defer.Deferred[Response]:
    return defer.ensureDeferred(
        client.get("/sync", token=token, query={"since": since, "timeout": str(timeout_ms)})
    )


async def until_waiting(homeserver: HomeServer, count: int = 1) -> None:
    """Let the request reach the notifier (it is waiting once registered there)."""
    for _ in range(500):
        if homeserver.notifier.waiting_count() >= count:
            return
        await homeserver.clock.sleep(0.005)
    raise AssertionError("the sync never started waiting")


async def test_a_new_message_wakes_a_waiting_sync(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    first = await sync(client, alice.access_token)
    pending = start_sync(client, alice.access_token, first["next_batch"])
    await until_waiting(homeserver)
    assert not pending.called
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "wake up"})
    committed_at = homeserver.clock.time()
    response = await pending
    elapsed = homeserver.clock.time() - committed_at
    assert response.status == 200, response
    assert elapsed < WAKE_WITHIN_SECONDS, f"woke after {elapsed * 1000:.1f} ms"
    assert bodies(response.json["rooms"]["join"][room_id]) == ["wake up"]


async def test_an_invite_wakes_the_invitee(homeserver: HomeServer, client: TestClient) -> None:
    """The invitee's sync did not follow the room; the membership event wakes it anyway."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    first = await sync(client, bob.access_token)
    pending = start_sync(client, bob.access_token, first["next_batch"])
    await until_waiting(homeserver)
    await invite(homeserver, room_id, alice.user_id, bob.user_id)
    committed_at = homeserver.clock.time()
    response = await pending
    assert homeserver.clock.time() - committed_at < WAKE_WITHIN_SECONDS
    assert room_id in response.json["rooms"]["invite"]


async def test_an_account_data_change_wakes_a_waiting_sync(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    first = await sync(client, alice.access_token)
    pending = start_sync(client, alice.access_token, first["next_batch"])
    await until_waiting(homeserver)
    path = "/user/" + quote(alice.user_id, safe="") + "/account_data/org.example.x"
    put = await client.put(path, {"v": 1}, token=alice.access_token)
    assert put.status == 200
    answered_at = homeserver.clock.time()
    response = await pending
    assert homeserver.clock.time() - answered_at < WAKE_WITHIN_SECONDS
    assert response.json["account_data"]["events"] == [
        {"type": "org.example.x", "content": {"v": 1}}
    ]


async def test_other_rooms_and_users_do_not_wake_it(
    homeserver: HomeServer, client: TestClient
) -> None:
    """Events bob cannot see, or another user's account data, leave his sync waiting;
    after the timeout it answers with nothing but a (newer) next_batch."""
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    room_id = await make_room(homeserver, alice.user_id)
    first = await sync(client, bob.access_token)
    started_at = homeserver.clock.time()
    pending = start_sync(client, bob.access_token, first["next_batch"], timeout_ms=400)
    await until_waiting(homeserver)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "not for bob"})
    path = "/user/" + quote(alice.user_id, safe="") + "/account_data/org.example.x"
    await client.put(path, {}, token=alice.access_token)
    await homeserver.clock.sleep(0.05)
    assert not pending.called
    response = await pending
    assert homeserver.clock.time() - started_at >= 0.4
    assert set(response.json) == {"next_batch"}
    assert response.json["next_batch"] != first["next_batch"]


async def test_sync_returns_at_once_when_something_is_already_there(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    first = await sync(client, alice.access_token)
    await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": "already"})
    started_at = homeserver.clock.time()
    response = await start_sync(client, alice.access_token, first["next_batch"])
    assert homeserver.clock.time() - started_at < 1
    assert bodies(response.json["rooms"]["join"][room_id]) == ["already"]


async def test_many_waiting_syncs_are_all_woken(homeserver: HomeServer, client: TestClient) -> None:
    """Every member's waiting sync (several devices of one user too) returns the new event."""
    users: list[Any] = [await register(client, f"user{n}") for n in range(4)]
    room_id = await make_room(homeserver, users[0].user_id)
    for user in users[1:]:
        await join(homeserver, room_id, user.user_id)
    second_device = (await client.login("user1"))["access_token"]
    tokens = [u.access_token for u in users] + [second_device]
    sinces = [(await sync(client, t))["next_batch"] for t in tokens]
    pending = [start_sync(client, t, s) for t, s in zip(tokens, sinces, strict=True)]
    await until_waiting(homeserver, len(pending))
    await send(homeserver, room_id, users[2].user_id, "m.room.message", {"body": "all"})
    for response in await defer.gatherResults(pending):
        assert bodies(response.json["rooms"]["join"][room_id]) == ["all"]
    assert homeserver.notifier.waiting_count() == 0


async def test_shutdown_answers_waiting_syncs(homeserver_factory: HomeServerFactory) -> None:
    """Stopping the server answers long-polls at once instead of waiting out the drain."""
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    first = await sync(client, alice.access_token)
    pending = start_sync(client, alice.access_token, first["next_batch"])
    await until_waiting(hs)
    stopping_at = hs.clock.time()
    await homeserver_factory.stop(hs)
    response = await pending
    assert response.status == 200 and set(response.json) == {"next_batch"}
    assert hs.clock.time() - stopping_at < 2
