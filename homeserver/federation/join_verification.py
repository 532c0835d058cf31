"""Checking what a resident server answers to send_join, before we believe any of it.

Spec: server-server API "Joining Rooms" (PUT /v2/send_join: "the resident
server ... responds with the current state and auth chain") and "Checks
performed on receipt of a PDU". A resident could lie: forge state events,
leave out or alter auth events, or hand back a state that does not let us
join. `verify_send_join_response` does what Synapse does with the answer:

- every event of `state` and `auth_chain` is parsed in the room's version
  and must be of the room; one that is invalid or not signed by the servers
  that must sign it is dropped (steps 1 and 2); one whose content hash does
  not match is redacted (step 3);
- each remaining event is checked against its own auth events (step 4),
  taken from the answer itself (the auth chain must be complete: an event
  whose auth events are missing is rejected); rejected events are kept (as
  rejected outliers) but left out of the state;
- the state must be one: a single event per (type, state_key), the room's
  create event among them, naming the room version we asked to join with;
- the returned `event` (the resident adds its signature to a restricted
  join) must be our join, signed by every server that must sign it;
- our join must pass the authorization rules against that state.

Anything that makes the answer unusable raises `InvalidJoinResponse`: the
caller tries the next resident.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.federation.event_checks import (
    DroppedPdu,
    KeySource,
    auth_event_ids_needed,
    check_auth_events,
    check_signatures_and_hash,
    parse_pdu,
)
from homeserver.state.auth_common import CREATE, CREATE_KEY
from homeserver.state.auth_rules import AuthError, auth_types_for_event, check_auth_rules
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]


class InvalidJoinResponse(Exception):
    """The resident's answer to send_join cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class VerifiedJoin:
    """A send_join answer that passed every check."""

    join: EventBase
    """Our join, with the signatures the resident added."""
    events: Sequence[EventBase]
    """The auth chain and state events kept, each after its auth events."""
    rejected: Mapping[str, str]
    """Event ID -> why, for those of `events` that failed their auth events."""
    state: Mapping[StateKey, str]
    """The room's state before our join (accepted events only)."""


async def verify_send_join_response(
    keys: KeySource,
    room_version: RoomVersion,
    join: EventBase,
    response: Any,
) -> VerifiedJoin:
    """Check a send_join v2 answer for our `join` (see the module docstring)."""
    if not isinstance(response, Mapping):
        raise InvalidJoinResponse("the answer is not a JSON object")
    state_pdus = response.get("state")
    chain_pdus = response.get("auth_chain")
    if not isinstance(state_pdus, list) or not isinstance(chain_pdus, list):
        raise InvalidJoinResponse("the answer lacks 'state' or 'auth_chain' lists")

    returned_join = join
    if response.get("event") is not None:
        returned_join = await _check_returned_join(keys, room_version, join, response["event"])

    chain = await _checked_events(keys, room_version, join.room_id, chain_pdus)
    state_events = await _checked_events(keys, room_version, join.room_id, state_pdus)
    by_id: dict[str, EventBase] = {**chain, **state_events}
    ordered = _auth_order(by_id)
    rejected: dict[str, str] = {}
    outcomes: dict[str, tuple[EventBase, bool]] = {}
    for event in ordered:
        needed = auth_event_ids_needed(event)
        missing = [i for i in needed if i not in outcomes]
        if missing:
            rejected[event.event_id] = f"auth events {missing} are not in the auth chain"
        else:
            try:
                check_auth_events(event, {i: outcomes[i] for i in needed})
            except AuthError as e:
                rejected[event.event_id] = str(e)
        outcomes[event.event_id] = (event, event.event_id in rejected)

    state: dict[StateKey, str] = {}
    for event_id, event in state_events.items():
        if event.state_key is None:
            raise InvalidJoinResponse(f"{event_id} in 'state' is not a state event")
        if event_id in rejected:
            logger.info(
                "dropping rejected %s from the join state: %s", event_id, rejected[event_id]
            )
            continue
        key = (event.type, event.state_key)
        if key in state and state[key] != event_id:
            raise InvalidJoinResponse(f"'state' holds two events for {key}")
        state[key] = event_id
    create_id = state.get(CREATE_KEY)
    if create_id is None:
        raise InvalidJoinResponse("'state' has no accepted m.room.create event")
    create = by_id[create_id]
    if create.content.get("room_version", "1") != room_version.identifier:
        raise InvalidJoinResponse(
            f"the room's create event says version {create.content.get('room_version', '1')!r},"
            f" the resident said {room_version.identifier!r}"
        )

    auth_events: dict[StateKey, EventBase] = {CREATE_KEY: create}
    for key in auth_types_for_event(room_version, returned_join):
        if key in state:
            auth_events[key] = by_id[state[key]]
    try:
        check_auth_rules(room_version, returned_join, auth_events)
    except AuthError as e:
        raise InvalidJoinResponse(f"the room's state does not allow our join: {e}") from None
    return VerifiedJoin(returned_join, ordered, rejected, state)


async def _check_returned_join(
    keys: KeySource, room_version: RoomVersion, join: EventBase, pdu: Any
) -> EventBase:
    try:
        returned = parse_pdu(pdu, room_version)
    except DroppedPdu as e:
        raise InvalidJoinResponse(f"the returned join event: {e}") from None
    if returned.event_id != join.event_id:
        raise InvalidJoinResponse(
            f"the returned join {returned.event_id} is not ours ({join.event_id})"
        )
    try:
        checked, redacted = await check_signatures_and_hash(keys, returned)
    except DroppedPdu as e:
        raise InvalidJoinResponse(f"the returned join event: {e}") from None
    if redacted:
        raise InvalidJoinResponse("the returned join event's content was altered")
    return checked


async def _checked_events(
    keys: KeySource, room_version: RoomVersion, room_id: str, pdus: Sequence[Any]
) -> dict[str, EventBase]:
    """Steps 1 to 3 on each PDU: the events kept (redacted when their hash failed), by ID."""
    kept: dict[str, EventBase] = {}
    for pdu in pdus:
        try:
            event = parse_pdu(pdu, room_version)
            if event.room_id != room_id:
                raise DroppedPdu(f"{event.event_id} is of room {event.room_id}, not {room_id}")
            checked, redacted = await check_signatures_and_hash(keys, event)
        except DroppedPdu as e:
            logger.warning("dropping an event of the send_join answer: %s", e)
            continue
        if redacted:
            logger.warning("%s failed its content hash check: redacted", event.event_id)
        kept[checked.event_id] = checked
    return kept


def _auth_order(events: Mapping[str, EventBase]) -> list[EventBase]:
    """The events, each after those of its auth events that are among them (create first)."""
    ordered: list[EventBase] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(event_id: str) -> None:
        if event_id in placed or event_id in visiting:
            return  # a cycle of auth events: the check will find an auth event missing
        visiting.add(event_id)
        event = events[event_id]
        for auth_id in auth_event_ids_needed(event):
            if auth_id in events:
                place(auth_id)
        visiting.discard(event_id)
        placed.add(event_id)
        ordered.append(event)

    # Depth first keeps the recursion shallow for the usual chains.
    for event_id in sorted(events, key=lambda i: (events[i].type != CREATE, events[i].depth, i)):
        place(event_id)
    return ordered
