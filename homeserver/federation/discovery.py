"""Server discovery: from a server name to the addresses, Host header and TLS name to use.

Spec: server-server API, "Server discovery" > "Resolving server names". The
steps are split in two, as the federation client needs them:

`ServerNameResolver.delegation(server_name)` (steps 1 to 3) decides the name
requests go to: an IP literal or a name with an explicit port is used as it
is; otherwise `https://<hostname>/.well-known/matrix/server` is asked
(`WellKnownResolver`), and a valid `m.server` replaces the name. The Host
header is that name (with its port, if it has one) and the certificate must
be valid for its host.

`ServerNameResolver.targets(delegation)` (steps 3.1 to 3.5 and 4 to 6) gives
the (host, port) pairs to try, at connect time: an IP literal or a name with
a port as they are; else the hosts and ports of the SRV records of
`_matrix-fed._tcp.<host>`, or failing that of the deprecated
`_matrix._tcp.<host>`; else the host on port 8448. Host names in targets are
resolved to addresses (and checked against the IP blocklist) by the transport.

DNS goes through a `DnsResolver`, so tests use a fake one.
`TwistedDnsResolver` is the real one: twisted.names for SRV records (with
its TTL-respecting cache), the reactor's name resolver (getaddrinfo) for
addresses.

`.well-known` answers are cached ("Responses (successful or otherwise) to the
/.well-known endpoint should be cached"): a valid answer for its
Cache-Control max-age, 24 hours without one, clamped between 5 minutes and
48 hours (the spec's recommended maximum); anything else (not 200, not JSON,
no valid `m.server`, a connection error or timeout, more than 50 KiB) is
cached as "no delegation" for an hour. Redirects are followed, up to 5.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IResolutionReceiver
from twisted.web.client import RedirectAgent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from zope.interface import implementer

from homeserver.clock import Clock
from homeserver.federation.transport import read_body_limited
from homeserver.storage.lru import LruCache
from homeserver.types.identifiers import InvalidIdentifier, ServerName, parse_server_name

logger = logging.getLogger(__name__)

DEFAULT_FEDERATION_PORT = 8448

WELL_KNOWN_DEFAULT_CACHE_SECONDS = 24 * 3600
WELL_KNOWN_MIN_CACHE_SECONDS = 5 * 60
WELL_KNOWN_MAX_CACHE_SECONDS = 48 * 3600
WELL_KNOWN_ERROR_CACHE_SECONDS = 3600
WELL_KNOWN_MAX_BYTES = 50 * 1024
WELL_KNOWN_TIMEOUT_SECONDS = 10.0
WELL_KNOWN_MAX_REDIRECTS = 5


class DiscoveryError(Exception):
    """The server name cannot be resolved to anything to connect to."""


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


class DnsResolver(Protocol):
    """The DNS lookups discovery needs; tests pass a fake one."""

    async def lookup_srv(self, name: str) -> list[SrvRecord]:
        """The SRV records of `name` (e.g. `_matrix-fed._tcp.example.com`); [] if none."""
        ...

    async def resolve_host(self, host: str) -> list[str]:
        """The IPv6 and IPv4 addresses of a host name (CNAME, AAAA and A records); [] if none."""
        ...


@implementer(IResolutionReceiver)
class _AddressCollector:
    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.done: defer.Deferred[list[str]] = defer.Deferred()

    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        if isinstance(address, IPv4Address | IPv6Address) and address.host not in self.addresses:
            self.addresses.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


class TwistedDnsResolver:
    """Real DNS: twisted.names for SRV, the reactor's resolver (getaddrinfo) for addresses."""

    def __init__(self, reactor: Any, names_resolver: Any = None) -> None:
        self._reactor = reactor
        self._names = names_resolver

    def close(self) -> None:
        """Stop the resolver's periodic re-reading of resolv.conf (at shutdown)."""
        parse_call = getattr(self._names, "_parseCall", None)
        if parse_call is not None and parse_call.active():
            parse_call.cancel()

    async def lookup_srv(self, name: str) -> list[SrvRecord]:
        from twisted.names import client, dns, error

        if self._names is None:
            # A plain Resolver, not createResolver(): we close it with the client, which
            # stops its timer that re-reads resolv.conf.
            self._names = client.Resolver(resolv="/etc/resolv.conf", reactor=self._reactor)
        try:
            answers, _, _ = await self._names.lookupService(name)
        except (error.DNSNameError, error.DNSNotImplementedError):
            return []  # NXDOMAIN or the like: no such service
        except Exception as e:
            logger.warning("SRV lookup of %s failed: %s", name, e)
            return []
        return [
            SrvRecord(
                a.payload.priority, a.payload.weight, a.payload.port, a.payload.target.name.decode()
            )
            for a in answers
            if a.type == dns.SRV
        ]

    async def resolve_host(self, host: str) -> list[str]:
        collector = _AddressCollector()
        self._reactor.nameResolver.resolveHostName(collector, host, 0)
        return await collector.done


