"""Profiles: reading, setting and deleting fields, with their limits and permissions."""

from __future__ import annotations

from tests.homeserver_harness import TestClient


async def test_profile_after_registration_and_changes(client: TestClient) -> None:
    alice = await client.register("alice")
    token = alice["access_token"]
    assert (await client.get("/profile/@alice:test")).json == {"displayname": "alice"}
    assert (await client.put("/profile/@alice:test/displayname", {"displayname": "Alice"}, token=token)).json == {}
    assert (await client.put("/profile/@alice:test/avatar_url", {"avatar_url": "mxc://test/abc"}, token=token)).status == 200
    assert (await client.put("/profile/@alice:test/m.tz", {"m.tz": "Europe/London"}, token=token)).status == 200
    custom = {"colour": "blue", "n": [1, 2]}
    assert (await client.put("/profile/@alice:test/org.example.custom", {"org.example.custom": custom}, token=token)).status == 200
    assert (await client.put("/profile/@alice:test/org.example.nothing", {"org.example.nothing": None}, token=token)).status == 200
    assert (await client.get("/profile/@alice:test")).json == {
        "displayname": "Alice",
        "avatar_url": "mxc://test/abc",
        "m.tz": "Europe/London",
        "org.example.custom": custom,
        "org.example.nothing": None,
    }
    field = await client.get("/profile/%40alice%3Atest/displayname")
    assert field.json == {"displayname": "Alice"}
    assert (await client.get("/_matrix/client/r0/profile/@alice:test/avatar_url")).json == {
        "avatar_url": "mxc://test/abc"
    }
    # Deleting, and clearing with an empty string.
    assert (await client.delete("/profile/@alice:test/m.tz", token=token)).json == {}
    assert (await client.delete("/profile/@alice:test/m.tz", token=token)).status == 200
    assert (await client.put("/profile/@alice:test/avatar_url", {"avatar_url": ""}, token=token)).status == 200
    unset = await client.get("/profile/@alice:test/avatar_url")
    assert (unset.status, unset.json["errcode"]) == (404, "M_NOT_FOUND")
    assert set((await client.get("/profile/@alice:test")).json) == {
        "displayname",
        "org.example.custom",
        "org.example.nothing",
    }


async def test_unknown_users(client: TestClient) -> None:
    for path in ("/profile/@nobody:test", "/profile/@nobody:test/displayname"):
        response = await client.get(path)
        assert (response.status, response.json["errcode"]) == (404, "M_NOT_FOUND"), path
    # Another server's user is asked of that server; one we can't reach (loopback is
    # blocked for federation by default) is 502, as Synapse answers.
    unreachable = await client.get("/profile/@x:127.0.0.1:1")
    assert (unreachable.status, unreachable.json["errcode"]) == (502, "M_UNKNOWN")
    invalid = await client.get("/profile/not-a-user")
    assert (invalid.status, invalid.json["errcode"]) == (400, "M_INVALID_PARAM")


async def test_only_the_owner_changes_a_profile(client: TestClient) -> None:
    await client.register("alice")
    bob = await client.register("bob")
    for method, body in (("PUT", {"displayname": "x"}), ("DELETE", None)):
        response = await client.request(
            method, "/profile/@alice:test/displayname", body, token=bob["access_token"]
        )
        assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    no_token = await client.put("/profile/@alice:test/displayname", {"displayname": "x"})
    assert no_token.json["errcode"] == "M_MISSING_TOKEN"


async def test_limits_and_bad_values(client: TestClient) -> None:
    alice = await client.register("alice")
    token = alice["access_token"]
    cases = [
        ("displayname", {"displayname": "x" * 257}, "M_INVALID_PARAM"),
        ("displayname", {"displayname": 5}, "M_INVALID_PARAM"),
        ("displayname", {"other": "x"}, "M_MISSING_PARAM"),
        ("avatar_url", {"avatar_url": "https://example.com/a.png"}, "M_INVALID_PARAM"),
        ("avatar_url", {"avatar_url": "mxc://test/" + "a" * 1000}, "M_INVALID_PARAM"),
        ("m.tz", {"m.tz": 1}, "M_INVALID_PARAM"),
        ("NotNamespaced", {"NotNamespaced": 1}, "M_INVALID_PARAM"),
        ("nodot", {"nodot": 1}, "M_INVALID_PARAM"),
        ("org.example." + "k" * 250, {}, "M_KEY_TOO_LARGE"),
        ("org.example.big", {"org.example.big": "x" * 70000}, "M_PROFILE_TOO_LARGE"),
    ]
    for key, body, errcode in cases:
        response = await client.put(f"/profile/@alice:test/{key}", body, token=token)
        assert (response.status, response.json["errcode"]) == (400, errcode), key
    not_json = await client.put("/profile/@alice:test/displayname", b"nope", token=token)
    assert not_json.json["errcode"] == "M_NOT_JSON"
    ok = await client.put("/profile/@alice:test/displayname", {"displayname": "x" * 256}, token=token)
    assert ok.status == 200
