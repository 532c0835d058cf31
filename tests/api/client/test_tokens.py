"""Access tokens on every request, refresh tokens, whoami and logout."""

from __future__ import annotations

from typing import Any

from tests.homeserver_harness import TestClient


async def test_missing_unknown_and_query_tokens(client: TestClient) -> None:
    missing = await client.get("/account/whoami")
    assert missing.status == 401
    assert missing.json["errcode"] == "M_MISSING_TOKEN"
    unknown = await client.get("/account/whoami", token="syt_bogus")
    assert unknown.status == 401
    assert unknown.json == {
        "errcode": "M_UNKNOWN_TOKEN",
        "error": "Invalid access token passed.",
        "soft_logout": False,
    }
    alice = await client.register("alice")
    by_query = await client.get("/account/whoami", query={"access_token": alice["access_token"]})
    assert by_query.json["user_id"] == "@alice:test"


async def test_refreshable_tokens_expire_with_soft_logout(homeserver: Any, client: TestClient) -> None:
    alice = await client.register("alice", refresh_token=True)
    assert (await client.get("/account/whoami", token=alice["access_token"])).status == 200
    homeserver.clock.advance(5 * 60 + 1)
    expired = await client.get("/account/whoami", token=alice["access_token"])
    assert expired.status == 401
    assert expired.json["errcode"] == "M_UNKNOWN_TOKEN"
    assert expired.json["soft_logout"] is True


async def test_non_refreshable_lifetime(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(nonrefreshable_access_token_lifetime="1h")
    client = homeserver_factory.client(hs)
    alice = await client.register("alice")
    assert alice["expires_in_ms"] == 3600 * 1000 and "refresh_token" not in alice
    hs.clock.advance(3601)
    assert (await client.get("/account/whoami", token=alice["access_token"])).json["soft_logout"]


async def test_refresh_rotates_the_pair(homeserver: Any, client: TestClient) -> None:
    login = await client.register("alice", refresh_token=True)
    old_access, old_refresh = login["access_token"], login["refresh_token"]

    first = await client.post("/refresh", {"refresh_token": old_refresh})
    assert first.status == 200, first
    assert set(first.json) == {"access_token", "refresh_token", "expires_in_ms"}
    # The old access token is replaced at once.
    assert (await client.get("/account/whoami", token=old_access)).status == 401

    # Until the new pair is used, the old refresh token still works (lost answers)...
    second = await client.post("/refresh", {"refresh_token": old_refresh})
    assert second.status == 200
    # ... and the pair it replaced is gone.
    assert (await client.get("/account/whoami", token=first.json["access_token"])).status == 401
    assert (await client.post("/refresh", {"refresh_token": first.json["refresh_token"]})).status == 401

    # Using the new access token spends the old refresh token.
    new = second.json
    whoami = await client.get("/account/whoami", token=new["access_token"])
    assert whoami.json["device_id"] == login["device_id"]
    reused = await client.post("/refresh", {"refresh_token": old_refresh})
    assert reused.status == 401
    assert reused.json["errcode"] == "M_UNKNOWN_TOKEN"

    # So does refreshing with the new refresh token.
    third = await client.post("/refresh", {"refresh_token": new["refresh_token"]})
    assert third.status == 200
    fourth = await client.post("/refresh", {"refresh_token": third.json["refresh_token"]})
    assert fourth.status == 200
    assert (await client.post("/refresh", {"refresh_token": new["refresh_token"]})).status == 401


async def test_refresh_failures(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(refresh_token_lifetime="1h")
    client = homeserver_factory.client(hs)
    unknown = await client.post("/refresh", {"refresh_token": "syr_nope"})
    assert (unknown.status, unknown.json["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    missing = await client.post("/refresh", {})
    assert (missing.status, missing.json["errcode"]) == (400, "M_MISSING_PARAM")
    alice = await client.register("alice", refresh_token=True)
    hs.clock.advance(3601)
    expired = await client.post("/refresh", {"refresh_token": alice["refresh_token"]})
    assert expired.status == 401
    assert expired.json["soft_logout"] is True


async def test_refresh_token_dies_with_its_device(client: TestClient) -> None:
    alice = await client.register("alice", refresh_token=True)
    assert (await client.post("/logout", token=alice["access_token"])).status == 200
    response = await client.post("/refresh", {"refresh_token": alice["refresh_token"]})
    assert response.status == 401


async def test_logout_ends_the_session_and_its_device(client: TestClient) -> None:
    alice = await client.register("alice")
    other = await client.login("alice")
    assert (await client.post("/logout", token=alice["access_token"])).json == {}
    assert (await client.get("/account/whoami", token=alice["access_token"])).status == 401
    devices = (await client.get("/devices", token=other["access_token"])).json["devices"]
    assert [d["device_id"] for d in devices] == [other["device_id"]]


async def test_logout_all(client: TestClient) -> None:
    alice = await client.register("alice")
    other = await client.login("alice")
    bob = await client.register("bob")
    assert (await client.post("/logout/all", token=other["access_token"])).status == 200
    for token in (alice["access_token"], other["access_token"]):
        assert (await client.get("/account/whoami", token=token)).status == 401
    assert (await client.get("/account/whoami", token=bob["access_token"])).status == 200
    again = await client.login("alice")
    assert (await client.get("/devices", token=again["access_token"])).json["devices"][0][
        "device_id"
    ] == again["device_id"]
