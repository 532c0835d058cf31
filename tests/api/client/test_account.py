"""Changing the password and deactivating the account, through user-interactive auth."""

from __future__ import annotations

from typing import Any

from tests.homeserver_harness import DEFAULT_PASSWORD, TestClient


async def test_change_password_logs_out_other_devices(client: TestClient) -> None:
    alice = await client.register("alice", refresh_token=True)
    other = await client.login("alice")
    token = alice["access_token"]
    challenge = await client.post("/account/password", {"new_password": "n3w password"}, token=token)
    assert challenge.status == 401
    assert challenge.json["flows"] == [{"stages": ["m.login.password"]}]
    done = await client.post(
        "/account/password",
        {"auth": client.password_auth("@alice:test", challenge.json["session"])},
        token=token,
    )
    assert (done.status, done.json) == (200, {})
    # This session stays, every other one is gone.
    assert (await client.get("/account/whoami", token=token)).status == 200
    assert (await client.get("/account/whoami", token=other["access_token"])).status == 401
    assert (await client.post("/refresh", {"refresh_token": alice["refresh_token"]})).status == 200
    wrong = await client.post(
        "/login", {"type": "m.login.password", "user": "alice", "password": DEFAULT_PASSWORD}
    )
    assert wrong.status == 403
    await client.login("alice", password="n3w password")


async def test_change_password_keeping_devices(client: TestClient) -> None:
    alice = await client.register("alice")
    other = await client.login("alice")
    done = await client.post(
        "/account/password",
        {
            "new_password": "another",
            "logout_devices": False,
            "auth": client.password_auth("@alice:test"),
        },
        token=alice["access_token"],
    )
    assert done.status == 200, done
    assert (await client.get("/account/whoami", token=other["access_token"])).status == 200


async def test_change_password_refusals(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(
        password_config={"policy": {"enabled": True, "require_uppercase": True}}
    )
    client = homeserver_factory.client(hs)
    alice = await client.register("alice", password="Password")
    token = alice["access_token"]
    weak = await client.post("/account/password", {"new_password": "lowercase"}, token=token)
    assert (weak.status, weak.json["errcode"]) == (400, "M_WEAK_PASSWORD")
    no_token = await client.post("/account/password", {"new_password": "Upper"})
    assert (no_token.status, no_token.json["errcode"]) == (401, "M_MISSING_TOKEN")
    missing = await client.post(
        "/account/password",
        {"auth": client.password_auth("alice", password="Password")},
        token=token,
    )
    assert (missing.status, missing.json["errcode"]) == (400, "M_MISSING_PARAM")
    bad_flag = await client.post(
        "/account/password", {"new_password": "Upper", "logout_devices": 1}, token=token
    )
    assert bad_flag.json["errcode"] == "M_INVALID_PARAM"


async def test_password_change_disabled(homeserver_factory: Any) -> None:
    client = homeserver_factory.client(
        await homeserver_factory.start(password_config={"localdb_enabled": False})
    )
    alice = await client.register("alice")
    response = await client.post(
        "/account/password", {"new_password": "x"}, token=alice["access_token"]
    )
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_deactivate(homeserver: Any, client: TestClient) -> None:
    alice = await client.register("alice", refresh_token=True)
    other = await client.login("alice")
    token = alice["access_token"]
    challenge = await client.post("/account/deactivate", {}, token=token)
    assert challenge.status == 401
    done = await client.post(
        "/account/deactivate",
        {"auth": client.password_auth("@alice:test", challenge.json["session"])},
        token=token,
    )
    assert (done.status, done.json) == (200, {"id_server_unbind_result": "success"})
    for access in (token, other["access_token"]):
        assert (await client.get("/account/whoami", token=access)).status == 401
    assert (await client.post("/refresh", {"refresh_token": alice["refresh_token"]})).status == 401
    login = await client.post(
        "/login", {"type": "m.login.password", "user": "alice", "password": DEFAULT_PASSWORD}
    )
    assert (login.status, login.json["errcode"]) == (403, "M_USER_DEACTIVATED")
    # The ID is never handed out again; without erase the profile stays.
    taken = await client.post("/register", {"username": "alice", "password": "x"})
    assert taken.json["errcode"] == "M_USER_IN_USE"
    assert (await client.get("/profile/@alice:test")).json == {"displayname": "alice"}
    assert await homeserver.storage.devices.get_devices("@alice:test") == []


async def test_deactivate_with_erase_clears_the_profile(homeserver: Any, client: TestClient) -> None:
    alice = await client.register("alice")
    token = alice["access_token"]
    await client.put("/profile/@alice:test/avatar_url", {"avatar_url": "mxc://test/a"}, token=token)
    await client.put("/profile/@alice:test/m.tz", {"m.tz": "Europe/Paris"}, token=token)
    done = await client.post(
        "/account/deactivate",
        {"erase": True, "auth": client.password_auth("@alice:test")},
        token=token,
    )
    assert done.status == 200
    assert (await client.get("/profile/@alice:test")).json == {}
    user = await homeserver.storage.users.get_user("@alice:test")
    assert user.deactivated and user.erased and user.password_hash is None


async def test_deactivate_refusals(client: TestClient) -> None:
    alice = await client.register("alice")
    token = alice["access_token"]
    bad = await client.post("/account/deactivate", {"erase": "yes"}, token=token)
    assert (bad.status, bad.json["errcode"]) == (400, "M_INVALID_PARAM")
    wrong = await client.post(
        "/account/deactivate",
        {"auth": client.password_auth("alice", password="nope")},
        token=token,
    )
    assert (wrong.status, wrong.json["errcode"]) == (401, "M_FORBIDDEN")
    assert (await client.get("/account/whoami", token=token)).status == 200
