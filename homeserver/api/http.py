"""The servlet base and the HTTP machinery every endpoint shares.

A `Servlet` declares the paths it serves (`PATTERNS`, regular expressions over
the raw path with named groups) and implements `on_<METHOD>` coroutines that
return `(status, json_body)` or a `RawResponse`. A `Router` is the twisted.web
resource that matches paths, runs the servlet, and turns every outcome into a
response: `MatrixError` becomes `{"errcode", "error"}` with its status, an
unknown path 404 `M_UNRECOGNIZED`, a known path with another method 405
`M_UNRECOGNIZED`, and anything unexpected a logged 500 `M_UNKNOWN`. CORS
headers go on every response and `OPTIONS` is answered on every path without
running any endpoint logic, as the spec asks ("Web Browser Clients").

`SiteRequest` enforces the request size limit while the body arrives, carries
the request id into log records, and writes one access-log line when the
request ends. `Site` counts requests in flight so shutdown can wait for them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlencode

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from twisted.web.iweb import IRequest

from homeserver import metrics
from homeserver.logs import current_request_id
from homeserver.types.errors import Codes, MatrixError

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("homeserver.access")

JsonDict = dict[str, Any]

CORS_HEADERS = {
    b"Access-Control-Allow-Origin": b"*",
    b"Access-Control-Allow-Methods": b"GET, HEAD, POST, PUT, DELETE, OPTIONS",
    b"Access-Control-Allow-Headers": b"X-Requested-With, Content-Type, Authorization, Date",
    b"Access-Control-Expose-Headers": b"ETag, Content-Disposition",
}

# Query parameters whose values never reach the logs.
_SECRET_QUERY_PARAMS = frozenset({"access_token", "client_secret", "password"})


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A response that is not JSON (metrics text, media, HTML pages)."""

    status: int
    body: bytes
    content_type: bytes


ServletResult = tuple[int, Any] | RawResponse


class Servlet:
    """Base for endpoints. Subclasses set PATTERNS and define `async def on_GET(...)` etc.

    Path groups are passed to the method as keyword arguments, percent-decoded.
    """

    PATTERNS: ClassVar[tuple[str, ...]] = ()

    def methods(self) -> dict[bytes, Callable[..., Awaitable[ServletResult]]]:
        found = {}
        for method in ("GET", "PUT", "POST", "DELETE"):
            handler = getattr(self, f"on_{method}", None)
            if handler is not None:
                found[method.encode()] = handler
        return found


def client_patterns(path: str, versions: Iterable[str] = ("v3", "r0")) -> tuple[str, ...]:
    """The regex for a client-server API path under each of the given version prefixes."""
    alternatives = "|".join(re.escape(v) for v in versions)
    return (f"^/_matrix/client/(?:{alternatives}){path}$",)


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_value(request: SiteRequest) -> Any:
    """The request body as JSON; M_NOT_JSON when it is not JSON (NaN and Infinity included)."""
    body = request.content.read() if request.content is not None else b""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise MatrixError(Codes.NOT_JSON, "Content not JSON.") from e


def parse_json_object(request: SiteRequest) -> JsonDict:
    """The request body as a JSON object; M_NOT_JSON or M_BAD_JSON otherwise."""
    value = parse_json_value(request)
    if not isinstance(value, dict):
        raise MatrixError(Codes.BAD_JSON, "Content must be a JSON object.")
    return value


def get_access_token(request: IRequest) -> str | None:
    """The access token from `Authorization: Bearer` or the `access_token` query parameter.

    Spec: "Using access tokens". Giving both, or two of either, is refused with
    M_MISSING_TOKEN, as Synapse does: the server cannot tell which one is meant.
    """
    headers = request.requestHeaders.getRawHeaders(b"Authorization") or []
    query = request.args.get(b"access_token", []) if request.args else []
    bearer = [h for h in headers if h.split(b" ", 1)[0].lower() == b"bearer"]
    if len(bearer) + len(query) > 1:
        raise MatrixError(
            Codes.MISSING_TOKEN,
            "Mixing Authorization headers and access_token query parameters.",
            status=401,
        )
    if bearer:
        parts = bearer[0].split(b" ", 1)
        if len(parts) != 2 or not parts[1].strip():
            raise MatrixError(Codes.MISSING_TOKEN, "Invalid Authorization header.", status=401)
        return parts[1].strip().decode("ascii", errors="replace")
    if query:
        return query[0].decode("ascii", errors="replace")
    return None


