"""Replaying a generated room history into a real, signed room DAG with forks and merges.

`replay(room_version, setup, ops)` builds the room with our `build_event`
(real content hashes, Ed25519 signatures from fixed per-server keys, and
event IDs: reference hashes from v3, `$eN:server` in v1/v2). Every event goes
on a branch: its `prev_events` are the branch's tips, its `auth_events` the
auth events selection over the branch's state, its depth one more than its
deepest prev event. Each candidate event is checked with our auth rules
against the branch state; an allowed one joins the DAG and updates the state,
a refused one is dropped (so no rejected event is ever in a state set or an
auth chain: Synapse keeps rejected events out of resolution, against the
spec, see `synapse/state/v2.py` `_iterative_auth_checks`). A merge resolves
the two branches' states with our resolution and continues from there.

What the histories try: joins (restricted ones vouched for by
`join_authorised_via_users_server` from v8), leaves, invites, knocks (v7+),
kicks, bans and unbans; power levels changes (users, the named levels, `events`
entries, levels written as strings before v10); join rules (public, invite,
knock, restricted, knock_restricted as the version allows); redactions;
`m.room.aliases` (special rules before v6); topics, names, history
visibility, messages; rooms with `m.federate: false` and, in v12, an
additional creator.

The result (`RoomDag`) keeps what the cross-checks compare with Synapse:
every auth decision (event, the auth events it was checked against, our
verdict) and every resolution problem (the state sets at each merge, and the
states of all branch tips at the end).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from signedjson.key import decode_signing_key_base64
from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

from homeserver.state.auth_rules import (
    AuthError,
    auth_types_from_fields,
    check_auth_rules,
    select_auth_events,
)
from homeserver.state.loader import StateKey
from homeserver.state.resolution import resolve_state
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion
from tests.interop.strategies import Op, RoomSetup

USERS = ["@alice:a.test", "@bob:b.test", "@carol:c.test", "@dave:a.test", "@erin:b.test"]
CREATOR = USERS[0]
# Op.actor / Op.target (0..9) to a user: the creator and bob act most often.
ACTOR_SLOTS = [0, 0, 0, 1, 1, 2, 3, 4, 1, 2]
LEVELS = [0, 10, 50, 75, 100]
MAX_BRANCHES = 5
BASE_TS = 1_700_000_000_000

PL_KEY: StateKey = ("m.room.power_levels", "")
JR_KEY: StateKey = ("m.room.join_rules", "")


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def key_seed(server: str) -> str:
    """The (base64) Ed25519 seed of a test server's signing key: fixed, so runs repeat."""
    return encode_base64(hashlib.sha256(f"homeserver-tests {server}".encode()).digest())


KEY_VERSION = "k1"
SIGNING_KEYS: dict[str, SigningKey] = {
    server: decode_signing_key_base64("ed25519", KEY_VERSION, key_seed(server))
    for server in {server_of(u) for u in USERS}
}


