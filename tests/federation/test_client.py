"""FederationClient against twisted.web servers on 127.0.0.1 over TLS, with a fake DNS.

Every test name (remote.test, ...) resolves to 127.0.0.1 through FakeDns; the
server's certificate is one of the test certificates, trusted by the client
unless a test says otherwise. Loopback is allowed explicitly (the default
blocklist refuses it) except in the blocklist tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from signedjson.key import get_verify_key
from twisted.web import server

from homeserver.clock import Clock
from homeserver.config.federation import DEFAULT_IP_RANGE_BLOCKLIST, IpRangeSet
from homeserver.crypto.x_matrix import parse_header, request_json
from homeserver.federation.client import FederationClient, HttpResponseError, RequestSendFailed
from homeserver.federation.discovery import SrvRecord
from homeserver.types.signing import verify_json_signature
from tests.federation_harness import (
    LOOPBACK,
    FakeDns,
    RecordedRequest,
    ScriptedResource,
    TlsServer,
    fake_clock,
    json_answer,
    local_keys,
    trust_root,
)

ORIGIN = "origin.test"
BLOCKLIST = IpRangeSet([*DEFAULT_IP_RANGE_BLOCKLIST, "0.0.0.0/32", "::/128"])


def make_client(
    reactor: Any,
    dns: FakeDns,
    *,
    clock: Clock | None = None,
    allow: IpRangeSet | None = LOOPBACK,
    trusted: tuple[str, ...] = ("remote.test",),
    **kwargs: Any,
) -> FederationClient:
    if clock is None:
        clock = fake_clock()[1]
    return FederationClient(
        reactor,
        clock,
        local_keys(ORIGIN, clock),
        ip_blocklist=BLOCKLIST,
        ip_allowlist=allow,
        dns=dns,
        trust_root=trust_root(*trusted),
        **kwargs,
    )


def check_signed(
    client: FederationClient, request: RecordedRequest, destination: str, content: Any = None
) -> None:
    """The request carries a valid X-Matrix signature by ORIGIN for `destination`."""
    (header,) = request.headers["authorization"]
    auth = parse_header(header)
    assert (auth.origin, auth.destination) == (ORIGIN, destination)
    signed = request_json(request.method, request.uri, ORIGIN, destination, content)
    signed["signatures"] = {ORIGIN: {auth.key: auth.sig}}
    key = client._local.signing_key
    verify_json_signature(signed, ORIGIN, auth.key, get_verify_key(key))


async def test_get_json_with_explicit_port_is_signed_and_verified(reactor: Any) -> None:
    root = ScriptedResource(
        {"/_matrix/federation/v1/version": json_answer(b'{"server": {"name": "x"}}')}
    )
    srv = TlsServer(reactor, root, "remote.test")
    client = make_client(reactor, FakeDns(hosts={"remote.test": ["127.0.0.1"]}))
    destination = f"remote.test:{srv.port}"
    try:
        answer = await client.get_json(
            destination, "/_matrix/federation/v1/version", {"a": "1", "b": ["x", "y z"]}
        )
        assert answer == {"server": {"name": "x"}}
        (request,) = root.requests
        assert request.uri == "/_matrix/federation/v1/version?a=1&b=x&b=y+z"
        assert request.headers["host"] == [destination]
        check_signed(client, request, destination)
    finally:
        await client.close()
        await srv.stop()


async def test_put_and_post_send_signed_json_bodies(reactor: Any) -> None:
    root = ScriptedResource(
        {
            "/_matrix/federation/v1/send/1": json_answer(b'{"pdus": {}}'),
            "/_matrix/key/v2/query": json_answer(b'{"server_keys": []}'),
        }
    )
    srv = TlsServer(reactor, root, "remote.test")
    client = make_client(reactor, FakeDns(hosts={"remote.test": ["127.0.0.1"]}))
    destination = f"remote.test:{srv.port}"
    body = {"pdus": [], "origin": ORIGIN, "n": 1}
    try:
        assert await client.put_json(destination, "/_matrix/federation/v1/send/1", body) == {
            "pdus": {}
        }
        assert await client.post_json(destination, "/_matrix/key/v2/query", {}) == {
            "server_keys": []
        }
        put, post = root.requests
        assert (put.method, post.method) == ("PUT", "POST")
        assert json.loads(put.body) == body
        assert put.headers["content-type"] == ["application/json"]
        check_signed(client, put, destination, body)
        check_signed(client, post, destination, {})
    finally:
        await client.close()
        await srv.stop()


async def test_well_known_delegation_end_to_end(reactor: Any) -> None:
    """Host header and certificate are the delegated name's; the signature names the original."""
    target = ScriptedResource({"/x": json_answer(b"{}")})
    target_srv = TlsServer(reactor, target, "target.test")
    delegator = ScriptedResource()
    delegator_srv = TlsServer(reactor, delegator, "remote.test")
    delegated = f"target.test:{target_srv.port}"
    delegator.routes["/.well-known/matrix/server"] = json_answer(
        json.dumps({"m.server": delegated}).encode()
    )
    dns = FakeDns(hosts={"remote.test": ["127.0.0.1"], "target.test": ["127.0.0.1"]})
    client = make_client(
        reactor, dns, trusted=("remote.test", "target.test"), well_known_port=delegator_srv.port
    )
    try:
        assert await client.get_json("remote.test", "/x") == {}
        (request,) = target.requests
        assert request.headers["host"] == [delegated]
        check_signed(client, request, "remote.test")
        # A second request uses the cached delegation.
        await client.get_json("remote.test", "/x")
        assert len(delegator.requests) == 1
    finally:
        await client.close()
        await target_srv.stop()
        await delegator_srv.stop()


