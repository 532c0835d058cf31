"""In-process homeservers for API tests: a real HomeServer on a loopback port, and a client.

The fixtures in tests/conftest.py build on this module:

    homeserver_factory  a HomeServerFactory for the test's database (each engine in turn):
                            hs = await homeserver_factory.start(enable_registration=False)
                            await homeserver_factory.stop(hs)      # e.g. to restart on the same data
                            client = homeserver_factory.client(hs)
                        every server still running is stopped after the test.
    homeserver          a started HomeServer with the default test config.
    client              a TestClient talking to `homeserver`.

A server gets the test's database, a signing key under tmp_path (the same one
after a restart), one HTTP listener on 127.0.0.1 with an ephemeral port
serving `client` and `federation`, open registration (m.login.dummy) and
4-round bcrypt and rate limits too high to matter; keyword arguments
override any top-level config option.
Its clock is a `TestClock`: `hs.clock.advance(seconds)` moves the server's
idea of "now" (token expiry, UIA session expiry) without waiting.

The client speaks real HTTP through treq with one connection per request, so
nothing is left open between tests. Paths that start with `/_matrix/`,
`/_synapse/`, `/.well-known/` or `/health` are used as they are; any other
path is under `/_matrix/client/v3` (`client.post("/login", {...})`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from homeserver.clock import Clock
from homeserver.config import HomeServerConfig
from homeserver.server import HomeServer

JsonDict = dict[str, Any]

DEFAULT_PASSWORD = "correct horse battery staple"
SERVER_NAME = "test"
NO_LIMIT = {"per_second": 1000, "burst_count": 1000}
USER_AGENT = "TestClient/1.0"


class TestClock(Clock):
    """The reactor's time plus an offset that tests move forward."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor)
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def time(self) -> float:
        return super().time() + self.offset

    def time_msec(self) -> int:
        return int(self.time() * 1000)


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:300]!r})"


class TestClient:
    """A small HTTP client bound to one server."""

    __test__ = False

    def __init__(self, reactor: Any, base_url: str) -> None:
        self.base_url = base_url
        self._http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    def url(self, path: str, query: dict[str, str] | None = None) -> str:
        if not path.startswith(("/_matrix/", "/_synapse/", "/.well-known/", "/health")):
            path = "/_matrix/client/v3" + path
        return self.base_url + path + (f"?{urlencode(query)}" if query else "")

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """`body` is sent as JSON, or as it is if it is bytes; `token` as a Bearer token."""
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        data: bytes | None = None
        if isinstance(body, bytes):
            data = body
        elif body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers.setdefault("Content-Type", "application/json")
        response = await self._http.request(
            method,
            self.url(path, query),
            data=data,
            headers=Headers({k: [v] for k, v in all_headers.items()}),
            allow_redirects=False,
        )
        content = await response.content()
        raw_headers = {
            name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
            for name, values in response.headers.getAllRawHeaders()
        }
        return Response(response.code, content, raw_headers)

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("POST", path, {} if body is None else body, **kwargs)

    async def put(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("PUT", path, {} if body is None else body, **kwargs)

    async def delete(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("DELETE", path, body, **kwargs)

    # -- common steps, asserting they work

    async def register(
        self, username: str | None, password: str = DEFAULT_PASSWORD, **params: Any
    ) -> JsonDict:
        """Register (completing m.login.dummy in one call) and return the answer's JSON."""
        body: JsonDict = {"password": password, "auth": {"type": "m.login.dummy"}, **params}
        if username is not None:
            body["username"] = username
        response = await self.post("/register", body)
        assert response.status == 200, response
        return response.json  # type: ignore[no-any-return]

    async def register_guest(self, **params: Any) -> JsonDict:
        response = await self.post("/register", params, query={"kind": "guest"})
        assert response.status == 200, response
        return response.json  # type: ignore[no-any-return]

    async def login(self, username: str, password: str = DEFAULT_PASSWORD, **params: Any) -> JsonDict:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": password,
            **params,
        }
        response = await self.post("/login", body)
        assert response.status == 200, response
        return response.json  # type: ignore[no-any-return]

    @staticmethod
    def password_auth(user_id: str, session: str | None = None, password: str = DEFAULT_PASSWORD) -> JsonDict:
        """A UIA `auth` dict for the m.login.password stage."""
        auth: JsonDict = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
        }
        if session is not None:
            auth["session"] = session
        return auth


def test_config_document(
    tmp_path: Path, db_config: tuple[str, dict[str, Any]], **overrides: Any
) -> JsonDict:
    """The default test config, with `overrides` (top-level options) applied."""
    engine, connect_args = db_config
    args = dict(connect_args)
    if "port" in args:
        args["port"] = int(args["port"])
    document: JsonDict = {
        "server_name": SERVER_NAME,
        "signing_key_path": str(tmp_path / "signing.key"),
        "listeners": [
            {
                "port": 0,
                "bind_addresses": ["127.0.0.1"],
                "resources": [{"names": ["client", "federation"]}],
            }
        ],
        "database": {"name": engine, "args": {**args, "cp_min": 1, "cp_max": 5}},
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": 4,
        # Every test client is 127.0.0.1: limits high enough not to get in the way
        # (the rate limit tests set their own).
        "rc_registration": NO_LIMIT,
        "rc_login": {"address": NO_LIMIT, "account": NO_LIMIT, "failed_attempts": NO_LIMIT},
        "rc_3pid_validation": NO_LIMIT,
        "rc_registration_token_validity": NO_LIMIT,
    }
    document.update(overrides)
    return document


test_config_document.__test__ = False  # type: ignore[attr-defined]


class HomeServerFactory:
    """Starts and stops in-process servers over one test database."""

    def __init__(self, reactor: Any, tmp_path: Path, db_config: tuple[str, dict[str, Any]]) -> None:
        self._reactor = reactor
        self._tmp_path = tmp_path
        self._db_config = db_config
        self.running: list[HomeServer] = []

    def config(self, **overrides: Any) -> HomeServerConfig:
        document = test_config_document(self._tmp_path, self._db_config, **overrides)
        return HomeServerConfig.from_dict(document, str(self._tmp_path / "homeserver.yaml"))

    async def start(self, **overrides: Any) -> HomeServer:
        """A started server; `overrides` are top-level config options."""
        hs = HomeServer(self.config(**overrides), self._reactor, clock=TestClock(self._reactor))
        self.running.append(hs)
        await hs.start()
        return hs

    async def stop(self, hs: HomeServer) -> None:
        self.running.remove(hs)
        await hs.stop(drain_timeout=5.0)

    async def stop_all(self) -> None:
        while self.running:
            await self.stop(self.running[-1])

    def client(self, hs: HomeServer) -> TestClient:
        port = hs.listening_ports[0].getHost().port
        return TestClient(self._reactor, f"http://127.0.0.1:{port}")


async def make_admin(hs: HomeServer, client: TestClient, localpart: str = "root") -> str:
    """Create a server admin directly (whatever the registration flows) and log it in; its token."""
    password_hash = await hs.hasher.hash(DEFAULT_PASSWORD)
    await hs.registration.register_user(localpart, password_hash=password_hash, admin=True)
    return str((await client.login(localpart))["access_token"])
