"""Registration flows from config: registration tokens (with the admin API that makes them),
m.login.terms, m.login.recaptcha, and how the stages combine."""

from __future__ import annotations

from typing import Any

from homeserver.config import ConfigError
from tests.handlers.test_recaptcha import Service as RecaptchaService
from tests.homeserver_harness import DEFAULT_PASSWORD, TestClient, make_admin

TOKENS = "/_synapse/admin/v1/registration_tokens"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


async def _register_with_token(client: TestClient, username: str, token: str) -> Any:
    first = await client.post("/register", {"username": username, "password": DEFAULT_PASSWORD})
    assert first.status == 401, first
    auth = {"type": "m.login.registration_token", "token": token, "session": first.json["session"]}
    second = await client.post("/register", {"auth": auth})
    if second.status != 401 or second.json.get("errcode"):
        return second
    auth = {"type": "m.login.dummy", "session": first.json["session"]}
    return await client.post("/register", {"auth": auth})


async def test_registration_token_flow_and_uses(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(registration_requires_token=True)
    client = homeserver_factory.client(hs)
    admin = await make_admin(hs, client)
    created = await client.post(f"{TOKENS}/new", {"token": "abc", "uses_allowed": 1}, token=admin)
    assert created.json == {
        "token": "abc", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": None
    }
    first = await client.post("/register", {"username": "amy", "password": DEFAULT_PASSWORD})
    assert first.json["flows"] == [{"stages": ["m.login.registration_token", "m.login.dummy"]}]
    assert (await client.get(VALIDITY, query={"token": "abc"})).json == {"valid": True}

    wrong = await _register_with_token(client, "amy", "nope")
    assert (wrong.status, wrong.json["errcode"]) == (401, "M_UNAUTHORIZED")
    done = await _register_with_token(client, "amy", "abc")
    assert done.status == 200, done
    token = (await client.get(f"{TOKENS}/abc", token=admin)).json
    assert (token["pending"], token["completed"]) == (0, 1)
    assert (await client.get(VALIDITY, query={"token": "abc"})).json == {"valid": False}
    used_up = await _register_with_token(client, "ben", "abc")
    assert (used_up.status, used_up.json["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_pending_use_is_held_and_released_when_the_session_expires(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(registration_requires_token=True)
    client = homeserver_factory.client(hs)
    admin = await make_admin(hs, client)
    await client.post(f"{TOKENS}/new", {"token": "one", "uses_allowed": 1}, token=admin)
    first = await client.post("/register", {"username": "cat", "password": DEFAULT_PASSWORD})
    auth = {"type": "m.login.registration_token", "token": "one", "session": first.json["session"]}
    held = await client.post("/register", {"auth": auth})
    assert held.json["completed"] == ["m.login.registration_token"]
    # Passing the stage again in the same session takes no second use; a changed token is refused.
    assert (await client.post("/register", {"auth": auth})).status == 401
    changed = await client.post("/register", {"auth": {**auth, "token": "two"}})
    assert (changed.status, changed.json["errcode"]) == (400, "M_INVALID_PARAM")
    assert (await client.get(f"{TOKENS}/one", token=admin)).json["pending"] == 1
    assert (await client.get(VALIDITY, query={"token": "one"})).json == {"valid": False}
    listed = await client.get(TOKENS, query={"valid": "false"}, token=admin)
    assert [t["token"] for t in listed.json["registration_tokens"]] == ["one"]

    hs.clock.advance(49 * 3600)
    await hs.housekeeping.run_once()
    assert (await client.get(f"{TOKENS}/one", token=admin)).json["pending"] == 0
    assert (await client.get(VALIDITY, query={"token": "one"})).json == {"valid": True}


async def test_registration_token_admin_api(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start()
    client = homeserver_factory.client(hs)
    admin = await make_admin(hs, client)
    generated = await client.post(f"{TOKENS}/new", {"length": 20}, token=admin)
    assert len(generated.json["token"]) == 20
    future = hs.clock.time_msec() + 60_000
    created = await client.post(f"{TOKENS}/new", {"token": "t-1", "expiry_time": future}, token=admin)
    assert created.json["expiry_time"] == future
    for body in (
        {"token": ""},
        {"token": "x" * 65},
        {"token": "bad token"},
        {"token": 5},
        {"length": 0},
        {"length": 65},
        {"length": "5"},
        {"uses_allowed": -1},
        {"uses_allowed": 1.5},
        {"expiry_time": 1},
        {"expiry_time": "soon"},
        {"token": "t-1"},
    ):
        response = await client.post(f"{TOKENS}/new", body, token=admin)
        assert (response.status, response.json["errcode"]) == (400, "M_INVALID_PARAM"), body
    updated = await client.put(f"{TOKENS}/t-1", {"uses_allowed": 3, "expiry_time": None}, token=admin)
    assert (updated.json["uses_allowed"], updated.json["expiry_time"]) == (3, None)
    unchanged = await client.put(f"{TOKENS}/t-1", {}, token=admin)
    assert unchanged.json == updated.json
    bad = await client.put(f"{TOKENS}/t-1", {"uses_allowed": "3"}, token=admin)
    assert bad.json["errcode"] == "M_INVALID_PARAM"
    hs.clock.advance(120)
    valid = (await client.get(TOKENS, query={"valid": "true"}, token=admin)).json
    assert sorted(valid["registration_tokens"], key=lambda t: t["token"] != "t-1") == [
        updated.json, generated.json
    ]
    assert (await client.delete(f"{TOKENS}/t-1", token=admin)).json == {}
    for method in ("GET", "PUT", "DELETE"):
        gone = await client.request(method, f"{TOKENS}/t-1", {} if method == "PUT" else None, token=admin)
        assert (gone.status, gone.json["errcode"]) == (404, "M_NOT_FOUND"), method
    bad_filter = await client.get(TOKENS, query={"valid": "maybe"}, token=admin)
    assert bad_filter.json["errcode"] == "M_INVALID_PARAM"
    missing = await client.get(VALIDITY)
    assert (missing.status, missing.json["errcode"]) == (400, "M_MISSING_PARAM")


async def test_validity_is_forbidden_when_registration_is_closed(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(enable_registration=False)
    client = homeserver_factory.client(hs)
    response = await client.get(VALIDITY, query={"token": "x"})
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_terms_stage_and_its_params(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(
        user_consent={"version": "1.0", "require_at_registration": True},
        public_baseurl="https://matrix.test/",
    )
    client = homeserver_factory.client(hs)
    first = await client.post("/register", {"username": "dee", "password": DEFAULT_PASSWORD})
    assert first.json["flows"] == [{"stages": ["m.login.terms", "m.login.dummy"]}]
    assert first.json["params"]["m.login.terms"] == {
        "policies": {
            "privacy_policy": {
                "version": "1.0",
                "en": {"name": "Privacy Policy", "url": "https://matrix.test/_matrix/consent?v=1.0"},
            }
        }
    }
    skipped = await client.post(
        "/register", {"auth": {"type": "m.login.dummy", "session": first.json["session"]}}
    )
    assert skipped.status == 401 and skipped.json["completed"] == ["m.login.dummy"]
    done = await client.post(
        "/register", {"auth": {"type": "m.login.terms", "session": first.json["session"]}}
    )
    assert done.status == 200, done


async def test_recaptcha_stage(homeserver_factory: Any, reactor: Any) -> None:
    service = RecaptchaService(reactor)
    try:
        hs = await homeserver_factory.start(
            enable_registration_captcha=True,
            recaptcha_public_key="site-key",
            recaptcha_private_key="secret-key",
            recaptcha_siteverify_api=service.url,
            registration_requires_token=True,
        )
        client = homeserver_factory.client(hs)
        first = await client.post("/register", {"username": "eve", "password": DEFAULT_PASSWORD})
        assert first.json["flows"] == [
            {"stages": ["m.login.registration_token", "m.login.recaptcha", "m.login.dummy"]}
        ]
        assert first.json["params"] == {"m.login.recaptcha": {"public_key": "site-key"}}
        session = first.json["session"]
        service.resource.mode = "failure"
        failed = await client.post(
            "/register", {"auth": {"type": "m.login.recaptcha", "response": "r", "session": session}}
        )
        assert (failed.status, failed.json["errcode"]) == (401, "M_UNAUTHORIZED")
        no_response = await client.post(
            "/register", {"auth": {"type": "m.login.recaptcha", "session": session}}
        )
        assert no_response.json["errcode"] == "M_CAPTCHA_NEEDED"
        service.resource.mode = "success"
        passed = await client.post(
            "/register", {"auth": {"type": "m.login.recaptcha", "response": "r", "session": session}}
        )
        assert passed.json["completed"] == ["m.login.recaptcha"]
        assert service.resource.forms[-1] == {
            "secret": "secret-key", "response": "r", "remoteip": "127.0.0.1"
        }
    finally:
        await service.port.stopListening()


async def test_flows_follow_the_config(homeserver_factory: Any) -> None:
    try:
        homeserver_factory.config(registrations_require_3pid=["email"])
    except ConfigError as e:
        assert "registrations_require_3pid" in str(e)
    else:
        raise AssertionError("requiring email without email config must be refused")
    try:
        homeserver_factory.config(account_threepid_delegates={"msisdn": "https://is.test"})
    except ConfigError as e:
        assert "public_baseurl" in str(e)
    else:
        raise AssertionError("an msisdn delegate needs public_baseurl")
    hs = await homeserver_factory.start(
        account_threepid_delegates={"msisdn": "http://127.0.0.1:9"},
        public_baseurl="https://matrix.test/",
    )
    first = await homeserver_factory.client(hs).post("/register", {"username": "fay", "password": "x"})
    assert first.json["flows"] == [{"stages": ["m.login.dummy"]}, {"stages": ["m.login.msisdn"]}]
