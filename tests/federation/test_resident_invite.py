"""Other servers inviting our users: PUT /v2/invite over signed HTTP, and the invite in /sync (both engines)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.crypto.x_matrix import sign_request
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, V11, EventFormat, RoomVersion
from tests.federation.test_receiver_harness import Harness, running_harness
from tests.homeserver_harness import HomeServerFactory, Response

FED2 = "/_matrix/federation/v2"
V12 = KNOWN_ROOM_VERSIONS["12"]


@pytest.fixture
def fed(homeserver_factory: HomeServerFactory, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor)


class RemoteRoom:
    """A room only the remote is in: its create event, bob's join, and events over them."""

    def __init__(self, fed: Harness, version: RoomVersion = V11) -> None:
        self.fed = fed
        self.version = version
        self._ts = fed.hs.clock.time_msec()
        content: dict[str, Any] = {"room_version": version.identifier}
        if not version.auth.implicit_room_creator:
            content["creator"] = fed.bob
        room_id = (
            None if version.event_format.format is EventFormat.V4 else f"!far:{fed.remote.name}"
        )
        self.create = self.event("m.room.create", "", content, [], room_id=room_id)
        self.room_id = self.create.room_id
        self.join = self.event("m.room.member", fed.bob, {"membership": "join"}, [self.create])

    def event(
        self,
        event_type: str,
        state_key: str | None,
        content: dict[str, Any],
        over: list[EventBase],
        *,
        sender: str | None = None,
        room_id: str | None = None,
        key: Any = None,
    ) -> EventBase:
        self._ts += 1
        auth = [] if event_type == "m.room.create" else [self.create, *over[1:]]
        if self.version.auth.room_id_from_create_event:
            auth = [e for e in auth if e.type != "m.room.create"]
        return build_event(
            room_version=self.version,
            type=event_type,
            state_key=state_key,
            sender=sender or self.fed.bob,
            content=content,
            room_id=room_id if event_type == "m.room.create" else self.room_id,
            prev_event_ids=[over[-1].event_id] if over else [],
            auth_event_ids=[e.event_id for e in auth],
            depth=len(over) + 1,
            origin_server_ts=self._ts,
            server_name=self.fed.remote.name,
            signing_key=key or self.fed.remote.signing_key,
            event_id_localpart=f"e{self._ts}",
        )

    def invite(self, target: str, **kwargs: Any) -> EventBase:
        return self.event(
            "m.room.member", target, {"membership": "invite"}, [self.create, self.join], **kwargs
        )


async def put_invite(fed: Harness, room_id: str, event_id: str, body: Any) -> Response:
    uri = f"{FED2}/invite/{quote(room_id, safe='')}/{quote(event_id, safe='')}"
    header = sign_request(fed.remote.signing_key, fed.remote.name, "test", "PUT", uri, body)
    return await fed.client.put(uri, body, headers={"Authorization": header})


def invite_body(room: RemoteRoom, invite: EventBase, **extra: Any) -> dict[str, Any]:
    return {
        "room_version": room.version.identifier,
        "event": invite.pdu_json(),
        "invite_room_state": [room.create.pdu_json(), room.join.pdu_json()],
        **extra,
    }


@pytest.mark.parametrize("version", [V11, V12], ids=["v11", "v12"])
async def test_an_invite_from_a_remote_room_reaches_sync(
    fed: Harness, version: RoomVersion
) -> None:
    """We sign the invite and answer with it; it is stored as an outlier, and the invitee's
    /sync (incremental and initial) shows it with the room's stripped state."""
    dave = await fed.client.register("dave")
    first = await fed.client.get("/sync", token=dave["access_token"])
    room = RemoteRoom(fed, version)
    invite = room.invite(dave["user_id"])

    answer = await put_invite(fed, room.room_id, invite.event_id, invite_body(room, invite))
    assert answer.status == 200, answer
    signed = answer.json["event"]
    assert set(signed["signatures"]) == {"test", fed.remote.name}
    assert make_event(signed, version).event_id == invite.event_id
    stored = await fed.stored(invite.event_id)
    assert stored is not None and stored.outlier

    since = first.json["next_batch"]
    for query in ({"since": since}, {}):
        synced = await fed.client.get("/sync", token=dave["access_token"], query=query)
        invited = synced.json["rooms"]["invite"][room.room_id]["invite_state"]["events"]
        assert [(e["type"], e["state_key"]) for e in invited] == [
            ("m.room.create", ""),
            ("m.room.member", fed.bob),
            ("m.room.member", dave["user_id"]),
        ]
        assert invited[-1]["content"] == {"membership": "invite"}
        assert invited[-1]["sender"] == fed.bob