@dataclass(frozen=True, slots=True)
class Delegation:
    """The name requests to a server go to, after the .well-known step."""

    host: str
    """A DNS name, or an IP literal (IPv6 in brackets)."""
    port: int | None
    """The explicit port, if the name has one."""
    is_ip_literal: bool

    @property
    def host_header(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def tls_name(self) -> str:
        """The name the server's certificate must be valid for (IPv6 without brackets)."""
        return self.host.strip("[]")

    @classmethod
    def of(cls, name: ServerName) -> Delegation:
        return cls(name.host, name.port, name.kind != "dns")


@dataclass(frozen=True, slots=True)
class Route:
    """Everything needed to send a request to a server (for tests and diagnostics)."""

    host_header: str
    tls_name: str
    targets: tuple[tuple[str, int], ...]


def _cache_seconds(headers: Headers) -> int:
    """How long to keep a valid .well-known answer, from its Cache-Control header."""
    max_age: int | None = None
    for value in headers.getRawHeaders(b"cache-control") or []:
        for directive in value.decode("latin-1").split(","):
            name, _, arg = directive.strip().partition("=")
            name = name.strip().lower()
            if name == "no-store":
                max_age = 0
            elif name == "max-age" and max_age != 0:
                if re.fullmatch(r"[0-9]+", arg.strip().strip('"')):
                    max_age = int(arg.strip().strip('"'))
    if max_age is None:
        return WELL_KNOWN_DEFAULT_CACHE_SECONDS
    return min(max(max_age, WELL_KNOWN_MIN_CACHE_SECONDS), WELL_KNOWN_MAX_CACHE_SECONDS)


class WellKnownResolver:
    """`m.server` of `https://<hostname>/.well-known/matrix/server`, cached."""

    def __init__(
        self,
        clock: Clock,
        agent: IAgent,
        *,
        port: int = 443,
        timeout_seconds: float = WELL_KNOWN_TIMEOUT_SECONDS,
        user_agent: bytes = b"homeserver",
        cache_size: int = 10_000,
    ) -> None:
        """
        Args:
            agent: an HTTPS agent that checks certificates and the IP
                blocklist (homeserver.federation.transport.WellKnownEndpointFactory).
            port: the port of the .well-known server (443; tests change it).
        """
        self._clock = clock
        self._agent = RedirectAgent(agent, redirectLimit=WELL_KNOWN_MAX_REDIRECTS)
        self._port = port
        self._timeout = timeout_seconds
        self._user_agent = user_agent
        # hostname -> (the delegated server name or None, expiry time in seconds)
        self._cache: LruCache[str, tuple[str | None, float]] = LruCache(cache_size)
        # hostname -> the callers waiting for the lookup under way.
        self._waiting: dict[str, list[defer.Deferred[str | None]]] = {}
        self.fetches = 0
        """How many times .well-known was actually asked (for tests and metrics)."""

    async def delegated_server(self, hostname: str) -> str | None:
        """The `m.server` value for `hostname`, or None when there is no valid delegation.

        Concurrent callers share one lookup, which runs to its end even if
        they give up (so a caller's own timeout never gets cached as "no
        delegation").
        """
        now = self._clock.time()
        cached = self._cache.get(hostname)
        if cached is not None and cached[1] > now:
            return cached[0]
        waiter: defer.Deferred[str | None] = defer.Deferred()
        waiters = self._waiting.get(hostname)
        if waiters is not None:
            waiters.append(waiter)
        else:
            # The waiter is registered before the lookup starts, in case it
            # finishes at once.
            self._waiting[hostname] = [waiter]
            defer.ensureDeferred(self._lookup(hostname))
        return await waiter

    async def _lookup(self, hostname: str) -> None:
        value: str | None = None
        try:
            value, seconds = await self._fetch(hostname)
            self._cache.set(hostname, (value, self._clock.time() + seconds))
        except Exception:
            logger.exception("The .well-known lookup of %s failed", hostname)
        finally:
            for waiter in self._waiting.pop(hostname, []):
                if not waiter.called:
                    waiter.callback(value)

    async def _fetch(self, hostname: str) -> tuple[str | None, float]:
        self.fetches += 1
        netloc = hostname if self._port == 443 else f"{hostname}:{self._port}"
        url = f"https://{netloc}/.well-known/matrix/server".encode("ascii")
        try:
            d = self._agent.request(b"GET", url, Headers({b"User-Agent": [self._user_agent]}))
            self._clock.timeout(d, self._timeout)
            response = await d
            body = await self._clock.timeout(
                read_body_limited(response, WELL_KNOWN_MAX_BYTES), self._timeout
            )
        except Exception as e:
            logger.info("No .well-known delegation for %s: %s", hostname, e or type(e).__name__)
            return None, WELL_KNOWN_ERROR_CACHE_SECONDS
        if response.code != 200:
            logger.info("No .well-known delegation for %s: status %d", hostname, response.code)
            return None, WELL_KNOWN_ERROR_CACHE_SECONDS
        try:
            parsed = json.loads(body)
            delegated = parsed["m.server"]
            if not isinstance(delegated, str):
                raise ValueError("m.server is not a string")
            parse_server_name(delegated, kind="m.server")
        except (ValueError, KeyError, TypeError, InvalidIdentifier) as e:
            logger.info("Invalid .well-known answer for %s: %s", hostname, e)
            return None, WELL_KNOWN_ERROR_CACHE_SECONDS
        return delegated, _cache_seconds(response.headers)


def order_srv_records(records: Sequence[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 order: lowest priority first; within one priority, weighted random order."""
    ordered: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                ordered.extend(group)
                break
            pick = rng.uniform(0, total)
            for i, record in enumerate(group):
                pick -= record.weight
                if pick <= 0 or i == len(group) - 1:
                    ordered.append(group.pop(i))
                    break
    return ordered


class ServerNameResolver:
    """The discovery steps of the spec, in two halves (see the module docstring)."""

    def __init__(
        self,
        dns: DnsResolver,
        well_known: WellKnownResolver | None,
        *,
        default_port: int = DEFAULT_FEDERATION_PORT,
        rng: random.Random | None = None,
    ) -> None:
        self._dns = dns
        self._well_known = well_known
        self._default_port = default_port
        self._rng = rng or random.Random()

    async def delegation(self, server_name: str) -> Delegation:
        """Steps 1 to 3: the name to send requests to. DiscoveryError for an invalid name."""
        try:
            name = parse_server_name(server_name)
        except InvalidIdentifier as e:
            raise DiscoveryError(str(e)) from None
        # 1. An IP literal, with its port or 8448. 2. A host name with an explicit port.
        if name.kind != "dns" or name.port is not None or self._well_known is None:
            return Delegation.of(name)
        # 3. .well-known; if it is not valid, the name stays as it is (steps 4 to 6).
        delegated = await self._well_known.delegated_server(name.host)
        if delegated is None:
            return Delegation.of(name)
        return Delegation.of(parse_server_name(delegated))

    async def targets(self, delegation: Delegation) -> list[tuple[str, int]]:
        """The (host, port) pairs to try, best first. DiscoveryError if SRV says "no service"."""
        if delegation.is_ip_literal:
            return [(delegation.tls_name, delegation.port or self._default_port)]
        if delegation.port is not None:
            return [(delegation.host, delegation.port)]
        for service in ("_matrix-fed._tcp", "_matrix._tcp"):
            records = await self._dns.lookup_srv(f"{service}.{delegation.host}")
            if not records:
                continue
            if len(records) == 1 and records[0].target in (".", ""):
                raise DiscoveryError(f"{service}.{delegation.host}: the SRV record says no service")
            return [
                (r.target.rstrip("."), r.port)
                for r in order_srv_records(records, self._rng)
                if r.target not in (".", "")
            ]
        return [(delegation.host, self._default_port)]

    async def resolve(self, server_name: str) -> Route:
        """Every step at once: the Host header, TLS name and targets for `server_name`."""
        delegation = await self.delegation(server_name)
        targets = await self.targets(delegation)
        return Route(delegation.host_header, delegation.tls_name, tuple(targets))
