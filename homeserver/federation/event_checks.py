"""The checks on receipt of a PDU that look at the event alone (steps 1 to 4).

Spec: server-server API "Checks performed on receipt of a PDU":

1. "Is a valid event, otherwise it is dropped": `parse_pdu` (the room
   version's event format and size limits, `homeserver.types.events.make_event`);
2. "Passes signature checks, otherwise it is dropped": `check_signatures`
   (the servers `homeserver.types.signing.required_signers` names, with their
   keys from the KeyRing; from room v5 only keys valid at the event's
   `origin_server_ts` count);
3. "Passes hash checks, otherwise it is redacted before being processed
   further": `check_content_hash` returns the event or its redacted copy;
4. "Passes authorization rules based on the event's auth events, otherwise
   it is rejected": `check_auth_events` (the rule on the auth_events list
   itself, then the rules against those events).

Steps 5 and 6 need the room's state; the receiver and the persister do them.
A failure of steps 1 and 2 raises `DroppedPdu` (nothing is stored); of step 4
an `AuthError` (the event is stored as rejected).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol

from signedjson.types import VerifyKey

from homeserver.crypto.server_keys import FetchedKey
from homeserver.state.auth_common import CREATE, CREATE_KEY
from homeserver.state.auth_rules import (
    check_auth_events_selection,
    check_auth_rules,
    create_event_id_for_room,
)
from homeserver.types.events import EventBase, InvalidEvent, make_event
from homeserver.types.hashing import compute_event_id
from homeserver.types.identifiers import InvalidIdentifier
from homeserver.types.room_versions import EventFormat, RoomVersion
from homeserver.types.signing import (
    SignatureError,
    event_after_hash_check,
    required_signers,
    verify_event_signatures,
)


class DroppedPdu(Exception):
    """A PDU that failed a check whose failure drops it: it is not stored. The message says why."""


class KeySource(Protocol):
    """Where verify keys come from (homeserver.crypto.keyring.KeyRing)."""

    async def get_server_keys(
        self, server_name: str, key_ids: Collection[str], minimum_valid_until_ts: int
    ) -> Mapping[str, FetchedKey]: ...


# --- step 1 ---------------------------------------------------------------------


def parse_pdu(pdu: Any, room_version: RoomVersion) -> EventBase:
    """The event a received PDU is, in its room's version; DroppedPdu if it is not valid.

    `unsigned` is what the sending server says about the event, not part of
    it (no hash or signature covers it): it is dropped rather than kept and
    served as if it were ours.
    """
    if not isinstance(pdu, Mapping):
        raise DroppedPdu(f"a PDU must be a JSON object, not {type(pdu).__name__}")
    data = {k: v for k, v in pdu.items() if k != "unsigned"}
    try:
        return make_event(data, room_version)
    except InvalidEvent as e:
        raise DroppedPdu(f"invalid event: {e}") from None


def pdu_event_id(pdu: Any, room_version: RoomVersion) -> str | None:
    """The event ID of a PDU that may be invalid, to report what happened to it; None if none."""
    if not isinstance(pdu, Mapping):
        return None
    if room_version.event_format.format is EventFormat.V1:
        event_id = pdu.get("event_id")
        return event_id if isinstance(event_id, str) else None
    try:
        return compute_event_id(room_version, {k: v for k, v in pdu.items() if k != "unsigned"})
    except Exception:  # the PDU is too malformed to hash (unencodable values)
        return None


# --- steps 2 and 3 ---------------------------------------------------------------


async def check_signatures(keys: KeySource, event: EventBase) -> None:
    """Step 2: every server that must sign the event did, with a key we can get; else DroppedPdu."""
    try:
        servers = required_signers(event)
    except InvalidIdentifier as e:
        raise DroppedPdu(f"cannot tell which servers must sign {event.event_id}: {e}") from None
    # Room v5+: "any keys that are known to have expired prior to the event's
    # origin_server_ts are ignored"; earlier versions take any key we know.
    minimum = event.origin_server_ts if event.room_version.auth.enforce_key_validity else 0
    verify_keys: dict[str, dict[str, VerifyKey]] = {}
    for server in sorted(servers):
        signed_with = event.signatures.get(server)
        key_ids = [
            k for k in (signed_with or {}) if isinstance(k, str) and k.startswith("ed25519:")
        ]
        if not key_ids:
            raise DroppedPdu(f"{event.event_id} is not signed by {server}")
        found = await keys.get_server_keys(server, key_ids, minimum)
        verify_keys[server] = {key_id: key.verify_key for key_id, key in found.items()}
    try:
        verify_event_signatures(event, verify_keys, required=servers)
    except SignatureError as e:
        raise DroppedPdu(f"signature check failed for {event.event_id}: {e}") from None


def check_content_hash(event: EventBase) -> tuple[EventBase, bool]:
    """Step 3: (the event to go on with, whether it was redacted because its hash did not match)."""
    checked = event_after_hash_check(event)
    return checked, checked is not event


async def check_signatures_and_hash(keys: KeySource, event: EventBase) -> tuple[EventBase, bool]:
    """Steps 2 and 3 (see `check_signatures` and `check_content_hash`)."""
    await check_signatures(keys, event)
    return check_content_hash(event)


# --- step 4 -----------------------------------------------------------------------


def auth_event_ids_needed(event: EventBase) -> list[str]:
    """The events step 4 reads: the event's auth_events, and in room v12 the room's create event."""
    needed = list(dict.fromkeys(event.auth_event_ids))
    if event.type != CREATE and event.room_version.auth.room_id_from_create_event:
        create_id = create_event_id_for_room(event.room_id)
        if create_id not in needed:
            needed.append(create_id)
    return needed


def check_auth_events(event: EventBase, auth_events: Mapping[str, tuple[EventBase, bool]]) -> None:
    """Step 4: the rules against the event's own auth events; AuthError if it fails them.

    `auth_events` maps event ID to (event, rejected) and must hold every ID
    of `auth_event_ids_needed(event)` (ValueError otherwise).
    """
    room_version = event.room_version
    missing = [i for i in auth_event_ids_needed(event) if i not in auth_events]
    if missing:
        raise ValueError(f"auth events {missing} of {event.event_id} were not supplied")
    listed = [auth_events[i][0] for i in dict.fromkeys(event.auth_event_ids)]
    rejected = {i for i in event.auth_event_ids if auth_events[i][1]}
    check_auth_events_selection(room_version, event, listed, rejected)
    by_key = {(e.type, e.state_key or ""): e for e in listed if e.event_id not in rejected}
    if event.type != CREATE and room_version.auth.room_id_from_create_event:
        create, create_rejected = auth_events[create_event_id_for_room(event.room_id)]
        if not create_rejected:
            by_key[CREATE_KEY] = create
    check_auth_rules(room_version, event, by_key)
