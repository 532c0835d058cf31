"""20 clients sending into one room at once, over HTTP (both engines): nothing lost, no fork."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from homeserver.server import HomeServer
from tests.homeserver_harness import NO_LIMIT, HomeServerFactory
from tests.room_helpers import register, room_path

CLIENTS = 20
MESSAGES_EACH = 5


async def test_twenty_concurrent_senders_keep_one_head_and_lose_nothing(
    homeserver_factory: HomeServerFactory,
) -> None:
    hs: HomeServer = await homeserver_factory.start(rc_message=NO_LIMIT)
    client = homeserver_factory.client(hs)
    users = [await register(client, f"sender{i}") for i in range(CLIENTS)]
    created = await client.post(
        "/createRoom", {"preset": "public_chat"}, token=users[0].access_token
    )
    assert created.status == 200, created
    room_id = created.json["room_id"]
    for user in users[1:]:
        joined = await client.post(room_path(room_id, "join"), {}, token=user.access_token)
        assert joined.status == 200, joined

    async def send_all(index: int) -> list[str]:
        event_ids = []
        for n in range(MESSAGES_EACH):
            sent = await client.put(
                room_path(room_id, "send", "m.room.message", f"t{n}"),
                {"msgtype": "m.text", "body": f"{index}.{n}"},
                token=users[index].access_token,
            )
            assert sent.status == 200, sent
            event_ids.append(sent.json["event_id"])
        return event_ids

    sent_lists: list[list[str]] = await defer.gatherResults(
        [defer.ensureDeferred(send_all(i)) for i in range(CLIENTS)]
    )
    acknowledged = {event_id for ids in sent_lists for event_id in ids}
    assert len(acknowledged) == CLIENTS * MESSAGES_EACH

    # One head: every local event pointed at the one before it.
    assert len(await hs.room_storage.events.get_forward_extremities(room_id)) == 1
    page: Any = await client.get(
        room_path(room_id, "messages") + "?dir=b&limit=200", token=users[0].access_token
    )
    assert page.status == 200, page
    messages = [e for e in page.json["chunk"] if e["type"] == "m.room.message"]
    assert {e["event_id"] for e in messages} == acknowledged
    # Each sender's own messages are in the order it sent them.
    for index in range(CLIENTS):
        bodies = [e["content"]["body"] for e in reversed(messages) if e["sender"] == users[index].user_id]
        assert bodies == [f"{index}.{n}" for n in range(MESSAGES_EACH)]
