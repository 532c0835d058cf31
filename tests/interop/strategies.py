"""Hypothesis strategies for the Synapse cross-checks: JSON values, PDUs and room histories.

- `json_values(strict=...)`: nested JSON with unicode text (including control
  characters, astral-plane characters and escapes) and edge-case integers;
  lax values (room versions 1..5) add integers beyond 2**53 and floats.
- `pdus(room_version)`: PDU dicts of many event types, state and non-state,
  in the room version's event format, with content that mixes the keys the
  redaction algorithm keeps (of the right and of the wrong JSON types) with
  arbitrary extra keys, and optional top-level extras (`origin`,
  `membership`, `prev_state`, `redacts`, `unsigned`, unknown keys). Every PDU
  is accepted by our `make_event` and by Synapse's event constructor.
- `drafts(room_version)`: the same without `hashes`/`signatures` (an event
  before signing), sometimes carrying stale ones.
- `room_histories()`: a list of `Op`s replayed by `tests.interop.room_dags`
  into a forked and merged room DAG.

Deliberately never generated: the top-level keys `age_ts`, `outlier` and
`destinations`, which Synapse's `compute_content_hash` strips before hashing
(they are internal fields of old Synapse versions, not part of any PDU
format; the spec hashes everything but `unsigned`, `signatures` and
`hashes`), so a PDU carrying them hashes differently there on purpose.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion

ROOM_VERSIONS: list[RoomVersion] = list(KNOWN_ROOM_VERSIONS.values())

MAX_SAFE = 2**53 - 1

# --- JSON values -------------------------------------------------------------------

EDGE_INTS = [0, 1, -1, 2**31 - 1, -(2**31), 2**32, MAX_SAFE, -MAX_SAFE, MAX_SAFE - 1]
LAX_EDGE_INTS = [2**53, -(2**53), 2**63 - 1, -(2**63), 2**63, 2**64, -(2**64) - 1]

# Text from the whole of Unicode (no lone surrogates: they are not valid
# UTF-8), weighted towards the characters canonical JSON escapes or that sort
# differently by code point and by UTF-16 unit.
SPECIAL_CHARS = [
    "\x00", "\x01", "\x1f", "\x7f", '"', "\\", "/", "\b", "\f", "\n", "\r", "\t",
    "\u2028", "\u2029", "\ufeff", "\uffff", "é", "ß", "日", "\U0001f600", "\U0010ffff",
]  # fmt: skip
texts = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIAL_CHARS)),
    max_size=12,
)
keys = st.one_of(texts, st.sampled_from(["a", "b", "A", "é", "\U0001f600", "\uffff", "aa", ""]))


def integers(strict: bool) -> st.SearchStrategy[int]:
    safe = st.one_of(st.integers(-MAX_SAFE, MAX_SAFE), st.sampled_from(EDGE_INTS))
    if strict:
        return safe
    return st.one_of(safe, st.sampled_from(LAX_EDGE_INTS), st.integers(-(2**70), 2**70))


def json_values(strict: bool = True, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    leaves: st.SearchStrategy[Any] = st.one_of(st.none(), st.booleans(), integers(strict), texts)
    if not strict:
        leaves = st.one_of(
            leaves, st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False)
        )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def json_objects(strict: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(keys, json_values(strict, max_leaves=8), max_size=4)


# --- identifiers -----------------------------------------------------------------------

SERVERS = ["a.test", "b.test", "c.example.org", "127.0.0.1:8448", "[::1]:8448", "localhost"]
server_names = st.sampled_from(SERVERS)
localparts = st.one_of(
    st.sampled_from(["alice", "bob", "carol", "x", "user.name_1=-/+"]),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789._=-/", min_size=1, max_size=10),
)


@st.composite
def user_ids(draw: st.DrawFn) -> str:
    return f"@{draw(localparts)}:{draw(server_names)}"


def _b64(data: bytes, urlsafe: bool) -> str:
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.decode("ascii").rstrip("=")


@st.composite
def event_ids(draw: st.DrawFn, room_version: RoomVersion) -> str:
    fmt = room_version.event_format.format
    if fmt is EventFormat.V1:
        return f"${draw(st.text('abcdefghijklmnopqrstuvwxyzABCDEF0123456789', min_size=1, max_size=12))}:{draw(server_names)}"
    return "$" + _b64(draw(st.binary(min_size=32, max_size=32)), fmt is not EventFormat.V2)


@st.composite
def room_ids(draw: st.DrawFn, room_version: RoomVersion) -> str:
    if room_version.event_format.format is EventFormat.V4:
        return "!" + _b64(draw(st.binary(min_size=32, max_size=32)), True)
    return f"!{draw(st.text('abcdefghijklmnopqrstuvwxyzABCDEF', min_size=1, max_size=10))}:{draw(server_names)}"


hashes_b64 = st.binary(min_size=32, max_size=32).map(lambda b: _b64(b, False))


# --- content by event type -------------------------------------------------------------


def _with_extras(
    draw: st.DrawFn, strict: bool, known: dict[str, st.SearchStrategy[Any]]
) -> dict[str, Any]:
    """Some of the `known` keys (with their values), over a few arbitrary keys."""
    content: dict[str, Any] = draw(json_objects(strict)) if draw(st.booleans()) else {}
    for key, strategy in known.items():
        if draw(st.integers(0, 3)):  # usually present
            content[key] = draw(strategy)
    return content


def contents(event_type: str, room_version: RoomVersion) -> st.SearchStrategy[dict[str, Any]]:
    strict = room_version.event_format.strict_canonical_json
    anything = json_values(strict, max_leaves=4)
    level = st.one_of(integers(strict), st.sampled_from(["50", "x", None]), anything)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        if event_type == "m.room.member":
            tpi = st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "signed": st.one_of(json_objects(strict), anything),
                        "display_name": texts,
                        "extra": anything,
                    },
                ),
                anything,
            )
            return _with_extras(
                draw,
                strict,
                {
                    "membership": st.one_of(
                        st.sampled_from(["join", "leave", "invite", "ban", "knock"]), anything
                    ),
                    "join_authorised_via_users_server": st.one_of(user_ids(), anything),
                    "third_party_invite": tpi,
                    "displayname": texts,
                    "avatar_url": texts,
                    "reason": texts,
                },
            )
        if event_type == "m.room.create":
            return _with_extras(
                draw,
                strict,
                {
                    "creator": st.one_of(user_ids(), anything),
                    "room_version": st.one_of(st.sampled_from(list(KNOWN_ROOM_VERSIONS)), anything),
                    "m.federate": st.one_of(st.booleans(), anything),
                    "additional_creators": st.one_of(st.lists(user_ids(), max_size=3), anything),
                    "predecessor": anything,
                    "type": st.one_of(st.just("m.space"), anything),
                },
            )
        if event_type == "m.room.join_rules":
            return _with_extras(
                draw,
                strict,
                {
                    "join_rule": st.one_of(
                        st.sampled_from(
                            [
                                "public",
                                "invite",
                                "knock",
                                "restricted",
                                "knock_restricted",
                                "private",
                            ]
                        ),
                        anything,
                    ),
                    "allow": st.one_of(
                        st.lists(
                            st.fixed_dictionaries(
                                {
                                    "type": st.just("m.room_membership"),
                                    "room_id": room_ids(room_version),
                                }
                            ),
                            max_size=2,
                        ),
                        anything,
                    ),
                },
            )
        if event_type == "m.room.power_levels":
            known = {
                name: level
                for name in (
                    "ban", "events_default", "invite", "kick", "redact", "state_default",
                    "users_default",
                )
            }  # fmt: skip
            known["events"] = st.one_of(st.dictionaries(texts, level, max_size=3), anything)
            known["users"] = st.one_of(st.dictionaries(user_ids(), level, max_size=3), anything)
            known["notifications"] = st.one_of(st.dictionaries(texts, level, max_size=2), anything)
            return _with_extras(draw, strict, known)
        if event_type == "m.room.aliases":
            return _with_extras(
                draw, strict, {"aliases": st.one_of(st.lists(texts, max_size=3), anything)}
            )
        if event_type == "m.room.history_visibility":
            return _with_extras(
                draw,
                strict,
                {
                    "history_visibility": st.one_of(
                        st.sampled_from(["shared", "joined", "invited", "world_readable"]),
                        anything,
                    )
                },
            )
        if event_type == "m.room.redaction":
            return _with_extras(
                draw,
                strict,
                {"redacts": st.one_of(event_ids(room_version), anything), "reason": texts},
            )
        return draw(json_objects(strict))

    return build()


EVENT_TYPES = [
    "m.room.member", "m.room.create", "m.room.join_rules", "m.room.power_levels",
    "m.room.aliases", "m.room.history_visibility", "m.room.redaction", "m.room.topic",
    "m.room.name", "m.room.message", "m.room.third_party_invite", "m.room.server_acl",
    "m.room.encrypted", "m.room.canonical_alias", "org.example.custom",
]  # fmt: skip
event_types = st.one_of(
    st.sampled_from(EVENT_TYPES),
    st.sampled_from(EVENT_TYPES[:4]),  # the types with special redaction rules, more often
    st.text(min_size=1, max_size=20).filter(lambda t: len(t.encode("utf-8")) <= 255),
)


def _refs(room_version: RoomVersion, strict: bool) -> st.SearchStrategy[list[Any]]:
    if room_version.event_format.format is EventFormat.V1:
        ref = st.tuples(event_ids(room_version), st.fixed_dictionaries({"sha256": hashes_b64})).map(
            list
        )
        return st.lists(ref, max_size=3)
    return st.lists(event_ids(room_version), max_size=3)


@st.composite
def drafts(draw: st.DrawFn, room_version: RoomVersion) -> dict[str, Any]:
    """An unsigned PDU of this room version (no `hashes` or `signatures` unless stale ones)."""
    strict = room_version.event_format.strict_canonical_json
    fmt = room_version.event_format.format
    event_type = draw(event_types)
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": draw(user_ids()),
        "content": draw(contents(event_type, room_version)),
        "origin_server_ts": draw(
            st.one_of(st.integers(0, MAX_SAFE), st.sampled_from([0, MAX_SAFE]))
        ),
        "depth": draw(st.one_of(st.integers(0, 1000), st.sampled_from([0, MAX_SAFE]))),
        "prev_events": draw(_refs(room_version, strict)),
        "auth_events": draw(_refs(room_version, strict)),
    }
    is_state = event_type in EVENT_TYPES[:6] or draw(st.booleans())
    if is_state:
        pdu["state_key"] = draw(st.one_of(st.just(""), user_ids(), texts))
    if event_type == "m.room.create":
        pdu["state_key"] = ""
    if not (fmt is EventFormat.V4 and event_type == "m.room.create"):
        pdu["room_id"] = draw(room_ids(room_version))
    if fmt is EventFormat.V1:
        pdu["event_id"] = draw(event_ids(room_version))
    # Top-level extras: the keys older redaction rules keep, and unknown ones.
    if draw(st.booleans()):
        pdu["origin"] = draw(server_names)
    if draw(st.integers(0, 3)) == 0:
        pdu["membership"] = draw(st.sampled_from(["join", "leave"]))
    if draw(st.integers(0, 3)) == 0:
        pdu["prev_state"] = draw(_refs(room_version, strict))
    if event_type == "m.room.redaction" or draw(st.integers(0, 5)) == 0:
        pdu["redacts"] = draw(event_ids(room_version))
    if draw(st.integers(0, 2)) == 0:
        pdu["unsigned"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "age": st.integers(0, 10**6),
                    "transaction_id": texts,
                    "prev_content": json_objects(strict),
                    "redacted_because": json_objects(strict),
                    "org.example": json_values(strict, 3),
                },
            )
        )
    if draw(st.integers(0, 3)) == 0:
        extra_key = draw(st.sampled_from(["org.example.extra", "age", "user_id", "nonce", "é"]))
        pdu[extra_key] = draw(json_values(strict, 4))
    if draw(st.integers(0, 4)) == 0:  # stale hashes and signatures from an earlier signing
        pdu["hashes"] = {"sha256": draw(hashes_b64)}
        pdu["signatures"] = {draw(server_names): {"ed25519:old": draw(hashes_b64)}}
    return pdu


@st.composite
def pdus(draw: st.DrawFn, room_version: RoomVersion) -> dict[str, Any]:
    """A PDU with `hashes` and `signatures` (not necessarily matching: they are data here)."""
    pdu = draw(drafts(room_version))
    pdu.setdefault("hashes", {"sha256": draw(hashes_b64)})
    pdu.setdefault(
        "signatures",
        draw(
            st.dictionaries(
                server_names, st.fixed_dictionaries({"ed25519:k": hashes_b64}), max_size=2
            )
        ),
    )
    return pdu


room_versions = st.sampled_from(ROOM_VERSIONS)


# --- room histories ----------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One step of a room history, replayed by `room_dags.replay`.

    `branch`/`other` pick branches (modulo how many exist), `actor`/`target`
    users (indexes into `room_dags.USERS`), `choice` the variant (membership,
    level, join rule, power field...), `ts` a small timestamp offset so that
    ties between events are common.
    """

    action: str
    branch: int
    other: int
    actor: int
    target: int
    choice: int
    ts: int


