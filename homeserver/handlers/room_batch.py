"""One batch of one room's events: the state before and after each, auth, extremities, current state.

`BatchBuilder` takes the events of a batch in order (remote events as they
are, local ones built here against the batch so far) and decides, without
writing anything, everything `EventStore.persist_batch` then stores in one
transaction:

- the state before each event: the state after its single prev_event, or the
  resolution (`resolve_state`, through `homeserver.state.store_loader`) of
  the states after its prev_events when they differ, or a state the caller
  supplies for an event whose prev_events we lack;
- whether it passes the authorization rules against that state; a remote
  event that doesn't is stored as rejected, a local one is refused (AuthError
  to the caller) and not stored;
- the state after it, and the state groups to store for new states (planned
  by `homeserver.storage.stores.state.plan_state_group`; unchanged states
  reuse their group);
- the forward extremities: an accepted event removes its prev_events and is
  added unless an accepted stored event already lists it in its prev_events;
- the room's new current state: the resolution of the states after the new
  extremities, and its difference from the old one.

`RoomView` is what the persister keeps about a room between batches; it is
only right while this process is the room's only writer (see
`homeserver.handlers.event_persistence`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

from homeserver.state.auth_common import CREATE, CREATE_KEY, MEMBER
from homeserver.state.auth_rules import (
    AuthError,
    auth_types_for_event,
    auth_types_from_fields,
    check_auth_rules,
)
from homeserver.state.store_loader import resolve_state_from_source
from homeserver.storage.room_storage import RoomStorage
from homeserver.storage.stores.event_batch import ClientTxn, EventWrite, RoomBatch
from homeserver.storage.stores.state import (
    StateGroup,
    StateKey,
    StateMap,
    plan_state_group,
    state_diff,
)
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase
from homeserver.types.hashing import compute_reference_hash
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

MAX_PREV_EVENTS = 10
"""The most prev_events a local event lists (the deepest forward extremities)."""

_EMPTY: StateMap = MappingProxyType({})


class MissingStateError(Exception):
    """We don't have the state after some prev_events of a remote event, and none was supplied."""


@dataclass
class RoomView:
    """A room's forward extremities and current state, between batches."""

    room_id: str
    room_version: RoomVersion | None
    extremities: dict[str, int]
    """event ID -> depth."""
    extremity_groups: dict[str, int]
    """event ID -> state group after it."""
    current_state: StateMap


async def load_room_view(storage: RoomStorage, room_id: str) -> RoomView:
    extremities = await storage.events.get_forward_extremities(room_id)
    groups = await storage.state.get_state_groups_for_events(extremities)
    version = await storage.rooms.get_room_version(room_id)
    return RoomView(
        room_id=room_id,
        room_version=None if version is None else KNOWN_ROOM_VERSIONS[version],
        extremities=extremities,
        extremity_groups={e: groups[e][1] for e in extremities},
        current_state=await storage.state.get_current_state_ids(room_id),
    )


@dataclass(frozen=True, slots=True)
class LocalDraft:
    """A local event to build at the head of the room."""

    type: str
    state_key: str | None
    sender: str
    content: Mapping[str, Any]
    redacts: str | None = None
    txn: ClientTxn | None = None
    """The client transaction it was sent in (stored with the event, for idempotency)."""


