"""matrix-nio in a room against a server on 127.0.0.1 (both database engines).

Two nio clients, alice and bob, each in its own asyncio loop in a worker
thread while the server answers on the test's Twisted reactor. alice creates
a room and invites bob; bob learns of the invite from /sync (nio parses its
stripped state) and joins; they take turns sending, each waiting to see the
other's message come down /sync; bob pages back through /messages from his
latest sync token; alice redacts one of bob's messages and bob sees the
redaction in /sync, then the event served pruned by GET /event and /messages.
Everything nio receives also passes nio's own response schemas. The same
scenario runs against Synapse as the reference for what the test expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import threads

from benchmarks.servers import SynapseServer
from tests.homeserver_harness import NO_LIMIT
from tests.server_process import free_port

PASSWORD = "nio rooms password"
ROUNDS = 3
# Each long-poll lasts at most this; a step that needs more polls than
# SYNC_ATTEMPTS has failed.
SYNC_TIMEOUT_MS = 3000
SYNC_ATTEMPTS = 5


async def _register(base_url: str, name: str) -> Any:
    import nio

    client = nio.AsyncClient(base_url, name)
    registered = await client.register(name, PASSWORD, device_name=f"nio {name}")
    assert isinstance(registered, nio.RegisterResponse), registered
    assert client.access_token == registered.access_token
    return client


class _Watcher:
    """One client's view through /sync: every timeline event of the room, in the order received."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.timeline: list[Any] = []

    async def sync_until(self, room_id: str, found: Callable[[Any], Any], what: str) -> Any:
        import nio

        for _ in range(SYNC_ATTEMPTS):
            response = await self.client.sync(timeout=SYNC_TIMEOUT_MS)
            assert isinstance(response, nio.SyncResponse), response
            joined = response.rooms.join.get(room_id)
            if joined is not None:
                self.timeline += joined.timeline.events
            result = found(response)
            if result:
                return result
        # nio turns events it cannot parse into BadEvent: the kinds received say what went wrong.
        kinds = [type(e).__name__ for e in self.timeline[-10:]]
        raise AssertionError(f"{self.client.user_id} never saw {what} through /sync; last received: {kinds}")

    async def catch_up(self) -> None:
        import nio

        response = await self.client.sync(timeout=0)
        assert isinstance(response, nio.SyncResponse), response
        for room in response.rooms.join.values():
            self.timeline += room.timeline.events

    def message_bodies(self) -> list[str]:
        import nio

        return [e.body for e in self.timeline if isinstance(e, nio.RoomMessageText)]


def _has_message(room_id: str, body: str) -> Callable[[Any], Any]:
    import nio

    def found(response: Any) -> Any:
        room = response.rooms.join.get(room_id)
        events = room.timeline.events if room else []
        return [e for e in events if isinstance(e, nio.RoomMessageText) and e.body == body]

    return found


async def _paginate_back(client: Any, room_id: str, start: str, limit: int) -> list[Any]:
    """/messages backwards from `start`, chaining `end` tokens until the room's start."""
    import nio

    events: list[Any] = []
    token = start
    for _ in range(100):
        page = await client.room_messages(room_id, start=token, limit=limit, direction=nio.MessageDirection.back)
        assert isinstance(page, nio.RoomMessagesResponse), page
        events += page.chunk
        if not page.chunk or page.end is None:
            return events
        token = page.end
    raise AssertionError("/messages did not reach the start of the room in 100 pages")


