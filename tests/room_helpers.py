"""Rooms for tests, made through the event persister of a running HomeServer.

    room_id = await make_room(hs, "@alice:test")                 # alice creates and joins
    await join(hs, room_id, "@bob:test")                         # public rooms: anyone joins
    await send(hs, room_id, "@bob:test", "m.room.message", {"body": "hi"})
    await set_state(hs, room_id, "@alice:test", "m.room.history_visibility",
                    {"history_visibility": "joined"})

`make_room` sets power levels (the creator at 100, or nothing listed for v12,
whose creators have infinite power; `users` adds more), a join rule
(`public` by default) and, if given, a history visibility.

`remote_event` builds an event as the server `REMOTE` would send it, at
the head of the room (prev_events: the forward extremities; auth_events: from
the current state), for `hs.event_persister.persist([EventToPersist(...)])`.

`register(client, name)` registers a user over HTTP and returns a `User` with
its ID, access token and device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from signedjson.key import generate_signing_key
from unpaddedbase64 import encode_base64

from homeserver.handlers.event_persistence import EventToPersist, PersistedEvent
from homeserver.server import HomeServer
from homeserver.state.auth_rules import auth_types_from_fields
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase
from homeserver.types.hashing import compute_reference_hash
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, V11, EventFormat, RoomVersion
from tests.homeserver_harness import TestClient

# An IP literal, so that the federation sender's attempts to reach the "remote"
# server fail at once without a DNS lookup (the test machine may have no DNS).
REMOTE = "127.0.0.1:1"
REMOTE_KEY = generate_signing_key("remote")


@dataclass(frozen=True)
class User:
    user_id: str
    access_token: str
    device_id: str


def room_path(room_id: str, *segments: str) -> str:
    """`/rooms/{roomId}/...` with every segment percent-encoded (IDs hold `!`, `$`, `:`, `/`)."""
    return "/rooms/" + "/".join(quote(s, safe="") for s in (room_id, *segments))


async def register(client: TestClient, name: str, **params: Any) -> User:
    body = await client.register(name, **params)
    return User(body["user_id"], body["access_token"], body["device_id"])


def _power_users(version: RoomVersion, creator: str, users: Mapping[str, int]) -> dict[str, int]:
    listed = dict(users)
    if not version.auth.creator_power:
        listed.setdefault(creator, 100)
    return listed


async def make_room(
    hs: HomeServer,
    creator: str,
    *,
    version: RoomVersion = V11,
    join_rule: str = "public",
    history_visibility: str | None = None,
    users: Mapping[str, int] | None = None,
    power_levels: Mapping[str, Any] | None = None,
) -> str:
    """A room created and joined by `creator`; its ID."""
    persister = hs.event_persister
    create = await persister.create_room(creator, room_version=version)
    room_id = create.room_id
    await persister.create_and_persist(
        room_id, "m.room.member", creator, creator, {"membership": "join"}
    )
    levels: dict[str, Any] = {"users": _power_users(version, creator, users or {})}
    levels.update(power_levels or {})
    await persister.create_and_persist(room_id, "m.room.power_levels", "", creator, levels)
    await persister.create_and_persist(
        room_id, "m.room.join_rules", "", creator, {"join_rule": join_rule}
    )
    if history_visibility is not None:
        await set_state(
            hs,
            room_id,
            creator,
            "m.room.history_visibility",
            {"history_visibility": history_visibility},
        )
    return room_id


async def set_state(
    hs: HomeServer,
    room_id: str,
    sender: str,
    event_type: str,
    content: Mapping[str, Any],
    state_key: str = "",
) -> PersistedEvent:
    return await hs.event_persister.create_and_persist(
        room_id, event_type, state_key, sender, content
    )


async def send(
    hs: HomeServer, room_id: str, sender: str, event_type: str, content: Mapping[str, Any]
) -> PersistedEvent:
    return await hs.event_persister.create_and_persist(room_id, event_type, None, sender, content)


async def set_membership(
    hs: HomeServer,
    room_id: str,
    sender: str,
    target: str,
    membership: str,
    **content: Any,
) -> PersistedEvent:
    return await set_state(
        hs, room_id, sender, "m.room.member", {"membership": membership, **content}, target
    )


async def join(hs: HomeServer, room_id: str, user_id: str, **content: Any) -> PersistedEvent:
    return await set_membership(hs, room_id, user_id, user_id, "join", **content)


async def leave(hs: HomeServer, room_id: str, user_id: str) -> PersistedEvent:
    return await set_membership(hs, room_id, user_id, user_id, "leave")


async def invite(hs: HomeServer, room_id: str, sender: str, target: str) -> PersistedEvent:
    return await set_membership(hs, room_id, sender, target, "invite")


async def remote_event(
    hs: HomeServer,
    room_id: str,
    event_type: str,
    sender: str,
    content: Mapping[str, Any],
    *,
    state_key: str | None = None,
    redacts: str | None = None,
) -> EventBase:
    """An event from the server `REMOTE` at the head of the room (not stored)."""
    storage = hs.room_storage
    room = await storage.rooms.get_room(room_id)
    assert room is not None
    room_version = KNOWN_ROOM_VERSIONS[room.room_version]
    heads = await storage.events.get_forward_extremities(room_id)
    state = await storage.state.get_current_state_ids(room_id)
    keys = auth_types_from_fields(room_version, event_type, sender, state_key, content)
    auth_ids = [state[k] for k in sorted(keys) if k in state]
    hashes: dict[str, dict[str, str]] = {}
    if room_version.event_format.format is EventFormat.V1:
        referenced = await storage.events.get_events([*heads, *auth_ids])
        hashes = {
            i: {"sha256": encode_base64(compute_reference_hash(room_version, e.pdu_json()))}
            for i, e in referenced.items()
        }
    return build_event(
        room_version=room_version,
        type=event_type,
        state_key=state_key,
        sender=sender,
        content=content,
        room_id=room_id,
        prev_event_ids=sorted(heads),
        auth_event_ids=auth_ids,
        depth=max(heads.values()) + 1,
        origin_server_ts=hs.clock.time_msec(),
        server_name=REMOTE,
        signing_key=REMOTE_KEY,
        redacts=redacts,
        reference_hashes=hashes,
    )


async def persist_remote(hs: HomeServer, event: EventBase) -> PersistedEvent:
    (persisted,) = await hs.event_persister.persist([EventToPersist(event)])
    return persisted