class BatchBuilder:
    """Accumulates one batch of a room; `finish()` gives the `RoomBatch` to store."""

    def __init__(self, storage: RoomStorage, view: RoomView, received_ts: int) -> None:
        self._storage = storage
        self.view = view
        self.room_version = view.room_version
        self.received_ts = received_ts
        self.extremities: dict[str, int] = dict(view.extremities)
        self.writes: list[EventWrite] = []
        self.new_groups: dict[int, StateGroup] = {}
        self.group_states: dict[int, StateMap] = {}
        self.current_state: StateMap = view.current_state
        self._events: dict[str, tuple[EventBase, bool]] = {}
        self._after: dict[str, int] = {}
        self._batch_prevs: set[str] = set()
        self._referenced: set[str] = set()
        self._resolved: dict[frozenset[int], StateMap] = {}
        self._group_memo: dict[frozenset[int], tuple[int | None, StateMap]] = {}
        if view.extremities:
            key = frozenset(view.extremity_groups.values())
            self._resolved[key] = view.current_state
        self._next_id = -1

    # -- the event source for state resolution (batch events first, then storage)

    async def fetch_events(self, event_ids: Collection[str]) -> dict[str, tuple[EventBase, bool]]:
        found = {i: self._events[i] for i in event_ids if i in self._events}
        rest = [i for i in event_ids if i not in found]
        if rest:
            stored = await self._storage.events.get_stored_events(rest)
            found.update({i: (s.event, s.rejected_reason is not None) for i, s in stored.items()})
        return found

    def contains(self, event_id: str) -> bool:
        return event_id in self._events

    async def prepare(self, remote_event_ids: Collection[str]) -> None:
        """Look up, in one query, which remote events stored events already point at."""
        self._referenced = await self._storage.events.get_referenced(remote_event_ids)

    # -- state groups

    async def _state_of(self, group: int | None) -> StateMap:
        if group is None:
            return _EMPTY
        if group < 0:
            return self.group_states[group]
        return await self._storage.state.get_state_for_group(group)

    async def _plan(
        self, base: int | None, changes: Mapping[StateKey, str | None], full: StateMap
    ) -> int:
        lookup: dict[int, StateGroup] = dict(self.new_groups)
        real = base
        while real is not None and real < 0:
            real = self.new_groups[real].prev
        if real is not None:
            lookup.update(await self._storage.state.get_state_groups([real]))
        group = plan_state_group(self.view.room_id, base, changes, lookup, self._next_id)
        self._next_id -= 1
        self.new_groups[group.id] = group
        self.group_states[group.id] = MappingProxyType(dict(full))
        return group.id

    async def _resolve_states(self, groups: Sequence[int]) -> StateMap:
        unique = list(dict.fromkeys(groups))
        if len(unique) == 1:
            return await self._state_of(unique[0])
        key = frozenset(unique)
        if key not in self._resolved:
            assert self.room_version is not None
            states = [await self._state_of(g) for g in unique]
            resolved = await resolve_state_from_source(self.room_version, states, self)
            self._resolved[key] = MappingProxyType(resolved)
        return self._resolved[key]

    async def _group_for_prevs(self, groups: Sequence[int]) -> tuple[int | None, StateMap]:
        """(group, state) of the state before an event whose prev_events have these after groups."""
        unique = list(dict.fromkeys(groups))
        if len(unique) == 1:
            return unique[0], await self._state_of(unique[0])
        key = frozenset(unique)
        if key not in self._group_memo:
            resolved = await self._resolve_states(unique)
            self._group_memo[key] = await self._group_for_state(resolved, unique)
        return self._group_memo[key]

    async def _group_for_state(
        self, state: StateMap, candidates: Sequence[int]
    ) -> tuple[int | None, StateMap]:
        """A group for `state`: an equal candidate's, or a new delta over the closest one."""
        best: int | None = None
        best_diff: dict[StateKey, str | None] = dict.fromkeys(state.keys(), None)
        for group in candidates:
            diff = state_diff(await self._state_of(group), state)
            if best is None or len(diff) < len(best_diff):
                best, best_diff = group, diff
        if best is not None and not best_diff:
            return best, await self._state_of(best)
        changes = best_diff if best is not None else dict(state)
        return await self._plan(best, changes, state), MappingProxyType(dict(state))

    async def _after_groups(self, event_ids: Sequence[str]) -> dict[str, int]:
        found = {e: self._after[e] for e in event_ids if e in self._after}
        found.update(
            {e: self.view.extremity_groups[e] for e in event_ids if e in self.view.extremity_groups}
        )
        rest = [e for e in event_ids if e not in found]
        if rest:
            stored = await self._storage.state.get_state_groups_for_events(rest)
            found.update({e: groups[1] for e, groups in stored.items()})
        return found

    # -- local events

    async def build_local(
        self, draft: LocalDraft, *, server_name: str, signing_key: SigningKey, now_ms: int
    ) -> tuple[EventBase, tuple[int | None, StateMap]]:
        """Build and sign a local event at the head of the room (not yet checked or added)."""
        room_version = self.room_version
        if room_version is None or not self.extremities:
            raise MatrixError(Codes.NOT_FOUND, f"unknown room {self.view.room_id}")
        heads = sorted(self.extremities.items(), key=lambda item: (-item[1], item[0]))
        heads = heads[:MAX_PREV_EVENTS]
        prev_ids = [event_id for event_id, _ in heads]
        after = await self._after_groups(prev_ids)
        before = await self._group_for_prevs([after[p] for p in prev_ids])
        state = before[1]
        types = auth_types_from_fields(
            room_version, draft.type, draft.sender, draft.state_key, draft.content
        )
        auth_ids = [state[key] for key in sorted(types) if key in state]
        hashes: dict[str, dict[str, str]] = {}
        if room_version.event_format.format is EventFormat.V1:
            fetched = await self.fetch_events([*prev_ids, *auth_ids])
            hashes = {
                i: {"sha256": encode_base64(compute_reference_hash(room_version, ev.pdu_json()))}
                for i, (ev, _) in fetched.items()
            }
        event = build_event(
            room_version=room_version,
            type=draft.type,
            state_key=draft.state_key,
            sender=draft.sender,
            content=draft.content,
            room_id=self.view.room_id,
            prev_event_ids=prev_ids,
            auth_event_ids=auth_ids,
            depth=max(depth for _, depth in heads) + 1,
            origin_server_ts=now_ms,
            server_name=server_name,
            signing_key=signing_key,
            redacts=draft.redacts,
            reference_hashes=hashes,
        )
        return event, before

    async def check_auth(self, event: EventBase, state: StateMap) -> None:
        """The rules against `state` (the state before the event); AuthError if they forbid it."""
        await self._check_auth(event, state)

    # -- adding events

    async def _check_auth(self, event: EventBase, state: StateMap) -> None:
        keys = auth_types_for_event(event.room_version, event) | {CREATE_KEY}
        ids = {key: state[key] for key in keys if key in state}
        fetched = await self.fetch_events(list(ids.values()))
        auth_events = {
            key: fetched[i][0] for key, i in ids.items() if i in fetched and not fetched[i][1]
        }
        check_auth_rules(event.room_version, event, auth_events)

    async def add(
        self,
        event: EventBase,
        *,
        outlier: bool = False,
        rejected_reason: str | None = None,
        state_before: StateMap | None = None,
        before: tuple[int | None, StateMap] | None = None,
        local: bool = False,
        txn: ClientTxn | None = None,
        soft_failed: bool = False,
        backfilled: bool = False,
    ) -> str | None:
        """Add an event to the batch; returns its rejection reason (None if accepted).

        `state_before`: the state before a remote event whose prev_events we
        lack. `before`: (group, state) already computed (local events).
        `soft_failed`: a remote event the receiver found failing auth against
        the current state; if accepted it is stored flagged, and neither becomes
        a forward extremity nor removes its prev_events from them.
        `backfilled`: older history; stored at a negative stream position and,
        like a soft-failed event, kept out of the forward extremities.
        Raises AuthError for a local event the rules forbid, MissingStateError
        for a remote event whose state can't be computed.
        """
        if outlier:
            self._events[event.event_id] = (event, rejected_reason is not None)
            self.writes.append(
                EventWrite(event, outlier=True, rejected_reason=rejected_reason, txn=txn)
            )
            return rejected_reason
        if event.room_version != (self.room_version or event.room_version):
            raise ValueError(f"{event.event_id} is not in the room's version")

        if before is None:
            before = await self._state_before(event, state_before)
        before_group, before_state = before
        if rejected_reason is None:
            try:
                await self._check_auth(event, before_state)
            except AuthError as error:
                if local:
                    raise
                rejected_reason = f"auth: {error.message}"

        after_group = before_group
        replaces_state: str | None = None
        if event.state_key is not None and rejected_reason is None:
            replaces_state = before_state.get((event.type, event.state_key))
            after_state = dict(before_state)
            after_state[(event.type, event.state_key)] = event.event_id
            after_group = await self._plan(
                before_group, {(event.type, event.state_key): event.event_id}, after_state
            )
        assert after_group is not None  # only the create event starts from nothing

        # A room new to us (from its create event, or joined from its state).
        self.room_version = self.room_version or event.room_version
        self._events[event.event_id] = (event, rejected_reason is not None)
        self._after[event.event_id] = after_group
        self.writes.append(
            EventWrite(
                event,
                rejected_reason=rejected_reason,
                state_before=before_group,
                state_after=after_group,
                replaces_state=replaces_state,
                txn=txn,
                soft_failed=soft_failed and rejected_reason is None,
                backfilled=backfilled,
            )
        )
        if rejected_reason is None and not soft_failed and not backfilled:
            for prev in event.prev_event_ids:
                self.extremities.pop(prev, None)
            self._batch_prevs.update(event.prev_event_ids)
            if event.event_id not in self._referenced and event.event_id not in self._batch_prevs:
                self.extremities[event.event_id] = event.depth
        return rejected_reason

    async def _state_before(
        self, event: EventBase, supplied: StateMap | None
    ) -> tuple[int | None, StateMap]:
        prev_ids = list(dict.fromkeys(event.prev_event_ids))
        after = await self._after_groups(prev_ids)
        if supplied is not None:
            return await self._group_for_state(supplied, list(dict.fromkeys(after.values())))
        if not prev_ids and event.type == CREATE:
            return None, _EMPTY
        missing = [p for p in prev_ids if p not in after]
        if missing or not prev_ids:
            raise MissingStateError(
                f"no state after prev_events {missing} of {event.event_id}; supply state_before"
            )
        return await self._group_for_prevs([after[p] for p in prev_ids])

    # -- the end

    async def finish(self) -> RoomBatch:
        """The batch to store, with the new extremities and current state."""
        old = frozenset(self.view.extremities)
        new = frozenset(self.extremities)
        changes: dict[StateKey, str | None] = {}
        memberships: dict[str, str] = {}
        if new != old:
            groups = await self._after_groups(sorted(new))
            self.current_state = await self._resolve_states([groups[e] for e in sorted(new)])
            changes = state_diff(self.view.current_state, self.current_state)
            member_ids = [e for (t, _), e in changes.items() if t == MEMBER and e is not None]
            for event_id, (event, _) in (await self.fetch_events(member_ids)).items():
                membership = event.content.get("membership")
                if isinstance(membership, str):
                    memberships[event_id] = membership
        in_timeline = any(not w.outlier for w in self.writes)
        return RoomBatch(
            room_id=self.view.room_id,
            events=list(self.writes),
            received_ts=self.received_ts,
            new_groups=self._used_groups(),
            old_extremities=old if in_timeline else None,
            new_extremities=new,
            current_state_changes=changes,
            current_state=self.current_state if changes else None,
            memberships=memberships,
            new_room_version=(
                self.room_version.identifier
                if self.view.room_version is None and self.room_version is not None and in_timeline
                else None
            ),
        )

    def _used_groups(self) -> list[StateGroup]:
        """The planned groups some event or later group uses (a refused local event's aren't)."""
        used = {w.state_before for w in self.writes} | {w.state_after for w in self.writes}
        kept: list[StateGroup] = []
        for group in reversed(self.new_groups.values()):  # a group comes after its parent
            if group.id in used:
                kept.append(group)
                used.add(group.prev)
        return kept[::-1]

    def updated_view(self, stored_groups: Mapping[int, int]) -> RoomView:
        """The room view after the batch was stored (`stored_groups`: provisional -> stored IDs)."""
        groups = {
            e: self._after.get(e, self.view.extremity_groups.get(e)) for e in self.extremities
        }
        return RoomView(
            room_id=self.view.room_id,
            room_version=self.room_version,
            extremities=dict(self.extremities),
            extremity_groups={
                e: stored_groups.get(g, g) for e, g in groups.items() if g is not None
            },
            current_state=self.current_state,
        )
