"""Helpers for the /sync tests."""

from __future__ import annotations

import json
from typing import Any

from tests.homeserver_harness import TestClient

JsonDict = dict[str, Any]


async def sync(
    client: TestClient,
    token: str,
    since: str | None = None,
    sync_filter: JsonDict | None = None,
    **query: str,
) -> JsonDict:
    """A /sync that must succeed; its JSON."""
    params = dict(query)
    if since is not None:
        params["since"] = since
    if sync_filter is not None:
        params["filter"] = json.dumps(sync_filter)
    response = await client.get("/sync", token=token, query=params or None)
    assert response.status == 200, response
    body: JsonDict = response.json
    return body


def joined(body: JsonDict, room_id: str) -> JsonDict:
    room: JsonDict = body["rooms"]["join"][room_id]
    return room


def timeline_ids(room: JsonDict) -> list[str]:
    return [e["event_id"] for e in room["timeline"]["events"]]


def bodies(room: JsonDict) -> list[Any]:
    """The `body` of the timeline's messages, in order."""
    return [
        e["content"].get("body")
        for e in room["timeline"]["events"]
        if e["type"] == "m.room.message"
    ]


def state_keys(events: list[JsonDict]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in events}


def state_of(room: JsonDict, section: str = "state") -> dict[tuple[str, str], JsonDict]:
    return {(e["type"], e["state_key"]): e for e in room[section]["events"]}


def members_in(room: JsonDict, section: str = "state") -> set[str]:
    return {e["state_key"] for e in room[section]["events"] if e["type"] == "m.room.member"}
