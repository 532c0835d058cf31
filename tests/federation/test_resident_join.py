"""Remote users joining, leaving and knocking on our rooms: make_*/send_* over signed HTTP (both engines).

The harness (tests/federation/test_receiver_harness.py) runs our server "test"
with a room of @alice:test and @bob of a fake remote server on loopback, which
signs its requests and events with its own key and serves that key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.crypto.x_matrix import sign_request
from homeserver.types.events import EventBase, make_event
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS, V10, EventFormat
from homeserver.types.signing import add_hashes_and_signatures
from tests.federation.test_receiver_harness import ALICE, Harness, running_harness
from tests.homeserver_harness import HomeServerFactory, Response
from tests.room_helpers import make_room

FED1 = "/_matrix/federation/v1"
FED2 = "/_matrix/federation/v2"


@pytest.fixture
def fed(homeserver_factory: HomeServerFactory, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor)


@pytest.fixture
def fed_v10(homeserver_factory: HomeServerFactory, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor, version=V10)


def q(value: str) -> str:
    return quote(value, safe="")


async def signed(
    fed: Harness, method: str, uri: str, body: Any = None, *, origin: str | None = None
) -> Response:
    """A request to our server signed by the remote (X-Matrix)."""
    header = sign_request(
        fed.remote.signing_key, origin or fed.remote.name, "test", method, uri, body
    )
    return await fed.client.request(method, uri, body, headers={"Authorization": header})


async def make(fed: Harness, kind: str, user_id: str, versions: tuple[str, ...] | None) -> Response:
    uri = f"{FED1}/make_{kind}/{q(fed.room_id)}/{q(user_id)}"
    if versions:
        uri += "?" + "&".join(f"ver={v}" for v in versions)
    return await signed(fed, "GET", uri)


def complete(fed: Harness, answer: Mapping[str, Any]) -> EventBase:
    """The remote's own event from a template: its timestamp, (v1 ID), hashes and signature."""
    room_version = KNOWN_ROOM_VERSIONS[answer["room_version"]]
    pdu = dict(answer["event"])
    pdu["origin_server_ts"] = fed.hs.clock.time_msec()
    if room_version.event_format.format is EventFormat.V1:
        pdu["event_id"] = f"$joined{pdu['origin_server_ts']}:{fed.remote.name}"
    if "origin" in pdu:
        pdu["origin"] = fed.remote.name
    return make_event(
        add_hashes_and_signatures(room_version, pdu, fed.remote.name, fed.remote.signing_key),
        room_version,
    )


async def send(fed: Harness, kind: str, event: EventBase, version: str = "v2") -> Response:
    prefix = FED2 if version == "v2" else FED1
    uri = f"{prefix}/send_{kind}/{q(event.room_id)}/{q(event.event_id)}"
    return await signed(fed, "PUT", uri, event.pdu_json())


async def membership(fed: Harness, user_id: str) -> str | None:
    member = await fed.hs.room_storage.rooms.get_membership(fed.room_id, user_id)
    return None if member is None else member.membership


ALL_VERSIONS = tuple(KNOWN_ROOM_VERSIONS)


# --- make_join / send_join ------------------------------------------------------------