async def _scenario(base_url: str) -> dict[str, Any]:
    import nio

    seen: dict[str, Any] = {}
    alice = await _register(base_url, "alice")
    bob = await _register(base_url, "bob")
    try:
        alice_view, bob_view = _Watcher(alice), _Watcher(bob)
        await alice_view.catch_up()
        await bob_view.catch_up()

        created = await alice.room_create(name="nio room", preset=nio.RoomPreset.private_chat)
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        invited = await alice.room_invite(room_id, bob.user_id)
        assert isinstance(invited, nio.RoomInviteResponse), invited

        def invite_seen(response: Any) -> Any:
            return response.rooms.invite.get(room_id)

        invite = await bob_view.sync_until(room_id, invite_seen, "the invite")
        seen["invite_state"] = sorted(
            (e.source["type"], e.source.get("state_key", "")) for e in invite.invite_state
        )
        seen["invited_room_name"] = bob.invited_rooms[room_id].name
        joined = await bob.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        seen["joined_room_id"] = joined.room_id

        def bob_join_seen(response: Any) -> Any:
            room = response.rooms.join.get(room_id)
            events = room.timeline.events if room else []
            return [
                e
                for e in events
                if isinstance(e, nio.RoomMemberEvent) and e.state_key == bob.user_id and e.membership == "join"
            ]

        await alice_view.sync_until(room_id, bob_join_seen, "bob's join")
        seen["alice_members"] = sorted(alice.rooms[room_id].users)

        sent: dict[str, str] = {}
        for i in range(ROUNDS):
            for sender, receiver in ((alice, bob_view), (bob, alice_view)):
                body = f"{sender.user} says {i}"
                response = await sender.room_send(
                    room_id, "m.room.message", {"msgtype": "m.text", "body": body}, tx_id=f"t{i}"
                )
                assert isinstance(response, nio.RoomSendResponse), response
                sent[body] = response.event_id
                (received,) = await receiver.sync_until(room_id, _has_message(room_id, body), body)
                assert received.event_id == response.event_id
        await alice_view.catch_up()
        await bob_view.catch_up()
        seen["sent"] = list(sent)
        seen["alice_saw"] = alice_view.message_bodies()
        seen["bob_saw"] = bob_view.message_bodies()

        history = await _paginate_back(bob, room_id, bob.next_batch, limit=3)
        chronological = list(reversed(history))
        seen["history_messages"] = [e.body for e in chronological if isinstance(e, nio.RoomMessageText)]
        seen["history_first"] = type(chronological[0]).__name__ if chronological else None
        seen["history_ids_unique"] = len({e.event_id for e in history}) == len(history)

        target = sent["bob says 1"]
        redacted = await alice.room_redact(room_id, target, reason="nio test")
        assert isinstance(redacted, nio.RoomRedactResponse), redacted
        seen["redaction_id"] = redacted.event_id

        def redaction_seen(response: Any) -> Any:
            room = response.rooms.join.get(room_id)
            events = room.timeline.events if room else []
            return [e for e in events if isinstance(e, nio.RedactionEvent) and e.redacts == target]

        (redaction,) = await bob_view.sync_until(room_id, redaction_seen, "the redaction")
        seen["redaction_seen"] = (redaction.event_id, redaction.sender, redaction.reason)

        fetched = await bob.room_get_event(room_id, target)
        assert isinstance(fetched, nio.RoomGetEventResponse), fetched
        seen["fetched_type"] = type(fetched.event).__name__
        seen["fetched_content"] = fetched.event.source.get("content")
        seen["fetched_redacted_because"] = (
            fetched.event.source.get("unsigned", {}).get("redacted_because", {}).get("event_id")
        )
        after = await _paginate_back(bob, room_id, bob.next_batch, limit=50)
        in_history = [e for e in after if e.event_id == target]
        seen["history_after_redaction"] = [type(e).__name__ for e in in_history]
        seen["history_messages_after_redaction"] = [
            e.body for e in reversed(after) if isinstance(e, nio.RoomMessageText)
        ]
    finally:
        await alice.close()
        await bob.close()
    return seen


def _check(seen: dict[str, Any], server_name: str) -> None:
    alice, bob = f"@alice:{server_name}", f"@bob:{server_name}"
    # bob learned of the invite from /sync, with the room's stripped state (nio
    # keeps only the member, name and alias events of it).
    assert ("m.room.member", bob) in seen["invite_state"]
    assert ("m.room.name", "") in seen["invite_state"]
    assert seen["invited_room_name"] == "nio room"
    assert seen["alice_members"] == [alice, bob]

    expected = [f"{name} says {i}" for i in range(ROUNDS) for name in ("alice", "bob")]
    assert seen["sent"] == expected
    # Each saw every message (its own and the other's) through /sync, in order.
    assert seen["alice_saw"] == expected
    assert seen["bob_saw"] == expected

    # Paging back from bob's latest token: the whole conversation in order, down to the create event.
    assert seen["history_messages"] == expected
    assert seen["history_first"] == "RoomCreateEvent"
    assert seen["history_ids_unique"]

    assert seen["redaction_seen"] == (seen["redaction_id"], alice, "nio test")
    assert seen["fetched_type"] == "RedactedEvent"
    assert seen["fetched_content"] == {}
    assert seen["fetched_redacted_because"] == seen["redaction_id"]
    assert seen["history_after_redaction"] == ["RedactedEvent"]
    assert seen["history_messages_after_redaction"] == [b for b in expected if b != "bob says 1"]


async def test_nio_clients_create_invite_join_talk_paginate_and_redact(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(rc_message=NO_LIMIT)
    base_url = homeserver_factory.client(hs).base_url
    seen = await threads.deferToThread(asyncio.run, _scenario(base_url))
    _check(seen, "test")


async def test_the_same_scenario_passes_against_synapse(synapse_venv: Path, tmp_path: Path) -> None:
    """The reference: what this test expects is what nio sees from Synapse."""
    synapse = SynapseServer(tmp_path / "synapse", free_port(), ("sqlite3", {"database": str(tmp_path / "synapse.db")}))
    await threads.deferToThread(synapse.start)
    try:
        seen = await threads.deferToThread(asyncio.run, _scenario(synapse.base_url))
    finally:
        await threads.deferToThread(synapse.stop)
    _check(seen, "localhost")