@dataclass
class Branch:
    tips: list[str]
    state: dict[StateKey, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthDecision:
    event: EventBase
    auth_event_ids: tuple[str, ...]  # what the rules read: the branch state's entries
    allowed: bool
    reason: str | None


@dataclass
class RoomDag:
    room_version: RoomVersion
    # v1..v11: the creator's server; v12: replaced by the create event's.
    room_id: str = "!room:a.test"
    events: dict[str, EventBase] = field(default_factory=dict)
    branches: list[Branch] = field(default_factory=list)
    decisions: list[AuthDecision] = field(default_factory=list)
    problems: list[list[dict[StateKey, str]]] = field(default_factory=list)
    creators: set[str] = field(default_factory=set)
    _n: int = 0

    # -- reading ---------------------------------------------------------------------

    def fetch_event(self, event_id: str) -> EventBase | None:
        return self.events.get(event_id)

    def event(self, event_id: str) -> EventBase:
        return self.events[event_id]

    def final_state_sets(self) -> list[dict[StateKey, str]]:
        """The states at the branch tips, without duplicates (in branch order)."""
        seen: list[dict[StateKey, str]] = []
        for branch in self.branches:
            if branch.state not in seen:
                seen.append(dict(branch.state))
        return seen

    def all_problems(self) -> list[list[dict[StateKey, str]]]:
        """Each merge's state sets, then the branch tips' states if there are several."""
        final = self.final_state_sets()
        return self.problems + ([final] if len(final) > 1 else [])

    # -- building ----------------------------------------------------------------------

    def send(
        self,
        branch: Branch,
        event_type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        ts: int = 0,
        redacts: str | None = None,
    ) -> EventBase | None:
        """Build the next event on `branch`; apply it if our auth rules allow it."""
        rv = self.room_version
        self._n += 1
        keys = auth_types_from_fields(rv, event_type, sender, state_key, content)
        auth_ids = sorted(branch.state[k] for k in keys if k in branch.state)
        depth = 1 + max((self.events[t].depth for t in branch.tips), default=0)
        v12_create = event_type == "m.room.create" and rv.auth.room_id_from_create_event
        event = build_event(
            room_version=rv,
            type=event_type,
            state_key=state_key,
            sender=sender,
            content=content,
            room_id=None if v12_create else self.room_id,
            prev_event_ids=list(branch.tips),
            auth_event_ids=auth_ids,
            depth=depth,
            origin_server_ts=BASE_TS + ts,
            server_name=server_of(sender),
            signing_key=SIGNING_KEYS[server_of(sender)],
            event_id_localpart=f"e{self._n}",
            redacts=redacts,
        )
        state_events = {k: self.events[v] for k, v in branch.state.items()}
        checked = select_auth_events(rv, event, state_events)
        try:
            check_auth_rules(rv, event, checked)
        except AuthError as e:
            reason: str | None = str(e)
        else:
            reason = None
        self.decisions.append(
            AuthDecision(
                event, tuple(sorted(e.event_id for e in checked.values())), reason is None, reason
            )
        )
        if reason is not None:
            return None
        if event.type == "m.room.create":
            self.room_id = event.room_id
        self.events[event.event_id] = event
        branch.tips = [event.event_id]
        if event.state_key is not None:
            branch.state[(event.type, event.state_key)] = event.event_id
        return event

    def merge(self, into: Branch, other: Branch) -> None:
        """`into` continues from both tips, with the resolution of both states."""
        if other is into or set(other.tips) <= set(into.tips):
            return
        sets = [dict(into.state), dict(other.state)]
        if sets[0] != sets[1]:
            self.problems.append(sets)
            into.state = resolve_state(self.room_version, sets, self.fetch_event)
        into.tips = into.tips + [t for t in other.tips if t not in into.tips]

    def power_levels_content(self, branch: Branch) -> dict[str, Any]:
        current = branch.state.get(PL_KEY)
        if current is None:
            return {}
        return self.events[current].pdu_json()["content"]  # type: ignore[no-any-return]


def _create_content(rv: RoomVersion, setup: RoomSetup) -> dict[str, Any]:
    content: dict[str, Any] = {"room_version": rv.identifier}
    if not rv.auth.implicit_room_creator:
        content["creator"] = CREATOR
    if rv.auth.creator_power and setup.additional_creator:
        content["additional_creators"] = [USERS[1]]
    if not setup.federate:
        content["m.federate"] = False
    return content


OTHER_ROOM = "!other:a.test"


def _join_rules(rv: RoomVersion) -> list[str]:
    rules = ["public", "invite"]
    if rv.auth.knock_join_rule:
        rules.append("knock")
    if rv.auth.restricted_join_rule:
        rules.append("restricted")
    if rv.auth.knock_restricted_join_rule:
        rules.append("knock_restricted")
    return rules


def _join_rules_content(rule: str) -> dict[str, Any]:
    content: dict[str, Any] = {"join_rule": rule}
    if rule in ("restricted", "knock_restricted"):
        content["allow"] = [{"type": "m.room_membership", "room_id": OTHER_ROOM}]
    return content


def bootstrap(rv: RoomVersion, setup: RoomSetup) -> RoomDag:
    """create, the creator joins, power levels, join rules, then the setup's members join."""
    dag = RoomDag(rv)
    main = Branch(tips=[])
    dag.branches.append(main)
    create = dag.send(main, "m.room.create", CREATOR, _create_content(rv, setup), "")
    assert create is not None, "the create event must be allowed"
    dag.creators = {CREATOR}
    if rv.auth.creator_power:
        dag.creators.update(create.content.get("additional_creators", ()))
    dag.send(main, "m.room.member", CREATOR, {"membership": "join"}, CREATOR)
    users = {u: setup.levels[i] for i, u in enumerate(USERS)}
    users[CREATOR] = 100
    if rv.auth.creator_power:  # creators may not be listed; their power is infinite
        users = {u: level for u, level in users.items() if u not in dag.creators}
    dag.send(main, "m.room.power_levels", CREATOR, {"users": users}, "")
    rules = _join_rules(rv)
    rule = rules[setup.join_rule % len(rules)]
    dag.send(main, "m.room.join_rules", CREATOR, _join_rules_content(rule), "")
    for index in setup.members:
        user = USERS[index]
        if rule != "public" and local_target_only(setup, user) == user:
            dag.send(main, "m.room.member", CREATOR, {"membership": "invite"}, user)
        dag.send(main, "m.room.member", user, {"membership": "join"}, user)
    return dag


POWER_FIELDS = [
    "ban",
    "kick",
    "invite",
    "state_default",
    "events_default",
    "users_default",
    "redact",
]


def _power_levels_change(dag: RoomDag, branch: Branch, op: Op) -> dict[str, Any]:
    content = dag.power_levels_content(branch)
    level: int | str = LEVELS[op.other % len(LEVELS)]
    if op.ts == 3 and not dag.room_version.auth.integer_power_levels:
        level = str(level)  # v1..v9 also take levels written as strings of digits
    target = USERS[ACTOR_SLOTS[op.target]]
    if op.choice < 4:
        content.setdefault("users", {})[target] = level
    elif op.choice < 4 + len(POWER_FIELDS):
        content[POWER_FIELDS[op.choice - 4]] = level
    elif op.choice == 11:
        event_type = ["m.room.topic", "m.room.name", "m.room.power_levels"][op.target % 3]
        content.setdefault("events", {})[event_type] = level
    else:
        content.get("users", {}).pop(target, None)
    return content


MEMBERSHIPS = ["join", "leave", "invite", "ban", "kick", "unban", "knock"]


def local_target_only(setup: RoomSetup, target: str) -> str:
    """`target`, or a user of the creator's server when the room has `m.federate: false`.

    KNOWN DEVIATION: Synapse (`event_auth._is_membership_change_allowed`)
    also refuses, in such a room, membership events whose *target* is on
    another server (an invite, kick or ban of a remote user by a local one).
    The spec's rule looks at the sender's server only, as ours does; see
    `test_known_deviation_m_federate_target`. So the histories never try it.
    """
    if setup.federate or server_of(target) == server_of(CREATOR):
        return target
    return USERS[3]


def _member_change(rv: RoomVersion, setup: RoomSetup, op: Op) -> tuple[str, str, dict[str, Any]]:
    """(sender, target, content) of a membership op."""
    actor = USERS[ACTOR_SLOTS[op.actor]]
    target = local_target_only(setup, USERS[ACTOR_SLOTS[op.target]])
    kind = MEMBERSHIPS[op.choice % len(MEMBERSHIPS)]
    if kind == "knock" and not rv.auth.knock_join_rule:
        kind = "leave"
    if kind == "join" and rv.auth.restricted_join_rule and op.other % 2:
        # A restricted join, vouched for by `target` (who must be able to invite).
        return actor, actor, {"membership": "join", "join_authorised_via_users_server": target}
    if kind in ("join", "knock"):
        return actor, actor, {"membership": kind}
    if kind == "leave":
        return actor, actor, {"membership": "leave"}
    if kind in ("kick", "unban"):
        return actor, target, {"membership": "leave"}
    return actor, target, {"membership": kind}


def replay(rv: RoomVersion, setup: RoomSetup, ops: Sequence[Op]) -> RoomDag:
    """Build the room DAG for a generated history."""
    dag = bootstrap(rv, setup)
    main = dag.branches[0]
    while len(dag.branches) < min(setup.branches, MAX_BRANCHES):
        dag.branches.append(Branch(tips=list(main.tips), state=dict(main.state)))
    for op in ops:
        branch = dag.branches[op.branch % len(dag.branches)]
        actor = USERS[ACTOR_SLOTS[op.actor]]
        if op.action == "fork":
            if len(dag.branches) < MAX_BRANCHES:
                dag.branches.append(Branch(tips=list(branch.tips), state=dict(branch.state)))
        elif op.action == "merge":
            dag.merge(branch, dag.branches[op.other % len(dag.branches)])
        elif op.action == "member":
            sender, target, content = _member_change(rv, setup, op)
            dag.send(branch, "m.room.member", sender, content, target, op.ts)
        elif op.action == "power_levels":
            dag.send(
                branch,
                "m.room.power_levels",
                actor,
                _power_levels_change(dag, branch, op),
                "",
                op.ts,
            )
        elif op.action == "join_rules":
            rules = _join_rules(rv)
            content = _join_rules_content(rules[op.choice % len(rules)])
            dag.send(branch, "m.room.join_rules", actor, content, "", op.ts)
        elif op.action == "redaction":
            known = list(dag.events)
            target_id = known[op.other % len(known)]
            dag.send(branch, "m.room.redaction", actor, {}, None, op.ts, redacts=target_id)
        elif op.action == "aliases":
            server = server_of(actor) if op.choice % 2 else server_of(USERS[ACTOR_SLOTS[op.target]])
            content = {"aliases": [f"#room{op.choice}:{server}"]}
            dag.send(branch, "m.room.aliases", actor, content, server, op.ts)
        elif op.action in ("topic", "name"):
            key = op.action
            dag.send(branch, f"m.room.{key}", actor, {key: f"{key} {op.choice}"}, "", op.ts)
        elif op.action == "history_visibility":
            value = ["shared", "joined", "invited", "world_readable"][op.choice % 4]
            dag.send(
                branch, "m.room.history_visibility", actor, {"history_visibility": value}, "", op.ts
            )
        elif op.action == "message":
            dag.send(
                branch,
                "m.room.message",
                actor,
                {"msgtype": "m.text", "body": f"{op.choice}"},
                None,
                op.ts,
            )
        else:  # pragma: no cover - strategies and replay out of step
            raise ValueError(f"unknown action {op.action!r}")
    return dag
