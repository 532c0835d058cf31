"""Membership endpoints: every transition the rules allow or forbid, restricted rooms, forget.

The transition table drives the HTTP endpoints of three users, alice (who
creates the room, so holds its top power), bob and carol, and checks each
step's answer and the memberships at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.server import HomeServer
from homeserver.types.events import EventBase
from tests.conftest import run_on_reactor
from tests.homeserver_harness import NO_LIMIT, TestClient
from tests.room_helpers import User, register, room_path

JsonDict = dict[str, Any]


@pytest.fixture
def hs(homeserver_factory: Any) -> HomeServer:
    server: HomeServer = run_on_reactor(
        homeserver_factory.start(rc_message=NO_LIMIT, allow_guest_access=True)
    )
    return server


@pytest.fixture
def http(homeserver_factory: Any, hs: HomeServer) -> TestClient:
    client: TestClient = homeserver_factory.client(hs)
    return client


async def create(http: TestClient, user: User, body: JsonDict) -> str:
    response = await http.post("/createRoom", body, token=user.access_token)
    assert response.status == 200, response
    return str(response.json["room_id"])


async def member_event(hs: HomeServer, room_id: str, user_id: str) -> EventBase | None:
    state = await hs.room_storage.state.get_current_state_ids(room_id)
    event_id = state.get(("m.room.member", user_id))
    return await hs.room_storage.events.get_event(event_id) if event_id else None


async def membership_of(hs: HomeServer, room_id: str, user_id: str) -> str | None:
    member = await hs.room_storage.rooms.get_membership(room_id, user_id)
    return member.membership if member is not None else None


def join_rules(rule: str, allow: list[JsonDict] | None = None) -> JsonDict:
    content: JsonDict = {"join_rule": rule}
    if allow is not None:
        content["allow"] = allow
    return {"type": "m.room.join_rules", "content": content}


@dataclass(frozen=True)
class Step:
    actor: str
    action: str
    target: str | None = None
    status: int = 200
    errcode: str | None = None


@dataclass(frozen=True)
class Scenario:
    steps: tuple[Step, ...]
    room: JsonDict = field(default_factory=dict)
    memberships: dict[str, str | None] = field(default_factory=dict)


def ok(actor: str, action: str, target: str | None = None) -> Step:
    return Step(actor, action, target)


def refused(actor: str, action: str, target: str | None, status: int, errcode: str) -> Step:
    return Step(actor, action, target, status, errcode)


PUBLIC = {"room_version": "11", "preset": "public_chat"}
PRIVATE = {"room_version": "11", "preset": "private_chat"}
FORBIDDEN = (403, "M_FORBIDDEN")
BAD_STATE = (403, "M_BAD_STATE")

SCENARIOS: dict[str, Scenario] = {
    "invite then join": Scenario(
        (ok("alice", "invite", "bob"), ok("bob", "join")), PRIVATE, {"bob": "join"}
    ),
    "invite by a non-member": Scenario(
        (refused("bob", "invite", "carol", *FORBIDDEN),), PRIVATE, {"carol": None}
    ),
    "invite without the invite level": Scenario(
        (
            ok("bob", "join"),
            refused("bob", "invite", "carol", *FORBIDDEN),
        ),
        {**PUBLIC, "power_level_content_override": {"invite": 50}},
        {"carol": None},
    ),
    "invite someone already joined": Scenario(
        (ok("bob", "join"), refused("alice", "invite", "bob", *FORBIDDEN)),
        PUBLIC,
        {"bob": "join"},
    ),
    "invite twice": Scenario(
        (ok("alice", "invite", "bob"), ok("alice", "invite", "bob")), PRIVATE, {"bob": "invite"}
    ),
    "join invite-only uninvited": Scenario(
        (refused("bob", "join", None, *FORBIDDEN),), PRIVATE, {"bob": None}
    ),
    "join when joined": Scenario((ok("bob", "join"), ok("bob", "join")), PUBLIC, {"bob": "join"}),
    "reject an invite": Scenario(
        (
            ok("alice", "invite", "bob"),
            ok("bob", "leave"),
            refused("bob", "join", None, *FORBIDDEN),
        ),
        PRIVATE,
        {"bob": "leave"},
    ),
    "leave then rejoin invite-only": Scenario(
        (
            ok("alice", "invite", "bob"),
            ok("bob", "join"),
            ok("bob", "leave"),
            refused("bob", "join", None, *FORBIDDEN),
            ok("alice", "invite", "bob"),
            ok("bob", "join"),
        ),
        PRIVATE,
        {"bob": "join"},
    ),
    "leave then rejoin public": Scenario(
        (ok("bob", "join"), ok("bob", "leave"), ok("bob", "join")), PUBLIC, {"bob": "join"}
    ),
    "leave a room one is not in": Scenario(
        (refused("bob", "leave", None, *FORBIDDEN),), PUBLIC, {"bob": None}
    ),
    "kick by the creator": Scenario(
        (ok("bob", "join"), ok("alice", "kick", "bob"), ok("bob", "join")),
        PUBLIC,
        {"bob": "join"},
    ),
    "kick with too little power": Scenario(
        (ok("bob", "join"), ok("carol", "join"), refused("bob", "kick", "carol", *FORBIDDEN)),
        PUBLIC,
        {"carol": "join"},
    ),
    "kick someone with more power": Scenario(
        (ok("bob", "join"), refused("bob", "kick", "alice", *FORBIDDEN)),
        {**PUBLIC, "power_level_content_override": {"kick": 0}},
        {"alice": "join"},
    ),
    "kick a non-member": Scenario(
        (refused("alice", "kick", "carol", *FORBIDDEN),), PUBLIC, {"carol": None}
    ),
    "kick someone who left": Scenario(
        (ok("bob", "join"), ok("bob", "leave"), refused("alice", "kick", "bob", *FORBIDDEN)),
        PUBLIC,
        {"bob": "leave"},
    ),
    "kick an invitee withdraws the invite": Scenario(
        (
            ok("alice", "invite", "bob"),
            ok("alice", "kick", "bob"),
            refused("bob", "join", None, *FORBIDDEN),
        ),
        PRIVATE,
        {"bob": "leave"},
    ),
    "self-kick is leaving": Scenario(
        (ok("bob", "join"), ok("bob", "kick", "bob")), PUBLIC, {"bob": "leave"}
    ),
    "ban then join": Scenario(
        (ok("bob", "join"), ok("alice", "ban", "bob"), refused("bob", "join", None, *BAD_STATE)),
        PUBLIC,
        {"bob": "ban"},
    ),
    "ban then invite": Scenario(
        (ok("alice", "ban", "bob"), refused("alice", "invite", "bob", *BAD_STATE)),
        PRIVATE,
        {"bob": "ban"},
    ),
    "ban then kick": Scenario(
        (ok("alice", "ban", "bob"), refused("alice", "kick", "bob", *BAD_STATE)),
        PUBLIC,
        {"bob": "ban"},
    ),
    "banned user leaving": Scenario(
        (ok("alice", "ban", "bob"), refused("bob", "leave", None, *FORBIDDEN)),
        PUBLIC,
        {"bob": "ban"},
    ),
    "ban without the ban level": Scenario(
        (ok("bob", "join"), ok("carol", "join"), refused("bob", "ban", "carol", *FORBIDDEN)),
        PUBLIC,
        {"carol": "join"},
    ),
    "ban a non-member and a remote user": Scenario(
        (ok("alice", "ban", "carol"), ok("alice", "ban", "@mallory:elsewhere.example")),
        PUBLIC,
        {"carol": "ban", "@mallory:elsewhere.example": "ban"},
    ),
    "unban then join": Scenario(
        (ok("alice", "ban", "bob"), ok("alice", "unban", "bob"), ok("bob", "join")),
        PUBLIC,
        {"bob": "join"},
    ),
    "unban someone not banned": Scenario(
        (ok("bob", "join"), refused("alice", "unban", "bob", *BAD_STATE)), PUBLIC, {"bob": "join"}
    ),
    "unban without the ban level": Scenario(
        (
            ok("alice", "ban", "bob"),
            ok("carol", "join"),
            refused("carol", "unban", "bob", *FORBIDDEN),
        ),
        PUBLIC,
        {"bob": "ban"},
    ),
    # The invite goes to bob's server first; one that can't be reached (loopback is
    # blocked for federation by default, so no packet leaves) means no invite at all.
    "invite a remote user whose server is unreachable": Scenario(
        (refused("alice", "invite", "@bob:127.0.0.1:1", 502, "M_UNKNOWN"),),
        PRIVATE,
        {"@bob:127.0.0.1:1": None},
    ),
    "knock before v7": Scenario(
        (refused("bob", "knock", None, *FORBIDDEN),),
        {"room_version": "6", "initial_state": [join_rules("knock")]},
        {"bob": None},
    ),
    "knock, accepted": Scenario(
        (
            refused("bob", "join", None, *FORBIDDEN),
            ok("bob", "knock"),
            ok("alice", "invite", "bob"),
            ok("bob", "join"),
        ),
        {"room_version": "7", "initial_state": [join_rules("knock")]},
        {"bob": "join"},
    ),
    "knock, withdrawn": Scenario(
        (ok("bob", "knock"), ok("bob", "leave"), ok("bob", "knock")),
        {"room_version": "7", "initial_state": [join_rules("knock")]},
        {"bob": "knock"},
    ),
    "knock, refused by a kick": Scenario(
        (ok("bob", "knock"), ok("alice", "kick", "bob")),
        {"room_version": "11", "initial_state": [join_rules("knock")]},
        {"bob": "leave"},
    ),
    "knock on a public room": Scenario(
        (refused("bob", "knock", None, *FORBIDDEN),), {"room_version": "7", **PUBLIC}, {}
    ),
    "knock when joined or banned": Scenario(
        (
            ok("bob", "join"),
            refused("bob", "knock", None, *FORBIDDEN),
            ok("alice", "ban", "carol"),
            refused("carol", "knock", None, *BAD_STATE),
        ),
        {"room_version": "7", "preset": "public_chat"},
        {"bob": "join", "carol": "ban"},
    ),
    "knock_restricted needs v10": Scenario(
        (refused("bob", "knock", None, *FORBIDDEN),),
        {"room_version": "9", "initial_state": [join_rules("knock_restricted", [])]},
        {"bob": None},
    ),
    "knock_restricted from v10": Scenario(
        (ok("bob", "knock"),),
        {"room_version": "10", "initial_state": [join_rules("knock_restricted", [])]},
        {"bob": "knock"},
    ),
    "v12 creator cannot be kicked or banned": Scenario(
        (
            ok("bob", "join"),
            refused("bob", "kick", "alice", *FORBIDDEN),
            refused("bob", "ban", "alice", *FORBIDDEN),
        ),
        {
            "room_version": "12",
            "preset": "public_chat",
            "power_level_content_override": {"users": {"@bob:test": 100}},
        },
        {"alice": "join"},
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_membership_transitions(hs: HomeServer, http: TestClient, name: str) -> None:
    scenario = SCENARIOS[name]
    users = {n: await register(http, n) for n in ("alice", "bob", "carol")}
    room_id = await create(http, users["alice"], scenario.room)

    def user_id(name: str) -> str:
        return users[name].user_id if name in users else name

    for number, step in enumerate(scenario.steps):
        token = users[step.actor].access_token
        if step.action in ("join", "leave", "knock") and step.target is None:
            path = (
                f"/knock/{quote(room_id)}"
                if step.action == "knock"
                else room_path(room_id, step.action)
            )
            response = await http.post(path, {}, token=token)
        else:
            assert step.target is not None
            response = await http.post(
                room_path(room_id, step.action), {"user_id": user_id(step.target)}, token=token
            )
        assert response.status == step.status, (number, step, response)
        if step.errcode is not None:
            assert response.json["errcode"] == step.errcode, (number, step, response)
        elif step.action in ("join", "knock"):
            assert response.json == {"room_id": room_id}
        else:
            assert response.json == {}
    for name_or_id, expected in scenario.memberships.items():
        assert await membership_of(hs, room_id, user_id(name_or_id)) == expected, name_or_id


async def test_kick_and_ban_carry_the_reason_and_sender(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    room_id = await create(http, alice, PUBLIC)
    await http.post(room_path(room_id, "join"), {"reason": "hello"}, token=bob.access_token)
    joined = await member_event(hs, room_id, bob.user_id)
    assert joined is not None and joined.content["reason"] == "hello"

    await http.post(
        room_path(room_id, "kick"),
        {"user_id": bob.user_id, "reason": "bad jokes"},
        token=alice.access_token,
    )
    kicked = await member_event(hs, room_id, bob.user_id)
    assert kicked is not None
    assert kicked.sender == alice.user_id
    assert kicked.content == {"membership": "leave", "reason": "bad jokes"}

    await http.post(
        room_path(room_id, "ban"),
        {"user_id": bob.user_id, "reason": "spam"},
        token=alice.access_token,
    )
    banned = await member_event(hs, room_id, bob.user_id)
    assert banned is not None and banned.content == {"membership": "ban", "reason": "spam"}


async def test_member_events_carry_the_profile(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    avatar = "mxc://test/bob"
    await http.put("/profile/@bob:test/displayname", {"displayname": "Bob"}, token=bob.access_token)
    await http.put("/profile/@bob:test/avatar_url", {"avatar_url": avatar}, token=bob.access_token)
    room_id = await create(
        http, alice, {"room_version": "7", "initial_state": [join_rules("knock")]}
    )

    await http.post(f"/knock/{quote(room_id)}", {"reason": "let me in"}, token=bob.access_token)
    knock = await member_event(hs, room_id, bob.user_id)
    assert knock is not None
    assert knock.content == {
        "membership": "knock",
        "reason": "let me in",
        "displayname": "Bob",
        "avatar_url": avatar,
    }
    await http.post(
        room_path(room_id, "invite"), {"user_id": bob.user_id}, token=alice.access_token
    )
    invite = await member_event(hs, room_id, bob.user_id)
    assert invite is not None
    assert invite.content == {"membership": "invite", "displayname": "Bob", "avatar_url": avatar}
    await http.post(f"/join/{quote(room_id)}", {}, token=bob.access_token)
    join = await member_event(hs, room_id, bob.user_id)
    assert join is not None
    assert join.content == {"membership": "join", "displayname": "Bob", "avatar_url": avatar}
    # Leaves and bans do not.
    await http.post(room_path(room_id, "leave"), {}, token=bob.access_token)
    leave = await member_event(hs, room_id, bob.user_id)
    assert leave is not None and leave.content == {"membership": "leave"}


async def test_join_by_alias_and_by_id(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    room_id = await create(http, alice, {**PUBLIC, "room_alias_name": "lobby"})

    response = await http.post(
        "/join/%23lobby:test", {}, token=bob.access_token, query={"via": "test"}
    )
    assert (response.status, response.json) == (200, {"room_id": room_id})
    response = await http.post(
        f"/join/{quote(room_id)}", None, token=bob.access_token, query={"server_name": "test"}
    )
    assert (response.status, response.json) == (200, {"room_id": room_id})
    # An empty body counts as {}, as in Synapse.
    response = await http.request("POST", room_path(room_id, "join"), b"", token=bob.access_token)
    assert (response.status, response.json) == (200, {"room_id": room_id})
    assert await membership_of(hs, room_id, bob.user_id) == "join"


@pytest.mark.parametrize(
    ("path", "body", "status", "errcode"),
    [
        ("/join/%23nowhere:test", {}, 404, "M_NOT_FOUND"),
        ("/join/%21unknown:test", {}, 404, "M_NOT_FOUND"),
        ("/join/lobby", {}, 400, "M_INVALID_PARAM"),
        ("/join/%23lobby", {}, 400, "M_INVALID_PARAM"),
        ("/knock/%23nowhere:test", {}, 404, "M_NOT_FOUND"),
        ("/rooms/%21unknown:test/join", {}, 404, "M_NOT_FOUND"),
        ("/rooms/%21unknown:test/leave", {}, 404, "M_NOT_FOUND"),
        ("/rooms/%21unknown:test/invite", {"user_id": "@bob:test"}, 404, "M_NOT_FOUND"),
        ("/rooms/not-a-room/leave", {}, 400, "M_INVALID_PARAM"),
        ("ROOM/invite", {}, 400, "M_MISSING_PARAM"),
        ("ROOM/invite", {"user_id": 5}, 400, "M_INVALID_PARAM"),
        ("ROOM/invite", {"user_id": "bob"}, 400, "M_INVALID_PARAM"),
        ("ROOM/kick", {"user_id": "@bob:test", "reason": 5}, 400, "M_INVALID_PARAM"),
        ("ROOM/join", {"third_party_signed": "x"}, 400, "M_BAD_JSON"),
        ("ROOM/join", {"third_party_signed": {"mxid": "@a:test"}}, 400, "M_INVALID_PARAM"),
        ("ROOM/join", b"{not json", 400, "M_NOT_JSON"),
        ("ROOM/join", [1], 400, "M_BAD_JSON"),
    ],
)
async def test_bad_membership_requests(
    hs: HomeServer, http: TestClient, path: str, body: Any, status: int, errcode: str
) -> None:
    alice = await register(http, "alice")
    room_id = await create(http, alice, {**PUBLIC, "room_alias_name": "lobby"})
    before = await hs.room_storage.state.get_current_state_ids(room_id)
    if path.startswith("ROOM/"):
        path = room_path(room_id, path.removeprefix("ROOM/"))
    response = await http.request("POST", path, body, token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (status, errcode), response
    assert await hs.room_storage.state.get_current_state_ids(room_id) == before


async def test_guests_join_only_rooms_that_let_them(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    guest = await http.register_guest()
    token = guest["access_token"]
    open_room = await create(
        http,
        alice,
        {
            **PUBLIC,
            "initial_state": [
                {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}
            ],
        },
    )
    closed_room = await create(http, alice, PUBLIC)

    response = await http.post(room_path(open_room, "join"), {}, token=token)
    assert response.status == 200, response
    joined = await member_event(hs, open_room, guest["user_id"])
    assert joined is not None and joined.content["kind"] == "guest"
    response = await http.post(f"/join/{quote(closed_room)}", {}, token=token)
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    for action in ("invite", "kick", "ban", "unban"):
        response = await http.post(
            room_path(open_room, action), {"user_id": alice.user_id}, token=token
        )
        assert (response.status, response.json["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    response = await http.post(f"/knock/{quote(open_room)}", {}, token=token)
    assert (response.status, response.json["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    response = await http.post(room_path(open_room, "leave"), {}, token=token)
    assert response.status == 200
    assert (await http.get("/joined_rooms", token=token)).json == {"joined_rooms": []}


# -- restricted rooms


def restricted(version: str, rule: str, space: str, **extra: Any) -> JsonDict:
    allow = [{"type": "m.room_membership", "room_id": space}]
    return {"room_version": version, "initial_state": [join_rules(rule, allow)], **extra}


async def test_restricted_join_through_membership_of_an_allowed_room(
    hs: HomeServer, http: TestClient
) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    space = await create(http, alice, {**PUBLIC, "creation_content": {"type": "m.space"}})
    room_id = await create(http, alice, restricted("8", "restricted", space))

    response = await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    assert await membership_of(hs, room_id, bob.user_id) is None

    await http.post(room_path(space, "join"), {}, token=bob.access_token)
    response = await http.post(
        room_path(room_id, "join"),
        # A client cannot name its own authoriser: the server picks one.
        {},
        token=bob.access_token,
    )
    assert response.status == 200, response
    joined = await member_event(hs, room_id, bob.user_id)
    assert joined is not None
    assert joined.content["join_authorised_via_users_server"] == alice.user_id

    # Once in, leaving the allowed room changes nothing; a rejoin needs no authoriser.
    await http.post(room_path(space, "leave"), {}, token=bob.access_token)
    response = await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
    assert response.status == 200
    again = await member_event(hs, room_id, bob.user_id)
    assert again is not None and "join_authorised_via_users_server" not in again.content


async def test_restricted_join_needs_a_version_that_has_it(
    hs: HomeServer, http: TestClient
) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    space = await create(http, alice, PUBLIC)
    await http.post(room_path(space, "join"), {}, token=bob.access_token)
    for version, rule in (("7", "restricted"), ("9", "knock_restricted")):
        room_id = await create(http, alice, restricted(version, rule, space))
        response = await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
        assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN"), version
    room_id = await create(http, alice, restricted("10", "knock_restricted", space))
    response = await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
    assert response.status == 200, response


async def test_restricted_join_invited_needs_no_allowed_room(
    hs: HomeServer, http: TestClient
) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    space = await create(http, alice, PUBLIC)
    room_id = await create(http, alice, restricted("9", "restricted", space))
    await http.post(
        room_path(room_id, "invite"), {"user_id": bob.user_id}, token=alice.access_token
    )
    response = await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
    assert response.status == 200, response
    joined = await member_event(hs, room_id, bob.user_id)
    assert joined is not None and "join_authorised_via_users_server" not in joined.content


async def test_restricted_join_picks_the_most_powerful_local_inviter(
    hs: HomeServer, http: TestClient
) -> None:
    """v12: the creator's infinite power; with nobody able to invite, M_UNABLE_TO_GRANT_JOIN."""
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    carol = await register(http, "carol")
    space = await create(http, alice, PUBLIC)
    for user in (bob, carol):
        await http.post(room_path(space, "join"), {}, token=user.access_token)
    room_id = await create(
        http,
        alice,
        restricted("12", "restricted", space, power_level_content_override={"invite": 50}),
    )
    response = await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
    assert response.status == 200, response
    joined = await member_event(hs, room_id, bob.user_id)
    assert joined is not None
    assert joined.content["join_authorised_via_users_server"] == alice.user_id

    # Only alice could invite; once she is gone nobody here can vouch for carol.
    await http.post(room_path(room_id, "leave"), {}, token=alice.access_token)
    response = await http.post(room_path(room_id, "join"), {}, token=carol.access_token)
    assert (response.status, response.json["errcode"]) == (400, "M_UNABLE_TO_GRANT_JOIN")
    assert await membership_of(hs, room_id, carol.user_id) is None


