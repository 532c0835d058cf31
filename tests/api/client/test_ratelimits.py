"""Rate limits on registration, login, failed logins, password confirmation and 3PID validation:
429 M_LIMIT_EXCEEDED with retry_after_ms and a Retry-After header, and room again after waiting."""

from __future__ import annotations

from typing import Any

from tests.homeserver_harness import DEFAULT_PASSWORD, NO_LIMIT, Response, TestClient


def _limit(burst: int, per_second: float = 0.1) -> dict[str, float]:
    return {"per_second": per_second, "burst_count": burst}


def assert_limited(response: Response, retry_after_seconds: int) -> None:
    assert response.status == 429, response
    assert response.json["errcode"] == "M_LIMIT_EXCEEDED"
    assert 0 < response.json["retry_after_ms"] <= retry_after_seconds * 1000
    assert response.headers["retry-after"] == [str(retry_after_seconds)]


async def test_registration_per_client_address(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(rc_registration=_limit(2), allow_guest_access=True)
    client = homeserver_factory.client(hs)
    await client.register("ann")
    await client.register_guest()
    # The first step of a registration is checked too, but only accounts made count.
    refused = await client.post("/register", {"username": "bea", "password": "x"})
    assert_limited(refused, 10)
    hs.clock.advance(10)
    await client.register("bea")


async def test_login_per_client_address(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(
        rc_login={"address": _limit(2), "account": NO_LIMIT, "failed_attempts": NO_LIMIT}
    )
    client = homeserver_factory.client(hs)
    await client.register("cy")
    await client.login("cy")
    bad = await client.post("/login", {"type": "m.login.nonsense"})
    assert bad.status == 400
    assert_limited(await client.post("/login", {"type": "m.login.password"}), 10)
    hs.clock.advance(10)
    await client.login("cy")


async def test_login_per_account(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(
        rc_login={"address": NO_LIMIT, "account": _limit(1, 0.5), "failed_attempts": NO_LIMIT}
    )
    client = homeserver_factory.client(hs)
    await client.register("dee")
    await client.register("eli")
    await client.login("dee")
    refused = await client.post(
        "/login", {"type": "m.login.password", "user": "DEE", "password": DEFAULT_PASSWORD}
    )
    assert_limited(refused, 2)
    await client.login("eli")


async def test_failed_logins_per_account(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(
        rc_login={"address": NO_LIMIT, "account": NO_LIMIT, "failed_attempts": _limit(2)}
    )
    client = homeserver_factory.client(hs)
    fay = await client.register("fay")
    wrong = {"type": "m.login.password", "user": "fay", "password": "wrong"}
    for _ in range(2):
        assert (await client.post("/login", wrong)).status == 403
    # Now even the right password waits: the check comes before the password's.
    right = {"type": "m.login.password", "user": "fay", "password": DEFAULT_PASSWORD}
    assert_limited(await client.post("/login", right), 10)
    # Password confirmation in user-interactive auth shares the count.
    body = {"auth": client.password_auth(fay["user_id"])}
    assert_limited(await client.post("/account/deactivate", body, token=fay["access_token"]), 10)
    # Unknown users are counted by the identifier they were named with.
    ghost = {"type": "m.login.password", "user": "ghost", "password": "x"}
    for _ in range(2):
        assert (await client.post("/login", ghost)).status == 403
    assert (await client.post("/login", ghost)).status == 429
    hs.clock.advance(10)
    assert (await client.post("/login", right)).status == 200


async def test_3pid_validation_requests(homeserver_factory: Any, reactor: Any) -> None:
    from tests.api.client.threepid_helpers import MailServer, request_token

    mail = await MailServer.start(reactor)
    try:
        hs = await homeserver_factory.start(**mail.config(rc_3pid_validation=_limit(2)))
        client = homeserver_factory.client(hs)
        path = "/register/email/requestToken"
        assert (await request_token(client, path, "a@example.org")).status == 200
        assert (await request_token(client, path, "b@example.org")).status == 200
        assert_limited(await request_token(client, path, "c@example.org"), 10)
        hs.clock.advance(10)
        assert (await request_token(client, path, "c@example.org")).status == 200
    finally:
        await mail.close()


async def test_registration_token_validity_checks(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(rc_registration_token_validity=_limit(1))
    client: TestClient = homeserver_factory.client(hs)
    path = "/_matrix/client/v1/register/m.login.registration_token/validity"
    assert (await client.get(path, query={"token": "x"})).json == {"valid": False}
    assert_limited(await client.get(path, query={"token": "x"}), 10)