async def test_srv_end_to_end(reactor: Any) -> None:
    """No .well-known: SRV gives host and port; Host header and certificate are the server name's."""
    root = ScriptedResource({"/x": json_answer(b'{"ok": 1}')})
    srv = TlsServer(reactor, root, "srv.test")
    dns = FakeDns(
        hosts={"host.srv.test": ["127.0.0.1"], "srv.test": ["127.0.0.1"]},
        srv={"_matrix-fed._tcp.srv.test": [SrvRecord(10, 5, srv.port, "host.srv.test.")]},
    )
    # The .well-known port has nothing listening: connection refused, no delegation.
    client = make_client(reactor, dns, trusted=("srv.test",), well_known_port=1)
    try:
        assert await client.get_json("srv.test", "/x") == {"ok": 1}
        (request,) = root.requests
        assert request.headers["host"] == ["srv.test"]
        check_signed(client, request, "srv.test")
        assert "_matrix-fed._tcp.srv.test" in dns.srv_queries
        assert dns.host_queries[-1] == "host.srv.test"
    finally:
        await client.close()
        await srv.stop()


async def test_ip_literal_destination(reactor: Any) -> None:
    """The certificate must be valid for the IP address (the test certificates name 127.0.0.1)."""
    root = ScriptedResource({"/x": json_answer(b"{}")})
    srv = TlsServer(reactor, root, "remote.test")
    dns = FakeDns()
    client = make_client(reactor, dns)
    try:
        assert await client.get_json(f"127.0.0.1:{srv.port}", "/x") == {}
        assert root.requests[0].headers["host"] == [f"127.0.0.1:{srv.port}"]
        assert dns.host_queries == [] and dns.srv_queries == []
    finally:
        await client.close()
        await srv.stop()


async def test_ipv6_literal_destination(reactor: Any) -> None:
    """An IPv6 literal: no SNI, the certificate names the address, Host keeps the brackets."""
    root = ScriptedResource({"/x": json_answer(b"{}")})
    srv = TlsServer(reactor, root, "[::1]", interface="::1")
    client = make_client(reactor, FakeDns(), trusted=("[::1]",))
    try:
        assert await client.get_json(f"[::1]:{srv.port}", "/x") == {}
        assert root.requests[0].headers["host"] == [f"[::1]:{srv.port}"]
        check_signed(client, root.requests[0], f"[::1]:{srv.port}")
    finally:
        await client.close()
        await srv.stop()


# --- the IP blocklist ----------------------------------------------------------------


async def test_blocklisted_addresses_are_refused_at_connect_time(reactor: Any) -> None:
    root = ScriptedResource({"/x": json_answer(b"{}")})
    srv = TlsServer(reactor, root, "remote.test")
    dns = FakeDns(hosts={"remote.test": ["127.0.0.1"], "private.test": ["10.0.0.7", "192.168.1.1"]})
    client = make_client(reactor, dns, allow=None)
    try:
        for destination in (
            f"remote.test:{srv.port}",
            f"127.0.0.1:{srv.port}",
            "private.test:8448",
        ):
            with pytest.raises(RequestSendFailed) as info:
                await client.get_json(destination, "/x")
            assert "IP blocklist" in str(info.value), destination
        assert root.requests == []
    finally:
        await client.close()
        await srv.stop()


async def test_allowlist_overrides_the_blocklist(reactor: Any) -> None:
    root = ScriptedResource({"/x": json_answer(b"{}")})
    srv = TlsServer(reactor, root, "remote.test")
    dns = FakeDns(hosts={"remote.test": ["10.9.9.9", "127.0.0.1"]})
    client = make_client(reactor, dns, allow=IpRangeSet(["127.0.0.1/32"]))
    try:
        # 10.9.9.9 is skipped (blocked), 127.0.0.1 is allowed and used.
        assert await client.get_json(f"remote.test:{srv.port}", "/x") == {}
    finally:
        await client.close()
        await srv.stop()


# --- TLS ----------------------------------------------------------------------------


