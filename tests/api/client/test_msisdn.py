"""Phone numbers through `account_threepid_delegates.msisdn`, a fake identity server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.web import resource, server

from tests.conftest import run_on_reactor
from tests.homeserver_harness import DEFAULT_PASSWORD, TestClient

MSISDN = "447700900123"


class FakeIdentityServer(resource.Resource):
    """The three Identity Service API endpoints a homeserver uses for msisdn validation."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[bytes, dict[str, Any]]] = []
        self.validated = False
        self.refuse_next = False

    def render(self, request: server.Request) -> bytes:
        assert request.content is not None
        body = json.loads(request.content.read() or b"{}")
        self.requests.append((request.path, body))
        request.setHeader(b"Content-Type", b"application/json")
        path = request.path
        if self.refuse_next:
            self.refuse_next = False
            request.setResponseCode(400)
            return json.dumps({"errcode": "M_INVALID_PARAM", "error": "bad number"}).encode()
        if path.endswith(b"/validate/msisdn/requestToken"):
            return json.dumps({"sid": "is-sid", "msisdn": MSISDN, "intl_fmt": "+44 7700 900123"}).encode()
        if path.endswith(b"/validate/msisdn/submitToken"):
            self.validated = body.get("token") == "123456"
            return json.dumps({"success": self.validated}).encode()
        if path.endswith(b"/3pid/getValidated3pid"):
            if not self.validated:
                request.setResponseCode(400)
                return json.dumps({"errcode": "M_SESSION_NOT_VALIDATED", "error": "no"}).encode()
            return json.dumps({"medium": "msisdn", "address": MSISDN, "validated_at": 1234}).encode()
        request.setResponseCode(404)
        return b"{}"


@pytest.fixture
def identity_server(reactor: Any) -> Iterator[tuple[FakeIdentityServer, str]]:
    fake = FakeIdentityServer()
    port = reactor.listenTCP(0, server.Site(fake, timeout=None), interface="127.0.0.1")
    yield fake, f"http://127.0.0.1:{port.getHost().port}"
    run_on_reactor(port.stopListening())


def _request(**extra: Any) -> dict[str, Any]:
    return {"client_secret": "sec", "country": "GB", "phone_number": "07700 900123", "send_attempt": 1, **extra}


async def _start(homeserver_factory: Any, url: str, **overrides: Any) -> TestClient:
    hs = await homeserver_factory.start(
        account_threepid_delegates={"msisdn": url}, public_baseurl="https://matrix.test/", **overrides
    )
    return homeserver_factory.client(hs)  # type: ignore[no-any-return]


async def test_add_a_phone_number_and_log_in_with_it(
    homeserver_factory: Any, identity_server: tuple[FakeIdentityServer, str]
) -> None:
    fake, url = identity_server
    client = await _start(homeserver_factory, url)
    amy = await client.register("amy")
    requested = await client.post("/account/3pid/msisdn/requestToken", _request())
    assert requested.status == 200, requested
    assert requested.json["sid"] == "is-sid"
    assert requested.json["submit_url"] == (
        "https://matrix.test/_matrix/client/unstable/add_threepid/msisdn/submit_token"
    )
    assert fake.requests[-1][1]["phone_number"] == "07700 900123"
    submit = "/_matrix/client/unstable/add_threepid/msisdn/submit_token"
    submitted = await client.post(submit, {"client_secret": "sec", "sid": "is-sid", "token": "123456"})
    assert submitted.json == {"success": True}
    body = {"client_secret": "sec", "sid": "is-sid", "auth": client.password_auth(amy["user_id"])}
    assert (await client.post("/account/3pid/add", body, token=amy["access_token"])).status == 200
    threepids = (await client.get("/account/3pid", token=amy["access_token"])).json["threepids"]
    assert [(t["medium"], t["address"]) for t in threepids] == [("msisdn", MSISDN)]
    login = await client.post(
        "/login",
        {
            "type": "m.login.password",
            "password": DEFAULT_PASSWORD,
            "identifier": {"type": "m.id.phone", "country": "US", "phone": "+44 7700 900123"},
        },
    )
    assert login.status == 200 and login.json["user_id"] == "@amy:test"
    in_use = await client.post("/register/msisdn/requestToken", _request())
    assert (in_use.status, in_use.json["errcode"]) == (400, "M_THREEPID_IN_USE")


async def test_registration_with_a_phone_number(
    homeserver_factory: Any, identity_server: tuple[FakeIdentityServer, str]
) -> None:
    fake, url = identity_server
    client = await _start(homeserver_factory, url)
    first = await client.post("/register", {"username": "bo", "password": DEFAULT_PASSWORD})
    auth = {
        "type": "m.login.msisdn",
        "threepid_creds": {"sid": "is-sid", "client_secret": "sec"},
        "session": first.json["session"],
    }
    not_validated = await client.post("/register", {"auth": auth})
    assert (not_validated.status, not_validated.json["errcode"]) == (401, "M_UNAUTHORIZED")
    fake.validated = True
    done = await client.post("/register", {"auth": auth})
    assert done.status == 200, done
    threepids = (await client.get("/account/3pid", token=done.json["access_token"])).json
    assert threepids["threepids"][0]["address"] == MSISDN


async def test_refusals(homeserver_factory: Any, identity_server: tuple[FakeIdentityServer, str]) -> None:
    fake, url = identity_server
    client = await _start(homeserver_factory, url, disable_msisdn_registration=True)
    fake.refuse_next = True
    relayed = await client.post("/account/3pid/msisdn/requestToken", _request())
    assert (relayed.status, relayed.json["errcode"]) == (400, "M_INVALID_PARAM")
    disabled = await client.post("/register/msisdn/requestToken", _request())
    assert (disabled.status, disabled.json["errcode"]) == (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    for body in (_request(phone_number="not a number"), _request(country=5), _request(send_attempt=-1)):
        bad = await client.post("/account/3pid/msisdn/requestToken", body)
        assert bad.status == 400, body
    not_found = await client.post("/account/password/msisdn/requestToken", _request())
    assert (not_found.status, not_found.json["errcode"]) == (400, "M_THREEPID_NOT_FOUND")
    submit = "/_matrix/client/unstable/add_threepid/msisdn/submit_token"
    missing = await client.post(submit, {"client_secret": "sec"})
    assert (missing.status, missing.json["errcode"]) == (400, "M_MISSING_PARAM")
    first = await client.post("/register", {"username": "cy", "password": "x"})
    assert first.json["flows"] == [{"stages": ["m.login.dummy"]}]


async def test_submit_token_is_absent_without_a_delegate(client: TestClient) -> None:
    response = await client.post(
        "/_matrix/client/unstable/add_threepid/msisdn/submit_token",
        {"client_secret": "a", "sid": "b", "token": "c"},
    )
    assert (response.status, response.json["errcode"]) == (404, "M_UNRECOGNIZED")
