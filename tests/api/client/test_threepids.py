"""Email addresses: requestToken, the emailed link, /account/3pid add/delete/list, 3PID login,
password reset by email, registration with m.login.email.identity, and every refusal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.client.threepid_helpers import (
    CLIENT_SECRET,
    MailServer,
    follow,
    request_token,
    validated_sid,
)
from tests.conftest import run_on_reactor
from tests.homeserver_harness import DEFAULT_PASSWORD, TestClient

ADD = "/account/3pid/email/requestToken"
REGISTER = "/register/email/requestToken"
RESET = "/account/password/email/requestToken"


@pytest.fixture
def mail(reactor: Any) -> Iterator[MailServer]:
    server = run_on_reactor(MailServer.start(reactor))
    yield server
    run_on_reactor(server.close())


async def _start(homeserver_factory: Any, mail: MailServer, **overrides: Any) -> TestClient:
    hs = await homeserver_factory.start(**mail.config(**overrides))
    return homeserver_factory.client(hs)  # type: ignore[no-any-return]


async def _add_email(client: TestClient, mail: MailServer, token: str, user_id: str, email: str) -> None:
    sid = await validated_sid(client, mail, ADD, email)
    body = {"client_secret": CLIENT_SECRET, "sid": sid}
    first = await client.post("/account/3pid/add", body, token=token)
    assert first.status == 401, first
    body["auth"] = client.password_auth(user_id, first.json["session"])
    added = await client.post("/account/3pid/add", body, token=token)
    assert added.status == 200, added


async def test_add_list_and_delete_an_email(homeserver_factory: Any, mail: MailServer) -> None:
    client = await _start(homeserver_factory, mail)
    alice = await client.register("alice")
    await _add_email(client, mail, alice["access_token"], alice["user_id"], "Alice@Example.ORG")
    listed = await client.get("/account/3pid", token=alice["access_token"])
    (threepid,) = listed.json["threepids"]
    assert threepid["medium"] == "email" and threepid["address"] == "alice@example.org"
    assert isinstance(threepid["validated_at"], int) and isinstance(threepid["added_at"], int)
    message = mail.server.inbox[-1]
    assert message.rcpt_to == "Alice@example.org".lower()

    deleted = await client.post(
        "/account/3pid/delete",
        {"medium": "email", "address": "ALICE@example.org"},
        token=alice["access_token"],
    )
    assert deleted.json == {"id_server_unbind_result": "no-support"}
    assert (await client.get("/account/3pid", token=alice["access_token"])).json == {"threepids": []}


async def test_the_link_validates_once_and_the_session_is_spent(
    homeserver_factory: Any, mail: MailServer
) -> None:
    client = await _start(homeserver_factory, mail)
    response = await request_token(client, ADD, "bob@example.org", next_link="https://app.test/done")
    assert response.status == 200
    link = mail.last_link()
    assert link.path == "/_matrix/client/unstable/add_threepid/email/submit_token"
    redirected = await follow(client, link)
    assert redirected.status == 302
    assert redirected.headers["location"] == [f"https://app.test/done?sid={response.json['sid']}"]
    bob = await client.register("bob")
    body = {
        "client_secret": CLIENT_SECRET,
        "sid": response.json["sid"],
        "auth": client.password_auth(bob["user_id"]),
    }
    assert (await client.post("/account/3pid/add", body, token=bob["access_token"])).status == 200
    again = await client.post("/account/3pid/add", body, token=bob["access_token"])
    assert (again.status, again.json["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")


async def test_bad_links_answer_an_html_page(homeserver_factory: Any, mail: MailServer) -> None:
    client = await _start(homeserver_factory, mail)
    await request_token(client, ADD, "carol@example.org")
    link = mail.last_link()
    for change, reason in (
        ({"token": "wrong"}, "Validation token not found"),
        ({"client_secret": "other"}, "does not match"),
        ({"sid": "nosuchsid"}, "Unknown session_id"),
    ):
        response = await client.get(link.path, query={**link.query, **change})
        assert response.status == 400, change
        assert response.headers["content-type"] == ["text/html; charset=utf-8"]
        assert reason in response.body.decode()
    missing = await client.get(link.path, query={"sid": "x", "client_secret": "y"})
    assert (missing.status, missing.json["errcode"]) == (400, "M_MISSING_PARAM")
    # The link expires (default lifetime: one hour).
    homeserver_factory.running[-1].clock.advance(3601)
    expired = await follow(client, link)
    assert expired.status == 400 and "expired" in expired.body.decode()


async def test_send_attempt_and_parameter_checks(homeserver_factory: Any, mail: MailServer) -> None:
    client = await _start(homeserver_factory, mail)
    first = await request_token(client, ADD, "dan@example.org", send_attempt=1)
    repeat = await request_token(client, ADD, "dan@example.org", send_attempt=1)
    assert first.json["sid"] == repeat.json["sid"] and mail.count == 1
    resend = await request_token(client, ADD, "dan@example.org", send_attempt=2)
    assert resend.json["sid"] == first.json["sid"] and mail.count == 2
    for body, errcode in (
        ({"email": "dan@example.org", "send_attempt": 1}, "M_MISSING_PARAM"),
        ({"client_secret": "bad secret!", "email": "d@e.org", "send_attempt": 1}, "M_INVALID_PARAM"),
        ({"client_secret": "x" * 256, "email": "d@e.org", "send_attempt": 1}, "M_INVALID_PARAM"),
        ({"client_secret": "ok", "email": "not-an-address", "send_attempt": 1}, "M_INVALID_PARAM"),
        ({"client_secret": "ok", "email": "d@e.org", "send_attempt": "1"}, "M_INVALID_PARAM"),
        ({"client_secret": "ok", "email": "d@e.org"}, "M_MISSING_PARAM"),
        ({"client_secret": "ok", "email": 5, "send_attempt": 1}, "M_INVALID_PARAM"),
        (
            {"client_secret": "ok", "email": "d@e.org", "send_attempt": 1, "next_link": "file:///x"},
            "M_INVALID_PARAM",
        ),
    ):
        response = await client.post(ADD, body)
        assert (response.status, response.json["errcode"]) == (400, errcode), body


async def test_in_use_and_not_found(homeserver_factory: Any, mail: MailServer) -> None:
    client = await _start(homeserver_factory, mail)
    erin = await client.register("erin")
    await _add_email(client, mail, erin["access_token"], erin["user_id"], "erin@example.org")
    for path in (ADD, REGISTER):
        taken = await request_token(client, path, "ERIN@example.org")
        assert (taken.status, taken.json["errcode"]) == (400, "M_THREEPID_IN_USE"), path
    unknown = await request_token(client, RESET, "nobody@example.org")
    assert (unknown.status, unknown.json["errcode"]) == (400, "M_THREEPID_NOT_FOUND")
    # A session validated before another account took the address cannot bind it.
    frank = await client.register("frank")
    sid = (await request_token(client, ADD, "shared@example.org", client_secret="franks")).json["sid"]
    await follow(client, mail.last_link())
    await _add_email(client, mail, erin["access_token"], erin["user_id"], "shared@example.org")
    body = {"client_secret": "franks", "sid": sid, "auth": client.password_auth(frank["user_id"])}
    late = await client.post("/account/3pid/add", body, token=frank["access_token"])
    assert (late.status, late.json["errcode"]) == (400, "M_THREEPID_IN_USE")


async def test_without_email_config_requests_are_refused(client: TestClient) -> None:
    add = await request_token(client, ADD, "a@example.org")
    assert (add.status, add.json["errcode"]) == (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    for path in (REGISTER, RESET):
        response = await request_token(client, path, "a@example.org")
        assert response.status == 400, path
    msisdn = await client.post(
        "/account/3pid/msisdn/requestToken",
        {"client_secret": "ok", "country": "GB", "phone_number": "07700900123", "send_attempt": 1},
    )
    assert (msisdn.status, msisdn.json["errcode"]) == (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    link = await client.get(
        "/_matrix/client/unstable/add_threepid/email/submit_token",
        query={"sid": "a", "client_secret": "b", "token": "c"},
    )
    assert link.status == 400
    # Password reset needs an access token when email cannot be validated.
    reset = await client.post("/account/password", {"new_password": "x"})
    assert (reset.status, reset.json["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_3pid_changes_can_be_disabled(homeserver_factory: Any, mail: MailServer) -> None:
    client = await _start(homeserver_factory, mail, enable_3pid_changes=False)
    gina = await client.register("gina")
    response = await request_token(client, ADD, "g@example.org")
    assert (response.status, response.json["errcode"]) == (400, "M_FORBIDDEN")
    delete = await client.post(
        "/account/3pid/delete", {"medium": "email", "address": "g@e.org"}, token=gina["access_token"]
    )
    assert (delete.status, delete.json["errcode"]) == (400, "M_FORBIDDEN")
    bad_medium = await client.post(
        "/account/3pid/delete", {"medium": "fax", "address": "1"}, token=gina["access_token"]
    )
    assert bad_medium.status == 400


async def test_login_with_email_and_deprecated_form(homeserver_factory: Any, mail: MailServer) -> None:
    client = await _start(homeserver_factory, mail)
    hank = await client.register("hank")
    await _add_email(client, mail, hank["access_token"], hank["user_id"], "hank@example.org")
    for body in (
        {"identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "Hank@Example.org"}},
        {"medium": "email", "address": "hank@example.org"},
    ):
        response = await client.post(
            "/login", {"type": "m.login.password", "password": DEFAULT_PASSWORD, **body}
        )
        assert response.status == 200, response
        assert response.json["user_id"] == "@hank:test"
    for body in (
        {"identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "no@example.org"}},
        {"identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "hank@example.org"}},
    ):
        wrong = await client.post("/login", {"type": "m.login.password", "password": "nope", **body})
        assert (wrong.status, wrong.json["errcode"]) == (403, "M_FORBIDDEN")
    malformed = await client.post(
        "/login",
        {"type": "m.login.password", "password": "x", "identifier": {"type": "m.id.thirdparty"}},
    )
    assert (malformed.status, malformed.json["errcode"]) == (400, "M_INVALID_PARAM")


async def test_password_reset_by_email(homeserver_factory: Any, mail: MailServer) -> None:
    client = await _start(homeserver_factory, mail)
    ivy = await client.register("ivy")
    await _add_email(client, mail, ivy["access_token"], ivy["user_id"], "ivy@example.org")
    await request_token(client, RESET, "ivy@example.org")
    link = mail.last_link()
    assert link.path == "/_synapse/client/password_reset/email/submit_token"
    page = await follow(client, link)
    assert page.status == 200 and b"<form method=\"post\"" in page.body
    first = await client.post("/account/password", {"new_password": "new password 1"})
    assert first.status == 401
    assert first.json["flows"] == [{"stages": ["m.login.email.identity"]}]
    creds = {"sid": link.query["sid"], "client_secret": CLIENT_SECRET}
    auth = {"type": "m.login.email.identity", "threepid_creds": creds, "session": first.json["session"]}
    not_yet = await client.post("/account/password", {"auth": auth})
    assert (not_yet.status, not_yet.json["errcode"]) == (401, "M_UNAUTHORIZED")
    assert (await follow(client, link, "POST")).status == 200
    done = await client.post("/account/password", {"auth": auth})
    assert done.status == 200, done
    # Every session ended; the new password works, the old one does not.
    whoami = await client.get("/account/whoami", token=ivy["access_token"])
    assert whoami.status == 401
    await client.login("ivy", "new password 1")
    old = await client.post(
        "/login", {"type": "m.login.password", "user": "ivy", "password": DEFAULT_PASSWORD}
    )
    assert old.status == 403


async def test_registration_with_a_validated_email(homeserver_factory: Any, mail: MailServer) -> None:
    client = await _start(homeserver_factory, mail, registrations_require_3pid=["email"])
    first = await client.post("/register", {"username": "jack", "password": DEFAULT_PASSWORD})
    assert first.json["flows"] == [{"stages": ["m.login.email.identity"]}]
    sid = await validated_sid(client, mail, REGISTER, "jack@example.org")
    assert mail.last_link().path == "/_matrix/client/unstable/registration/email/submit_token"
    auth = {
        "type": "m.login.email.identity",
        "threepid_creds": {"sid": sid, "client_secret": CLIENT_SECRET},
        "session": first.json["session"],
    }
    done = await client.post("/register", {"auth": auth})
    assert done.status == 200, done
    threepids = (await client.get("/account/3pid", token=done.json["access_token"])).json
    assert [t["address"] for t in threepids["threepids"]] == ["jack@example.org"]
    dummy = await client.post(
        "/register", {"username": "kim", "password": "x", "auth": {"type": "m.login.dummy"}}
    )
    assert (dummy.status, dummy.json["errcode"]) == (400, "M_INVALID_PARAM")
    missing_creds = await client.post(
        "/register", {"username": "kim", "password": "x", "auth": {"type": "m.login.email.identity"}}
    )
    assert (missing_creds.status, missing_creds.json["errcode"]) == (400, "M_MISSING_PARAM")


async def test_deactivation_unbinds_the_address(homeserver_factory: Any, mail: MailServer) -> None:
    client = await _start(homeserver_factory, mail)
    lou = await client.register("lou")
    await _add_email(client, mail, lou["access_token"], lou["user_id"], "lou@example.org")
    body = {"auth": client.password_auth(lou["user_id"])}
    assert (await client.post("/account/deactivate", body, token=lou["access_token"])).status == 200
    # The address is free again.
    assert (await request_token(client, REGISTER, "lou@example.org")).status == 200
    login = await client.post(
        "/login",
        {
            "type": "m.login.password",
            "password": DEFAULT_PASSWORD,
            "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "lou@example.org"},
        },
    )
    assert login.status == 403