# -- joined rooms, forgetting


async def test_joined_rooms(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    first = await create(http, alice, PUBLIC)
    second = await create(http, alice, PUBLIC)
    invited = await create(http, alice, PRIVATE)
    await http.post(
        room_path(invited, "invite"), {"user_id": bob.user_id}, token=alice.access_token
    )
    for room_id in (first, second):
        await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
    await http.post(room_path(first, "leave"), {}, token=bob.access_token)
    response = await http.get("/joined_rooms", token=bob.access_token)
    assert response.json == {"joined_rooms": [second]}
    response = await http.get("/joined_rooms", token=alice.access_token)
    assert sorted(response.json["joined_rooms"]) == sorted([first, second, invited])


async def test_forget(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    room_id = await create(http, alice, PUBLIC)
    forget = room_path(room_id, "forget")

    # Never in the room: nothing to forget, and no error (as Synapse).
    assert (await http.post(forget, {}, token=bob.access_token)).status == 200
    await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
    response = await http.post(forget, {}, token=bob.access_token)
    assert (response.status, response.json["errcode"]) == (400, "M_UNKNOWN")
    assert not await hs.membership.is_forgotten(bob.user_id, room_id)

    await http.post(room_path(room_id, "leave"), {}, token=bob.access_token)
    assert (await http.post(forget, {}, token=bob.access_token)).status == 200
    assert await hs.membership.is_forgotten(bob.user_id, room_id)
    assert await hs.membership.get_forgotten_rooms(bob.user_id) == {room_id}

    # Coming back (here by joining) ends it.
    await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
    assert not await hs.membership.is_forgotten(bob.user_id, room_id)
    assert await hs.membership.get_forgotten_rooms(bob.user_id) == set()

    # A banned user may forget the room too; an invite brings it back.
    await http.post(room_path(room_id, "ban"), {"user_id": bob.user_id}, token=alice.access_token)
    assert (await http.post(forget, {}, token=bob.access_token)).status == 200
    assert await hs.membership.is_forgotten(bob.user_id, room_id)
    await http.post(room_path(room_id, "unban"), {"user_id": bob.user_id}, token=alice.access_token)
    assert not await hs.membership.is_forgotten(bob.user_id, room_id)
    await http.post(forget, {}, token=bob.access_token)
    await http.post(
        room_path(room_id, "invite"), {"user_id": bob.user_id}, token=alice.access_token
    )
    assert not await hs.membership.is_forgotten(bob.user_id, room_id)
    response = await http.post(forget, {}, token=bob.access_token)
    assert (response.status, response.json["errcode"]) == (400, "M_UNKNOWN")


# -- profile changes


async def test_profile_changes_reach_the_rooms_joined(hs: HomeServer, http: TestClient) -> None:
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    joined = [await create(http, alice, PUBLIC) for _ in range(2)]
    left = await create(http, alice, PUBLIC)
    invited = await create(http, alice, PRIVATE)
    for room_id in (*joined, left):
        await http.post(room_path(room_id, "join"), {}, token=bob.access_token)
    await http.post(room_path(left, "leave"), {}, token=bob.access_token)
    await http.post(
        room_path(invited, "invite"), {"user_id": bob.user_id}, token=alice.access_token
    )

    response = await http.put(
        "/profile/@bob:test/displayname", {"displayname": "Robert"}, token=bob.access_token
    )
    assert response.status == 200
    for room_id in joined:
        event = await member_event(hs, room_id, bob.user_id)
        assert event is not None
        assert event.content == {"membership": "join", "displayname": "Robert"}
    # Invites and leaves keep what they said (the invite: the name at registration).
    left_event = await member_event(hs, left, bob.user_id)
    assert left_event is not None and left_event.content == {"membership": "leave"}
    invite_event = await member_event(hs, invited, bob.user_id)
    assert invite_event is not None
    assert invite_event.content == {"membership": "invite", "displayname": "bob"}

    await http.put(
        "/profile/@bob:test/avatar_url", {"avatar_url": "mxc://test/r"}, token=bob.access_token
    )
    await http.delete("/profile/@bob:test/displayname", token=bob.access_token)
    for room_id in joined:
        event = await member_event(hs, room_id, bob.user_id)
        assert event is not None
        assert event.content == {"membership": "join", "avatar_url": "mxc://test/r"}
    # Other profile fields are not in member events: changing them sends nothing.
    before = hs.room_storage.events.current_token()
    await http.put("/profile/@bob:test/m.tz", {"m.tz": "Europe/Paris"}, token=bob.access_token)
    assert hs.room_storage.events.current_token() == before


async def test_membership_changes_are_rate_limited(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(rc_message={"per_second": 0.1, "burst_count": 3})
    http = homeserver_factory.client(hs)
    alice = await register(http, "alice")
    bob = await register(http, "bob")
    room_id = await create(http, alice, PUBLIC)
    for action in ("join", "leave", "join"):
        response = await http.post(room_path(room_id, action), {}, token=bob.access_token)
        assert response.status == 200, response
    response = await http.post(room_path(room_id, "leave"), {}, token=bob.access_token)
    assert (response.status, response.json["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert await membership_of(hs, room_id, bob.user_id) == "join"
    # Profile updates are the server's doing and never refused for it.
    response = await http.put(
        "/profile/@bob:test/displayname", {"displayname": "B"}, token=bob.access_token
    )
    assert response.status == 200
    event = await member_event(hs, room_id, bob.user_id)
    assert event is not None and event.content["displayname"] == "B"


async def test_a_room_refusing_the_profile_update_is_skipped(
    hs: HomeServer, http: TestClient
) -> None:
    """A guest whose room no longer lets guests join keeps its old member event there."""
    alice = await register(http, "alice")
    guest = await http.register_guest()
    token, guest_id = guest["access_token"], guest["user_id"]
    guest_access = {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}
    closing, staying = [
        await create(http, alice, {**PUBLIC, "initial_state": [guest_access]}) for _ in range(2)
    ]
    for room_id in (closing, staying):
        await http.post(room_path(room_id, "join"), {}, token=token)
    await hs.event_persister.create_and_persist(
        closing, "m.room.guest_access", "", alice.user_id, {"guest_access": "forbidden"}
    )
    before = await member_event(hs, closing, guest_id)

    response = await http.put(
        f"/profile/{quote(guest_id)}/displayname", {"displayname": "Visitor"}, token=token
    )
    assert response.status == 200, response
    assert await member_event(hs, closing, guest_id) == before
    updated = await member_event(hs, staying, guest_id)
    assert updated is not None
    assert updated.content == {"membership": "join", "kind": "guest", "displayname": "Visitor"}
