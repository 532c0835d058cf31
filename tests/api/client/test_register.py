"""POST /register, GET /register/available and guests: every flow and every refusal."""

from __future__ import annotations

from typing import Any

from tests.homeserver_harness import DEFAULT_PASSWORD, TestClient


async def test_dummy_stage_in_one_call_registers_and_logs_in(client: TestClient) -> None:
    body = await client.register("alice", initial_device_display_name="Phone")
    assert body["user_id"] == "@alice:test"
    assert body["home_server"] == "test"
    assert body["access_token"].startswith("syt_")
    assert "refresh_token" not in body and "expires_in_ms" not in body
    whoami = await client.get("/account/whoami", token=body["access_token"])
    assert whoami.json == {"user_id": "@alice:test", "is_guest": False, "device_id": body["device_id"]}
    device = await client.get(f"/devices/{body['device_id']}", token=body["access_token"])
    assert device.json["display_name"] == "Phone"


async def test_first_call_gets_the_flows_then_the_session_completes(client: TestClient) -> None:
    first = await client.post("/register", {"username": "bob", "password": DEFAULT_PASSWORD})
    assert first.status == 401
    challenge = first.json
    assert challenge["flows"] == [{"stages": ["m.login.dummy"]}]
    assert challenge["params"] == {}
    assert "completed" not in challenge and "errcode" not in challenge
    # The password may be left out now: its hash is kept with the session.
    second = await client.post(
        "/register", {"auth": {"type": "m.login.dummy", "session": challenge["session"]}}
    )
    assert second.status == 200, second
    assert second.json["user_id"] == "@bob:test"
    await client.login("bob")


async def test_retrying_a_completed_session_logs_the_same_account_in_again(client: TestClient) -> None:
    first = await client.post("/register", {"username": "carol", "password": DEFAULT_PASSWORD})
    auth = {"type": "m.login.dummy", "session": first.json["session"]}
    one = await client.post("/register", {"username": "carol", "auth": auth})
    two = await client.post("/register", {"username": "carol", "auth": auth})
    assert one.status == two.status == 200
    assert one.json["user_id"] == two.json["user_id"] == "@carol:test"
    assert one.json["device_id"] != two.json["device_id"]


async def test_usernames_are_lowercased_and_generated_when_absent(client: TestClient) -> None:
    assert (await client.register("Dave"))["user_id"] == "@dave:test"
    generated = (await client.register(None))["user_id"]
    assert generated.startswith("@") and generated[1:].split(":")[0].isdigit()


async def test_taken_username_is_refused_before_auth(client: TestClient) -> None:
    await client.register("erin")
    for body in ({"username": "erin", "password": "x"}, {"username": "ERIN", "password": "x"}):
        response = await client.post("/register", body)
        assert response.status == 400
        assert response.json["errcode"] == "M_USER_IN_USE"


async def test_invalid_and_reserved_usernames(client: TestClient) -> None:
    for username in ("", "a b", "é", "_reserved", "12345", "x" * 250, "a:b"):
        response = await client.post(
            "/register", {"username": username, "password": "x", "auth": {"type": "m.login.dummy"}}
        )
        assert response.status == 400, username
        assert response.json["errcode"] == "M_INVALID_USERNAME", username
    response = await client.post("/register", {"username": 5, "password": "x"})
    assert response.json["errcode"] == "M_INVALID_PARAM"


