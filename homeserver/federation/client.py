"""The federation client: signed JSON requests to other homeservers.

Spec: server-server API, "API standards", "TLS", "Server discovery" and
"Authentication". `FederationClient.get_json/put_json/post_json(destination,
path, ...)`:

- finds where `destination` is (homeserver.federation.discovery: IP literal,
  explicit port, .well-known, SRV `_matrix-fed._tcp` then `_matrix._tcp`,
  port 8448), and sends the `Host` header discovery chose;
- connects over TLS, checking the certificate for the delegated name (unless
  `federation_verify_certificates: false`), never to an address in the IP
  blocklist (homeserver.federation.transport);
- signs every request with `Authorization: X-Matrix origin=...,destination=
  ...,key=...,sig=...` (the destination is the server name asked for, not the
  delegated one);
- sends JSON bodies, gives up after a timeout (60 s unless told otherwise),
  and refuses response bodies over a size limit (100 MiB unless told
  otherwise).

Failures are `FederationRequestError`s: `RequestSendFailed` when no answer
came (discovery, blocklist, connection, TLS, timeout, a body too large or not
JSON), `HttpResponseError` for a non-2xx answer, with its errcode when the
body is a Matrix error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from homeserver import __version__
from homeserver.clock import Clock
from homeserver.config.federation import IpRangeSet
from homeserver.crypto.server_keys import LocalServerKeys
from homeserver.crypto.tls import FederationTlsOptions
from homeserver.crypto.x_matrix import sign_request
from homeserver.federation.discovery import (
    DEFAULT_FEDERATION_PORT,
    Delegation,
    DiscoveryError,
    DnsResolver,
    ServerNameResolver,
    TwistedDnsResolver,
    WellKnownResolver,
)
from homeserver.federation.transport import (
    FEDERATION_SCHEME,
    BytesProducer,
    FederationEndpointFactory,
    IpFilter,
    WellKnownEndpointFactory,
    is_ip_literal,
    read_body_limited,
)
from homeserver.types.canonical_json import encode_canonical_json
from homeserver.types.errors import Codes, MatrixError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 60_000
DEFAULT_MAX_RESPONSE_SIZE = 100 * 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 10.0
# Error bodies are only read for their errcode.
MAX_ERROR_BODY_SIZE = 64 * 1024

QueryArgs = Mapping[str, str | int | Sequence[str]]


class FederationRequestError(Exception):
    """A request to another server did not succeed."""

    def __init__(self, destination: str, message: str) -> None:
        super().__init__(f"{destination}: {message}")
        self.destination = destination


class RequestSendFailed(FederationRequestError):
    """No usable answer came back: discovery, connection, TLS, timeout or response body failed."""


class HttpResponseError(FederationRequestError):
    """The server answered with a non-2xx status."""

    def __init__(self, destination: str, code: int, body: bytes) -> None:
        self.code = code
        self.body = body
        self.errcode: str | None = None
        self.error: str | None = None
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            if isinstance(parsed.get("errcode"), str):
                self.errcode = parsed["errcode"]
            if isinstance(parsed.get("error"), str):
                self.error = parsed["error"]
        detail = f" {self.errcode}: {self.error}" if self.errcode else ""
        super().__init__(destination, f"HTTP {code}{detail}")

    def to_matrix_error(self) -> MatrixError:
        """The remote error, to pass on to a client (errcode M_UNKNOWN if it gave none)."""
        return MatrixError(self.errcode or Codes.UNKNOWN, self.error or "", status=self.code)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class FederationClient:
    """Signed requests to other homeservers (see the module docstring)."""

    def __init__(
        self,
        reactor: Any,
        clock: Clock,
        local_keys: LocalServerKeys,
        *,
        verify_certificates: bool = True,
        minimum_tls_version: str = "1",
        ip_blocklist: IpRangeSet,
        ip_allowlist: IpRangeSet | None = None,
        dns: DnsResolver | None = None,
        trust_root: IOpenSSLTrustRoot | None = None,
        default_port: int = DEFAULT_FEDERATION_PORT,
        well_known_port: int = 443,
        default_timeout_ms: int = DEFAULT_TIMEOUT_MS,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        """
        Args:
            reactor: for connections (IReactorTCP, IReactorPluggableNameResolver).
            clock: for timeouts and the .well-known cache.
            local_keys: this server's name and signing key.
            verify_certificates, minimum_tls_version, ip_blocklist,
                ip_allowlist: the `federation_verify_certificates`,
                `federation_client_minimum_tls_version`, `ip_range_blacklist`
                and `ip_range_whitelist` options.
            dns: the DNS resolver (default: real DNS; tests pass a fake).
            trust_root: CAs to trust (default: the platform's; tests pass
                their self-signed certificate).
            default_port, well_known_port: 8448 and 443; tests change them.
        """
        self._clock = clock
        self._local = local_keys
        self._timeout_ms = default_timeout_ms
        self._max_response_size = max_response_size
        self._user_agent = f"homeserver/{__version__}".encode("ascii")
        self.dns: DnsResolver = dns or TwistedDnsResolver(reactor)
        tls = FederationTlsOptions(verify_certificates, minimum_tls_version, trust_root)
        ip_filter = IpFilter(ip_blocklist, ip_allowlist)
        # One pool for both agents; each has its own connections by URI scheme.
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 5
        self._pool.cachedConnectionTimeout = 120
        well_known_agent = Agent.usingEndpointFactory(
            reactor,
            WellKnownEndpointFactory(
                reactor, self.dns.resolve_host, ip_filter, tls, connect_timeout
            ),
            pool=self._pool,
        )
        self.well_known = WellKnownResolver(
            clock, well_known_agent, port=well_known_port, user_agent=self._user_agent
        )
        self.resolver = ServerNameResolver(self.dns, self.well_known, default_port=default_port)
        self._agent = Agent.usingEndpointFactory(
            reactor,
            FederationEndpointFactory(
                reactor, self._targets_for, self.dns.resolve_host, ip_filter, tls, connect_timeout
            ),
            pool=self._pool,
        )

    async def close(self) -> None:
        """Close idle pooled connections and the DNS resolver (at shutdown, end of tests)."""
        close_dns = getattr(self.dns, "close", None)
        if close_dns is not None:
            close_dns()
        await self._pool.closeCachedConnections()

    async def _targets_for(self, host: str, port: int | None) -> list[tuple[str, int]]:
        return await self.resolver.targets(Delegation(host, port, is_ip_literal(host)))

    # --- the API ------------------------------------------------------------------

    async def get_json(
        self,
        destination: str,
        path: str,
        args: QueryArgs | None = None,
        *,
        timeout_ms: int | None = None,
        max_response_size: int | None = None,
    ) -> Any:
        """GET `path` (already percent-encoded) with query `args`; the parsed JSON answer."""
        return await self._request(
            "GET", destination, path, args, None, timeout_ms, max_response_size
        )

    async def put_json(
        self,
        destination: str,
        path: str,
        data: Any,
        args: QueryArgs | None = None,
        *,
        timeout_ms: int | None = None,
        max_response_size: int | None = None,
    ) -> Any:
        """PUT `data` as JSON to `path`; the parsed JSON answer."""
        return await self._request(
            "PUT", destination, path, args, data, timeout_ms, max_response_size
        )

    async def post_json(
        self,
        destination: str,
        path: str,
        data: Any,
        args: QueryArgs | None = None,
        *,
        timeout_ms: int | None = None,
        max_response_size: int | None = None,
    ) -> Any:
        """POST `data` as JSON to `path`; the parsed JSON answer."""
        return await self._request(
            "POST", destination, path, args, data, timeout_ms, max_response_size
        )

    # --- sending --------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        destination: str,
        path: str,
        args: QueryArgs | None,
        data: Any,
        timeout_ms: int | None,
        max_response_size: int | None,
    ) -> Any:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        uri = path + (f"?{urlencode(args, doseq=True)}" if args else "")
        timeout = (self._timeout_ms if timeout_ms is None else timeout_ms) / 1000
        limit = self._max_response_size if max_response_size is None else max_response_size
        d = defer.ensureDeferred(self._send(method, destination, uri, data, limit))
        timed_out: list[bool] = []

        def on_timeout() -> None:
            timed_out.append(True)
            d.cancel()

        timer = self._clock.call_later(timeout, on_timeout)
        try:
            return await d
        except Exception:
            # Cancelling surfaces as whatever the layer that was waiting makes
            # of it (twisted.web wraps it), so the flag tells a timeout apart.
            if timed_out:
                raise RequestSendFailed(
                    destination, f"{method} {path}: timed out after {timeout}s"
                ) from None
            raise
        finally:
            if timer.active():
                timer.cancel()

    async def _send(self, method: str, destination: str, uri: str, data: Any, max_size: int) -> Any:
        try:
            delegation = await self.resolver.delegation(destination)
        except DiscoveryError as e:
            raise RequestSendFailed(destination, str(e)) from None
        headers = Headers(
            {
                b"Host": [delegation.host_header.encode("ascii")],
                b"User-Agent": [self._user_agent],
                b"Authorization": [
                    sign_request(
                        self._local.signing_key,
                        self._local.server_name,
                        destination,
                        method,
                        uri,
                        data,
                    ).encode("utf-8")
                ],
            }
        )
        body = None
        if data is not None:
            headers.addRawHeader(b"Content-Type", b"application/json")
            body = BytesProducer(encode_canonical_json(data))
        # The netloc carries port 0 when the name has none (see transport).
        url = f"{FEDERATION_SCHEME.decode()}://{delegation.host}:{delegation.port or 0}{uri}"
        path = uri.split("?", 1)[0]
        try:
            response = await self._agent.request(
                method.encode("ascii"), url.encode("ascii"), headers, body
            )
        except defer.CancelledError:
            raise
        except Exception as e:
            raise RequestSendFailed(destination, f"{method} {path}: {_describe(e)}") from e
        is_success = 200 <= response.code < 300
        try:
            raw = await read_body_limited(response, max_size if is_success else MAX_ERROR_BODY_SIZE)
        except defer.CancelledError:
            raise
        except Exception as e:
            if not is_success:
                raise HttpResponseError(destination, response.code, b"") from e
            raise RequestSendFailed(destination, f"{method} {path}: {_describe(e)}") from e
        if not is_success:
            raise HttpResponseError(destination, response.code, raw)
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError):
            raise RequestSendFailed(
                destination, f"{method} {path}: the answer is not JSON"
            ) from None


def _describe(error: BaseException) -> str:
    """A one-line description; twisted.web wraps connection failures in lists of Failures."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(_describe(r.value) for r in reasons)
    return str(error) or type(error).__name__
