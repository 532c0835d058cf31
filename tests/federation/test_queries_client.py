"""Profiles of other servers' users, asked of a fake remote's GET /query/profile (both engines)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.federation.test_queries_remote import FED, Recorded, RemoteSetup, remote_setup

__all__ = ["remote_setup"]

PROFILE = f"{FED}/query/profile"


def _error(response: Any) -> tuple[int, str]:
    return response.status, response.json["errcode"]


def _serve_profiles(setup: RemoteSetup, profiles: dict[str, dict[str, Any]]) -> None:
    """The remote answers profile queries from `profiles`, with null for unset fields as Synapse."""

    def answer(request: Recorded) -> tuple[int, Any]:
        profile = profiles.get(request.args.get("user_id", ""))
        if profile is None:
            return 404, {"errcode": "M_NOT_FOUND", "error": "Profile was not found"}
        field = request.args.get("field")
        if field is None:
            return 200, {"displayname": None, "avatar_url": None, **profile}
        if field not in profile:
            return 404, {"errcode": "M_NOT_FOUND", "error": "Field not set"}
        # More than asked for: we pass on only the field asked for.
        return 200, {field: profile[field], "avatar_url": "mxc://x/y"}

    setup.remote.answers[PROFILE] = answer


async def test_remote_profiles(remote_setup: RemoteSetup) -> None:
    remote, client = remote_setup.remote, remote_setup.client
    bob = f"@bob:{remote.name}"
    _serve_profiles(remote_setup, {bob: {"displayname": "Bob", "m.tz": "Europe/Paris"}})

    response = await client.get(f"/profile/{quote(bob)}")
    assert response.status == 200, response
    assert response.json == {"displayname": "Bob", "m.tz": "Europe/Paris"}
    request = remote.requests_to(PROFILE)[-1]
    assert request.args == {"user_id": bob}
    assert request.authorization is not None and request.authorization.startswith("X-Matrix ")

    response = await client.get(f"/profile/{quote(bob)}/displayname")
    assert response.json == {"displayname": "Bob"}
    assert remote.requests_to(PROFILE)[-1].args == {"user_id": bob, "field": "displayname"}
    response = await client.get(f"/profile/{quote(bob)}/avatar_url")
    assert _error(response) == (404, "M_NOT_FOUND")
    response = await client.get(f"/profile/{quote('@nobody:' + remote.name)}")
    assert _error(response) == (404, "M_NOT_FOUND")
    # A bad key is refused here, before anyone is asked.
    count = len(remote.requests)
    response = await client.get(f"/profile/{quote(bob)}/Not-A-Key")
    assert _error(response) == (400, "M_INVALID_PARAM")
    assert len(remote.requests) == count


async def test_remote_profile_failures(remote_setup: RemoteSetup) -> None:
    remote, client = remote_setup.remote, remote_setup.client
    bob = f"@bob:{remote.name}"
    for answer, expected in [
        ((403, {"errcode": "M_FORBIDDEN", "error": "Lookups disabled"}), (403, "M_FORBIDDEN")),
        ((500, {"errcode": "M_UNKNOWN", "error": "Oops"}), (502, "M_UNKNOWN")),
        ((200, ["not", "an", "object"]), (502, "M_UNKNOWN")),
    ]:
        remote.answers[PROFILE] = answer
        assert _error(await client.get(f"/profile/{quote(bob)}")) == expected, answer
    response = await client.get(f"/profile/{quote('@bob:127.0.0.1:1')}/displayname")
    assert _error(response) == (502, "M_UNKNOWN")
