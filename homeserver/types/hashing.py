"""Content hashes, reference hashes, and the event and room IDs made from them.

Spec: server-server API "Signing Events" > "Calculating the content hash for
an event" and "Calculating the reference hash for an event"; room versions'
"Event IDs" (rooms/fragments/v1-event-ids.md: chosen by the origin;
rooms/v3.md: standard unpadded base64 of the reference hash;
v4-event-ids.md: URL-safe unpadded base64); appendices "Room IDs" (v12: the
create event's ID with `!` instead of `$`).

Functions take PDU dicts (the federation form). Branches on
`RoomVersion.event_format.format` only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from unpaddedbase64 import decode_base64, encode_base64

from homeserver.types.canonical_json import encode_canonical_json
from homeserver.types.redaction import prune_event_dict
from homeserver.types.room_versions import EventFormat, RoomVersion


def compute_content_hash(pdu: Mapping[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of the PDU without `unsigned`, `signatures`, `hashes`.

    Spec: "Calculating the content hash for an event". The PDU is hashed as
    given: for room versions whose event IDs are hashes, `event_id` is not
    part of the PDU and must not be present (`make_event` removes it).
    """
    stripped = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(encode_canonical_json(stripped)).digest()


def content_hash_base64(pdu: Mapping[str, Any]) -> str:
    """The content hash as it appears in `hashes.sha256` (unpadded standard base64)."""
    return encode_base64(compute_content_hash(pdu))


def check_content_hash(pdu: Mapping[str, Any]) -> bool:
    """Whether `hashes.sha256` of the PDU matches its content hash.

    False when the hash is missing, not a string, not base64, or different.
    Spec: "Validating hashes and signatures on received events": on False
    the receiver uses the redacted copy of the event instead.
    """
    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    given = hashes.get("sha256")
    if not isinstance(given, str):
        return False
    try:
        expected = decode_base64(given)
    except Exception:  # binascii.Error and ValueError for malformed base64
        return False
    return expected == compute_content_hash(pdu)


def compute_reference_hash(room_version: RoomVersion, pdu: Mapping[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of the redacted PDU without `signatures`/`unsigned`.

    Spec: "Calculating the reference hash for an event". For hash-ID room
    versions (v3+) an `event_id` key, which some exports add, is ignored.
    """
    pruned = prune_event_dict(room_version, pdu)
    pruned.pop("signatures", None)
    pruned.pop("unsigned", None)
    if room_version.event_format.format is not EventFormat.V1:
        pruned.pop("event_id", None)
    return hashlib.sha256(encode_canonical_json(pruned)).digest()


def compute_event_id(room_version: RoomVersion, pdu: Mapping[str, Any]) -> str:
    """The event ID a v3+ PDU has: `$` + base64 of its reference hash.

    v3 uses standard unpadded base64; v4+ URL-safe unpadded base64. Raises
    ValueError for v1/v2, where the ID is chosen by the origin server and
    carried in the PDU.
    """
    fmt = room_version.event_format.format
    if fmt is EventFormat.V1:
        raise ValueError(
            f"room version {room_version.identifier} event IDs are chosen by the "
            "origin server, not derived from the event"
        )
    encoded = encode_base64(
        compute_reference_hash(room_version, pdu), urlsafe=fmt is not EventFormat.V2
    )
    return "$" + encoded


def room_id_from_create_event_id(create_event_id: str) -> str:
    """v12+: the room ID is the create event's ID with the sigil `!` instead of `$`."""
    if not create_event_id.startswith("$"):
        raise ValueError(f"event ID {create_event_id!r} does not start with '$'")
    return "!" + create_event_id[1:]
