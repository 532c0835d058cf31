"""Inbound X-Matrix authentication, with keys from a real KeyRing (both engines).

The requesting server ("origin.test:<port>") serves its keys over TLS; our
KeyRing fetches them from it. Each failure gets the status and errcode
Synapse gives.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from signedjson.key import generate_signing_key
from twisted.web.http_headers import Headers

from homeserver.crypto.keyring import KeyRing
from homeserver.crypto.x_matrix import format_header, sign_request
from homeserver.federation.auth import FederationAuthenticator
from homeserver.federation.client import FederationClient
from homeserver.storage.stores.server_keys import ServerKeyStore
from homeserver.types.errors import MatrixError
from tests.conftest import run_on_reactor
from tests.federation_harness import LOOPBACK, FakeDns, Origin, fake_clock, local_keys, trust_root

US = "us.test"


class Setup:
    def __init__(self, reactor: Any, database: Any) -> None:
        self.clock_reactor, self.clock = fake_clock()
        self.origin = Origin(reactor, self.clock)
        our_keys = local_keys(US, self.clock)
        self.client = FederationClient(
            reactor,
            self.clock,
            our_keys,
            ip_blocklist=LOOPBACK,
            ip_allowlist=LOOPBACK,
            dns=FakeDns(hosts={"origin.test": ["127.0.0.1"]}),
            trust_root=trust_root("origin.test"),
        )
        self.keyring = KeyRing(self.clock, ServerKeyStore(database), self.client, our_keys)
        self.denied: set[str] = set()
        self.auth = FederationAuthenticator(
            US, self.clock, self.keyring, origin_allowed=lambda origin: origin not in self.denied
        )

    def header(
        self, method: str, uri: str, content: Any = None, *, destination: str = US, key: Any = None
    ) -> bytes:
        return sign_request(
            key or self.origin.keys.signing_key, self.origin.name, destination, method, uri, content
        ).encode()

    async def close(self) -> None:
        await self.client.close()
        await self.origin.server.stop()


@pytest.fixture
def setup(reactor: Any, database: Any) -> Iterator[Setup]:
    s = Setup(reactor, database)
    yield s
    run_on_reactor(s.close())


async def expect_error(coro: Any, status: int, errcode: str) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        await coro
    assert (info.value.status, info.value.errcode) == (status, errcode), info.value
    return info.value


async def test_signed_requests_are_authenticated(setup: Setup) -> None:
    uri = "/_matrix/federation/v1/query/profile?user_id=%40a%3Aus.test&field=displayname"
    origin = await setup.auth.authenticate("GET", uri, [setup.header("GET", uri)], None)
    assert origin == setup.origin.name
    content = {"pdus": [], "edus": [{"edu_type": "m.typing"}]}
    header = setup.header("PUT", "/_matrix/federation/v1/send/t1", content)
    assert await setup.auth.authenticate("PUT", "/_matrix/federation/v1/send/t1", [header], content)
    # Keys were fetched once and then reused.
    assert setup.origin.root.count == 1


async def test_header_without_destination_is_accepted(setup: Setup) -> None:
    """Older servers: the signature still covers our name as destination."""
    full = setup.header("GET", "/x").decode()
    without = full.replace(f',destination="{US}"', "")
    assert "destination" not in without
    assert await setup.auth.authenticate("GET", "/x", [without], None) == setup.origin.name


async def test_bad_signatures_are_401(setup: Setup) -> None:
    header = setup.header("PUT", "/x", {"a": 1})
    for method, uri, content in (
        ("PUT", "/y", {"a": 1}),
        ("PUT", "/x", {"a": 2}),
        ("POST", "/x", {"a": 1}),
    ):
        error = await expect_error(
            setup.auth.authenticate(method, uri, [header], content), 401, "M_UNAUTHORIZED"
        )
        assert "Invalid signature" in error.message
    # A signature that is not base64 at all.
    auth = format_header(setup.origin.name, US, setup.origin.key_id, "!!!")
    await expect_error(setup.auth.authenticate("GET", "/x", [auth], None), 401, "M_UNAUTHORIZED")


async def test_wrong_destination_is_401(setup: Setup) -> None:
    header = setup.header("GET", "/x", destination="someone-else.test")
    error = await expect_error(
        setup.auth.authenticate("GET", "/x", [header], None), 401, "M_UNAUTHORIZED"
    )
    assert error.message == "Destination mismatch in auth header"
    assert setup.origin.root.count == 0  # refused before any key lookup


async def test_unknown_key_is_401(setup: Setup) -> None:
    header = setup.header("GET", "/x", key=generate_signing_key("unknown"))
    error = await expect_error(
        setup.auth.authenticate("GET", "/x", [header], None), 401, "M_UNAUTHORIZED"
    )
    assert "Failed to find any key" in error.message


async def test_expired_key_is_401(setup: Setup) -> None:
    header = setup.header("GET", "/x")
    await setup.auth.authenticate("GET", "/x", [header], None)
    # The origin goes away; once its key is past valid_until_ts, requests fail.
    await setup.origin.server.stop()
    setup.clock_reactor.advance(2 * 3600)
    await expect_error(setup.auth.authenticate("GET", "/x", [header], None), 401, "M_UNAUTHORIZED")


class NoKeyRing:
    """For failures that must come before any key lookup."""

    async def verify_json_for_server(self, *args: Any) -> None:
        raise AssertionError("no key lookup expected")


def offline_auth() -> FederationAuthenticator:
    return FederationAuthenticator(US, fake_clock()[1], NoKeyRing())


@pytest.mark.parametrize(
    "header",
    [
        b'X-Matrix key="ed25519:k0",sig="abc"',
        b'X-Matrix origin="o.test",sig="abc"',
        b'X-Matrix origin="not a name",key="ed25519:k0",sig="abc"',
        b'X-Matrix origin="o.test",key="ed25519:k0",sig="abc',
        b"X-Matrix garbage",
    ],
)
async def test_malformed_header_is_400(header: bytes) -> None:
    error = await expect_error(
        offline_auth().authenticate("GET", "/x", [header], None), 400, "M_UNAUTHORIZED"
    )
    assert error.message == "Malformed Authorization header"


async def test_missing_header_is_401() -> None:
    for headers in ([], [b"Bearer some_token"]):
        error = await expect_error(
            offline_auth().authenticate("GET", "/x", headers, None), 401, "M_UNAUTHORIZED"
        )
        assert error.message == "Missing Authorization headers"


async def test_headers_naming_two_origins_are_401(setup: Setup) -> None:
    other = sign_request(generate_signing_key("z"), "other.test", US, "GET", "/x")
    await expect_error(
        setup.auth.authenticate("GET", "/x", [setup.header("GET", "/x"), other], None),
        401,
        "M_UNAUTHORIZED",
    )


async def test_origin_not_allowed_is_403(setup: Setup) -> None:
    setup.denied.add(setup.origin.name)
    error = await expect_error(
        setup.auth.authenticate("GET", "/x", [setup.header("GET", "/x")], None), 403, "M_FORBIDDEN"
    )
    assert setup.origin.name in error.message


class FakeRequest:
    def __init__(
        self, method: bytes, uri: bytes, headers: dict[bytes, list[bytes]], body: bytes
    ) -> None:
        self.method = method
        self.uri = uri
        self.requestHeaders = Headers(headers)
        self.content = io.BytesIO(body)
        self.requester: str | None = None


async def test_authenticate_request_reads_and_rewinds_the_body(setup: Setup) -> None:
    content = {"pdus": []}
    body = json.dumps(content).encode()
    uri = "/_matrix/federation/v1/send/t2?x=1"
    request = FakeRequest(
        b"PUT", uri.encode(), {b"Authorization": [setup.header("PUT", uri, content)]}, body
    )
    assert await setup.auth.authenticate_request(request) == setup.origin.name
    assert request.requester == setup.origin.name
    assert request.content.read() == body  # the servlet can read it again
    # GET: no content in the signed object.
    get = FakeRequest(b"GET", b"/y", {b"Authorization": [setup.header("GET", "/y")]}, b"")
    assert await setup.auth.authenticate_request(get) == setup.origin.name


async def test_authenticate_request_refuses_bodies_that_are_not_json_objects(setup: Setup) -> None:
    header = setup.header("PUT", "/z", {})
    for body, errcode in ((b"nope", "M_NOT_JSON"), (b"[1]", "M_BAD_JSON")):
        request = FakeRequest(b"PUT", b"/z", {b"Authorization": [header]}, body)
        await expect_error(setup.auth.authenticate_request(request), 400, errcode)
