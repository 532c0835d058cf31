"""Steps 1 to 4 of the checks on receipt of a PDU, one function at a time (no I/O).

Keys come from a dict standing in for the KeyRing, which records what it was
asked: the servers, the key IDs and the validity each check needs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pytest
from signedjson.key import generate_signing_key, get_verify_key

from homeserver.crypto.server_keys import FetchedKey
from homeserver.federation.event_checks import (
    DroppedPdu,
    auth_event_ids_needed,
    check_auth_events,
    check_content_hash,
    check_signatures,
    check_signatures_and_hash,
    parse_pdu,
    pdu_event_id,
)
from homeserver.state.auth_common import AuthError
from homeserver.types.event_builder import build_event
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import V1, V4, V5, V8, V11, V12, EventFormat, RoomVersion
from homeserver.types.signing import sign_event_dict

HS = "hs.example"
OTHER = "other.example"
HS_KEY = generate_signing_key("a")
OTHER_KEY = generate_signing_key("b")
ALICE = f"@alice:{HS}"
FAR_FUTURE = 2**62
TS = 1_700_000_000_000


class FakeKeys:
    """Verify keys from a dict: {server: {key_id: FetchedKey}}; records each lookup."""

    def __init__(self, keys: Mapping[str, Mapping[str, FetchedKey]]) -> None:
        self.keys = keys
        self.asked: list[tuple[str, tuple[str, ...], int]] = []

    async def get_server_keys(
        self, server_name: str, key_ids: Collection[str], minimum_valid_until_ts: int
    ) -> dict[str, FetchedKey]:
        self.asked.append((server_name, tuple(sorted(key_ids)), minimum_valid_until_ts))
        known = self.keys.get(server_name, {})
        return {
            k: known[k]
            for k in key_ids
            if k in known and known[k].valid_until_ts >= minimum_valid_until_ts
        }


def key_of(signing_key: Any, valid_until: int = FAR_FUTURE) -> dict[str, FetchedKey]:
    return {f"ed25519:{signing_key.version}": FetchedKey(get_verify_key(signing_key), valid_until)}


KEYS = FakeKeys({HS: key_of(HS_KEY), OTHER: key_of(OTHER_KEY)})


def event(
    room_version: RoomVersion,
    event_type: str,
    content: Mapping[str, Any],
    *,
    sender: str = ALICE,
    state_key: str | None = None,
    room_id: str | None = "!room:hs.example",
    prevs: Sequence[str] = (),
    auth: Sequence[str] = (),
    server: str = HS,
    key: Any = HS_KEY,
) -> EventBase:
    return build_event(
        room_version=room_version,
        type=event_type,
        state_key=state_key,
        sender=sender,
        content=content,
        room_id=room_id,
        prev_event_ids=list(prevs),
        auth_event_ids=list(auth),
        depth=len(prevs) + 1,
        origin_server_ts=TS,
        server_name=server,
        signing_key=key,
    )


# --- step 1 -------------------------------------------------------------------


def test_a_valid_pdu_parses_and_loses_its_unsigned_part() -> None:
    message = event(V11, "m.room.message", {"body": "hi"})
    pdu = {**message.pdu_json(), "unsigned": {"age": 5, "redacted_because": {"fake": True}}}
    parsed = parse_pdu(pdu, V11)
    assert parsed.event_id == message.event_id
    assert dict(parsed.unsigned) == {}
    assert pdu_event_id(pdu, V11) == message.event_id


@pytest.mark.parametrize(
    "change",
    [
        {"depth": "1"},
        {"prev_events": "none"},
        {"sender": "not a user"},
        {"content": {"body": "x" * 70_000}},
        {"room_id": 5},
        {"hashes": {}},
    ],
)
def test_an_invalid_pdu_is_dropped(change: dict[str, Any]) -> None:
    pdu = {**event(V11, "m.room.message", {"body": "hi"}).pdu_json(), **change}
    with pytest.raises(DroppedPdu, match="^invalid event"):
        parse_pdu(pdu, V11)


def test_event_ids_of_invalid_pdus() -> None:
    v1 = event(V1, "m.room.message", {"body": "hi"})
    assert pdu_event_id({**v1.pdu_json(), "depth": "x"}, V1) == v1.event_id
    assert pdu_event_id({"type": "x"}, V1) is None
    assert pdu_event_id(["not", "a", "pdu"], V11) is None
    assert pdu_event_id({"type": "x", "depth": float("nan")}, V11) is None
    with pytest.raises(DroppedPdu, match="must be a JSON object"):
        parse_pdu("a string", V11)


# --- steps 2 and 3 ----------------------------------------------------------------


async def test_a_properly_signed_event_passes() -> None:
    keys = FakeKeys({HS: key_of(HS_KEY)})
    message = event(V11, "m.room.message", {"body": "hi"})
    checked, redacted = await check_signatures_and_hash(keys, message)
    assert checked is message and not redacted
    assert keys.asked == [(HS, (f"ed25519:{HS_KEY.version}",), TS)]


async def test_the_sender_server_must_sign() -> None:
    by_other = event(V11, "m.room.message", {"body": "hi"}, server=OTHER, key=OTHER_KEY)
    with pytest.raises(DroppedPdu, match=f"is not signed by {HS}"):
        await check_signatures(KEYS, by_other)


async def test_a_key_we_cannot_get_fails() -> None:
    message = event(V11, "m.room.message", {"body": "hi"})
    with pytest.raises(DroppedPdu, match="under a known key"):
        await check_signatures(FakeKeys({}), message)


async def test_a_signature_that_does_not_verify_fails() -> None:
    impostor = generate_signing_key(HS_KEY.version)
    forged = event(V11, "m.room.message", {"body": "hi"}, key=impostor)
    with pytest.raises(DroppedPdu, match="does not verify"):
        await check_signatures(KEYS, forged)


async def test_from_room_v5_keys_must_be_valid_at_the_event() -> None:
    expired = FakeKeys({HS: key_of(HS_KEY, valid_until=TS - 1)})
    v5 = event(V5, "m.room.message", {"body": "hi"})
    with pytest.raises(DroppedPdu):
        await check_signatures(expired, v5)
    assert expired.asked[-1][2] == TS
    # Before v5 any key we know will do.
    v4 = event(V4, "m.room.message", {"body": "hi"})
    await check_signatures(expired, v4)
    assert expired.asked[-1][2] == 0


async def test_room_v1_needs_the_event_id_server_too() -> None:
    v1 = event(V1, "m.room.message", {"body": "hi"})
    pdu = v1.pdu_json()
    pdu["event_id"] = f"$moved:{OTHER}"
    moved = make_event(pdu, V1)
    with pytest.raises(DroppedPdu, match=f"is not signed by {OTHER}"):
        await check_signatures(KEYS, moved)
    await check_signatures(KEYS, v1)


async def test_a_restricted_join_needs_the_authorising_server() -> None:
    content = {"membership": "join", "join_authorised_via_users_server": f"@admin:{OTHER}"}
    join = event(V8, "m.room.member", content, state_key=ALICE)
    with pytest.raises(DroppedPdu, match=f"is not signed by {OTHER}"):
        await check_signatures(KEYS, join)
    both = make_event(sign_event_dict(V8, join.pdu_json(), OTHER, OTHER_KEY), V8)
    await check_signatures(KEYS, both)


def test_a_content_hash_mismatch_gives_the_redacted_copy() -> None:
    message = event(V11, "m.room.message", {"body": "hi"})
    assert check_content_hash(message) == (message, False)
    pdu = message.pdu_json()
    pdu["content"]["body"] = "changed"
    tampered = make_event(pdu, V11)
    checked, redacted = check_content_hash(tampered)
    assert redacted and checked.event_id == message.event_id
    assert dict(checked.content) == {}


async def test_the_redacted_copy_still_passes_the_signature_check() -> None:
    pdu = event(V11, "m.room.message", {"body": "hi"}).pdu_json()
    pdu["content"] = {"body": "changed"}
    checked, redacted = await check_signatures_and_hash(KEYS, make_event(pdu, V11))
    assert redacted and dict(checked.content) == {}


# --- step 4 -----------------------------------------------------------------------


def small_room(room_version: RoomVersion) -> dict[str, EventBase]:
    """create, alice's join, power levels (alice 100, state_default 50)."""
    v12 = room_version.event_format.format is EventFormat.V4
    create_content: dict[str, Any] = {"room_version": room_version.identifier}
    if not room_version.auth.implicit_room_creator:
        create_content["creator"] = ALICE
    create = event(
        room_version,
        "m.room.create",
        create_content,
        state_key="",
        room_id=None if v12 else "!room:hs.example",
    )
    room_id = create.room_id
    listed_create = [] if v12 else [create.event_id]
    join = event(
        room_version,
        "m.room.member",
        {"membership": "join"},
        state_key=ALICE,
        room_id=room_id,
        prevs=[create.event_id],
        auth=listed_create,
    )
    users = {} if room_version.auth.creator_power else {ALICE: 100}
    levels = event(
        room_version,
        "m.room.power_levels",
        {"users": users, "state_default": 50},
        state_key="",
        room_id=room_id,
        prevs=[join.event_id],
        auth=[*listed_create, join.event_id],
    )
    return {"create": create, "join": join, "levels": levels}