async def test_certificate_for_another_name_is_refused(reactor: Any) -> None:
    root = ScriptedResource({"/x": json_answer(b"{}")})
    srv = TlsServer(reactor, root, "remote.test")
    dns = FakeDns(hosts={"impostor.test": ["127.0.0.1"]})
    client = make_client(reactor, dns)
    try:
        with pytest.raises(RequestSendFailed):
            await client.get_json(f"impostor.test:{srv.port}", "/x")
        assert root.requests == []
    finally:
        await client.close()
        await srv.stop()


async def test_unverified_mode_accepts_any_certificate(reactor: Any) -> None:
    root = ScriptedResource({"/x": json_answer(b"{}")})
    srv = TlsServer(reactor, root, "remote.test")
    dns = FakeDns(hosts={"impostor.test": ["127.0.0.1"]})
    client = make_client(reactor, dns, trusted=("other.test",), verify_certificates=False)
    try:
        assert await client.get_json(f"impostor.test:{srv.port}", "/x") == {}
    finally:
        await client.close()
        await srv.stop()


# --- answers ----------------------------------------------------------------------------


async def test_error_answers_carry_their_errcode(reactor: Any) -> None:
    root = ScriptedResource(
        {
            "/forbidden": json_answer(b'{"errcode": "M_FORBIDDEN", "error": "no"}', status=403),
            "/html": lambda r: (502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"),
        }
    )
    srv = TlsServer(reactor, root, "remote.test")
    client = make_client(reactor, FakeDns(hosts={"remote.test": ["127.0.0.1"]}))
    destination = f"remote.test:{srv.port}"
    try:
        with pytest.raises(HttpResponseError) as info:
            await client.get_json(destination, "/forbidden")
        assert (info.value.code, info.value.errcode, info.value.error) == (403, "M_FORBIDDEN", "no")
        assert info.value.to_matrix_error().to_dict()["errcode"] == "M_FORBIDDEN"
        with pytest.raises(HttpResponseError) as info:
            await client.get_json(destination, "/html")
        assert (info.value.code, info.value.errcode) == (502, None)
        # An unknown path: the test server's 404.
        with pytest.raises(HttpResponseError) as info:
            await client.get_json(destination, "/nowhere")
        assert info.value.errcode == "M_UNRECOGNIZED"
    finally:
        await client.close()
        await srv.stop()


def _chunked(payload: bytes) -> Any:
    def handler(request: server.Request) -> Any:
        request.setResponseCode(200)
        for start in range(0, len(payload), 1000):
            request.write(payload[start : start + 1000])
        request.finish()
        return server.NOT_DONE_YET

    return handler


async def test_bad_or_oversized_answers_are_refused(reactor: Any) -> None:
    big = b'{"x": "' + b"a" * 5000 + b'"}'
    root = ScriptedResource(
        {
            "/notjson": json_answer(b"<html>"),
            "/nan": json_answer(b'{"x": NaN}'),
            "/big": json_answer(big),
            "/bigchunked": _chunked(big),
            "/fits": json_answer(big),
        }
    )
    srv = TlsServer(reactor, root, "remote.test")
    client = make_client(
        reactor, FakeDns(hosts={"remote.test": ["127.0.0.1"]}), max_response_size=4096
    )
    destination = f"remote.test:{srv.port}"
    try:
        for path in ("/notjson", "/nan"):
            with pytest.raises(RequestSendFailed, match="not JSON"):
                await client.get_json(destination, path)
        for path in ("/big", "/bigchunked"):
            with pytest.raises(RequestSendFailed, match="too large|larger than"):
                await client.get_json(destination, path)
        answer = await client.get_json(destination, "/fits", max_response_size=10_000)
        assert len(answer["x"]) == 5000
    finally:
        await client.close()
        await srv.stop()


async def test_timeout(reactor: Any) -> None:
    """A server that never answers: RequestSendFailed after the timeout, connection dropped."""
    hanging: list[server.Request] = []

    def hang(request: server.Request) -> Any:
        hanging.append(request)
        return server.NOT_DONE_YET

    root = ScriptedResource({"/hang": hang})
    srv = TlsServer(reactor, root, "remote.test")
    client = make_client(
        reactor, FakeDns(hosts={"remote.test": ["127.0.0.1"]}), clock=Clock(reactor)
    )
    try:
        with pytest.raises(RequestSendFailed, match="timed out"):
            await client.get_json(f"remote.test:{srv.port}", "/hang", timeout_ms=300)
        assert len(hanging) == 1
    finally:
        await client.close()
        await srv.stop()


async def test_unresolvable_and_unreachable_destinations(reactor: Any) -> None:
    client = make_client(reactor, FakeDns(hosts={"closed.test": ["127.0.0.1"]}), well_known_port=1)
    try:
        with pytest.raises(RequestSendFailed, match="no address"):
            await client.get_json("nowhere.test:8448", "/x")
        with pytest.raises(RequestSendFailed):
            await client.get_json("closed.test:1", "/x")
        with pytest.raises(RequestSendFailed):
            await client.get_json("bad name", "/x")
    finally:
        await client.close()
