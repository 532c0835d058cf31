"""A fake remote homeserver for query tests, and a HomeServer set up to talk to it (both engines).

`QueryRemote` is a twisted.web server over TLS on 127.0.0.1 (server name
"127.0.0.1:<port>", an IP literal: no DNS) that serves its signing keys with
the real ServerKeyServlet and answers other paths from `answers` (path ->
(status, JSON) or a function of the recorded request), recording every
request. It signs requests to our server as that server would (`signed_get`,
`signed_post`).

Fixture `remote_setup`: a started HomeServer ("test") that accepts the
remote's self-signed certificate and loopback addresses, with the remote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from twisted.web import resource

from homeserver.api.http import Router
from homeserver.clock import Clock
from homeserver.crypto.x_matrix import sign_request
from homeserver.federation.keys import ServerKeyServlet
from homeserver.server import HomeServer
from tests.conftest import run_on_reactor
from tests.federation_harness import TlsServer, local_keys
from tests.homeserver_harness import HomeServerFactory, Response, TestClient

FED = "/_matrix/federation/v1"


@dataclass
class Recorded:
    method: str
    path: str
    args: dict[str, str]
    body: Any
    authorization: str | None


Answer = tuple[int, Any] | Callable[[Recorded], tuple[int, Any]]


class _Resource(resource.Resource):
    isLeaf = True

    def __init__(self, remote: QueryRemote) -> None:
        super().__init__()
        self._remote = remote

    def render(self, request: Any) -> Any:
        path = request.path.decode()
        if path.startswith("/_matrix/key/"):
            return self._remote.key_router.render(request)
        raw = request.content.read() if request.content is not None else b""
        auth = request.getHeader("authorization")
        recorded = Recorded(
            request.method.decode(),
            path,
            {k: v[0] for k, v in parse_qs(urlparse(request.uri.decode()).query).items()},
            json.loads(raw) if raw else None,
            auth,
        )
        self._remote.requests.append(recorded)
        answer = self._remote.answers.get(path)
        if answer is None:
            status, payload = 404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}
        elif callable(answer):
            status, payload = answer(recorded)
        else:
            status, payload = answer
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(payload).encode()


class QueryRemote:
    """A remote homeserver on loopback (see the module docstring)."""

    def __init__(self, reactor: Any) -> None:
        self.server = TlsServer(reactor, _Resource(self), "origin.test")
        self.name = f"127.0.0.1:{self.server.port}"
        self.keys = local_keys(self.name, Clock(reactor))
        self.key_router = Router()
        self.key_router.register(ServerKeyServlet(self.keys))
        self.answers: dict[str, Answer] = {}
        self.requests: list[Recorded] = []

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def stop(self) -> None:
        await self.server.stop()


@dataclass
class RemoteSetup:
    hs: HomeServer
    client: TestClient
    remote: QueryRemote

    async def signed(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        *,
        origin: str | None = None,
    ) -> Response:
        """A request to our server signed by the remote (as `origin`, if given)."""
        uri = path + (f"?{urlencode(query)}" if query else "")
        header = sign_request(
            self.remote.keys.signing_key,
            origin or self.remote.name,
            self.hs.config.server.server_name,
            method,
            uri,
            body,
        )
        return await self.client.request(method, uri, body, headers={"Authorization": header})


async def start_remote_setup(factory: HomeServerFactory, reactor: Any) -> RemoteSetup:
    remote = QueryRemote(reactor)
    hs = await factory.start(
        federation_verify_certificates=False,
        ip_range_whitelist=["127.0.0.0/8"],
        trusted_key_servers=[],
    )
    return RemoteSetup(hs, factory.client(hs), remote)


@pytest.fixture
def remote_setup(homeserver_factory: HomeServerFactory, reactor: Any) -> Iterator[RemoteSetup]:
    setup = run_on_reactor(start_remote_setup(homeserver_factory, reactor))
    yield setup
    run_on_reactor(setup.remote.stop())


async def test_the_remote_serves_keys_and_answers(remote_setup: RemoteSetup) -> None:
    """The fake remote works: our keyring gets its key, and it answers and records requests."""
    remote = remote_setup.remote
    hs = remote_setup.hs
    key_id = f"ed25519:{remote.keys.signing_key.version}"
    assert list(await hs.keyring.get_server_keys(remote.name, [key_id], 0)) == [key_id]
    remote.answers[f"{FED}/version"] = (200, {"server": {"name": "fake"}})
    answer = await hs.federation_client.get_json(remote.name, f"{FED}/version", {"a": "b"})
    assert answer == {"server": {"name": "fake"}}
    (recorded,) = remote.requests_to(f"{FED}/version")
    assert recorded.args == {"a": "b"}
    assert recorded.authorization is not None
    assert recorded.authorization.startswith("X-Matrix origin=")
