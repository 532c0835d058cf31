"""Other servers' reads of our rooms: /event, /state, /state_ids, /backfill,
/get_missing_events and /event_auth, signed by the fake remote of
tests/federation/test_receiver_harness.py (both engines)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from homeserver.crypto.x_matrix import sign_request
from homeserver.handlers.event_persistence import EventToPersist
from homeserver.types.redaction import prune_event_dict
from tests.federation.test_receiver_harness import FED, Harness, running_harness
from tests.homeserver_harness import Response


@pytest.fixture
def fed(homeserver_factory: Any, reactor: Any) -> Iterator[Harness]:
    yield from running_harness(homeserver_factory, reactor)


async def signed(
    fed: Harness, method: str, path: str, query: Any = None, body: Any = None
) -> Response:
    """A request from the remote, X-Matrix signed (`query` a dict or a list of pairs)."""
    uri = f"{FED}{path}" + (f"?{urlencode(query, doseq=True)}" if query else "")
    header = sign_request(
        fed.remote.signing_key,
        fed.remote.name,
        fed.hs.config.server.server_name,
        method,
        uri,
        body,
    )
    return await fed.client.request(method, uri, body, headers={"Authorization": header})


def room(fed: Harness) -> str:
    return quote(fed.room_id, safe="")


async def messages(fed: Harness, count: int, prefix: str = "m") -> list[str]:
    return [
        (await fed.local("m.room.message", {"msgtype": "m.text", "body": f"{prefix}{i}"})).event_id
        for i in range(count)
    ]


async def bob_membership(fed: Harness, membership: str) -> None:
    event = fed.remote.event(
        "m.room.member", {"membership": membership}, sender=fed.bob, state_key=fed.bob
    )
    (persisted,) = await fed.hs.event_persister.persist([EventToPersist(event)])
    assert persisted.rejected_reason is None


async def auth_chain(fed: Harness, event_ids: list[str]) -> set[str]:
    """The auth chain of the events, walked over what we store (the expected answer)."""
    chain: set[str] = set()
    frontier = list(event_ids)
    while frontier:
        stored = await fed.hs.room_storage.events.get_stored_events(frontier)
        found = {a for s in stored.values() for a in s.event.auth_event_ids}
        frontier = sorted(found - chain)
        chain |= found
    return chain


async def test_event_is_served_as_a_pdu(fed: Harness) -> None:
    (message,) = await messages(fed, 1)
    response = await signed(fed, "GET", f"/event/{quote(message)}")
    assert response.status == 200, response
    answer = response.json
    assert answer["origin"] == "test"
    assert isinstance(answer["origin_server_ts"], int)
    stored = await fed.stored(message)
    assert stored is not None
    assert answer["pdus"] == [stored.event.pdu_json()]


async def test_unknown_event_is_404(fed: Harness) -> None:
    response = await signed(fed, "GET", "/event/$nothing")
    assert response.status == 404
    assert response.json["errcode"] == "M_NOT_FOUND"


async def test_unsigned_request_is_refused(fed: Harness) -> None:
    (message,) = await messages(fed, 1)
    response = await fed.client.get(f"{FED}/event/{quote(message)}")
    assert response.status == 401


async def test_redacted_event_is_served_pruned(fed: Harness) -> None:
    (message,) = await messages(fed, 1)
    await fed.local("m.room.redaction", {"redacts": message})
    response = await signed(fed, "GET", f"/event/{quote(message)}")
    assert response.status == 200, response
    (pdu,) = response.json["pdus"]
    stored = await fed.stored(message)
    assert stored is not None
    assert pdu == prune_event_dict(stored.event.room_version, stored.event.pdu_json())
    assert pdu["content"] == {}


async def test_state_ids_and_state_are_the_state_before_the_event(fed: Harness) -> None:
    topic = await fed.local("m.room.topic", {"topic": "hello"}, "")
    before = await fed.hs.room_storage.state.get_state_ids_for_event(topic.event_id)
    assert before is not None and ("m.room.topic", "") not in before
    expected_chain = await auth_chain(fed, list(before.values()))

    response = await signed(fed, "GET", f"/state_ids/{room(fed)}", {"event_id": topic.event_id})
    assert response.status == 200, response
    assert sorted(response.json["pdu_ids"]) == sorted(before.values())
    assert set(response.json["auth_chain_ids"]) == expected_chain

    response = await signed(fed, "GET", f"/state/{room(fed)}", {"event_id": topic.event_id})
    assert response.status == 200, response
    stored = await fed.hs.room_storage.events.get_stored_events([*before.values(), *expected_chain])
    pdus = {p["type"] + "|" + p["state_key"]: p for p in response.json["pdus"]}
    assert len(pdus) == len(before)
    for (event_type, state_key), event_id in before.items():
        assert pdus[f"{event_type}|{state_key}"] == stored[event_id].event.pdu_json()
    chain_pdus = response.json["auth_chain"]
    assert len(chain_pdus) == len(expected_chain)
    assert all(p in [stored[i].event.pdu_json() for i in expected_chain] for p in chain_pdus)


async def test_state_ids_need_a_known_event_of_the_room(fed: Harness) -> None:
    response = await signed(fed, "GET", f"/state_ids/{room(fed)}", {"event_id": "$nothing"})
    assert response.status == 404
    assert response.json["errcode"] == "M_NOT_FOUND"
    response = await signed(fed, "GET", f"/state_ids/{room(fed)}")
    assert response.status == 400
    assert response.json["errcode"] == "M_MISSING_PARAM"


async def test_backfill_gives_the_events_before_newest_first(fed: Harness) -> None:
    ids = await messages(fed, 5)
    response = await signed(fed, "GET", f"/backfill/{room(fed)}", [("v", ids[-1]), ("limit", "3")])
    assert response.status == 200, response
    answer = response.json
    assert answer["origin"] == "test"
    stored = await fed.hs.room_storage.events.get_stored_events(ids)
    assert answer["pdus"] == [stored[i].event.pdu_json() for i in reversed(ids[2:])]

    # From two events at once, nothing twice; as far back as the room's creation.
    response = await signed(
        fed, "GET", f"/backfill/{room(fed)}", [("v", ids[-1]), ("v", ids[-2]), ("limit", "100")]
    )
    pdus = response.json["pdus"]
    assert pdus[0]["type"] == "m.room.message"
    assert pdus[-1]["type"] == "m.room.create"
    assert len({json_key(p) for p in pdus}) == len(pdus)
    depths = [p["depth"] for p in pdus]
    assert depths == sorted(depths, reverse=True)


def json_key(pdu: dict[str, Any]) -> str:
    return f"{pdu['depth']}|{pdu['origin_server_ts']}|{pdu['type']}"


async def test_backfill_checks_its_parameters(fed: Harness) -> None:
    response = await signed(fed, "GET", f"/backfill/{room(fed)}", {"limit": "10"})
    assert (response.status, response.json["errcode"]) == (400, "M_MISSING_PARAM")
    (message,) = await messages(fed, 1)
    response = await signed(fed, "GET", f"/backfill/{room(fed)}", {"v": message})
    assert (response.status, response.json["errcode"]) == (400, "M_MISSING_PARAM")
    response = await signed(fed, "GET", f"/backfill/{room(fed)}", {"v": message, "limit": "x"})
    assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM")


async def test_get_missing_events_gives_what_lies_between_oldest_first(fed: Harness) -> None:
    ids = await messages(fed, 5)
    body = {"earliest_events": [ids[0]], "latest_events": [ids[4]], "limit": 10, "min_depth": 0}
    response = await signed(fed, "POST", f"/get_missing_events/{room(fed)}", body=body)
    assert response.status == 200, response
    stored = await fed.hs.room_storage.events.get_stored_events(ids)
    assert response.json["events"] == [stored[i].event.pdu_json() for i in ids[1:4]]

    body["limit"] = 2
    response = await signed(fed, "POST", f"/get_missing_events/{room(fed)}", body=body)
    assert response.json["events"] == [stored[i].event.pdu_json() for i in ids[2:4]]

    body["limit"] = 10
    body["min_depth"] = stored[ids[3]].event.depth
    response = await signed(fed, "POST", f"/get_missing_events/{room(fed)}", body=body)
    assert response.json["events"] == [stored[ids[3]].event.pdu_json()]

    response = await signed(
        fed, "POST", f"/get_missing_events/{room(fed)}", body={"earliest_events": "x"}
    )
    assert (response.status, response.json["errcode"]) == (400, "M_BAD_JSON")


async def test_event_auth_gives_the_auth_chain(fed: Harness) -> None:
    (message,) = await messages(fed, 1)
    expected = await auth_chain(fed, [message])
    response = await signed(fed, "GET", f"/event_auth/{room(fed)}/{quote(message)}")
    assert response.status == 200, response
    stored = await fed.hs.room_storage.events.get_stored_events(expected)
    assert sorted(map(str, response.json["auth_chain"])) == sorted(
        str(stored[i].event.pdu_json()) for i in expected
    )
    response = await signed(fed, "GET", f"/event_auth/{room(fed)}/$nothing")
    assert response.status == 404


async def test_a_server_without_members_is_refused_everything(fed: Harness) -> None:
    ids = await messages(fed, 2)
    await bob_membership(fed, "leave")
    for method, path, query, body in (
        ("GET", f"/event/{quote(ids[0])}", None, None),
        ("GET", f"/state_ids/{room(fed)}", {"event_id": ids[0]}, None),
        ("GET", f"/state/{room(fed)}", {"event_id": ids[0]}, None),
        ("GET", f"/backfill/{room(fed)}", {"v": ids[1], "limit": "5"}, None),
        ("GET", f"/event_auth/{room(fed)}/{quote(ids[0])}", None, None),
        (
            "POST",
            f"/get_missing_events/{room(fed)}",
            None,
            {"earliest_events": [ids[0]], "latest_events": [ids[1]]},
        ),
    ):
        response = await signed(fed, method, path, query, body)
        assert response.status == 403, (path, response)
        assert response.json["errcode"] == "M_FORBIDDEN"


async def test_unknown_room_is_refused(fed: Harness) -> None:
    response = await signed(fed, "GET", "/state_ids/!nowhere:test", {"event_id": "$x"})
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_a_server_denied_by_the_acl_is_refused(fed: Harness) -> None:
    (message,) = await messages(fed, 1)
    await fed.local(
        "m.room.server_acl", {"allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": True}, ""
    )
    for method, path, query in (
        ("GET", f"/event/{quote(message)}", None),
        ("GET", f"/state_ids/{room(fed)}", {"event_id": message}),
        ("GET", f"/backfill/{room(fed)}", {"v": message, "limit": "5"}),
        ("GET", f"/event_auth/{room(fed)}/{quote(message)}", None),
    ):
        response = await signed(fed, method, path, query)
        assert response.status == 403, (path, response)
        assert response.json["errcode"] == "M_FORBIDDEN"


@pytest.mark.parametrize("visibility", ["shared", "joined", "invited", "world_readable"])
async def test_history_visibility_for_servers(fed: Harness, visibility: str) -> None:
    """An event from while the remote had nobody in the room is redacted for it, unless the
    history is shared or world_readable."""
    await fed.local("m.room.history_visibility", {"history_visibility": visibility}, "")
    await bob_membership(fed, "leave")
    (while_away,) = await messages(fed, 1, "away")
    await fed.remote.catch_up(fed.hs, fed.room_id)
    await bob_membership(fed, "join")
    (after,) = await messages(fed, 1, "back")

    stored = await fed.hs.room_storage.events.get_stored_events([while_away, after])
    away_pdu = stored[while_away].event.pdu_json()
    hidden = visibility in ("joined", "invited")
    expected_away = (
        prune_event_dict(stored[while_away].event.room_version, away_pdu) if hidden else away_pdu
    )

    response = await signed(fed, "GET", f"/event/{quote(while_away)}")
    assert response.status == 200, response
    assert response.json["pdus"] == [expected_away]
    assert ("body" in response.json["pdus"][0]["content"]) is not hidden

    response = await signed(fed, "GET", f"/backfill/{room(fed)}", [("v", after), ("limit", "10")])
    by_id = {p["origin_server_ts"]: p for p in response.json["pdus"]}
    assert by_id[stored[after].event.origin_server_ts] == stored[after].event.pdu_json()
    assert by_id[stored[while_away].event.origin_server_ts] == expected_away
