"""Server discovery (spec: "Resolving server names") with a fake DNS, and .well-known over real TLS.

The route tests use a stub .well-known; the .well-known tests ask a real
twisted.web server on 127.0.0.1 over TLS (the fake DNS sends every test name
there), with time driven by a task.Clock.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from homeserver.config.federation import DEFAULT_IP_RANGE_BLOCKLIST, IpRangeSet
from homeserver.crypto.tls import FederationTlsOptions
from homeserver.federation.discovery import (
    DiscoveryError,
    Route,
    ServerNameResolver,
    SrvRecord,
    WellKnownResolver,
    _cache_seconds,
    order_srv_records,
)
from homeserver.federation.transport import IpFilter, WellKnownEndpointFactory
from tests.federation_harness import (
    LOOPBACK,
    FakeDns,
    ScriptedResource,
    TlsServer,
    fake_clock,
    json_answer,
    trust_root,
)

WELL_KNOWN = "/.well-known/matrix/server"


class StubWellKnown:
    def __init__(self, answers: dict[str, str | None] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[str] = []

    async def delegated_server(self, hostname: str) -> str | None:
        self.asked.append(hostname)
        return self.answers.get(hostname)


def resolver(dns: FakeDns, well_known: StubWellKnown | None = None) -> ServerNameResolver:
    return ServerNameResolver(dns, well_known or StubWellKnown(), rng=random.Random(1))  # type: ignore[arg-type]


# --- steps 1 and 2: IP literals and explicit ports --------------------------------


@pytest.mark.parametrize(
    ("server_name", "route"),
    [
        ("1.2.3.4", Route("1.2.3.4", "1.2.3.4", (("1.2.3.4", 8448),))),
        ("1.2.3.4:1234", Route("1.2.3.4:1234", "1.2.3.4", (("1.2.3.4", 1234),))),
        ("[2001:db8::1]", Route("[2001:db8::1]", "2001:db8::1", (("2001:db8::1", 8448),))),
        ("[2001:db8::1]:99", Route("[2001:db8::1]:99", "2001:db8::1", (("2001:db8::1", 99),))),
        ("example.com:1234", Route("example.com:1234", "example.com", (("example.com", 1234),))),
    ],
)
async def test_ip_literals_and_explicit_ports_skip_well_known_and_srv(
    server_name: str, route: Route
) -> None:
    dns, well_known = FakeDns(), StubWellKnown()
    assert await resolver(dns, well_known).resolve(server_name) == route
    assert well_known.asked == [] and dns.srv_queries == []


async def test_invalid_server_name_is_a_discovery_error() -> None:
    with pytest.raises(DiscoveryError):
        await resolver(FakeDns()).resolve("not a name")


# --- step 3: .well-known delegation ------------------------------------------------


@pytest.mark.parametrize(
    ("delegated", "route", "srv_queries"),
    [
        # 3.1 an IP literal, with or without port.
        ("10.1.2.3", Route("10.1.2.3", "10.1.2.3", (("10.1.2.3", 8448),)), []),
        (
            "[2001:db8::2]:443",
            Route("[2001:db8::2]:443", "2001:db8::2", (("2001:db8::2", 443),)),
            [],
        ),
        # 3.2 a host name with a port.
        (
            "matrix.example.net:443",
            Route("matrix.example.net:443", "matrix.example.net", (("matrix.example.net", 443),)),
            [],
        ),
        # 3.5 a host name without port and no SRV: port 8448, Host the delegated name.
        (
            "matrix.example.net",
            Route("matrix.example.net", "matrix.example.net", (("matrix.example.net", 8448),)),
            ["_matrix-fed._tcp.matrix.example.net", "_matrix._tcp.matrix.example.net"],
        ),
    ],
)
async def test_well_known_delegation(delegated: str, route: Route, srv_queries: list[str]) -> None:
    dns = FakeDns()
    well_known = StubWellKnown({"example.com": delegated})
    assert await resolver(dns, well_known).resolve("example.com") == route
    assert well_known.asked == ["example.com"]
    assert dns.srv_queries == srv_queries


async def test_delegated_name_srv_fed_then_legacy() -> None:
    """3.3 and 3.4: SRV of the delegated name; Host header and TLS name stay the delegated name."""
    dns = FakeDns(
        srv={"_matrix._tcp.m.example.net": [SrvRecord(10, 0, 8009, "legacy.example.net.")]}
    )
    well_known = StubWellKnown({"example.com": "m.example.net"})
    assert await resolver(dns, well_known).resolve("example.com") == Route(
        "m.example.net", "m.example.net", (("legacy.example.net", 8009),)
    )
    dns.srv["_matrix-fed._tcp.m.example.net"] = [SrvRecord(10, 0, 8010, "fed.example.net")]
    assert await resolver(dns, well_known).resolve("example.com") == Route(
        "m.example.net", "m.example.net", (("fed.example.net", 8010),)
    )


# --- steps 4 to 6: no valid .well-known ------------------------------------------------


async def test_srv_matrix_fed_is_preferred_over_deprecated_matrix() -> None:
    dns = FakeDns(
        srv={
            "_matrix-fed._tcp.example.com": [SrvRecord(10, 0, 8443, "fed.example.com")],
            "_matrix._tcp.example.com": [SrvRecord(10, 0, 8448, "old.example.com")],
        }
    )
    assert await resolver(dns).resolve("example.com") == Route(
        "example.com", "example.com", (("fed.example.com", 8443),)
    )
    assert dns.srv_queries == ["_matrix-fed._tcp.example.com"]


async def test_deprecated_srv_is_used_when_there_is_no_matrix_fed_record() -> None:
    dns = FakeDns(srv={"_matrix._tcp.example.com": [SrvRecord(10, 0, 8999, "old.example.com")]})
    assert await resolver(dns).resolve("example.com") == Route(
        "example.com", "example.com", (("old.example.com", 8999),)
    )
    assert dns.srv_queries == ["_matrix-fed._tcp.example.com", "_matrix._tcp.example.com"]


async def test_no_srv_means_the_hostname_on_port_8448() -> None:
    assert await resolver(FakeDns()).resolve("example.com") == Route(
        "example.com", "example.com", (("example.com", 8448),)
    )


async def test_srv_record_saying_no_service() -> None:
    dns = FakeDns(srv={"_matrix-fed._tcp.example.com": [SrvRecord(0, 0, 0, ".")]})
    with pytest.raises(DiscoveryError):
        await resolver(dns).resolve("example.com")


def test_srv_records_are_tried_by_priority_then_weight() -> None:
    records = [
        SrvRecord(20, 0, 1, "c"),
        SrvRecord(10, 1, 2, "b"),
        SrvRecord(10, 1000, 3, "a"),
        SrvRecord(30, 0, 4, "d"),
    ]
    firsts = {order_srv_records(records, random.Random(seed))[0].target for seed in range(50)}
    # Priority 10 first; the heavy record of it nearly always leads.
    orders = [
        tuple(r.target for r in order_srv_records(records, random.Random(s))) for s in range(50)
    ]
    assert all(o[2:] == ("c", "d") for o in orders)
    assert firsts <= {"a", "b"} and sum(o[0] == "a" for o in orders) >= 45


# --- the .well-known lookup itself, over TLS --------------------------------------------


def well_known_resolver(
    reactor: Any, dns: FakeDns, port: int, clock: Any, allow: IpRangeSet | None = LOOPBACK
) -> tuple[WellKnownResolver, Any]:
    pool = HTTPConnectionPool(reactor, persistent=False)
    factory = WellKnownEndpointFactory(
        reactor,
        dns.resolve_host,
        IpFilter(IpRangeSet(DEFAULT_IP_RANGE_BLOCKLIST), allow),
        FederationTlsOptions(trust_root=trust_root("remote.test")),
        5.0,
    )
    agent = Agent.usingEndpointFactory(reactor, factory, pool=pool)
    return WellKnownResolver(clock, agent, port=port, timeout_seconds=5), pool


def dns_for(*names: str) -> FakeDns:
    return FakeDns(hosts={name: ["127.0.0.1"] for name in names})


async def test_well_known_answer_is_used_and_cached_for_its_max_age(reactor: Any) -> None:
    root = ScriptedResource(
        {
            WELL_KNOWN: json_answer(
                b'{"m.server": "matrix.remote.test:443"}', **{"Cache-Control": "max-age=600"}
            )
        }
    )
    srv = TlsServer(reactor, root, "remote.test")
    clock_reactor, clock = fake_clock()
    try:
        wk, _ = well_known_resolver(reactor, dns_for("remote.test"), srv.port, clock)
        assert await wk.delegated_server("remote.test") == "matrix.remote.test:443"
        assert await wk.delegated_server("remote.test") == "matrix.remote.test:443"
        assert len(root.requests) == 1
        clock_reactor.advance(599)
        await wk.delegated_server("remote.test")
        assert len(root.requests) == 1
        clock_reactor.advance(2)
        await wk.delegated_server("remote.test")
        assert len(root.requests) == 2
        # The request went to the host name, with its Host header.
        assert root.requests[0].headers["host"] == [f"remote.test:{srv.port}"]
    finally:
        await srv.stop()


async def test_concurrent_lookups_share_one_request_and_survive_a_cancelled_caller(
    reactor: Any,
) -> None:
    root = ScriptedResource({WELL_KNOWN: json_answer(b'{"m.server": "m.remote.test:1"}')})
    srv = TlsServer(reactor, root, "remote.test")
    _, clock = fake_clock()
    try:
        wk, _ = well_known_resolver(reactor, dns_for("remote.test"), srv.port, clock)
        impatient = defer.ensureDeferred(wk.delegated_server("remote.test"))
        impatient.cancel()
        answers = await defer.gatherResults(
            [defer.ensureDeferred(wk.delegated_server("remote.test")) for _ in range(5)]
        )
        assert answers == ["m.remote.test:1"] * 5
        assert len(root.requests) == 1
        impatient.addErrback(lambda f: f.trap(defer.CancelledError))
    finally:
        await srv.stop()


async def test_well_known_without_cache_headers_is_kept_24_hours(reactor: Any) -> None:
    root = ScriptedResource({WELL_KNOWN: json_answer(b'{"m.server": "m.remote.test"}')})
    srv = TlsServer(reactor, root, "remote.test")
    clock_reactor, clock = fake_clock()
    try:
        wk, _ = well_known_resolver(reactor, dns_for("remote.test"), srv.port, clock)
        await wk.delegated_server("remote.test")
        clock_reactor.advance(24 * 3600 - 1)
        await wk.delegated_server("remote.test")
        assert len(root.requests) == 1
        clock_reactor.advance(2)
        await wk.delegated_server("remote.test")
        assert len(root.requests) == 2
    finally:
        await srv.stop()


@pytest.mark.parametrize(
    "handler",
    [
        json_answer(b"{}", status=404),
        json_answer(b"not json"),
        json_answer(b'["m.server"]'),
        json_answer(b'{"m.server": 42}'),
        json_answer(b'{"m.server": "not a server name"}'),
        json_answer(b'{"other": "x"}'),
        json_answer(b'{"m.server": "ok.example"}', status=500),
        json_answer(b'{"m.server": "' + b"a" * 60_000 + b'"}'),
    ],
    ids=[
        "404",
        "not-json",
        "not-object",
        "not-string",
        "invalid-name",
        "no-m.server",
        "500",
        "too-large",
    ],
)
async def test_invalid_well_known_means_no_delegation_cached_an_hour(
    reactor: Any, handler: Any
) -> None:
    root = ScriptedResource({WELL_KNOWN: handler})
    srv = TlsServer(reactor, root, "remote.test")
    clock_reactor, clock = fake_clock()
    try:
        wk, _ = well_known_resolver(reactor, dns_for("remote.test"), srv.port, clock)
        assert await wk.delegated_server("remote.test") is None
        clock_reactor.advance(3599)
        assert await wk.delegated_server("remote.test") is None
        assert len(root.requests) == 1
        clock_reactor.advance(2)
        await wk.delegated_server("remote.test")
        assert len(root.requests) == 2
    finally:
        await srv.stop()


async def test_well_known_redirect_is_followed(reactor: Any) -> None:
    root = ScriptedResource()
    srv = TlsServer(reactor, root, "remote.test")
    root.routes[WELL_KNOWN] = lambda request: (
        302,
        {"Location": f"https://localhost:{srv.port}/elsewhere"},
        b"",
    )
    root.routes["/elsewhere"] = json_answer(b'{"m.server": "m.remote.test:8449"}')
    _, clock = fake_clock()
    try:
        wk, _ = well_known_resolver(reactor, dns_for("remote.test", "localhost"), srv.port, clock)
        assert await wk.delegated_server("remote.test") == "m.remote.test:8449"
        assert [r.uri for r in root.requests] == [WELL_KNOWN, "/elsewhere"]
    finally:
        await srv.stop()


async def test_well_known_redirect_loop_ends_as_no_delegation(reactor: Any) -> None:
    root = ScriptedResource()
    srv = TlsServer(reactor, root, "remote.test")
    root.routes[WELL_KNOWN] = lambda request: (
        302,
        {"Location": f"https://remote.test:{srv.port}{WELL_KNOWN}"},
        b"",
    )
    _, clock = fake_clock()
    try:
        wk, _ = well_known_resolver(reactor, dns_for("remote.test"), srv.port, clock)
        assert await wk.delegated_server("remote.test") is None
        assert 2 <= len(root.requests) <= 6
    finally:
        await srv.stop()


async def test_well_known_host_in_the_blocklist_is_not_asked(reactor: Any) -> None:
    root = ScriptedResource({WELL_KNOWN: json_answer(b'{"m.server": "x.test"}')})
    srv = TlsServer(reactor, root, "remote.test")
    _, clock = fake_clock()
    try:
        wk, _ = well_known_resolver(reactor, dns_for("remote.test"), srv.port, clock, allow=None)
        assert await wk.delegated_server("remote.test") is None
        assert root.requests == []
    finally:
        await srv.stop()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 24 * 3600),
        ("max-age=600", 600),
        ("public, max-age=7200", 7200),
        ("max-age=10", 300),
        ("max-age=999999999", 48 * 3600),
        ("no-store", 300),
        ("max-age=abc", 24 * 3600),
    ],
)
def test_cache_period_from_cache_control(header: str | None, seconds: int) -> None:
    headers = Headers({b"Cache-Control": [header.encode()]} if header else {})
    assert _cache_seconds(headers) == seconds