async def test_a_remote_user_joins_and_our_users_see_it(fed: Harness) -> None:
    """make_join gives a template at the room's head; send_join stores the join and answers
    with the state before it, its auth chain, the event and the servers in the room."""
    alice = await fed.client.register("alice")
    first = await fed.client.get("/sync", token=alice["access_token"])
    carol = fed.remote.user("carol")
    heads = await fed.extremities()

    made = await make(fed, "join", carol, ALL_VERSIONS)
    assert made.status == 200, made
    template = made.json["event"]
    assert made.json["room_version"] == "11"
    assert template["type"] == "m.room.member"
    assert template["room_id"] == fed.room_id
    assert template["sender"] == template["state_key"] == carol
    assert template["content"] == {"membership": "join"}
    assert set(template["prev_events"]) == heads
    assert "signatures" not in template and "hashes" not in template
    state = await fed.state()
    assert set(template["auth_events"]) == {
        state[("m.room.create", "")],
        state[("m.room.power_levels", "")],
        state[("m.room.join_rules", "")],
    }

    join = complete(fed, made.json)
    sent = await send(fed, "join", join)
    assert sent.status == 200, sent
    answer = sent.json
    assert answer["origin"] == "test"
    assert answer["members_omitted"] is False
    assert make_event(answer["event"], join.room_version).event_id == join.event_id
    assert {e["type"] for e in answer["state"]} >= {
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
    }
    state_ids = {make_event(e, join.room_version).event_id for e in answer["state"]}
    assert state_ids == set(state.values())
    chain_ids = {make_event(e, join.room_version).event_id for e in answer["auth_chain"]}
    assert state[("m.room.create", "")] in chain_ids
    assert sorted(answer["servers_in_room"]) == sorted(["test", fed.remote.name])

    assert await membership(fed, carol) == "join"
    assert await fed.extremities() == {join.event_id}
    synced = await fed.client.get(
        "/sync", token=alice["access_token"], query={"since": first.json["next_batch"]}
    )
    timeline = synced.json["rooms"]["join"][fed.room_id]["timeline"]["events"]
    assert [(e["type"], e["state_key"]) for e in timeline] == [("m.room.member", carol)]

    again = await send(fed, "join", join)
    assert again.status == 200, again  # a retry gets the same answer
    assert await fed.extremities() == {join.event_id}


async def test_send_join_v1_answers_in_the_old_shape(fed: Harness) -> None:
    """v1 wraps the answer in [200, {...}] without the v2 fields."""
    made = await make(fed, "join", fed.remote.user("carol"), ALL_VERSIONS)
    sent = await send(fed, "join", complete(fed, made.json), version="v1")
    assert sent.status == 200, sent
    code, answer = sent.json
    assert code == 200
    assert set(answer) == {"origin", "state", "auth_chain"}


