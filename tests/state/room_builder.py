"""A small room builder for authorization-rule tests, on top of the real `make_event`.

`RoomBuilder` keeps a room's current state and builds the next event against
it: `auth_events` chosen by the auth events selection, `prev_events` the last
event, a domain-qualified event ID in v1/v2 and the reference-hash ID from v3
(v12's room ID is then the create event's). Hashes and signatures are
placeholders: the auth rules do not verify them.

    room = make_room(V9, join_rule="invite")
    ev = room.build("m.room.member", BOB, {"membership": "join"}, state_key=BOB)
    room.check(ev)          # raises AuthError if the rules forbid it
    room.add(...)           # build, check, and apply to the state
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from homeserver.state.auth_rules import (
    auth_types_from_fields,
    check_auth_rules,
    select_auth_events,
)
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

ALICE = "@alice:a.test"  # the room's creator in `make_room`
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:a.test"
EVE = "@eve:e.test"

ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS.values())


def versions(predicate: Any = None) -> list[Any]:
    """pytest params of the room versions where `predicate(room_version)` holds."""
    import pytest

    return [
        pytest.param(v, id=f"v{v.identifier}")
        for v in ALL_VERSIONS
        if predicate is None or predicate(v)
    ]


def domain(user_id: str) -> str:
    return user_id.partition(":")[2]


class RoomBuilder:
    """Builds the events of one room in order and tracks its current state."""

    def __init__(self, room_version: RoomVersion, creator: str = ALICE) -> None:
        self.version = room_version
        self.creator = creator
        self.room_id = f"!room:{domain(creator)}"
        self.state: dict[tuple[str, str], EventBase] = {}
        self.events: list[EventBase] = []
        self._n = 0

    # -- building ---------------------------------------------------------------

    def _ref(self, event_id: str) -> Any:
        if self.version.event_format.format is EventFormat.V1:
            return [event_id, {"sha256": "placeholder"}]
        return event_id

    def build(
        self,
        event_type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        prev_events: Iterable[str] | None = None,
        auth_event_ids: Iterable[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> EventBase:
        """The next event against the current state (not applied to it)."""
        self._n += 1
        if prev_events is None:
            prev_events = [self.events[-1].event_id] if self.events else []
        if auth_event_ids is None:
            keys = auth_types_from_fields(self.version, event_type, sender, state_key, content)
            auth_event_ids = [self.state[k].event_id for k in sorted(keys) if k in self.state]
        pdu: dict[str, Any] = {
            "type": event_type,
            "sender": sender,
            "content": dict(content),
            "origin_server_ts": 1_700_000_000_000 + self._n,
            "depth": self._n,
            "prev_events": [self._ref(e) for e in prev_events],
            "auth_events": [self._ref(e) for e in auth_event_ids],
            "hashes": {"sha256": "placeholder"},
            "signatures": {domain(sender): {"ed25519:test": "placeholder"}},
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        v12_create = (
            self.version.event_format.format is EventFormat.V4 and event_type == "m.room.create"
        )
        if not v12_create:
            pdu["room_id"] = self.room_id
        if self.version.event_format.format is EventFormat.V1:
            pdu["event_id"] = f"${self._n}:{domain(sender)}"
        pdu.update(extra or {})
        return make_event(pdu, self.version)

    def apply(self, event: EventBase) -> EventBase:
        """Append the event to the room; a state event replaces its key in the state.

        Applying a v12 create event sets the room ID (the create event's ID with `!`).
        """
        if event.type == "m.room.create":
            self.room_id = event.room_id
        if event.state_key is not None:
            self.state[(event.type, event.state_key)] = event
        self.events.append(event)
        return event

    def auth_map(self, event: EventBase) -> dict[tuple[str, str], EventBase]:
        """The state entries the rules read for `event` (incl. the v12 create event)."""
        return select_auth_events(self.version, event, self.state)

    def check(self, event: EventBase) -> None:
        """Check the event against the current state; AuthError if it is not allowed."""
        check_auth_rules(self.version, event, self.auth_map(event))

    def add(
        self,
        event_type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        **kwargs: Any,
    ) -> EventBase:
        """Build, check (must be allowed) and apply an event."""
        event = self.build(event_type, sender, content, state_key, **kwargs)
        self.check(event)
        return self.apply(event)

    # -- common events ----------------------------------------------------------

    def create(
        self, content: Mapping[str, Any] | None = None, sender: str | None = None
    ) -> EventBase:
        sender = sender or self.creator
        body: dict[str, Any] = {"room_version": self.version.identifier}
        if not self.version.auth.implicit_room_creator:
            body["creator"] = sender
        body.update(content or {})
        return self.add("m.room.create", sender, body, "")

    def member(self, sender: str, target: str, membership: str, **content: Any) -> EventBase:
        """Build (not apply) an m.room.member event."""
        return self.build("m.room.member", sender, {"membership": membership, **content}, target)

    def set_member(self, sender: str, target: str, membership: str, **content: Any) -> EventBase:
        return self.add("m.room.member", sender, {"membership": membership, **content}, target)

    def join(self, user: str, **content: Any) -> EventBase:
        return self.set_member(user, user, "join", **content)

    def invite(self, sender: str, target: str) -> EventBase:
        return self.set_member(sender, target, "invite")

    def set_power_levels(self, content: Mapping[str, Any], sender: str | None = None) -> EventBase:
        return self.add("m.room.power_levels", sender or self.creator, content, "")

    def set_join_rule(self, join_rule: str, sender: str | None = None, **content: Any) -> EventBase:
        return self.add(
            "m.room.join_rules", sender or self.creator, {"join_rule": join_rule, **content}, ""
        )

    def redaction(self, sender: str, redacts: str) -> EventBase:
        """Build (not apply) an m.room.redaction of `redacts`, in this version's format."""
        if self.version.event_format.redacts_in_content:
            return self.build("m.room.redaction", sender, {"redacts": redacts})
        return self.build("m.room.redaction", sender, {}, extra={"redacts": redacts})


def power_levels_content(
    room_version: RoomVersion,
    creator: str = ALICE,
    users: Mapping[str, Any] | None = None,
    **rest: Any,
) -> dict[str, Any]:
    """Power levels giving `creator` 100 (left out from v12, where creators may not be listed)."""
    listed: dict[str, Any] = {}
    if not room_version.auth.creator_power:
        listed[creator] = 100
    listed.update(users or {})
    return {"users": listed, **rest}


def make_room(
    room_version: RoomVersion,
    *,
    creator: str = ALICE,
    join_rule: str | None = "public",
    users: Mapping[str, Any] | None = None,
    power_levels: Mapping[str, Any] | None = None,
    create_content: Mapping[str, Any] | None = None,
    members: Iterable[str] = (),
    **levels: Any,
) -> RoomBuilder:
    """A room after its usual first events: create, creator's join, power levels, join rules.

    `users` and other keyword arguments (`ban=`, `events=`, ...) add to the
    default power levels; `power_levels` replaces them. `members` join
    afterwards (invited first unless the room is public).
    """
    room = RoomBuilder(room_version, creator)
    room.create(create_content)
    room.join(creator)
    if power_levels is None:
        power_levels = power_levels_content(room_version, creator, users, **levels)
    room.set_power_levels(power_levels)
    if join_rule is not None:
        room.set_join_rule(join_rule)
    for user in members:
        if join_rule != "public":
            room.invite(creator, user)
        room.join(user)
    return room