def supplied(
    *events: EventBase, rejected: Collection[str] = ()
) -> dict[str, tuple[EventBase, bool]]:
    return {e.event_id: (e, e.event_id in rejected) for e in events}


def test_an_event_its_auth_events_allow_passes() -> None:
    room = small_room(V11)
    message = event(
        V11,
        "m.room.message",
        {"body": "hi"},
        room_id=room["create"].room_id,
        prevs=[room["levels"].event_id],
        auth=[room["create"].event_id, room["levels"].event_id, room["join"].event_id],
    )
    assert auth_event_ids_needed(message) == list(message.auth_event_ids)
    check_auth_events(message, supplied(*room.values()))


def test_a_sender_its_auth_events_do_not_show_in_the_room_is_rejected() -> None:
    room = small_room(V11)
    bob = f"@bob:{HS}"
    message = event(
        V11,
        "m.room.message",
        {"body": "hi"},
        sender=bob,
        room_id=room["create"].room_id,
        prevs=[room["levels"].event_id],
        auth=[room["create"].event_id, room["levels"].event_id],
    )
    with pytest.raises(AuthError):
        check_auth_events(message, supplied(*room.values()))


def test_a_rejected_auth_event_rejects() -> None:
    room = small_room(V11)
    message = event(
        V11,
        "m.room.message",
        {"body": "hi"},
        room_id=room["create"].room_id,
        prevs=[room["levels"].event_id],
        auth=[room["create"].event_id, room["levels"].event_id, room["join"].event_id],
    )
    with pytest.raises(AuthError, match="was itself rejected"):
        check_auth_events(message, supplied(*room.values(), rejected=[room["levels"].event_id]))


