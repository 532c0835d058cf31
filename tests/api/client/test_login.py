"""GET/POST /login and POST /login/get_token: every login type and every refusal."""

from __future__ import annotations

from typing import Any

from tests.homeserver_harness import DEFAULT_PASSWORD, TestClient


async def test_login_flows(homeserver_factory: Any) -> None:
    plain = homeserver_factory.client(await homeserver_factory.start())
    assert (await plain.get("/login")).json == {"flows": [{"type": "m.login.password"}]}
    await homeserver_factory.stop_all()
    both = homeserver_factory.client(
        await homeserver_factory.start(login_via_existing_session={"enabled": True})
    )
    assert (await both.get("/login")).json == {
        "flows": [{"type": "m.login.password"}, {"type": "m.login.token", "get_login_token": True}]
    }


async def test_password_login_with_every_identifier_form(client: TestClient) -> None:
    registered = await client.register("alice")
    for identifier in (
        {"identifier": {"type": "m.id.user", "user": "alice"}},
        {"identifier": {"type": "m.id.user", "user": "@alice:test"}},
        {"identifier": {"type": "m.id.user", "user": "ALICE"}},
        {"user": "alice"},
        {"user": "@alice:test"},
    ):
        response = await client.post(
            "/login", {"type": "m.login.password", "password": DEFAULT_PASSWORD, **identifier}
        )
        assert response.status == 200, identifier
        body = response.json
        assert body["user_id"] == "@alice:test"
        assert body["home_server"] == "test"
        assert body["device_id"] != registered["device_id"]
        assert "refresh_token" not in body and "well_known" not in body
        assert (await client.get("/account/whoami", token=body["access_token"])).status == 200


async def test_login_reuses_a_known_device_and_names_a_new_one(client: TestClient) -> None:
    await client.register("bob", device_id="FIRST")
    again = await client.login("bob", device_id="FIRST", initial_device_display_name="ignored")
    assert again["device_id"] == "FIRST"
    new = await client.login("bob", device_id="SECOND", initial_device_display_name="Laptop")
    devices = (await client.get("/devices", token=new["access_token"])).json["devices"]
    names = {d["device_id"]: d.get("display_name") for d in devices}
    assert names == {"FIRST": None, "SECOND": "Laptop"}


async def test_wrong_credentials_are_one_error(client: TestClient) -> None:
    await client.register("carol")
    for body in (
        {"identifier": {"type": "m.id.user", "user": "carol"}, "password": "wrong"},
        {"identifier": {"type": "m.id.user", "user": "nobody"}, "password": DEFAULT_PASSWORD},
        {"identifier": {"type": "m.id.user", "user": "@carol:elsewhere"}, "password": DEFAULT_PASSWORD},
    ):
        response = await client.post("/login", {"type": "m.login.password", **body})
        assert response.status == 403
        assert response.json == {"errcode": "M_FORBIDDEN", "error": "Invalid username or password"}


async def test_malformed_logins(client: TestClient) -> None:
    cases = [
        ({"type": "m.login.bogus"}, "M_UNKNOWN"),
        ({}, "M_UNKNOWN"),
        ({"type": "m.login.password", "user": "x"}, "M_INVALID_PARAM"),
        ({"type": "m.login.password", "password": "x"}, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "password": "x", "identifier": "x"}, "M_INVALID_PARAM"),
        ({"type": "m.login.password", "password": "x", "identifier": {"user": "x"}}, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "password": "x", "identifier": {"type": "m.id.bogus"}}, "M_INVALID_PARAM"),
        ({"type": "m.login.token"}, "M_INVALID_PARAM"),
    ]
    for body, errcode in cases:
        response = await client.post("/login", body)
        assert (response.status, response.json["errcode"]) == (400, errcode), body
    not_json = await client.post("/login", b"{not json")
    assert (not_json.status, not_json.json["errcode"]) == (400, "M_NOT_JSON")


async def test_password_login_disabled(homeserver_factory: Any) -> None:
    client = homeserver_factory.client(
        await homeserver_factory.start(password_config={"enabled": "only_for_reauth"})
    )
    assert (await client.get("/login")).json == {"flows": []}
    response = await client.post(
        "/login", {"type": "m.login.password", "user": "x", "password": "y"}
    )
    assert (response.status, response.json["errcode"]) == (400, "M_UNKNOWN")


async def test_login_answer_carries_well_known_when_served(homeserver_factory: Any) -> None:
    client = homeserver_factory.client(
        await homeserver_factory.start(
            public_baseurl="https://matrix.test/", serve_client_wellknown=True
        )
    )
    await client.register("dan")
    body = await client.login("dan")
    assert body["well_known"] == {"m.homeserver": {"base_url": "https://matrix.test/"}}


async def test_get_token_is_absent_unless_enabled(client: TestClient) -> None:
    alice = await client.register("alice")
    response = await client.post("/_matrix/client/v1/login/get_token", {}, token=alice["access_token"])
    assert (response.status, response.json["errcode"]) == (404, "M_UNRECOGNIZED")


async def test_login_token_via_existing_session(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(login_via_existing_session={"enabled": True})
    client = homeserver_factory.client(hs)
    alice = await client.register("alice")
    path = "/_matrix/client/v1/login/get_token"
    challenge = await client.post(path, {}, token=alice["access_token"])
    assert challenge.status == 401
    assert challenge.json["flows"] == [{"stages": ["m.login.password"]}]
    auth = client.password_auth("@alice:test", challenge.json["session"])
    issued = await client.post(path, {"auth": auth}, token=alice["access_token"])
    assert issued.status == 200, issued
    assert issued.json["expires_in_ms"] == 5 * 60 * 1000
    token = issued.json["login_token"]

    login = await client.post("/login", {"type": "m.login.token", "token": token})
    assert login.status == 200
    assert login.json["user_id"] == "@alice:test"
    reused = await client.post("/login", {"type": "m.login.token", "token": token})
    assert (reused.status, reused.json["errcode"]) == (403, "M_FORBIDDEN")

    # Expired tokens are refused too.
    challenge = await client.post(path, {}, token=alice["access_token"])
    auth = client.password_auth("@alice:test", challenge.json["session"])
    token = (await client.post(path, {"auth": auth}, token=alice["access_token"])).json["login_token"]
    hs.clock.advance(301)
    expired = await client.post("/login", {"type": "m.login.token", "token": token})
    assert (expired.status, expired.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_login_token_without_ui_auth(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(
        login_via_existing_session={"enabled": True, "require_ui_auth": False, "token_timeout": "1m"}
    )
    client = homeserver_factory.client(hs)
    alice = await client.register("alice")
    issued = await client.post("/_matrix/client/v1/login/get_token", {}, token=alice["access_token"])
    assert issued.status == 200
    assert issued.json["expires_in_ms"] == 60000
    unauthenticated = await client.post("/_matrix/client/v1/login/get_token", {})
    assert (unauthenticated.status, unauthenticated.json["errcode"]) == (401, "M_MISSING_TOKEN")
