"""Helpers for the event persistence tests: storage on a test database, events built like a peer's.

`open_room_storage(database)` gives a `RoomStorage` on a started database (both
engines), `make_persister` an `EventPersister` for the local server
`test.local`. `remote_event` builds and signs an event as the server
`remote.test` would (signatures are not checked by persistence), with exactly
the prev_events and auth_events given, so tests can shape any DAG.

`local_room` and `naive_remote_room` start rooms through the persister (a
local one created by ALICE; a remote one created by BOB, mirrored in a
`NaiveRoom`).

`NaiveRoom` is the oracle for state: it keeps every event in memory and
recomputes the state before/after each one from scratch with the pure
`resolve_state` and `check_auth_rules`, in the order the events were added.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from signedjson.key import generate_signing_key

from homeserver.clock import Clock
from homeserver.handlers.event_persistence import EventPersister, EventToPersist
from homeserver.state.auth_rules import (
    AuthError,
    auth_types_from_fields,
    check_auth_rules,
    select_auth_events,
)
from homeserver.state.loader import EventMap
from homeserver.state.resolution import resolve_state
from homeserver.storage.database import Database
from homeserver.storage.room_storage import RoomStorage, build_events_stream
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase
from homeserver.types.room_versions import V11, EventFormat, RoomVersion

LOCAL = "test.local"
LOCAL_KEY = generate_signing_key("local")
REMOTE = "remote.test"
REMOTE_KEY = generate_signing_key("remote")

ALICE = f"@alice:{LOCAL}"
BOB = f"@bob:{REMOTE}"
CAROL = f"@carol:{REMOTE}"

StateKey = tuple[str, str]


async def open_room_storage(database: Database) -> RoomStorage:
    return RoomStorage(database, await build_events_stream(database))


def make_persister(storage: RoomStorage, reactor: Any) -> EventPersister:
    return EventPersister(storage, Clock(reactor), LOCAL, LOCAL_KEY)


def count_rows(database: Database, table: str) -> Any:
    def txn(t: Any) -> int:
        t.execute(f"SELECT COUNT(*) FROM {table}")
        return int(t.fetchall()[0][0])

    return database.run_interaction(f"count_{table}", txn)


_counter = iter(range(10**9))


def remote_event(
    room_version: RoomVersion,
    room_id: str | None,
    event_type: str,
    sender: str,
    content: Mapping[str, Any],
    *,
    state_key: str | None = None,
    prevs: Sequence[str] = (),
    auth: Sequence[str] = (),
    depth: int = 1,
) -> EventBase:
    """An event as `remote.test` would send it (any sender; signed by the remote key)."""
    n = next(_counter)
    return build_event(
        room_version=room_version,
        type=event_type,
        state_key=state_key,
        sender=sender,
        content=content,
        room_id=room_id,
        prev_event_ids=list(prevs),
        auth_event_ids=list(auth),
        depth=depth,
        origin_server_ts=1_700_000_000_000 + n,
        server_name=REMOTE,
        signing_key=REMOTE_KEY,
        event_id_localpart=f"ev{n}" if room_version.event_format.format is EventFormat.V1 else None,
    )


class NaiveRoom:
    """Every event of a room in memory, with states recomputed from scratch (the test oracle)."""

    def __init__(self, room_version: RoomVersion) -> None:
        self.version = room_version
        self.events: dict[str, EventBase] = {}
        self.rejected: set[str] = set()
        self.before: dict[str, dict[StateKey, str]] = {}
        self.after: dict[str, dict[StateKey, str]] = {}
        self.room_id: str | None = None

    def state_before(self, prevs: Iterable[str]) -> dict[StateKey, str]:
        sets = [self.after[p] for p in prevs]
        event_map = EventMap(self.events.values(), self.rejected)
        return resolve_state(
            self.version, sets, event_map.fetch_event, is_rejected=event_map.is_rejected
        )

    def auth_ids(
        self,
        event_type: str,
        sender: str,
        state_key: str | None,
        content: Mapping[str, Any],
        state: Mapping[StateKey, str],
    ) -> list[str]:
        keys = auth_types_from_fields(self.version, event_type, sender, state_key, content)
        return [state[k] for k in sorted(keys) if k in state]

    def add(self, event: EventBase) -> bool:
        """Record an event (its prev_events first); returns whether the rules accept it."""
        before = self.state_before(event.prev_event_ids) if event.prev_event_ids else {}
        self.events[event.event_id] = event
        if self.room_id is None:
            self.room_id = event.room_id
        state_events = {k: self.events[v] for k, v in before.items()}
        try:
            check_auth_rules(
                self.version, event, select_auth_events(self.version, event, state_events)
            )
            accepted = True
        except AuthError:
            accepted = False
            self.rejected.add(event.event_id)
        after = dict(before)
        if accepted and event.state_key is not None:
            after[(event.type, event.state_key)] = event.event_id
        self.before[event.event_id] = before
        self.after[event.event_id] = after
        return accepted

    def make(
        self,
        event_type: str,
        sender: str,
        content: Mapping[str, Any],
        *,
        state_key: str | None = None,
        prevs: Sequence[str],
    ) -> EventBase:
        """A remote event over `prevs`, with auth_events from the state before it (not yet added)."""
        state = self.state_before(prevs)
        depth = max(self.events[p].depth for p in prevs) + 1
        auth = self.auth_ids(event_type, sender, state_key, content, state)
        return remote_event(
            self.version,
            self.room_id,
            event_type,
            sender,
            content,
            state_key=state_key,
            prevs=prevs,
            auth=auth,
            depth=depth,
        )

    def create(self, creator: str) -> EventBase:
        content: dict[str, Any] = {"room_version": self.version.identifier}
        if not self.version.auth.implicit_room_creator:
            content["creator"] = creator
        room_id = (
            None
            if self.version.event_format.format is EventFormat.V4
            else f"!naive{next(_counter)}:{REMOTE}"
        )
        event = remote_event(self.version, room_id, "m.room.create", creator, content, state_key="")
        self.add(event)
        return event


# -- rooms through the persister


async def setup_persister(database: Database, reactor: Any) -> tuple[RoomStorage, EventPersister]:
    storage = await open_room_storage(database)
    return storage, make_persister(storage, reactor)


def creator_users(version: RoomVersion, creator: str) -> dict[str, int]:
    """Power levels' `users` with the creator at 100 (v12: creators have infinite power and
    must not be listed)."""
    return {} if version.auth.creator_power else {creator: 100}


async def local_room(persister: EventPersister, version: RoomVersion = V11) -> str:
    """A room created by ALICE, who joins and sets power levels and a public join rule."""
    create = await persister.create_room(ALICE, room_version=version)
    room_id = create.room_id
    await persister.create_and_persist(
        room_id, "m.room.member", ALICE, ALICE, {"membership": "join"}
    )
    await persister.create_and_persist(
        room_id,
        "m.room.power_levels",
        "",
        ALICE,
        {"users": creator_users(version, ALICE), "state_default": 50},
    )
    await persister.create_and_persist(
        room_id, "m.room.join_rules", "", ALICE, {"join_rule": "public"}
    )
    return room_id


async def naive_remote_room(
    storage: RoomStorage, persister: EventPersister, version: RoomVersion
) -> tuple[NaiveRoom, list[str]]:
    """A remote-created room (BOB creator) persisted event by event; returns (oracle, ids in order)."""
    room = NaiveRoom(version)
    create = room.create(BOB)
    order = [create.event_id]
    head = create.event_id

    def add(
        event_type: str, sender: str, content: dict[str, Any], state_key: str | None = None
    ) -> Any:
        nonlocal head
        event = room.make(event_type, sender, content, state_key=state_key, prevs=[head])
        room.add(event)
        order.append(event.event_id)
        head = event.event_id
        return event

    add("m.room.member", BOB, {"membership": "join"}, BOB)
    add(
        "m.room.power_levels",
        BOB,
        {"users": creator_users(version, BOB), "state_default": 50, "events": {"m.room.topic": 10}},
        "",
    )
    add("m.room.join_rules", BOB, {"join_rule": "public"}, "")
    for event_id in order:
        await persister.persist([EventToPersist(room.events[event_id])])
    return room, order
