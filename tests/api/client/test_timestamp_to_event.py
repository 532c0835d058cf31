"""GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event (both engines)."""

from __future__ import annotations

from typing import Any

from homeserver.server import HomeServer
from tests.homeserver_harness import HomeServerFactory, TestClient
from tests.room_helpers import User, make_room, register, room_path, send


async def lookup(client: TestClient, room_id: str, user: User | str, **query: Any) -> Any:
    token = user if isinstance(user, str) else user.access_token
    return await client.get(
        "/_matrix/client/v1" + room_path(room_id, "timestamp_to_event"),
        token=token,
        query={k: str(v) for k, v in query.items()},
    )


async def test_closest_event_in_each_direction(homeserver: HomeServer, client: TestClient) -> None:
    alice = await register(client, "alice")
    room_id = await make_room(homeserver, alice.user_id)
    homeserver.clock.advance(60)  # type: ignore[attr-defined]
    sent = []
    for i in range(4):
        event = await send(homeserver, room_id, alice.user_id, "m.room.message", {"body": f"{i}"})
        sent.append((event.event_id, event.event.origin_server_ts))
        homeserver.clock.advance(60)  # type: ignore[attr-defined]

    async def found(ts: int, direction: str) -> tuple[str, int]:
        response = await lookup(client, room_id, alice, ts=ts, dir=direction)
        assert response.status == 200, response
        return response.json["event_id"], response.json["origin_server_ts"]

    event_id, ts = sent[1]
    assert await found(ts, "f") == sent[1]
    assert await found(ts, "b") == sent[1]
    assert await found(ts + 1, "f") == sent[2]
    assert await found(ts + 1, "b") == sent[1]
    assert await found(ts - 1, "b") == sent[0]
    assert await found(sent[-1][1] + 10**6, "b") == sent[-1]

    for ts, direction in ((sent[-1][1] + 1, "f"), (0, "b")):
        response = await lookup(client, room_id, alice, ts=ts, dir=direction)
        assert response.status == 404, response
        assert response.json["errcode"] == "M_NOT_FOUND"
        word = "forward" if direction == "f" else "backward"
        assert f"Unable to find event from {ts} in {word} direction" in response.json["error"]

    # Only under v1.
    response = await client.get(
        room_path(room_id, "timestamp_to_event"),
        token=alice.access_token,
        query={"ts": str(ts), "dir": "f"},
    )
    assert response.status == 404 and response.json["errcode"] == "M_UNRECOGNIZED"


async def test_bad_requests(homeserver_factory: HomeServerFactory) -> None:
    homeserver = await homeserver_factory.start(allow_guest_access=True)
    client = homeserver_factory.client(homeserver)
    alice = await register(client, "alice")
    stranger = await register(client, "stranger")
    room_id = await make_room(homeserver, alice.user_id)

    for query, errcode in (
        ({"dir": "f"}, "M_MISSING_PARAM"),
        ({"ts": "0"}, "M_MISSING_PARAM"),
        ({"ts": "soon", "dir": "f"}, "M_INVALID_PARAM"),
        ({"ts": "0", "dir": "sideways"}, "M_INVALID_PARAM"),
    ):
        response = await lookup(client, room_id, alice, **query)
        assert response.status == 400, (query, response)
        assert response.json["errcode"] == errcode

    response = await lookup(client, room_id, stranger, ts=0, dir="f")
    assert response.status == 403 and response.json["errcode"] == "M_FORBIDDEN"
    guest = (await client.register_guest())["access_token"]
    response = await lookup(client, room_id, guest, ts=0, dir="f")
    assert response.status == 403 and response.json["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


async def test_world_readable_rooms_are_open_to_anyone(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    stranger = await register(client, "stranger")
    room_id = await make_room(homeserver, alice.user_id, history_visibility="world_readable")
    response = await lookup(client, room_id, stranger, ts=0, dir="f")
    assert response.status == 200, response
    state = await homeserver.room_storage.state.get_current_state_ids(room_id)
    assert response.json["event_id"] == state[("m.room.create", "")]