async def test_make_join_refusals(fed: Harness) -> None:
    """Wrong server for the user 403; the room's version not offered 400 naming it; no
    `ver` means version 1 only; an unknown room 404."""
    other = await make(fed, "join", "@carol:elsewhere.example", ALL_VERSIONS)
    assert (other.status, other.json["errcode"]) == (403, "M_FORBIDDEN")

    old = await make(fed, "join", fed.remote.user("carol"), ("1", "2"))
    assert (old.status, old.json["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    assert old.json["room_version"] == "11"
    bare = await make(fed, "join", fed.remote.user("carol"), None)
    assert (bare.status, bare.json["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION")

    uri = f"{FED1}/make_join/{q('!nowhere:test')}/{q(fed.remote.user('carol'))}?ver=11"
    unknown = await signed(fed, "GET", uri)
    assert (unknown.status, unknown.json["errcode"]) == (404, "M_NOT_FOUND")

    unsigned = await fed.client.get(
        f"{FED1}/make_join/{q(fed.room_id)}/{q(fed.remote.user('carol'))}?ver=11"
    )
    assert unsigned.status == 401


async def test_banned_and_invite_only_are_refused(fed: Harness) -> None:
    """The rules decide: a banned user, or an uninvited one in an invite-only room, gets 403."""
    carol, dan = fed.remote.user("carol"), fed.remote.user("dan")
    await fed.local("m.room.member", {"membership": "ban"}, carol)
    banned = await make(fed, "join", carol, ALL_VERSIONS)
    assert (banned.status, banned.json["errcode"]) == (403, "M_FORBIDDEN")

    await fed.local("m.room.join_rules", {"join_rule": "invite"}, "")
    uninvited = await make(fed, "join", dan, ALL_VERSIONS)
    assert (uninvited.status, uninvited.json["errcode"]) == (403, "M_FORBIDDEN")

    await fed.local("m.room.member", {"membership": "invite"}, dan)
    invited = await make(fed, "join", dan, ALL_VERSIONS)
    assert invited.status == 200, invited


async def test_send_join_rechecks_and_stores_nothing_when_refused(fed: Harness) -> None:
    """A join made before its user was banned is refused at send_join, and not stored."""
    carol = fed.remote.user("carol")
    made = await make(fed, "join", carol, ALL_VERSIONS)
    join = complete(fed, made.json)
    await fed.local("m.room.member", {"membership": "ban"}, carol)
    sent = await send(fed, "join", join)
    assert (sent.status, sent.json["errcode"]) == (403, "M_FORBIDDEN")
    assert await fed.stored(join.event_id) is None
    assert await membership(fed, carol) == "ban"


async def test_send_join_checks_the_event(fed: Harness) -> None:
    """Not a join, another server's user, not the path's ID, a bad signature: 400, nothing stored."""
    carol = fed.remote.user("carol")
    made = (await make(fed, "join", carol, ALL_VERSIONS)).json
    join = complete(fed, made)

    wrong_id = f"{FED2}/send_join/{q(fed.room_id)}/{q('$other')}"
    answer = await signed(fed, "PUT", wrong_id, join.pdu_json())
    assert (answer.status, answer.json["errcode"]) == (400, "M_INVALID_PARAM")

    as_leave = complete(
        fed, {**made, "event": {**made["event"], "content": {"membership": "leave"}}}
    )
    answer = await send(fed, "join", as_leave)
    assert (answer.status, answer.json["errcode"]) == (400, "M_INVALID_PARAM")

    foreign = dict(
        made["event"], sender="@eve:elsewhere.example", state_key="@eve:elsewhere.example"
    )
    answer = await send(fed, "join", complete(fed, {**made, "event": foreign}))
    assert (answer.status, answer.json["errcode"]) == (400, "M_INVALID_PARAM")

    tampered = join.pdu_json()
    tampered["signatures"] = {
        fed.remote.name: {k: "A" * 86 for k in tampered["signatures"][fed.remote.name]}
    }
    uri = f"{FED2}/send_join/{q(fed.room_id)}/{q(join.event_id)}"
    answer = await signed(fed, "PUT", uri, tampered)
    assert (answer.status, answer.json["errcode"]) == (400, "M_INVALID_PARAM")
    assert await fed.stored(join.event_id) is None


async def test_server_acl_denies_every_endpoint(fed: Harness) -> None:
    """An origin the room's m.room.server_acl denies gets 403 M_FORBIDDEN from make_* and send_*."""
    carol = fed.remote.user("carol")
    made = (await make(fed, "join", carol, ALL_VERSIONS)).json
    join = complete(fed, made)
    await fed.local("m.room.server_acl", {"allow": ["*"], "deny": ["127.0.0.1"]}, "")
    for answer in (
        await make(fed, "join", carol, ALL_VERSIONS),
        await make(fed, "leave", fed.bob, None),
        await make(fed, "knock", carol, ALL_VERSIONS),
        await send(fed, "join", join),
    ):
        assert (answer.status, answer.json["errcode"]) == (403, "M_FORBIDDEN"), answer
    assert await fed.stored(join.event_id) is None


# --- restricted rooms ---------------------------------------------------------------------


async def _restrict(fed: Harness, allowed: str) -> None:
    await fed.local(
        "m.room.join_rules",
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": allowed}]},
        "",
    )


async def _remote_join(fed: Harness, room_id: str, user_id: str) -> None:
    """`user_id` of the remote joins one of our other rooms (as if received)."""
    made = await signed(fed, "GET", f"{FED1}/make_join/{q(room_id)}/{q(user_id)}?ver=10")
    assert made.status == 200, made
    sent = await send(fed, "join", complete(fed, made.json))
    assert sent.status == 200, sent


async def test_restricted_room_joins(fed_v10: Harness) -> None:
    """A user joined to an allowed room gets a template naming our authorising user, and
    send_join adds our signature; a user in none gets 403; rooms we are not in: 400."""
    fed = fed_v10
    carol, dan = fed.remote.user("carol"), fed.remote.user("dan")
    await _restrict(fed, "!unknown:elsewhere.example")
    unknown = await make(fed, "join", carol, ALL_VERSIONS)
    assert (unknown.status, unknown.json["errcode"]) == (400, "M_UNABLE_TO_AUTHORISE_JOIN")

    space = await make_room(fed.hs, ALICE, version=V10)
    await _restrict(fed, space)
    outsider = await make(fed, "join", dan, ALL_VERSIONS)
    assert (outsider.status, outsider.json["errcode"]) == (403, "M_FORBIDDEN")

    await _remote_join(fed, space, carol)
    made = await make(fed, "join", carol, ALL_VERSIONS)
    assert made.status == 200, made
    assert made.json["event"]["content"]["join_authorised_via_users_server"] == ALICE
    join = complete(fed, made.json)
    sent = await send(fed, "join", join)
    assert sent.status == 200, sent
    returned = sent.json["event"]
    assert "test" in returned["signatures"] and fed.remote.name in returned["signatures"]
    stored = await fed.stored(join.event_id)
    assert stored is not None and "test" in stored.event.signatures
    assert await membership(fed, carol) == "join"


async def test_restricted_room_without_anyone_to_authorise(fed_v10: Harness) -> None:
    """No local member may invite: 400 M_UNABLE_TO_GRANT_JOIN (the joiner tries another server)."""
    fed = fed_v10
    carol = fed.remote.user("carol")
    space = await make_room(fed.hs, ALICE, version=V10)
    await _remote_join(fed, space, carol)
    await _restrict(fed, space)
    await fed.local("m.room.power_levels", {"users": {ALICE: 10}, "invite": 50}, "")
    made = await make(fed, "join", carol, ALL_VERSIONS)
    assert (made.status, made.json["errcode"]) == (400, "M_UNABLE_TO_GRANT_JOIN")


# --- make_leave / send_leave ------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_a_remote_user_leaves(fed: Harness, version: str) -> None:
    """make_leave / send_leave: bob's leave is stored; v2 answers {}, v1 [200, {}]."""
    made = await make(fed, "leave", fed.bob, None)
    assert made.status == 200, made
    assert made.json["event"]["content"] == {"membership": "leave"}
    sent = await send(fed, "leave", complete(fed, made.json), version=version)
    assert sent.status == 200, sent
    assert sent.json == ({} if version == "v2" else [200, {}])
    assert await membership(fed, fed.bob) == "leave"


async def test_send_leave_must_be_a_leave(fed: Harness) -> None:
    made = (await make(fed, "leave", fed.bob, None)).json
    join_again = complete(
        fed, {**made, "event": {**made["event"], "content": {"membership": "join"}}}
    )
    sent = await send(fed, "leave", join_again)
    assert (sent.status, sent.json["errcode"]) == (400, "M_INVALID_PARAM")
    assert await membership(fed, fed.bob) == "join"


# --- make_knock / send_knock -------------------------------------------------------------------


async def test_a_remote_user_knocks(fed: Harness) -> None:
    """In a knock room, the knock is stored and answered with the room's state as PDUs."""
    carol = fed.remote.user("carol")
    await fed.local("m.room.join_rules", {"join_rule": "knock"}, "")
    await fed.local("m.room.name", {"name": "Knock here"}, "")
    missing = await make(fed, "knock", carol, None)
    assert (missing.status, missing.json["errcode"]) == (400, "M_MISSING_PARAM")
    old = await make(fed, "knock", carol, ("1", "6"))
    assert (old.status, old.json["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION")

    made = await make(fed, "knock", carol, ALL_VERSIONS)
    assert made.status == 200, made
    assert made.json["event"]["content"] == {"membership": "knock"}
    sent = await send(fed, "knock", complete(fed, made.json), version="v1")
    assert sent.status == 200, sent
    state = {(e["type"], e["state_key"]): e for e in sent.json["knock_room_state"]}
    assert ("m.room.create", "") in state and ("m.room.join_rules", "") in state
    assert state[("m.room.name", "")]["content"] == {"name": "Knock here"}
    assert "signatures" in state[("m.room.create", "")]  # full PDUs
    assert await membership(fed, carol) == "knock"


async def test_knocking_where_the_rules_do_not_allow_it(fed: Harness) -> None:
    """A public room takes no knocks: 403."""
    made = await make(fed, "knock", fed.remote.user("carol"), ALL_VERSIONS)
    assert (made.status, made.json["errcode"]) == (403, "M_FORBIDDEN")


@pytest.fixture
def fed_v6(homeserver_factory: HomeServerFactory, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor, version=KNOWN_ROOM_VERSIONS["6"])


async def test_knocking_needs_a_version_with_knocks(fed_v6: Harness) -> None:
    made = await make(fed_v6, "knock", fed_v6.remote.user("carol"), ALL_VERSIONS)
    assert (made.status, made.json["errcode"]) == (403, "M_FORBIDDEN")
