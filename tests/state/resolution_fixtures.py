"""Fixtures for the state resolution tests: the ruma DAG vectors and a room builder.

- `load_ruma_case(name)` reads one case of `ruma-state-res/cases.json` (see
  VECTORS.md section 2): its PDU batches turned into events, its state maps,
  and the expected resolved state.
- `RoomBuilder` writes named scenario DAGs in a few lines: events go on named
  branches, each event's `prev_events` is its branch tip and its `auth_events`
  are picked from the branch's state by the auth events selection, as a real
  server would do.

The fixture PDUs carry readable event IDs and no hashes, signatures or depth;
we add placeholders (and a depth from `prev_events`) so `make_event` accepts
them, and pass the readable ID explicitly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from homeserver.state.auth_rules import (
    AuthError,
    auth_types_from_fields,
    check_auth_rules,
    select_auth_events,
)
from homeserver.state.loader import EventMap, StateKey
from homeserver.state.resolution import resolve_state
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

PLACEHOLDER_HASHES = {"sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}


def vectors_dir() -> Path:
    """`../shared/vectors` next to the repository (`HOMESERVER_SHARED_DIR` overrides the root)."""
    override = os.environ.get("HOMESERVER_SHARED_DIR")
    root = Path(override) if override else Path(__file__).resolve().parents[2].parent / "shared"
    return root / "vectors"


def ruma_dir() -> Path:
    return vectors_dir() / "ruma-state-res"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def fixture_pdu(raw: Mapping[str, Any], room_version: RoomVersion, depth: int) -> dict[str, Any]:
    """A fixture's simplified PDU completed into one `make_event` accepts."""
    pdu = {k: v for k, v in raw.items() if k not in ("test-comments", "event_id")}
    pdu.setdefault("hashes", PLACEHOLDER_HASHES)
    pdu.setdefault("signatures", {})
    pdu["depth"] = depth
    if room_version.event_format.format is EventFormat.V1:
        pdu["event_id"] = raw["event_id"]
        for key in ("prev_events", "auth_events"):
            pdu[key] = [[ref, PLACEHOLDER_HASHES] for ref in raw[key]]
    return pdu


