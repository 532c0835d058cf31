"""Declared authentication in the servlet base: how the Router resolves tokens for servlets."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from twisted.internet.task import Clock

from homeserver.api.http import Auth, JsonDict, Router, Servlet, Site, SiteRequest
from homeserver.handlers.auth import Requester
from homeserver.types.errors import Codes, MatrixError
from tests.http_harness import request

USERS = {
    "alice-token": Requester("@alice:test", "DEV", False, "hash-a"),
    "guest-token": Requester("@1:test", "GDEV", True, "hash-g"),
}


class FakeAuthenticator:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []

    async def authenticate(
        self, token: str, ip: str | None = None, user_agent: str | None = None
    ) -> Requester:
        self.calls.append((token, ip, user_agent))
        if token not in USERS:
            raise MatrixError(Codes.UNKNOWN_TOKEN, "Invalid access token passed.", status=401)
        return USERS[token]


class WhoServlet(Servlet):
    """GET/PUT/POST /who: reports the requester each auth level gives."""

    PATTERNS = ("^/who$",)
    AUTH = {"GET": Auth.USER, "PUT": Auth.USER_OR_GUEST, "POST": Auth.OPTIONAL, "DELETE": Auth.NONE}

    async def on_GET(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        return 200, {"user_id": requester.user_id}

    async def on_PUT(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        return 200, {"user_id": requester.user_id, "guest": requester.is_guest}

    async def on_POST(
        self, request: SiteRequest, requester: Requester | None
    ) -> tuple[int, JsonDict]:
        return 200, {"user_id": requester.user_id if requester else None}

    async def on_DELETE(self, request: SiteRequest, **kwargs: Any) -> tuple[int, JsonDict]:
        return 200, {"kwargs": sorted(kwargs)}


def make_site(authenticator: FakeAuthenticator, *, x_forwarded: bool = False) -> Site:
    router = Router(authenticator)
    router.register(WhoServlet())
    return Site(router, 1000, "test", reactor=Clock(), x_forwarded=x_forwarded)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_user_methods_get_the_requester() -> None:
    auth = FakeAuthenticator()
    response = request(make_site(auth), "GET", "/who", headers={**bearer("alice-token"), "User-Agent": "UA"})
    assert (response.status, response.json()) == (200, {"user_id": "@alice:test"})
    assert auth.calls == [("alice-token", "127.0.0.1", "UA")]


def test_missing_token_is_401_m_missing_token() -> None:
    for method in ("GET", "PUT"):
        response = request(make_site(FakeAuthenticator()), method, "/who")
        assert response.status == 401
        assert response.json()["errcode"] == "M_MISSING_TOKEN"


def test_unknown_token_error_comes_from_the_authenticator() -> None:
    response = request(make_site(FakeAuthenticator()), "GET", "/who", headers=bearer("nope"))
    assert (response.status, response.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_guests_only_where_declared() -> None:
    site = make_site(FakeAuthenticator())
    refused = request(site, "GET", "/who", headers=bearer("guest-token"))
    assert refused.status == 403
    assert refused.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    allowed = request(site, "PUT", "/who", headers=bearer("guest-token"))
    assert allowed.json() == {"user_id": "@1:test", "guest": True}


def test_optional_auth_gives_none_without_a_token_but_checks_a_given_one() -> None:
    site = make_site(FakeAuthenticator())
    assert request(site, "POST", "/who").json() == {"user_id": None}
    assert request(site, "POST", "/who", headers=bearer("alice-token")).json() == {
        "user_id": "@alice:test"
    }
    assert request(site, "POST", "/who", headers=bearer("nope")).status == 401


def test_no_auth_means_no_token_lookup_and_no_requester_argument() -> None:
    auth = FakeAuthenticator()
    response = request(make_site(auth), "DELETE", "/who", headers=bearer("alice-token"))
    assert response.json() == {"kwargs": []}
    assert auth.calls == []


def test_access_log_names_the_requester(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="homeserver.access"):
        request(make_site(FakeAuthenticator()), "GET", "/who", headers=bearer("alice-token"))
    (record,) = [r for r in caplog.records if r.name == "homeserver.access"]
    assert "{@alice:test}" in record.getMessage()


def test_x_forwarded_for_only_behind_a_trusted_proxy() -> None:
    headers = {**bearer("alice-token"), "X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
    trusted = FakeAuthenticator()
    request(make_site(trusted, x_forwarded=True), "GET", "/who", headers=headers)
    assert trusted.calls[0][1] == "203.0.113.7"
    untrusted = FakeAuthenticator()
    request(make_site(untrusted), "GET", "/who", headers=headers)
    assert untrusted.calls[0][1] == "127.0.0.1"


def test_undeclared_auth_is_refused_at_registration() -> None:
    class Undeclared(Servlet):
        PATTERNS = ("^/x$",)

        async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
            return 200, {}

    class Partial(Undeclared):
        AUTH = {"POST": Auth.NONE}

    for servlet in (Undeclared(), Partial()):
        with pytest.raises(TypeError, match="declares no AUTH for GET"):
            Router(FakeAuthenticator()).register(servlet)


def test_authenticated_servlet_needs_an_authenticator() -> None:
    with pytest.raises(TypeError, match="no authenticator"):
        Router().register(WhoServlet())


# -- server (X-Matrix) authentication


class FakeServerAuthenticator:
    """Accepts "X-Matrix origin=<name>" as signed by <name>; anything else is 401."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def authenticate_request(self, request: Any) -> str:
        header = (request.getHeader(b"Authorization") or b"").decode()
        if not header.startswith("X-Matrix origin="):
            raise MatrixError(Codes.UNAUTHORIZED, "Missing Authorization headers", status=401)
        self.bodies.append(request.content.read())
        request.content.seek(0)
        return header.removeprefix("X-Matrix origin=")


class PeerServlet(Servlet):
    PATTERNS = ["^/peer$"]
    AUTH = {"PUT": Auth.SERVER, "GET": Auth.NONE}

    async def on_PUT(self, request: SiteRequest, origin: str) -> tuple[int, JsonDict]:
        return 200, {"origin": origin, "body": request.content.read().decode()}

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return 200, {}


def test_server_methods_get_the_origin() -> None:
    servers = FakeServerAuthenticator()
    router = Router(FakeAuthenticator(), servers)
    router.register(PeerServlet())
    site = Site(router, 1000, "test", reactor=Clock())
    response = request(
        site, "PUT", "/peer", body=b'{"a":1}', headers={"Authorization": "X-Matrix origin=peer.test"}
    )
    assert (response.status, response.json()) == (200, {"origin": "peer.test", "body": '{"a":1}'})
    assert servers.bodies == [b'{"a":1}']
    # The authenticator's refusal is the answer; the servlet never runs.
    refused = request(site, "PUT", "/peer", body=b"{}", headers=bearer("alice-token"))
    assert (refused.status, refused.json()["errcode"]) == (401, "M_UNAUTHORIZED")
    assert servers.bodies == [b'{"a":1}']
    # Methods declared NONE don't look at signatures.
    assert request(site, "GET", "/peer").status == 200


def test_server_servlet_needs_a_server_authenticator() -> None:
    with pytest.raises(TypeError, match="no server authenticator"):
        Router(FakeAuthenticator()).register(PeerServlet())
