"""Helpers for server-key and federation-transport tests: fake DNS, TLS test servers, keys.

- `FakeDns`: a DnsResolver answering from dicts, recording what was asked.
- `certificate(name)`: a self-signed certificate for `name` (made once per
  session with homeserver.crypto.tls.generate_self_signed_cert), and
  `trust_root(*names)` trusting such certificates.
- `TlsServer`: a twisted.web server (the project's Site, so Routers work) on an
  ephemeral port of 127.0.0.1 (or ::1), over TLS with one of those certificates.
  `stop()` closes its connections and stops listening, leaving nothing on
  the reactor.
- `ScriptedResource`: answers each path with a function of the request, and
  records the requests it got.
- `local_keys(name, clock)`: LocalServerKeys with a fresh signing key.
- `Origin`: a remote homeserver ("origin.test:<port>") serving its keys with
  the real ServerKeyServlet over TLS, counting the requests it gets.
- `LOOPBACK`: an IpRangeSet allowing 127.0.0.1 and ::1 (the default blocklist
  refuses them).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signedjson.key import generate_signing_key
from twisted.internet import defer, ssl, task
from twisted.web import resource, server

from homeserver.api.http import Router
from homeserver.api.site import Site
from homeserver.clock import Clock
from homeserver.config.federation import IpRangeSet
from homeserver.crypto.server_keys import LocalServerKeys
from homeserver.crypto.tls import generate_self_signed_cert
from homeserver.federation.discovery import SrvRecord
from homeserver.federation.keys import ServerKeyServlet

LOOPBACK = IpRangeSet(["127.0.0.0/8", "::1/128"])
START_TIME = 1_700_000_000.0
HOUR_MS = 3600_000


def fake_clock(start: float = START_TIME) -> tuple[task.Clock, Clock]:
    """A task.Clock at `start` seconds and a Clock over it."""
    reactor_clock = task.Clock()
    reactor_clock.advance(start)
    return reactor_clock, Clock(reactor_clock)


class FakeDns:
    """A DnsResolver from dicts: `hosts` name -> addresses, `srv` SRV name -> records."""

    def __init__(
        self,
        hosts: dict[str, list[str]] | None = None,
        srv: dict[str, list[SrvRecord]] | None = None,
    ) -> None:
        self.hosts = dict(hosts or {})
        self.srv = dict(srv or {})
        self.srv_queries: list[str] = []
        self.host_queries: list[str] = []

    async def lookup_srv(self, name: str) -> list[SrvRecord]:
        self.srv_queries.append(name)
        return list(self.srv.get(name, []))

    async def resolve_host(self, host: str) -> list[str]:
        self.host_queries.append(host)
        return list(self.hosts.get(host, []))


@dataclass(frozen=True)
class Certificate:
    cert_pem: bytes
    key_pem: bytes

    def server_options(self) -> ssl.CertificateOptions:
        return ssl.PrivateCertificate.loadPEM(self.cert_pem + self.key_pem).options()


_CERTS: dict[str, Certificate] = {}
_CERT_DIR = Path(tempfile.mkdtemp(prefix="hs-test-certs-"))


def certificate(server_name: str) -> Certificate:
    """A self-signed certificate for `server_name` (plus localhost and 127.0.0.1), cached."""
    if server_name not in _CERTS:
        stem = server_name.replace(":", "_").replace("[", "").replace("]", "")
        cert_path, key_path = _CERT_DIR / f"{stem}.crt", _CERT_DIR / f"{stem}.key"
        generate_self_signed_cert(str(cert_path), str(key_path), server_name, overwrite=True)
        _CERTS[server_name] = Certificate(cert_path.read_bytes(), key_path.read_bytes())
    return _CERTS[server_name]


def trust_root(*server_names: str) -> Any:
    """A trust root holding the test certificates of these names."""
    return ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(certificate(name).cert_pem) for name in server_names]
    )


@dataclass
class RecordedRequest:
    method: str
    uri: str
    headers: dict[str, list[str]]
    body: bytes


Handler = Callable[[server.Request], tuple[int, dict[str, str], bytes] | object]


@dataclass
class ScriptedResource(resource.Resource):
    """Answers by path (without the query string); 404 for other paths.

    A handler returns (status, headers, body), or server.NOT_DONE_YET to leave
    the request hanging.
    """

    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    isLeaf = True

    def __post_init__(self) -> None:
        resource.Resource.__init__(self)

    def render(self, request: server.Request) -> Any:
        body = request.content.read() if request.content is not None else b""
        self.requests.append(
            RecordedRequest(
                request.method.decode(),
                request.uri.decode(),
                {
                    k.decode().lower(): [v.decode() for v in vs]
                    for k, vs in request.requestHeaders.getAllRawHeaders()
                },
                body,
            )
        )
        handler = self.routes.get(request.path.decode())
        if handler is None:
            request.setResponseCode(404)
            return b'{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}'
        result = handler(request)
        if result is server.NOT_DONE_YET:
            return result
        status, headers, payload = result  # type: ignore[misc]
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        return payload

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.uri.split("?", 1)[0] == path]


def json_answer(body: bytes, status: int = 200, **headers: str) -> Handler:
    all_headers = {"Content-Type": "application/json", **headers}
    return lambda request: (status, all_headers, body)


class TlsServer:
    """A twisted.web server over TLS on 127.0.0.1 (ephemeral port)."""

    def __init__(
        self, reactor: Any, root: resource.Resource, cert_name: str, interface: str = "127.0.0.1"
    ) -> None:
        self._reactor = reactor
        self.site = Site(root, 10 * 1024 * 1024, name=f"test {cert_name}", reactor=reactor)
        self._port = reactor.listenSSL(
            0, self.site, certificate(cert_name).server_options(), interface=interface
        )
        self.port: int = self._port.getHost().port

    async def stop(self) -> None:
        # Stop accepting first, so that no connection arrives while the others close.
        await defer.maybeDeferred(self._port.stopListening)
        # HTTPChannel.loseConnection unregisters the channel as its transport's
        # producer first: without that, a TLS transport never starts its
        # shutdown, and an idle keep-alive connection stays open for good.
        for channel in list(self.site.connections):
            channel.loseConnection()
        closed = self.site.close_connections()
        closed.addTimeout(2.0, self._reactor)
        try:
            await closed
        except defer.TimeoutError:
            # A request still being answered (a peer's PUT that arrived as the test
            # ended) or a TLS close the peer never acknowledged: drop them.
            for channel in list(self.site.connections):
                if channel.transport is not None:
                    channel.transport.abortConnection()


def local_keys(
    server_name: str, clock: Clock, *, count: int = 1, refresh_ms: int = 3600_000, old: Any = None
) -> LocalServerKeys:
    """LocalServerKeys for `server_name` with `count` fresh signing keys."""
    keys = [generate_signing_key(f"k{i}") for i in range(count)]
    return LocalServerKeys(server_name, keys, old or {}, refresh_ms, clock)


class Counting(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.inner: resource.Resource | None = None
        self.count = 0

    def render(self, request: Any) -> Any:
        self.count += 1
        assert self.inner is not None
        return self.inner.render(request)


class Origin:
    """A remote homeserver serving GET /_matrix/key/v2/server."""

    def __init__(
        self, reactor: Any, clock: Any, *, refresh_ms: int = HOUR_MS, old: Any = None
    ) -> None:
        self.root = Counting()
        self.server = TlsServer(reactor, self.root, "origin.test")
        self.name = f"origin.test:{self.server.port}"
        self.set_keys(local_keys(self.name, clock, refresh_ms=refresh_ms, old=old))

    def set_keys(self, keys: LocalServerKeys) -> None:
        self.keys = keys
        router = Router()
        router.register(ServerKeyServlet(keys))
        self.root.inner = router

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.keys.sign(obj)

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.keys.signing_key.version}"
