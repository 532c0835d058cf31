"""The servlet base: routing, error shapes, body limits, CORS, tokens and the access log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from homeserver.api.http import (
    Auth,
    JsonDict,
    Router,
    Servlet,
    Site,
    SiteRequest,
    client_patterns,
    get_access_token,
    parse_json_object,
    redact_uri,
)
from homeserver.types.errors import Codes, MatrixError
from tests.http_harness import Connection, request


class EchoServlet(Servlet):
    """PUT /_matrix/client/v3/echo/{thing}: echoes the JSON body and the path argument."""

    PATTERNS = client_patterns("/echo/(?P<thing>[^/]*)")
    AUTH = Auth.NONE

    async def on_PUT(self, request: SiteRequest, thing: str) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        return 200, {"thing": thing, "body": body, "token": get_access_token(request)}


class FailingServlet(Servlet):
    PATTERNS = ("^/_matrix/client/v3/fail/(?P<how>[a-z]+)$",)
    AUTH = Auth.NONE

    async def on_GET(self, request: SiteRequest, how: str) -> tuple[int, JsonDict]:
        if how == "forbidden":
            raise MatrixError(Codes.FORBIDDEN, "You may not.")
        raise RuntimeError("a bug")


class WaitingServlet(Servlet):
    """GET /_matrix/client/v3/wait: answers when the test fires `release`."""

    PATTERNS = ("^/_matrix/client/v3/wait$",)
    AUTH = Auth.NONE

    def __init__(self) -> None:
        self.release: defer.Deferred[None] = defer.Deferred()

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        await self.release
        return 200, {"waited": True}


def make_site(*servlets: Servlet, max_request_size: int = 1000) -> Site:
    router = Router()
    for servlet in (EchoServlet(), FailingServlet(), *servlets):
        router.register(servlet)
    return Site(router, max_request_size=max_request_size, name="test", reactor=Clock())


def test_json_body_and_percent_decoded_path_argument() -> None:
    response = request(
        make_site(), "PUT", "/_matrix/client/v3/echo/a%2Fb%20c", b'{"x": [1, "\\u00e9"]}'
    )
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"thing": "a/b c", "body": {"x": [1, "é"]}, "token": None}


def test_r0_prefix_is_an_alias_of_v3() -> None:
    response = request(make_site(), "PUT", "/_matrix/client/r0/echo/x", b"{}")
    assert response.status == 200
    assert response.json()["thing"] == "x"


@pytest.mark.parametrize("body", [b"{not json", b'{"a": NaN}', b'{"a": Infinity}', b"\xff\xfe"])
def test_bad_json_is_m_not_json(body: bytes) -> None:
    response = request(make_site(), "PUT", "/_matrix/client/v3/echo/x", body)
    assert response.status == 400
    assert response.json()["errcode"] == "M_NOT_JSON"


def test_json_that_is_not_an_object_is_m_bad_json() -> None:
    response = request(make_site(), "PUT", "/_matrix/client/v3/echo/x", b"[1, 2]")
    assert response.status == 400
    assert response.json()["errcode"] == "M_BAD_JSON"


def test_body_over_the_limit_is_m_too_large() -> None:
    body = b'{"pad": "' + b"x" * 2000 + b'"}'
    response = request(make_site(max_request_size=1000), "PUT", "/_matrix/client/v3/echo/x", body)
    assert response.status == 413
    assert response.json() == {"errcode": "M_TOO_LARGE", "error": "Request body too large."}


def test_chunked_body_over_the_limit_is_m_too_large() -> None:
    # No Content-Length up front: the limit is enforced while the chunks arrive.
    site = make_site(max_request_size=100)
    conn = Connection(site)
    chunk = b"x" * 80
    conn.send(
        b"PUT /_matrix/client/v3/echo/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 3
        + b"0\r\n\r\n"
    )
    response = conn.response()
    assert response is not None and response.status == 413
    assert response.json()["errcode"] == "M_TOO_LARGE"


def test_unknown_path_is_404_m_unrecognized() -> None:
    response = request(make_site(), "GET", "/_matrix/client/v3/nothing/here")
    assert response.status == 404
    assert response.json() == {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}


def test_known_path_with_wrong_method_is_405_m_unrecognized() -> None:
    response = request(make_site(), "GET", "/_matrix/client/v3/echo/x")
    assert response.status == 405
    assert response.json() == {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}


def test_matrix_error_becomes_errcode_and_status() -> None:
    response = request(make_site(), "GET", "/_matrix/client/v3/fail/forbidden")
    assert response.status == 403
    assert response.json() == {"errcode": "M_FORBIDDEN", "error": "You may not."}


def test_unexpected_exception_is_logged_500_m_unknown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="homeserver.api.http"):
        response = request(make_site(), "GET", "/_matrix/client/v3/fail/bug")
    assert response.status == 500
    assert response.json() == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert "a bug" in caplog.text


@pytest.mark.parametrize(
    "path", ["/_matrix/client/v3/echo/x", "/_matrix/client/v3/nothing", "/_matrix/client/versions"]
)
def test_options_answers_with_cors_on_every_path_without_running_the_endpoint(path: str) -> None:
    response = request(make_site(), "OPTIONS", path)
    assert response.status == 200
    assert response.json() == {}
    assert response.headers["access-control-allow-origin"] == "*"
    for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
        assert method in response.headers["access-control-allow-methods"]
    for header in ("X-Requested-With", "Content-Type", "Authorization"):
        assert header in response.headers["access-control-allow-headers"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_matrix/client/v3/fail/forbidden"),
        ("GET", "/unknown"),
        ("PUT", "/_matrix/client/v3/echo/x"),
    ],
)
def test_cors_headers_are_on_every_response(method: str, path: str) -> None:
    response = request(make_site(), method, path, b"{}")
    assert response.headers["access-control-allow-origin"] == "*"


def test_access_token_from_bearer_header() -> None:
    response = request(
        make_site(), "PUT", "/_matrix/client/v3/echo/x", b"{}", {"Authorization": "Bearer syt_abc"}
    )
    assert response.json()["token"] == "syt_abc"


def test_access_token_from_query_parameter() -> None:
    response = request(make_site(), "PUT", "/_matrix/client/v3/echo/x?access_token=syt_q", b"{}")
    assert response.json()["token"] == "syt_q"


def test_access_token_in_header_and_query_is_refused() -> None:
    response = request(
        make_site(),
        "PUT",
        "/_matrix/client/v3/echo/x?access_token=a",
        b"{}",
        {"Authorization": "Bearer b"},
    )
    assert response.status == 401
    assert response.json()["errcode"] == "M_MISSING_TOKEN"


def test_non_bearer_authorization_is_not_a_token() -> None:
    # X-Matrix is the federation scheme; it never counts as an access token.
    response = request(
        make_site(),
        "PUT",
        "/_matrix/client/v3/echo/x",
        b"{}",
        {"Authorization": "X-Matrix origin=a"},
    )
    assert response.json()["token"] is None


def test_redact_uri_hides_secrets_only() -> None:
    assert (
        redact_uri(b"/_matrix/client/v3/sync?access_token=secret&since=s1&client_secret=x")
        == "/_matrix/client/v3/sync?access_token=<redacted>&since=s1&client_secret=<redacted>"
    )
    assert redact_uri(b"/plain/path") == "/plain/path"


def test_each_request_is_logged_once_with_redacted_token(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="homeserver.access"):
        request(make_site(), "PUT", "/_matrix/client/v3/echo/x?access_token=supersecret", b"{}")
    records = [r for r in caplog.records if r.name == "homeserver.access"]
    assert len(records) == 1
    line = records[0].getMessage()
    assert "supersecret" not in line
    assert "access_token=<redacted>" in line
    assert '"PUT /_matrix/client/v3/echo/x?access_token=<redacted> HTTP/1.1"' in line
    assert " 200 " in line
    assert records[0].request.startswith("PUT-")


def test_site_counts_requests_in_flight_until_they_finish() -> None:
    waiting = WaitingServlet()
    site = make_site(waiting)
    conn = Connection(site)
    conn.send(b"GET /_matrix/client/v3/wait HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert len(site.in_flight) == 1
    idle = site.wait_until_idle()
    assert not idle.called
    waiting.release.callback(None)
    response = conn.response()
    assert response is not None and response.json() == {"waited": True}
    assert idle.called and not site.in_flight


def test_request_metrics_are_counted_per_servlet() -> None:
    from prometheus_client import REGISTRY

    def count() -> float:
        value: Any = REGISTRY.get_sample_value(
            "homeserver_http_requests_total",
            {"servlet": "FailingServlet", "method": "GET", "code": "403"},
        )
        return value or 0.0

    before = count()
    request(make_site(), "GET", "/_matrix/client/v3/fail/forbidden")
    assert count() == before + 1


def test_request_with_body_still_arriving_counts_as_in_flight() -> None:
    # Shutdown waits for these too, so an upload in progress is not cut off.
    site = make_site()
    conn = Connection(site)
    conn.send(
        b"PUT /_matrix/client/v3/echo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\n{}"
    )
    assert len(site.in_flight) == 1
    conn.send(b"  ")
    response = conn.response()
    assert response is not None and response.status == 200
    assert not site.in_flight


def test_close_connections_closes_idle_keepalive_connections() -> None:
    site = make_site()
    conn = Connection(site)
    conn.send(
        b"PUT /_matrix/client/v3/echo/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert conn.response() is not None
    assert len(site.connections) == 1
    closed = site.close_connections()
    # StringTransport records the close; the protocol then hears connectionLost.
    assert conn.transport.disconnecting
    conn.protocol.connectionLost(Failure(ConnectionDone()))
    assert closed.called and not site.connections


def _compressing_site() -> Site:
    router = Router()
    router.register(EchoServlet(), compress=True)
    return Site(router, max_request_size=100_000, name="test", reactor=Clock())


def test_compressed_resource_gzips_for_clients_that_accept_it() -> None:
    import gzip
    import json

    body = json.dumps({"pad": "x" * 5000}).encode()
    response = request(
        _compressing_site(),
        "PUT",
        "/_matrix/client/v3/echo/x",
        body,
        {"Accept-Encoding": "gzip, br"},
    )
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert len(response.body) < 1000
    assert json.loads(gzip.decompress(response.body))["body"] == {"pad": "x" * 5000}


@pytest.mark.parametrize("accept", [None, "identity", "gzip;q=0"])
def test_no_gzip_unless_the_client_accepts_it(accept: str | None) -> None:
    headers = {"Accept-Encoding": accept} if accept else {}
    body = b'{"pad": "' + b"x" * 5000 + b'"}'
    response = request(_compressing_site(), "PUT", "/_matrix/client/v3/echo/x", body, headers)
    assert "content-encoding" not in response.headers
    assert response.json()["body"]["pad"] == "x" * 5000


def test_small_bodies_and_uncompressed_resources_are_sent_as_they_are() -> None:
    small = request(
        _compressing_site(), "PUT", "/_matrix/client/v3/echo/x", b"{}", {"Accept-Encoding": "gzip"}
    )
    assert "content-encoding" not in small.headers
    body = b'{"pad": "' + b"x" * 5000 + b'"}'
    plain = request(
        make_site(max_request_size=100_000),
        "PUT",
        "/_matrix/client/v3/echo/x",
        body,
        {"Accept-Encoding": "gzip"},
    )
    assert "content-encoding" not in plain.headers


# -- client disconnects


class LongPollServlet(Servlet):
    PATTERNS = ["^/poll$", "^/hold$"]
    AUTH = Auth.NONE
    CANCELLABLE = frozenset({"GET"})

    def __init__(self) -> None:
        self.waits: list[defer.Deferred[None]] = []
        self.cancelled: list[str] = []

    async def _wait(self, name: str) -> tuple[int, JsonDict]:
        wait: defer.Deferred[None] = defer.Deferred(lambda d: self.cancelled.append(name))
        self.waits.append(wait)
        await wait
        return 200, {}

    async def on_GET(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return await self._wait("GET")

    async def on_POST(self, request: SiteRequest) -> tuple[int, JsonDict]:
        return await self._wait("POST")


def test_cancellable_methods_stop_when_the_client_goes_away() -> None:
    servlet = LongPollServlet()
    router = Router()
    router.register(servlet)
    site = Site(router, 1000, "test", reactor=Clock())
    for method in ("GET", "POST"):
        conn = Connection(site)
        conn.send(f"{method} /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        conn.protocol.connectionLost(Failure(ConnectionDone()))
    # Only the method declared cancellable was stopped; the other still runs to its end.
    assert servlet.cancelled == ["GET"]
    assert not servlet.waits[1].called
    servlet.waits[1].callback(None)