def event(
    room_version: RoomVersion,
    event_id: str,
    *,
    auth: Sequence[str] = (),
    prev: Sequence[str] = (),
    event_type: str = "m.room.topic",
    state_key: str | None = "",
    sender: str = "@alice:example.com",
    content: Mapping[str, Any] | None = None,
    ts: int = 0,
    depth: int = 1,
    room_id: str = "!room:example.com",
) -> EventBase:
    """A single event with exactly the given references (for graph-shaped tests)."""
    pdu: dict[str, Any] = {
        "room_id": room_id,
        "type": event_type,
        "sender": sender,
        "content": dict(content or {}),
        "origin_server_ts": ts,
        "depth": depth,
        "prev_events": list(prev),
        "auth_events": list(auth),
        "hashes": PLACEHOLDER_HASHES,
        "signatures": {},
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    if room_version.event_format.format is EventFormat.V1:
        pdu["event_id"] = event_id
        pdu["prev_events"] = [[p, PLACEHOLDER_HASHES] for p in prev]
        pdu["auth_events"] = [[a, PLACEHOLDER_HASHES] for a in auth]
    return make_event(pdu, room_version, event_id=event_id)


def graph_events(
    room_version: RoomVersion, auth_graph: Mapping[str, Sequence[str]], **common: Any
) -> EventMap:
    """Events named by the keys of `auth_graph`, each citing the listed auth events."""
    return EventMap(
        event(room_version, eid, auth=auth, **common) for eid, auth in auth_graph.items()
    )


@dataclass(frozen=True)
class RumaCase:
    name: str
    mode: str  # "batches" or "state_maps"
    description: str
    room_version: RoomVersion
    batches: list[list[EventBase]]
    state_maps: list[dict[StateKey, str]]
    expected: dict[StateKey, str]
    expected_content: dict[StateKey, Any]

    @property
    def events(self) -> list[EventBase]:
        return [event for batch in self.batches for event in batch]

    def event_map(self) -> EventMap:
        return EventMap(self.events)


@cache
def ruma_cases() -> dict[str, Mapping[str, Any]]:
    manifest = _read_json(ruma_dir() / "cases.json")
    return {case["name"]: case for case in manifest["cases"]}


def load_ruma_case(name: str) -> RumaCase:
    spec = ruma_cases()[name]
    raw_batches = [_read_json(ruma_dir() / f) for f in spec["pdu_files"]]
    create = raw_batches[0][0]
    assert create["type"] == "m.room.create", "the first PDU must be the create event"
    room_version = KNOWN_ROOM_VERSIONS[create["content"]["room_version"]]
    assert room_version.identifier == spec["room_version"]

    depths: dict[str, int] = {}
    batches: list[list[EventBase]] = []
    for raw_batch in raw_batches:
        batch = []
        for raw in raw_batch:
            depth = 1 + max((depths.get(p, 0) for p in raw["prev_events"]), default=0)
            depths[raw["event_id"]] = depth
            pdu = fixture_pdu(raw, room_version, depth)
            batch.append(make_event(pdu, room_version, event_id=raw["event_id"]))
        batches.append(batch)

    by_id = {event.event_id: event for batch in batches for event in batch}
    state_maps = []
    for path in spec["state_map_files"]:
        ids = _read_json(ruma_dir() / path)
        state_map: dict[StateKey, str] = {}
        for event_id in ids:
            event = by_id[event_id]
            assert event.state_key is not None
            state_map[(event.type, event.state_key)] = event_id
        state_maps.append(state_map)

    expected_rows = _read_json(ruma_dir() / spec["expected"])
    expected = {(row["type"], row["state_key"]): row["event_id"] for row in expected_rows}
    expected_content = {(row["type"], row["state_key"]): row["content"] for row in expected_rows}
    return RumaCase(
        name=name,
        mode=spec["mode"],
        description=spec["description"],
        room_version=room_version,
        batches=batches,
        state_maps=state_maps,
        expected=expected,
        expected_content=expected_content,
    )


# --- the three ways the upstream harness resolves a `batches` case -------------


def _key(event: EventBase) -> StateKey:
    assert event.state_key is not None, "all fixture PDUs are state events"
    return (event.type, event.state_key)


def resolve_iteratively(
    room_version: RoomVersion, events: Sequence[EventBase]
) -> dict[StateKey, str]:
    """Walk the prev_events DAG forward from the create event; the state before
    each event is the resolution of the states after its prev_events, and the
    state after it is the resolution of {before, before + event} (which is
    where the event is authorised). The result resolves the leaves' states."""
    source = EventMap(events)
    children: dict[str, list[str]] = {}
    for event in events:
        for prev in event.prev_event_ids:
            children.setdefault(prev, []).append(event.event_id)
    state_after: dict[str, dict[StateKey, str]] = {}
    pending = [e.event_id for e in events if not e.prev_event_ids]
    while pending:
        event_id = pending.pop()
        if event_id in state_after:
            continue
        current = source.fetch_event(event_id)
        assert current is not None
        if any(prev not in state_after for prev in current.prev_event_ids):
            continue  # comes back once its last prev event is done
        before = resolve_state(
            room_version, [state_after[p] for p in current.prev_event_ids], source.fetch_event
        )
        if current.state_key is None:
            state_after[event_id] = before  # S'(E) = S(E) for a message event
        else:
            proposed = dict(before)
            proposed[_key(current)] = event_id
            state_after[event_id] = resolve_state(
                room_version, [before, proposed], source.fetch_event
            )
        pending.extend(children.get(event_id, ()))
    assert len(state_after) == len(events), "every event's prev_events must be in the fixture"
    leaves = [e.event_id for e in events if e.event_id not in children]
    return resolve_state(room_version, [state_after[leaf] for leaf in leaves], source.fetch_event)


def resolve_batch(
    room_version: RoomVersion,
    batch: Sequence[EventBase],
    source: EventMap,
    previous: dict[StateKey, str] | None,
) -> dict[StateKey, str]:
    """Resolve the previous result with one singleton state set per PDU of the batch."""
    for event in batch:
        source.add(event)
    state_sets = [] if previous is None else [previous]
    state_sets.extend({_key(event): event.event_id} for event in batch)
    return resolve_state(room_version, state_sets, source.fetch_event)


def resolve_by_batches(
    room_version: RoomVersion, batches: Sequence[Sequence[EventBase]]
) -> dict[StateKey, str]:
    source = EventMap()
    result: dict[StateKey, str] | None = None
    for batch in batches:
        result = resolve_batch(room_version, batch, source, result)
    assert result is not None
    return result


def resolve_atomically(
    room_version: RoomVersion, events: Sequence[EventBase]
) -> dict[StateKey, str]:
    return resolve_batch(room_version, events, EventMap(), None)


# --- building scenario DAGs -------------------------------------------------------


@dataclass
class Branch:
    tip: list[str]
    state: dict[StateKey, str] = field(default_factory=dict)


class RoomBuilder:
    """Build a room DAG on named branches with readable event IDs.

    Each event cites its branch's tip as `prev_events` and, as `auth_events`,
    the events of the branch's state that the auth events selection names
    (so authorisation happens as on a real server; the builder itself does not
    run the auth rules, so a scenario may also contain events that should be
    rejected). `origin_server_ts` counts up unless given.
    """

    def __init__(self, room_version: RoomVersion, *, domain: str = "example.com") -> None:
        self.room_version = room_version
        self.domain = domain
        self.events: dict[str, EventBase] = {}
        self.rejected: set[str] = set()
        self.creators: set[str] = set()
        self.branches: dict[str, Branch] = {}
        self._clock = 0
        self.room_id = f"!room:{domain}"

    def user(self, name: str) -> str:
        return name if name.startswith("@") else f"@{name}:{self.domain}"

    def _event_id(self, name: str) -> str:
        if self.room_version.event_format.format is EventFormat.V1:
            return f"${name}:{self.domain}"
        return f"${name}"

    def id(self, name: str) -> str:
        """The event ID of the event built under this name."""
        return self._event_id(name)

    def create(self, creator: str = "alice", *, content: Mapping[str, Any] | None = None) -> str:
        """The create event, on a new branch "main"."""
        sender = self.user(creator)
        body: dict[str, Any] = {"room_version": self.room_version.identifier}
        if not self.room_version.auth.implicit_room_creator:
            body["creator"] = sender
        body.update(content or {})
        self.creators = {sender}
        if self.room_version.auth.creator_power:
            self.creators.update(body.get("additional_creators", ()))
        event_id = self._event_id("create")
        if self.room_version.auth.room_id_from_create_event:
            self.room_id = "!" + event_id[1:]
        self.branches["main"] = Branch(tip=[])
        self._add("main", "create", "m.room.create", "", sender, body, ts=None)
        return event_id

    def fork(self, from_branch: str, new_branch: str) -> None:
        source = self.branches[from_branch]
        self.branches[new_branch] = Branch(tip=list(source.tip), state=dict(source.state))

    def state(self, branch: str) -> dict[StateKey, str]:
        return dict(self.branches[branch].state)

    def send(
        self,
        branch: str,
        name: str,
        event_type: str,
        state_key: str,
        sender: str,
        content: Mapping[str, Any],
        *,
        ts: int | None = None,
        auth_from: Mapping[StateKey, str] | None = None,
    ) -> str:
        """Add a state event on `branch`; returns its event ID."""
        return self._add(
            branch,
            name,
            event_type,
            state_key,
            self.user(sender),
            content,
            ts=ts,
            auth_from=auth_from,
        )

    # shorthands
    def member(
        self,
        branch: str,
        name: str,
        sender: str,
        membership: str,
        target: str | None = None,
        **kw: Any,
    ) -> str:
        target_id = self.user(target or sender)
        return self.send(
            branch, name, "m.room.member", target_id, sender, {"membership": membership}, **kw
        )

    def power_levels(
        self, branch: str, name: str, sender: str, users: Mapping[str, int], **extra: Any
    ) -> str:
        """A power levels event; from room v12 the creators are left out of `users`
        (they may not be listed there, their power is infinite anyway)."""
        listed = {self.user(u): level for u, level in users.items()}
        if self.room_version.auth.creator_power:
            listed = {u: level for u, level in listed.items() if u not in self.creators}
        content: dict[str, Any] = {"users": listed}
        ts = extra.pop("ts", None)
        content.update(extra)
        return self.send(branch, name, "m.room.power_levels", "", sender, content, ts=ts)

    def join_rules(self, branch: str, name: str, sender: str, rule: str, **kw: Any) -> str:
        return self.send(branch, name, "m.room.join_rules", "", sender, {"join_rule": rule}, **kw)

    def topic(self, branch: str, name: str, sender: str, topic: str, **kw: Any) -> str:
        return self.send(branch, name, "m.room.topic", "", sender, {"topic": topic}, **kw)

    def merge(
        self,
        branch: str,
        others: Sequence[str],
        name: str,
        sender: str,
        event_type: str,
        state_key: str,
        content: Mapping[str, Any],
        **kw: Any,
    ) -> str:
        """An event on `branch` whose prev_events are the tips of `branch` and `others`,
        with the state before it resolved from theirs."""
        states = [self.branches[branch].state] + [self.branches[o].state for o in others]
        resolved = resolve_state(
            self.room_version, states, self.fetch_event, is_rejected=self.is_rejected
        )
        tips = list(self.branches[branch].tip)
        for other in others:
            tips.extend(t for t in self.branches[other].tip if t not in tips)
        self.branches[branch] = Branch(tip=tips, state=resolved)
        return self.send(branch, name, event_type, state_key, sender, content, **kw)

    def fetch_event(self, event_id: str) -> EventBase | None:
        return self.events.get(event_id)

    def is_rejected(self, event_id: str) -> bool:
        return event_id in self.rejected

    def resolve(self, *branches: str) -> dict[StateKey, str]:
        """Resolve the states of the named branches."""
        return resolve_state(
            self.room_version,
            [self.branches[b].state for b in branches],
            self.fetch_event,
            is_rejected=self.is_rejected,
        )

    def _add(
        self,
        branch_name: str,
        name: str,
        event_type: str,
        state_key: str,
        sender: str,
        content: Mapping[str, Any],
        *,
        ts: int | None,
        auth_from: Mapping[StateKey, str] | None = None,
    ) -> str:
        branch = self.branches[branch_name]
        event_id = self._event_id(name)
        assert event_id not in self.events, f"duplicate event name {name}"
        if ts is None:
            self._clock += 1
            ts = self._clock
        else:
            self._clock = max(self._clock, ts)
        depth = 1 + max((self.events[p].depth for p in branch.tip), default=0)
        pdu: dict[str, Any] = {
            "type": event_type,
            "state_key": state_key,
            "sender": sender,
            "content": dict(content),
            "origin_server_ts": ts,
            "depth": depth,
            "prev_events": list(branch.tip),
            "auth_events": [],
            "hashes": PLACEHOLDER_HASHES,
            "signatures": {},
        }
        if not (event_type == "m.room.create" and self.room_version.auth.room_id_from_create_event):
            pdu["room_id"] = self.room_id
        # Pick the auth events from the state, as the auth events selection says.
        source = branch.state if auth_from is None else auth_from
        wanted = auth_types_from_fields(self.room_version, event_type, sender, state_key, content)
        auth_ids = sorted(source[key] for key in wanted if key in source)
        if self.room_version.event_format.format is EventFormat.V1:
            pdu["event_id"] = event_id
            pdu["prev_events"] = [[p, PLACEHOLDER_HASHES] for p in branch.tip]
            pdu["auth_events"] = [[a, PLACEHOLDER_HASHES] for a in auth_ids]
        else:
            pdu["auth_events"] = auth_ids
        event = make_event(pdu, self.room_version, event_id=event_id)
        self.events[event_id] = event
        branch.tip = [event_id]
        # Authorise it against the branch state, as a receiving server would;
        # a rejected event stays in the DAG but does not change the state.
        state_events = {k: self.events[v] for k, v in branch.state.items()}
        try:
            check_auth_rules(
                self.room_version, event, select_auth_events(self.room_version, event, state_events)
            )
        except AuthError:
            self.rejected.add(event_id)
        else:
            branch.state[(event_type, state_key)] = event_id
        return event_id

    def bootstrap(
        self,
        *,
        join_rule: str = "public",
        members: Sequence[str] = (),
        admins: Mapping[str, int] | None = None,
    ) -> None:
        """create, alice joins, power levels (alice 100 + `admins`), join rules, then `members` join."""
        self.create("alice")
        self.member("main", "join-alice", "alice", "join")
        users = {"alice": 100}
        users.update(admins or {})
        self.power_levels("main", "pl0", "alice", users)
        self.join_rules("main", "join-rules0", "alice", join_rule)
        for name in members:
            self.member("main", f"join-{name}", name, "join")
