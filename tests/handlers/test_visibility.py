"""Tests for homeserver.handlers.visibility: history visibility per event, and who may read a room.

Every test runs a HomeServer on each database engine and builds its room
through the event persister (tests/room_helpers.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.handlers.event_persistence import EventToPersist
from homeserver.handlers.visibility import (
    check_user_in_room_or_world_readable,
    filter_events_for_client,
)
from homeserver.server import HomeServer
from homeserver.storage.stores.events import StoredEvent
from homeserver.types.errors import MatrixError
from tests.room_helpers import (
    REMOTE,
    invite,
    join,
    leave,
    make_room,
    remote_event,
    send,
    set_membership,
    set_state,
)

ALICE = "@alice:test"
BOB = "@bob:test"
CAROL = "@carol:test"


async def stored(hs: HomeServer, *event_ids: str) -> list[StoredEvent]:
    found = await hs.room_storage.events.get_stored_events(event_ids)
    return [found[i] for i in event_ids]


async def visible_names(
    hs: HomeServer, user_id: str | None, named: dict[str, str], **kwargs: Any
) -> set[str]:
    """Which of the named events `user_id` may see."""
    by_id = {event_id: name for name, event_id in named.items()}
    events = await stored(hs, *named.values())
    shown = await filter_events_for_client(hs.room_storage, user_id, events, **kwargs)
    return {by_id[e.event_id] for e in shown}


async def bob_comes_and_goes(hs: HomeServer, visibility: str) -> dict[str, str]:
    """A room with `visibility`: a message, bob invited, a message, bob joins, a message,
    bob leaves, a message."""
    room_id = await make_room(hs, ALICE, history_visibility=visibility, join_rule="invite")
    names = {}
    names["before_invite"] = (
        await send(hs, room_id, ALICE, "m.room.message", {"body": "0"})
    ).event_id
    names["invite"] = (await invite(hs, room_id, ALICE, BOB)).event_id
    names["while_invited"] = (
        await send(hs, room_id, ALICE, "m.room.message", {"body": "1"})
    ).event_id
    names["join"] = (await join(hs, room_id, BOB)).event_id
    names["while_joined"] = (
        await send(hs, room_id, ALICE, "m.room.message", {"body": "2"})
    ).event_id
    names["leave"] = (await leave(hs, room_id, BOB)).event_id
    names["after_leave"] = (
        await send(hs, room_id, ALICE, "m.room.message", {"body": "3"})
    ).event_id
    return names


@pytest.mark.parametrize(
    ("visibility", "expected"),
    [
        (
            "world_readable",
            {
                "before_invite",
                "invite",
                "while_invited",
                "join",
                "while_joined",
                "leave",
                "after_leave",
            },
        ),
        ("shared", {"before_invite", "invite", "while_invited", "join", "while_joined", "leave"}),
        ("invited", {"invite", "while_invited", "join", "while_joined", "leave"}),
        ("joined", {"join", "while_joined", "leave"}),
    ],
)
async def test_each_setting_for_a_user_who_left(
    homeserver: HomeServer, visibility: str, expected: set[str]
) -> None:
    """Bob sees what the setting allows up to and including his leave, and nothing after it."""
    names = await bob_comes_and_goes(homeserver, visibility)
    assert await visible_names(homeserver, BOB, names) == expected
    # Alice was joined throughout.
    assert await visible_names(homeserver, ALICE, names) == set(names)


@pytest.mark.parametrize("visibility", ["shared", "invited", "joined"])
async def test_strangers_and_anonymous_see_nothing_unless_world_readable(
    homeserver: HomeServer, visibility: str
) -> None:
    names = await bob_comes_and_goes(homeserver, visibility)
    assert await visible_names(homeserver, CAROL, names) == set()
    assert await visible_names(homeserver, None, names) == set()


async def test_world_readable_is_visible_to_anyone(homeserver: HomeServer) -> None:
    names = await bob_comes_and_goes(homeserver, "world_readable")
    assert await visible_names(homeserver, CAROL, names) == set(names)
    assert await visible_names(homeserver, None, names) == set(names)


async def test_shared_history_returns_with_a_later_join(homeserver: HomeServer) -> None:
    """What happened while bob was away is visible again once he rejoins (shared), not (joined)."""
    hs = homeserver
    for visibility, sees_absence in (("shared", True), ("joined", False)):
        room_id = await make_room(hs, ALICE, history_visibility=visibility)
        await join(hs, room_id, BOB)
        await leave(hs, room_id, BOB)
        away = await send(hs, room_id, ALICE, "m.room.message", {"body": "while away"})
        assert await visible_names(hs, BOB, {"away": away.event_id}) == set()
        await join(hs, room_id, BOB)
        expected = {"away"} if sees_absence else set()
        assert await visible_names(hs, BOB, {"away": away.event_id}) == expected


async def test_peeking_does_not_grant_shared_history(homeserver: HomeServer) -> None:
    """With is_peeking, shared history needs membership at the event (as Synapse)."""
    hs = homeserver
    room_id = await make_room(hs, ALICE, history_visibility="shared")
    before = await send(hs, room_id, ALICE, "m.room.message", {"body": "before bob"})
    await join(hs, room_id, BOB)
    during = await send(hs, room_id, ALICE, "m.room.message", {"body": "with bob"})
    await leave(hs, room_id, BOB)
    names = {"before": before.event_id, "during": during.event_id}
    assert await visible_names(hs, BOB, names) == {"before", "during"}
    assert await visible_names(hs, BOB, names, is_peeking=True) == {"during"}


async def test_history_visibility_changes_are_visible_from_either_side(
    homeserver: HomeServer,
) -> None:
    """An m.room.history_visibility event is judged by the setting before or after it."""
    hs = homeserver
    room_id = await make_room(hs, ALICE, history_visibility="joined")
    opened = await set_state(
        hs, room_id, ALICE, "m.room.history_visibility", {"history_visibility": "world_readable"}
    )
    readable = await send(hs, room_id, ALICE, "m.room.message", {"body": "public"})
    closed = await set_state(
        hs, room_id, ALICE, "m.room.history_visibility", {"history_visibility": "joined"}
    )
    hidden = await send(hs, room_id, ALICE, "m.room.message", {"body": "private"})
    names = {
        "opened": opened.event_id,
        "readable": readable.event_id,
        "closed": closed.event_id,
        "hidden": hidden.event_id,
    }
    assert await visible_names(hs, CAROL, names) == {"opened", "readable", "closed"}


async def test_own_membership_events_before_or_after(homeserver: HomeServer) -> None:
    """In a `joined` room a user sees their join, their leave, and rejecting an invite."""
    hs = homeserver
    room_id = await make_room(hs, ALICE, history_visibility="joined", join_rule="invite")
    invited = await invite(hs, room_id, ALICE, BOB)
    rejected = await leave(hs, room_id, BOB)
    await invite(hs, room_id, ALICE, CAROL)
    joined = await join(hs, room_id, CAROL)
    kicked = await set_membership(hs, room_id, ALICE, CAROL, "leave")
    assert await visible_names(
        hs, BOB, {"invited": invited.event_id, "rejected": rejected.event_id}
    ) == {"rejected"}
    assert await visible_names(
        hs, CAROL, {"joined": joined.event_id, "kicked": kicked.event_id}
    ) == {
        "joined",
        "kicked",
    }
    # Other people's membership events follow the usual rules.
    assert await visible_names(hs, CAROL, {"bob": rejected.event_id}) == set()


async def test_outliers_only_own_membership(homeserver: HomeServer) -> None:
    """An invite held as an outlier (no state) is shown to its invitee and to no one else."""
    hs = homeserver
    room_id = await make_room(hs, ALICE, history_visibility="world_readable")
    remote_user = f"@dave:{REMOTE}"
    await hs.event_persister.persist(
        [
            EventToPersist(
                await remote_event(
                    hs,
                    room_id,
                    "m.room.member",
                    remote_user,
                    {"membership": "join"},
                    state_key=remote_user,
                )
            )
        ]
    )
    outlier_invite = await remote_event(
        hs, room_id, "m.room.member", remote_user, {"membership": "invite"}, state_key=BOB
    )
    (persisted,) = await hs.event_persister.persist([EventToPersist(outlier_invite, outlier=True)])
    assert persisted.outlier
    names = {"invite": outlier_invite.event_id}
    assert await visible_names(hs, BOB, names) == {"invite"}
    assert await visible_names(hs, ALICE, names) == set()


async def test_rejected_events_are_never_visible(homeserver: HomeServer) -> None:
    hs = homeserver
    room_id = await make_room(hs, ALICE, history_visibility="world_readable")
    # A remote user who never joined: the rules reject the message on receipt.
    intruder = await remote_event(
        hs, room_id, "m.room.message", f"@mallory:{REMOTE}", {"body": "spam"}
    )
    (persisted,) = await hs.event_persister.persist([EventToPersist(intruder)])
    assert persisted.rejected_reason is not None
    assert await visible_names(hs, ALICE, {"spam": intruder.event_id}) == set()


# -- check_user_in_room_or_world_readable


async def test_who_may_read_a_room(homeserver: HomeServer) -> None:
    hs = homeserver
    storage = hs.room_storage
    room_id = await make_room(hs, ALICE, join_rule="public")
    member = await join(hs, room_id, BOB)
    assert await check_user_in_room_or_world_readable(storage, room_id, BOB) == (
        "join",
        member.event_id,
    )
    left = await leave(hs, room_id, BOB)
    assert await check_user_in_room_or_world_readable(
        storage, room_id, BOB, allow_departed_users=True
    ) == ("leave", left.event_id)
    for user, departed in ((BOB, False), (CAROL, True), (CAROL, False)):
        with pytest.raises(MatrixError) as refused:
            await check_user_in_room_or_world_readable(
                storage, room_id, user, allow_departed_users=departed
            )
        assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")
    await join(hs, room_id, CAROL)
    await set_membership(hs, room_id, ALICE, CAROL, "ban")
    with pytest.raises(MatrixError):
        await check_user_in_room_or_world_readable(
            storage, room_id, CAROL, allow_departed_users=True
        )
    with pytest.raises(MatrixError):
        await check_user_in_room_or_world_readable(storage, "!unknown:test", ALICE)


async def test_world_readable_rooms_can_be_previewed(homeserver: HomeServer) -> None:
    hs = homeserver
    room_id = await make_room(hs, ALICE, history_visibility="world_readable")
    assert await check_user_in_room_or_world_readable(hs.room_storage, room_id, CAROL) == (
        None,
        None,
    )
    # A member still gets their membership.
    member = await join(hs, room_id, BOB)
    assert await check_user_in_room_or_world_readable(hs.room_storage, room_id, BOB) == (
        "join",
        member.event_id,
    )
