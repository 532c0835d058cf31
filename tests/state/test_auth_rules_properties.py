"""Properties of the authorization rules over arbitrary content (Hypothesis).

Whatever JSON a remote server puts in an event's content, the rules decide:
they return or raise AuthError, never another exception (which would surface
as a 500 or break state resolution). And an allowed event stays allowed when
checked again: the rules are deterministic and do not change their inputs.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.state.auth_rules import AuthError
from homeserver.types.room_versions import RoomVersion
from tests.state.room_builder import ALICE, BOB, CAROL, RoomBuilder, make_room, versions

_KEYS = st.sampled_from(
    [
        "membership", "join", "invite", "leave", "ban", "knock", "users", "events",
        "notifications", "users_default", "state_default", "kick", "redact", "signed",
        "mxid", "token", "signatures", "third_party_invite", "join_authorised_via_users_server",
        "join_rule", "allow", "creator", "room_version", "additional_creators", "m.federate",
        ALICE, BOB, "m.room.member",
    ]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.sampled_from(["join", "invite", "leave", "ban", "knock", "public", "restricted", "50",
                     " 100 ", "x", ALICE, BOB, "@x", "tok", "ed25519:0", ""]),
)  # fmt: skip
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=12,
)
_CONTENT = st.dictionaries(_KEYS, _JSON, max_size=5)

_ROOMS: dict[str, RoomBuilder] = {}


def _room(v: RoomVersion) -> RoomBuilder:
    """One shared room per version: Alice (creator), Bob (50) joined, Carol invited."""
    if v.identifier not in _ROOMS:
        room = make_room(v, join_rule="invite", users={BOB: 50}, members=[BOB])
        room.invite(ALICE, CAROL)
        room.add(
            "m.room.third_party_invite", ALICE, {"display_name": "x", "public_key": "AA"}, "tok"
        )
        _ROOMS[v.identifier] = room
    return _ROOMS[v.identifier]


@pytest.mark.parametrize("v", versions())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_type=st.sampled_from(
        ["m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.create",
         "m.room.third_party_invite", "m.room.aliases", "m.room.redaction", "m.room.message"]
    ),
    sender=st.sampled_from([ALICE, BOB, CAROL, "@eve:e.test"]),
    state_key=st.sampled_from([None, "", ALICE, BOB, CAROL, "tok", "b.test"]),
    content=_CONTENT,
)  # fmt: skip
def test_rules_decide_any_content(
    v: RoomVersion, event_type: str, sender: str, state_key: str | None, content: dict[str, Any]
) -> None:
    """Any content is either allowed or refused with AuthError, and the answer is repeatable."""
    room = _room(v)
    event = room.build(event_type, sender, content, state_key)
    outcomes = []
    for _ in range(2):
        try:
            room.check(event)
            outcomes.append("allowed")
        except AuthError as e:
            outcomes.append(str(e))
    assert outcomes[0] == outcomes[1]
