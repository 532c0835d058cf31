"""The redaction algorithm: which keys of an event survive, per room version.

Spec: client-server API "Redactions" as specialised by each room version's
"Redactions" section (rooms/fragments/v1-redactions.md, v6-redactions.md,
v9-redactions.md, v11-redactions.md; v8 adds `allow` to join rules).

The same pruning is used for three things: redacting an event for clients,
computing the reference hash (event IDs from v3), and the object that is
signed. It works on plain PDU dicts; `homeserver.types.events` wraps it for
event objects. Branches on `RoomVersion.redaction` flags only.

What each version keeps:

- top level, v1..v10: event_id, type, room_id, sender, state_key, content,
  hashes, signatures, depth, prev_events, prev_state, auth_events, origin,
  origin_server_ts, membership. v11+ drops origin, membership, prev_state.
- content, by event type:
  - m.room.member: membership; v9+ join_authorised_via_users_server;
    v11+ third_party_invite.signed (only that sub-key; an object without
    it stays as `{}`, as in Synapse).
  - m.room.create: creator; v11+ everything.
  - m.room.join_rules: join_rule; v8+ allow.
  - m.room.power_levels: ban, events, events_default, kick, redact,
    state_default, users, users_default; v11+ invite.
  - m.room.aliases: aliases, v1..v5 only.
  - m.room.history_visibility: history_visibility.
  - m.room.redaction: v11+ redacts.
  - anything else: nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.types.frozen import thaw
from homeserver.types.room_versions import RoomVersion

_TOP_LEVEL_KEYS_V1 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
_TOP_LEVEL_KEYS_V11 = _TOP_LEVEL_KEYS_V1 - {"origin", "membership", "prev_state"}

_POWER_LEVELS_KEYS = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)


def kept_top_level_keys(room_version: RoomVersion) -> frozenset[str]:
    """The top-level PDU keys the redaction algorithm keeps in this room version."""
    if room_version.redaction.updated_rules_v11:
        return _TOP_LEVEL_KEYS_V11
    return _TOP_LEVEL_KEYS_V1


def kept_content_keys(room_version: RoomVersion, event_type: str) -> tuple[str, ...] | None:
    """The content keys kept for `event_type`, or None meaning "all of them".

    (m.room.member's `third_party_invite` is special-cased in `prune_content`:
    from v11 only its `signed` sub-key is kept, so it is not listed here.)
    """
    rules = room_version.redaction
    if event_type == "m.room.member":
        keys = ["membership"]
        if rules.keep_member_authorised_via:
            keys.append("join_authorised_via_users_server")
        return tuple(keys)
    if event_type == "m.room.create":
        return None if rules.updated_rules_v11 else ("creator",)
    if event_type == "m.room.join_rules":
        return ("join_rule", "allow") if rules.keep_join_rules_allow else ("join_rule",)
    if event_type == "m.room.power_levels":
        if rules.updated_rules_v11:
            return (*_POWER_LEVELS_KEYS, "invite")
        return _POWER_LEVELS_KEYS
    if event_type == "m.room.aliases":
        return ("aliases",) if rules.keep_aliases_content else ()
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    if event_type == "m.room.redaction":
        return ("redacts",) if rules.updated_rules_v11 else ()
    return ()


def prune_content(
    room_version: RoomVersion, event_type: str, content: Mapping[str, Any]
) -> dict[str, Any]:
    """The content an event of `event_type` keeps after redaction (a fresh, mutable copy)."""
    keep = kept_content_keys(room_version, event_type)
    if keep is None:
        return thaw(content)  # type: ignore[no-any-return]
    pruned = {k: thaw(content[k]) for k in keep if k in content}
    if event_type == "m.room.member" and room_version.redaction.updated_rules_v11:
        # v11+: "it allows the `signed` key of the `third_party_invite` key".
        # An object `third_party_invite` is kept with only its `signed` key, so
        # as `{}` when it has none; any other JSON value is dropped. The spec's
        # words leave the `signed`-less object open; this is what Synapse, the
        # reference implementation of MSC3821, does, and what hashes and
        # signatures of such events are computed over
        # (tests/interop/test_synapse_crosscheck.py found the difference).
        tpi = content.get("third_party_invite")
        if isinstance(tpi, Mapping):
            pruned["third_party_invite"] = (
                {"signed": thaw(tpi["signed"])} if "signed" in tpi else {}
            )
    return pruned


def prune_event_dict(room_version: RoomVersion, pdu: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the redaction algorithm to a PDU dict; returns a fresh, mutable dict.

    Keys are kept as they are (no type checking): the result of pruning a
    well-formed PDU is what gets hashed and signed. `unsigned` is dropped, as
    it is not in any version's list; callers that show a redacted event to
    clients add their own `unsigned` (e.g. `redacted_because`).
    """
    keep = kept_top_level_keys(room_version)
    pruned = {k: thaw(v) for k, v in pdu.items() if k in keep and k != "content"}
    content = pdu.get("content")
    event_type = pdu.get("type")
    if isinstance(content, Mapping) and isinstance(event_type, str):
        pruned["content"] = prune_content(room_version, event_type, content)
    else:
        pruned["content"] = {}
    return pruned
