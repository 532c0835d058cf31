"""Connections for outgoing federation: address checks at connect time, TLS, bodies with limits.

Every connection the federation client makes, to a server or to a
.well-known host, goes through `ResolvingTlsEndpoint`: it resolves the
target's host names to addresses just before connecting, refuses any address
in `ip_range_blacklist` (unless `ip_range_whitelist` covers it), so a name
that resolves to this server's own network is never connected to, whatever
DNS or a .well-known file says, then connects over TLS with the certificate
checked for the name discovery chose. The first address that accepts the
TCP connection is used.

`FederationEndpointFactory` serves the `matrix-federation://` URIs of the
federation client (whose netloc is the delegated name, with port 0 standing
for "no explicit port", so that the connection pool never mixes up a name
without a port and the same name with one); `WellKnownEndpointFactory` serves
plain `https://` URIs, for the .well-known lookup and its redirects.

`read_body_limited` reads a response body, failing with ResponseTooLarge
beyond a size.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IProtocol, IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import URI, ResponseDone
from twisted.web.error import SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from homeserver.config.federation import IpRangeSet
from homeserver.crypto.tls import FederationTlsOptions

logger = logging.getLogger(__name__)

FEDERATION_SCHEME = b"matrix-federation"


class BlockedAddressError(ConnectError):
    """Every address of the target is in the IP blocklist."""


class ResponseTooLarge(Exception):
    """The response body is larger than allowed."""


def is_ip_literal(host: str) -> bool:
    host = host.strip("[]")
    return bool(isIPAddress(host) or isIPv6Address(host))


class IpFilter:
    """Which addresses outgoing connections may go to (ip_range_blacklist / ip_range_whitelist)."""

    def __init__(self, blocklist: IpRangeSet, allowlist: IpRangeSet | None = None) -> None:
        self._blocklist = blocklist
        self._allowlist = allowlist or IpRangeSet()

    def allows(self, address: str) -> bool:
        return address not in self._blocklist or address in self._allowlist


# (host or IP literal, port) pairs to try in order, and the name the certificate must match.
Targets = tuple[Sequence[tuple[str, int]], str]


@implementer(IStreamClientEndpoint)
class ResolvingTlsEndpoint:
    """Connects over TLS to the first reachable, allowed address of a list of targets.

    `get_targets` is called at connect time (discovery may do DNS and
    .well-known lookups).
    """

    def __init__(
        self,
        reactor: Any,
        resolve_host: Callable[[str], Awaitable[list[str]]],
        ip_filter: IpFilter,
        tls: FederationTlsOptions,
        get_targets: Callable[[], Awaitable[Targets]],
        connect_timeout: float,
    ) -> None:
        self._reactor = reactor
        self._resolve_host = resolve_host
        self._filter = ip_filter
        self._tls = tls
        self._get_targets = get_targets
        self._timeout = connect_timeout

    def connect(self, protocolFactory: protocol.Factory) -> defer.Deferred[IProtocol]:
        return defer.ensureDeferred(self._connect(protocolFactory))

    async def _connect(self, factory: protocol.Factory) -> IProtocol:
        targets, tls_name = await self._get_targets()
        problems: list[str] = []
        blocked_only = True
        for host, port in targets:
            if is_ip_literal(host):
                addresses = [host.strip("[]")]
            else:
                addresses = await self._resolve_host(host)
                if not addresses:
                    problems.append(f"{host}: no address found")
                    blocked_only = False
            for address in addresses:
                if not self._filter.allows(address):
                    problems.append(f"{address} (for {host}) is in the IP blocklist")
                    continue
                blocked_only = False
                tcp_class = TCP6ClientEndpoint if isIPv6Address(address) else TCP4ClientEndpoint
                endpoint = wrapClientTLS(
                    self._tls.creator_for(tls_name),
                    tcp_class(self._reactor, address, port, timeout=self._timeout),
                )
                try:
                    return await endpoint.connect(factory)
                except defer.CancelledError:
                    raise
                except Exception as e:
                    problems.append(f"{address} port {port}: {e}")
        message = "; ".join(problems) or "no address to connect to"
        if blocked_only and problems:
            raise BlockedAddressError(string=message)
        raise ConnectError(string=message)


@implementer(IAgentEndpointFactory)
class FederationEndpointFactory:
    """Endpoints for `matrix-federation://<delegated name, port 0 if none>/...` URIs."""

    def __init__(
        self,
        reactor: Any,
        targets_for: Callable[[str, int | None], Awaitable[Sequence[tuple[str, int]]]],
        resolve_host: Callable[[str], Awaitable[list[str]]],
        ip_filter: IpFilter,
        tls: FederationTlsOptions,
        connect_timeout: float,
    ) -> None:
        self._reactor = reactor
        self._targets_for = targets_for
        self._resolve_host = resolve_host
        self._filter = ip_filter
        self._tls = tls
        self._timeout = connect_timeout

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        if uri.scheme != FEDERATION_SCHEME:
            raise SchemeNotSupported(f"unsupported scheme {uri.scheme!r}")
        host = uri.host.decode("ascii")
        port = uri.port or None

        async def get_targets() -> Targets:
            return await self._targets_for(host, port), host.strip("[]")

        return ResolvingTlsEndpoint(
            self._reactor, self._resolve_host, self._filter, self._tls, get_targets, self._timeout
        )


@implementer(IAgentEndpointFactory)
class WellKnownEndpointFactory:
    """Endpoints for `https://` URIs (the .well-known lookup), with the same checks."""

    def __init__(
        self,
        reactor: Any,
        resolve_host: Callable[[str], Awaitable[list[str]]],
        ip_filter: IpFilter,
        tls: FederationTlsOptions,
        connect_timeout: float,
    ) -> None:
        self._reactor = reactor
        self._resolve_host = resolve_host
        self._filter = ip_filter
        self._tls = tls
        self._timeout = connect_timeout

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        if uri.scheme != b"https":
            raise SchemeNotSupported(f"only https is allowed, not {uri.scheme!r}")
        host = uri.host.decode("ascii")
        port = uri.port

        async def get_targets() -> Targets:
            return [(host, port)], host.strip("[]")

        return ResolvingTlsEndpoint(
            self._reactor, self._resolve_host, self._filter, self._tls, get_targets, self._timeout
        )


@implementer(IBodyProducer)
class BytesProducer:
    """A request body that is already in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self._body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _LimitedBodyReader(protocol.Protocol):
    def __init__(self, done: defer.Deferred[bytes], max_size: int) -> None:
        self._done = done
        self._max = max_size
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._max:
            self._done.errback(ResponseTooLarge(f"response body larger than {self._max} bytes"))
            self.abort()
            return
        self._chunks.append(data)

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            # Drop the connection: the rest of the body is not wanted.
            abort = getattr(transport, "abortConnection", None) or transport.loseConnection
            abort()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._chunks))
        else:
            self._done.errback(reason)


def read_body_limited(response: IResponse, max_size: int) -> defer.Deferred[bytes]:
    """The body of `response`; ResponseTooLarge if it is longer than `max_size` bytes.

    Cancelling the Deferred drops the connection.
    """
    reader: _LimitedBodyReader | None = None

    def cancel(d: defer.Deferred[bytes]) -> None:
        if reader is not None:
            reader.abort()

    done: defer.Deferred[bytes] = defer.Deferred(cancel)
    reader = _LimitedBodyReader(done, max_size)
    if response.length is not UNKNOWN_LENGTH and response.length > max_size:
        done.errback(ResponseTooLarge(f"response body of {response.length} bytes is too large"))
        response.deliverBody(reader)
        reader.abort()
        return done
    response.deliverBody(reader)
    return done
