"""The twisted.web site and request every listener uses.

`SiteRequest` enforces the request size limit while the body arrives, carries
the request id into log records, knows the client's address (from
X-Forwarded-For behind a trusted proxy), and writes one access-log line,
naming the requester, when the request ends. `Site` counts requests in flight
and open connections so shutdown can wait for them.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from homeserver import metrics
from homeserver.logs import current_request_id

access_logger = logging.getLogger("homeserver.access")

# Query parameters whose values never reach the logs.
_SECRET_QUERY_PARAMS = frozenset({"access_token", "client_secret", "password"})


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
        self.cancellable = False
        """Set by the Router: stop the servlet if the client disconnects (see Servlet.CANCELLABLE)."""
        # Who made the request (a user ID), for the access log; set by the Router.
        self.requester: str | None = None
        self.body_too_large = False
        # Set by the Router from the listener config of the servlet that answers.
        self.compress_response = False
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

    def client_ip(self) -> str:
        """The client's address: X-Forwarded-For's first entry behind a trusted proxy."""
        if self.site.x_forwarded:
            forwarded = self.requestHeaders.getRawHeaders(b"X-Forwarded-For")
            if forwarded:
                first = forwarded[0].split(b",")[0].strip()
                if first:
                    return first.decode("ascii", errors="replace")
        address = self.getClientAddress()
        return getattr(address, "host", None) or "-"

    def user_agent(self) -> str | None:
        value = self.getHeader(b"User-Agent")
        return None if value is None else value.decode("utf-8", errors="replace")

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
        user_agent = self.user_agent() or "-"
        token = current_request_id.set(self.request_id)
        try:
            access_logger.info(
                "%s - {%s} Processed request: %.3fsec %sB %s%s \"%s %s %s\" \"%s\"",
                self.client_ip(),
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
        self,
        root: resource.Resource,
        max_request_size: int,
        name: str,
        reactor: Any = None,
        *,
        x_forwarded: bool = False,
    ) -> None:
        super().__init__(root, reactor=reactor)
        self.max_request_size = max_request_size
        self.name = name
        # Trust X-Forwarded-For for the client's address (listener option x_forwarded).
        self.x_forwarded = x_forwarded
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
                # The channel's own loseConnection unregisters it as the
                # transport's producer first; without that a TLS transport
                # never starts closing an idle keep-alive connection.
                protocol.loseConnection()
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