def redact_uri(uri: bytes) -> str:
    """The request URI with secret query values replaced, for logs."""
    text = uri.decode("ascii", errors="replace")
    path, sep, query = text.partition("?")
    if not sep:
        return path
    pairs = [
        (key, "<redacted>" if key in _SECRET_QUERY_PARAMS else value)
        for key, value in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{path}?{urlencode(pairs, safe='<>')}"


class SiteRequest(server.Request):
    """A request with a body size limit, a request id and one access-log line at the end."""

    site: Site

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self.request_id = "-"
        self.start_time = 0.0
        self.servlet_name = "unrecognised"
        # Who made the request, for the access log; set once authentication exists.
        self.requester: str | None = None
        self.body_too_large = False
        self._body_bytes = 0
        self._processed = False
        # In flight from the first line on, so a shutdown waits for a request
        # whose body is still arriving, not only for one being answered.
        self.site = channel.site
        self.site.request_started(self)
        self.notifyFinish().addBoth(self._on_end)

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.site.max_request_size:
            # Read and drop the body rather than buffer it; answered with 413.
            self.body_too_large = True
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._body_bytes += len(data)
        if self._body_bytes > self.site.max_request_size:
            self.body_too_large = True
        if self.body_too_large:
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        self._processed = True
        self.start_time = time.monotonic()
        self.request_id = f"{self.method.decode('ascii', errors='replace')}-{self.site.next_request_number()}"
        super().process()

    def _on_end(self, result: Failure | None) -> None:
        self.site.request_ended(self)
        if not self._processed:
            # The client went away before the request was complete: nothing to log.
            return
        duration = time.monotonic() - self.start_time
        method = self.method.decode("ascii", errors="replace")
        metrics.HTTP_REQUESTS.labels(self.servlet_name, method, str(self.code)).inc()
        metrics.HTTP_REQUEST_DURATION.labels(self.servlet_name, method).observe(duration)
        disconnected = " (client disconnected)" if isinstance(result, Failure) else ""
        user_agent = (self.getHeader(b"User-Agent") or b"-").decode("utf-8", errors="replace")
        token = current_request_id.set(self.request_id)
        try:
            access_logger.info(
                "%s - {%s} Processed request: %.3fsec %sB %s%s \"%s %s %s\" \"%s\"",
                self.getClientAddress().host if self.getClientAddress() else "-",
                self.requester or "None",
                duration,
                self.sentLength,
                self.code,
                disconnected,
                method,
                redact_uri(self.uri),
                self.clientproto.decode("ascii", errors="replace"),
                user_agent,
            )
        finally:
            current_request_id.reset(token)


class Site(server.Site):
    """The twisted.web site for one listener, counting requests in flight."""

    requestFactory = SiteRequest
    # Plain HTTP/1.1 channels (no HTTP/2 negotiation wrapper), so each
    # connection's transport can be closed gracefully at shutdown.
    protocol = http.HTTPChannel
    # Twisted's own access log is replaced by SiteRequest's.
    noisy = False

    def __init__(
        self, root: resource.Resource, max_request_size: int, name: str, reactor: Any = None
    ) -> None:
        super().__init__(root, reactor=reactor)
        self.max_request_size = max_request_size
        self.name = name
        self._request_counter = 0
        self.in_flight: set[SiteRequest] = set()
        self._idle_waiters: list[defer.Deferred[None]] = []
        self.connections: set[Any] = set()
        self._closed_waiters: list[defer.Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.connections.add(protocol)
        connection_lost = protocol.connectionLost

        def on_connection_lost(reason: Failure) -> Any:
            self.connections.discard(protocol)
            if not self.connections:
                waiters, self._closed_waiters = self._closed_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            return connection_lost(reason)

        protocol.connectionLost = on_connection_lost
        return protocol

    def close_connections(self) -> defer.Deferred[None]:
        """Close every connection once its pending output is written; fires when all are closed.

        The reactor's own shutdown drops connections without flushing them, which
        would cut off responses that were just finished.
        """
        if not self.connections:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._closed_waiters.append(d)
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        return d

    def log(self, request: server.Request) -> None:
        """Twisted's per-request log line; SiteRequest writes a better one."""

    def next_request_number(self) -> int:
        self._request_counter += 1
        return self._request_counter

    def request_started(self, request: SiteRequest) -> None:
        self.in_flight.add(request)

    def request_ended(self, request: SiteRequest) -> None:
        self.in_flight.discard(request)
        if not self.in_flight:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def wait_until_idle(self) -> defer.Deferred[None]:
        """Fires when no request is in flight."""
        if not self.in_flight:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle_waiters.append(d)
        return d


@dataclass(frozen=True, slots=True)
class _Route:
    pattern: re.Pattern[str]
    servlet: Servlet
    methods: dict[bytes, Callable[..., Awaitable[ServletResult]]]


class Router(resource.Resource):
    """Dispatches every path of one listener to the servlet that declares it."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self._routes: list[_Route] = []

    def register(self, servlet: Servlet) -> None:
        for pattern in servlet.PATTERNS:
            self._routes.append(_Route(re.compile(pattern), servlet, servlet.methods()))

    def render(self, request: server.Request) -> int:
        assert isinstance(request, SiteRequest)
        defer.ensureDeferred(self._handle(request))
        return server.NOT_DONE_YET

    async def _handle(self, request: SiteRequest) -> None:
        current_request_id.set(request.request_id)
        for name, value in CORS_HEADERS.items():
            request.setHeader(name, value)
        try:
            result = await self._dispatch(request)
        except MatrixError as e:
            result = (e.status, e.to_dict())
        except Exception:
            logger.exception("Request failed: %s %s", request.method, redact_uri(request.uri))
            result = (500, {"errcode": Codes.UNKNOWN, "error": "Internal server error"})
        self._respond(request, result)

    async def _dispatch(self, request: SiteRequest) -> ServletResult:
        if request.method == b"OPTIONS":
            request.servlet_name = "options"
            return 200, {}
        path = request.path.decode("ascii", errors="replace")
        method = b"GET" if request.method == b"HEAD" else request.method
        known_path = False
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            known_path = True
            handler = route.methods.get(method)
            if handler is None:
                continue
            request.servlet_name = type(route.servlet).__name__
            if request.body_too_large:
                raise MatrixError(Codes.TOO_LARGE, "Request body too large.")
            kwargs = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            return await handler(request, **kwargs)
        if known_path:
            raise MatrixError(Codes.UNRECOGNIZED, "Unrecognized request", status=405)
        raise MatrixError(Codes.UNRECOGNIZED, "Unrecognized request", status=404)

    @staticmethod
    def _respond(request: SiteRequest, result: ServletResult) -> None:
        if request._disconnected or request.finished:
            return
        if isinstance(result, RawResponse):
            status, body, content_type = result.status, result.body, result.content_type
        else:
            status, value = result
            body = encode_json(value)
            content_type = b"application/json"
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-cache, no-store, must-revalidate")
        request.write(body)
        request.finish()