ACTIONS = [
    "fork", "merge", "member", "member", "member", "power_levels", "power_levels",
    "join_rules", "topic", "name", "message", "history_visibility", "redaction", "aliases",
]  # fmt: skip

ops = st.builds(
    Op,
    action=st.sampled_from(ACTIONS),
    branch=st.integers(0, 4),
    other=st.integers(0, 4),
    actor=st.integers(0, 9),
    target=st.integers(0, 9),
    choice=st.integers(0, 11),
    ts=st.integers(0, 3),
)


@dataclass(frozen=True)
class RoomSetup:
    """How the room starts: who joins, initial levels, v12 additional creators,
    `m.federate`, and how many branches the history starts with (forked after
    the setup)."""

    members: tuple[int, ...]
    levels: tuple[int, ...]
    join_rule: int
    additional_creator: bool
    branches: int = 1
    federate: bool = True


setups = st.builds(
    RoomSetup,
    members=st.lists(st.integers(1, 4), min_size=1, max_size=4, unique=True).map(tuple),
    levels=st.lists(st.sampled_from([0, 10, 50, 75, 100]), min_size=5, max_size=5).map(tuple),
    join_rule=st.integers(0, 3),
    additional_creator=st.booleans(),
    branches=st.integers(2, 4),
    federate=st.sampled_from([True, True, True, False]),
)


def room_histories(max_ops: int = 40) -> st.SearchStrategy[tuple[RoomSetup, list[Op]]]:
    return st.tuples(setups, st.lists(ops, min_size=8, max_size=max_ops))
