"""Building new events: fill the PDU fields, hash, sign, and derive the event ID.

Spec: server-server API "PDUs" and "Signing Events" > "Adding hashes and
signatures to outgoing events"; room versions' event formats (v1/v2 carry an
origin-chosen `event_id` and `[id, {hashes}]` references; v3+ derive the ID
from the reference hash; v11 moves `redacts` into content and stops keeping
`origin`; v12 omits `room_id` from `m.room.create`).

Pure: the caller supplies everything that needs state or a clock (the
prev/auth events, depth, timestamp) and the signing key. For v1/v2 the
local part of the event ID is random unless given.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from signedjson.types import SigningKey

from homeserver.types.events import MAX_DEPTH_LAX, MAX_DEPTH_STRICT, EventBase, make_event
from homeserver.types.frozen import thaw
from homeserver.types.room_versions import EventFormat, RoomVersion
from homeserver.types.signing import add_hashes_and_signatures

_ALPHANUMERIC = string.ascii_letters + string.digits


def random_event_id_localpart(length: int = 18) -> str:
    """A random alphanumeric local part for a v1/v2 event ID."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def max_depth(room_version: RoomVersion) -> int:
    """The largest `depth` an event may have; new events cap their depth at it."""
    return MAX_DEPTH_STRICT if room_version.event_format.strict_canonical_json else MAX_DEPTH_LAX


def build_event(
    *,
    room_version: RoomVersion,
    type: str,
    state_key: str | None,
    sender: str,
    content: Mapping[str, Any],
    room_id: str | None,
    prev_event_ids: Sequence[str],
    auth_event_ids: Sequence[str],
    depth: int,
    origin_server_ts: int,
    server_name: str,
    signing_key: SigningKey,
    redacts: str | None = None,
    reference_hashes: Mapping[str, Mapping[str, str]] | None = None,
    event_id_localpart: str | None = None,
) -> EventBase:
    """Build, hash and sign a new event, and return it as a validated `EventBase`.

    - `room_id` is None only for a v12+ `m.room.create` event (its room ID is
      derived from its event ID; read it back from the result).
    - `redacts` (for m.room.redaction) goes to the top level before v11 and
      into `content.redacts` from v11.
    - `depth` is capped at the room version's maximum.
    - v1/v2: references are `[id, {"sha256": ...}]`, taking the hashes of each
      referenced event from `reference_hashes` (`{event_id: hashes}`, `{}` when
      absent); the event ID is `$<event_id_localpart or random>:<server_name>`.
    - `origin` is set to `server_name` in versions whose redaction rules
      still keep it (v1..v10).
    Raises `InvalidEvent` if the result does not match the event format.
    """
    fmt = room_version.event_format.format
    body: dict[str, Any] = thaw(content)
    pdu: dict[str, Any] = {
        "type": type,
        "sender": sender,
        "content": body,
        "depth": min(depth, max_depth(room_version)),
        "origin_server_ts": origin_server_ts,
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    if room_id is not None:
        pdu["room_id"] = room_id
    if not room_version.redaction.updated_rules_v11:
        pdu["origin"] = server_name
    if redacts is not None:
        if room_version.event_format.redacts_in_content:
            body["redacts"] = redacts
        else:
            pdu["redacts"] = redacts

    if fmt is EventFormat.V1:
        hashes = reference_hashes or {}

        def ref(event_id: str) -> list[Any]:
            return [event_id, thaw(hashes.get(event_id, {}))]

        pdu["prev_events"] = [ref(e) for e in prev_event_ids]
        pdu["auth_events"] = [ref(e) for e in auth_event_ids]
        localpart = event_id_localpart or random_event_id_localpart()
        pdu["event_id"] = f"${localpart}:{server_name}"
    else:
        pdu["prev_events"] = list(prev_event_ids)
        pdu["auth_events"] = list(auth_event_ids)

    signed = add_hashes_and_signatures(room_version, pdu, server_name, signing_key)
    return make_event(signed, room_version)