def test_auth_events_must_all_be_supplied() -> None:
    room = small_room(V11)
    message = event(
        V11,
        "m.room.message",
        {"body": "hi"},
        room_id=room["create"].room_id,
        auth=[room["create"].event_id, room["join"].event_id],
        prevs=[room["join"].event_id],
    )
    with pytest.raises(ValueError, match="were not supplied"):
        check_auth_events(message, supplied(room["create"]))


def test_room_v12_reads_the_create_event_from_the_room_id() -> None:
    room = small_room(V12)
    create = room["create"]
    message = event(
        V12,
        "m.room.message",
        {"body": "hi"},
        room_id=create.room_id,
        prevs=[room["levels"].event_id],
        auth=[room["levels"].event_id, room["join"].event_id],
    )
    assert create.event_id not in message.auth_event_ids
    assert auth_event_ids_needed(message) == [*message.auth_event_ids, create.event_id]
    check_auth_events(message, supplied(*room.values()))
    with pytest.raises(ValueError):
        check_auth_events(message, supplied(room["join"], room["levels"]))
    # A rejected create event leaves the rules without one: rejected.
    with pytest.raises(AuthError):
        check_auth_events(message, supplied(*room.values(), rejected=[create.event_id]))
    assert auth_event_ids_needed(create) == []