async def test_invite_refusals(fed: Harness) -> None:
    """Unknown version 400 naming it; not one of our users 400; a bad signature 400; not an
    invite 400: nothing stored."""
    dave = (await fed.client.register("dave"))["user_id"]
    room = RemoteRoom(fed)
    invite = room.invite(dave)

    unknown = await put_invite(
        fed, room.room_id, invite.event_id, invite_body(room, invite, room_version="999")
    )
    assert (unknown.status, unknown.json["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    assert unknown.json["room_version"] == "999"

    for target in ("@dave:elsewhere.example", "@nobody:test"):
        other = room.invite(target)
        answer = await put_invite(fed, room.room_id, other.event_id, invite_body(room, other))
        assert (answer.status, answer.json["errcode"]) == (400, "M_INVALID_PARAM"), target

    from signedjson.key import generate_signing_key

    forged = room.invite(dave, key=generate_signing_key("remote"))
    answer = await put_invite(fed, room.room_id, forged.event_id, invite_body(room, forged))
    assert (answer.status, answer.json["errcode"]) == (400, "M_INVALID_PARAM")

    joined = room.event("m.room.member", dave, {"membership": "join"}, [room.create, room.join])
    answer = await put_invite(fed, room.room_id, joined.event_id, invite_body(room, joined))
    assert (answer.status, answer.json["errcode"]) == (400, "M_INVALID_PARAM")

    for event in (invite, forged, joined):
        assert await fed.stored(event.event_id) is None
    synced = await fed.client.get(
        "/sync", token=(await fed.client.register("erin"))["access_token"]
    )
    assert "invite" not in synced.json.get("rooms", {})


async def test_invite_room_state_needs_the_create_event_from_v12(fed: Harness) -> None:
    """v12: invite_room_state without the m.room.create event is 400 M_MISSING_PARAM; in
    v11 (still migrating) it is only warned about."""
    dave = (await fed.client.register("dave"))["user_id"]
    strict = RemoteRoom(fed, V12)
    invite = strict.invite(dave)
    body = invite_body(strict, invite, invite_room_state=[strict.join.pdu_json()])
    answer = await put_invite(fed, strict.room_id, invite.event_id, body)
    assert (answer.status, answer.json["errcode"]) == (400, "M_MISSING_PARAM")
    assert await fed.stored(invite.event_id) is None

    lenient = RemoteRoom(fed, V11)
    invite = lenient.invite(dave)
    body = invite_body(lenient, invite, invite_room_state=[{"type": "m.room.name"}])
    answer = await put_invite(fed, lenient.room_id, invite.event_id, body)
    assert answer.status == 200, answer


async def test_an_invite_to_a_room_we_are_in_comes_with_the_transaction(fed: Harness) -> None:
    """In a room one of our users is joined to, the invite is signed but stored only when
    the inviting server sends it in a transaction; the room's ACL applies."""
    dave = (await fed.client.register("dave"))["user_id"]
    invite = fed.remote.event(
        "m.room.member", {"membership": "invite"}, sender=fed.bob, state_key=dave, record=False
    )
    body = {"room_version": "11", "event": invite.pdu_json(), "invite_room_state": []}
    answer = await put_invite(fed, fed.room_id, invite.event_id, body)
    assert answer.status == 200, answer
    assert await fed.stored(invite.event_id) is None

    signed = make_event(answer.json["event"], V11)
    assert (await fed.send(signed)) == {invite.event_id: {}}
    member = await fed.hs.room_storage.rooms.get_membership(fed.room_id, dave)
    assert member is not None and member.membership == "invite"

    await fed.local("m.room.server_acl", {"allow": ["*"], "deny": ["127.0.0.1"]}, "")
    again = await put_invite(fed, fed.room_id, invite.event_id, body)
    assert (again.status, again.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_an_out_of_band_membership_does_not_replace_a_newer_one(fed: Harness) -> None:
    """The invite becomes the user's membership only over an older row: a membership the
    room's state gave later (a join) stays."""
    sync_store = fed.hs.storage.sync
    rooms = fed.hs.room_storage.rooms
    bob_now = await rooms.get_membership(fed.room_id, fed.bob)
    assert bob_now is not None and bob_now.membership == "join"
    await sync_store.record_out_of_band_membership(
        fed.room_id, fed.bob, "invite", "$older", bob_now.stream_ordering - 1
    )
    assert await rooms.get_membership(fed.room_id, fed.bob) == bob_now
    await sync_store.record_out_of_band_membership(
        fed.room_id, fed.bob, "invite", "$newer", bob_now.stream_ordering + 1
    )
    newer = await rooms.get_membership(fed.room_id, fed.bob)
    assert newer is not None and (newer.membership, newer.event_id) == ("invite", "$newer")
