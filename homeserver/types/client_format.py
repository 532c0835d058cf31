"""Serialising events for clients (the client-server API's ClientEvent format).

Spec: client-server API "Room Events" / "Types of room events"; the
`ClientEvent` and `ClientEventWithoutRoomID` schemas
(data/api/client-server/definitions/client_event*.yaml) and the
m.room.redaction schema (top-level `redacts` only in room versions 1..10).

Keeps `event_id`, `type`, `state_key` (state events only), `sender`,
`origin_server_ts`, `content`, `room_id` (unless left out), `redacts` (top
level for m.room.redaction in every room version: v11+ keeps it in the content
as well) and `unsigned` as supplied by the caller;
drops federation-only keys (`hashes`, `signatures`, `depth`, `prev_events`,
`auth_events`, `origin`, the PDU's own `unsigned`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.types.events import EventBase
from homeserver.types.frozen import thaw


def serialize_event(
    event: EventBase,
    *,
    unsigned: Mapping[str, Any] | None = None,
    include_room_id: bool = True,
) -> dict[str, Any]:
    """The client form of `event`, a fresh dict.

    `unsigned` is what this server tells the client (`age`,
    `redacted_because`, `transaction_id`, `prev_content`, `replaces_state`,
    `membership`); it is left out when empty. `include_room_id=False` gives
    ClientEventWithoutRoomID (as in /sync).
    """
    result: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "sender": event.sender,
        "origin_server_ts": event.origin_server_ts,
        "content": thaw(event.content),
    }
    if event.state_key is not None:
        result["state_key"] = event.state_key
    if include_room_id:
        result["room_id"] = event.room_id
    if event.type == "m.room.redaction" and event.redacts is not None:
        # From v11 `redacts` lives in the content; clients written before that
        # read it at the top level, so it is served there too (rooms/v11, as Synapse).
        result["redacts"] = event.redacts
    if unsigned:
        result["unsigned"] = thaw(unsigned)
    return result