async def test_registration_disabled(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(enable_registration=False)
    client = homeserver_factory.client(hs)
    response = await client.post("/register", {"username": "x", "password": "y"})
    assert response.status == 403
    assert response.json["errcode"] == "M_FORBIDDEN"
    available = await client.get("/register/available", query={"username": "x"})
    assert (available.status, available.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_password_is_required_and_checked(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(
        password_config={"policy": {"enabled": True, "minimum_length": 8, "require_digit": True}}
    )
    client = homeserver_factory.client(hs)
    missing = await client.post("/register", {"username": "frank", "auth": {"type": "m.login.dummy"}})
    assert (missing.status, missing.json["errcode"]) == (400, "M_MISSING_PARAM")
    for weak in ("short1", "longenoughbutnodigit"):
        response = await client.post("/register", {"username": "frank", "password": weak})
        assert (response.status, response.json["errcode"]) == (400, "M_WEAK_PASSWORD"), weak
    not_string = await client.post("/register", {"username": "frank", "password": 5})
    assert not_string.json["errcode"] == "M_INVALID_PARAM"
    await client.register("frank", password="longenough1")


async def test_inhibit_login_device_id_and_refresh_token(client: TestClient) -> None:
    inhibited = await client.register("gina", inhibit_login=True)
    assert inhibited == {"user_id": "@gina:test", "home_server": "test"}
    body = await client.register("hank", device_id="MYDEVICE", refresh_token=True)
    assert body["device_id"] == "MYDEVICE"
    assert body["refresh_token"].startswith("syr_")
    assert body["expires_in_ms"] == 5 * 60 * 1000
    bad = await client.post(
        "/register",
        {"username": "ian", "password": "x", "inhibit_login": "yes", "auth": {"type": "m.login.dummy"}},
    )
    assert bad.json["errcode"] == "M_INVALID_PARAM"


async def test_bad_uia_submissions(client: TestClient) -> None:
    unknown_session = await client.post(
        "/register",
        {"username": "jo", "password": "x", "auth": {"type": "m.login.dummy", "session": "nope"}},
    )
    assert unknown_session.status == 400
    not_offered = await client.post(
        "/register", {"username": "jo", "password": "x", "auth": {"type": "m.login.password"}}
    )
    assert (not_offered.status, not_offered.json["errcode"]) == (400, "M_INVALID_PARAM")
    not_object = await client.post("/register", {"username": "jo", "password": "x", "auth": 3})
    assert not_object.status == 400
    # A session opened for one operation cannot authorise another.
    session = (await client.post("/register", {"username": "jo", "password": "x"})).json["session"]
    alice = await client.register("alice")
    moved = await client.post(
        "/delete_devices",
        {"devices": [], "auth": {"type": "m.login.dummy", "session": session}},
        token=alice["access_token"],
    )
    assert (moved.status, moved.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_session_without_stage_answers_the_challenge_again(client: TestClient) -> None:
    session = (await client.post("/register", {"username": "kim", "password": "x"})).json["session"]
    again = await client.post("/register", {"auth": {"session": session}})
    assert again.status == 401
    assert again.json["session"] == session
    assert again.json["completed"] == []


async def test_register_available(client: TestClient) -> None:
    ok = await client.get("/register/available", query={"username": "lee"})
    assert (ok.status, ok.json) == (200, {"available": True})
    await client.register("lee")
    taken = await client.get("/register/available", query={"username": "lee"})
    assert (taken.status, taken.json["errcode"]) == (400, "M_USER_IN_USE")
    invalid = await client.get("/register/available", query={"username": "Lee!"})
    assert invalid.json["errcode"] == "M_INVALID_USERNAME"
    missing = await client.get("/register/available")
    assert missing.json["errcode"] == "M_MISSING_PARAM"


async def test_r0_prefix_is_served(client: TestClient) -> None:
    response = await client.post(
        "/_matrix/client/r0/register",
        {"username": "old", "password": "x", "auth": {"type": "m.login.dummy"}},
    )
    assert response.status == 200


async def test_guests_when_allowed(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(allow_guest_access=True, enable_registration=False)
    client = homeserver_factory.client(hs)
    guest = await client.register_guest(initial_device_display_name="Browser")
    token = guest["access_token"]
    assert guest["user_id"].split(":")[0][1:].isdigit()
    whoami = await client.get("/account/whoami", token=token)
    assert whoami.json["is_guest"] is True
    # Endpoints guests may use...
    assert (await client.get("/devices", token=token)).status == 200
    assert (await client.put(f"/profile/{guest['user_id']}/displayname", {"displayname": "G"}, token=token)).status == 200
    # ... and those they may not.
    for method, path, body in (
        ("POST", "/logout", {}),
        ("POST", "/account/deactivate", {}),
        ("POST", "/account/password", {"new_password": "x"}),
        ("POST", "/delete_devices", {"devices": []}),
        ("DELETE", f"/devices/{guest['device_id']}", {}),
    ):
        response = await client.request(method, path, body, token=token)
        assert (response.status, response.json["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN"), path
    avatar = await client.put(
        f"/profile/{guest['user_id']}/avatar_url", {"avatar_url": "mxc://a/b"}, token=token
    )
    assert (avatar.status, avatar.json["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_guests_when_not_allowed(client: TestClient) -> None:
    response = await client.post("/register", {}, query={"kind": "guest"})
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    odd = await client.post("/register", {}, query={"kind": "robot"})
    assert (odd.status, odd.json["errcode"]) == (400, "M_INVALID_PARAM")


async def test_guest_upgrades_to_a_full_account(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(allow_guest_access=True)
    client = homeserver_factory.client(hs)
    guest = await client.register_guest()
    localpart = guest["user_id"][1:].split(":")[0]
    wrong = await client.post(
        "/register",
        {"username": "someoneelse", "password": "pw", "guest_access_token": guest["access_token"],
         "auth": {"type": "m.login.dummy"}},
    )
    assert (wrong.status, wrong.json["errcode"]) == (403, "M_FORBIDDEN")
    bad_token = await client.post(
        "/register", {"username": localpart, "password": "pw", "guest_access_token": "nope"}
    )
    assert (bad_token.status, bad_token.json["errcode"]) == (403, "M_FORBIDDEN")
    upgraded = await client.register(localpart, password="pw", guest_access_token=guest["access_token"])
    assert upgraded["user_id"] == guest["user_id"]
    whoami = await client.get("/account/whoami", token=upgraded["access_token"])
    assert whoami.json["is_guest"] is False
    await client.login(localpart, password="pw")


async def test_uia_session_survives_a_restart(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    first = await client.post("/register", {"username": "phoenix", "password": DEFAULT_PASSWORD})
    session = first.json["session"]
    await homeserver_factory.stop(hs)

    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    second = await client.post("/register", {"auth": {"type": "m.login.dummy", "session": session}})
    assert second.status == 200, second
    assert second.json["user_id"] == "@phoenix:test"
    await client.login("phoenix")


async def test_uia_sessions_expire(homeserver: Any, client: TestClient) -> None:
    session = (await client.post("/register", {"username": "old", "password": "x"})).json["session"]
    homeserver.clock.advance(49 * 3600)
    late = await client.post("/register", {"auth": {"type": "m.login.dummy", "session": session}})
    assert late.status == 400
    assert await homeserver.ui_auth.expire_sessions() == 1
