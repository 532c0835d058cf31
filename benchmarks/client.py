"""A small Matrix client-server HTTP client for the benchmarks, on treq.

One persistent connection pool per client, so that the figures measure the
server rather than TCP set-up; `close()` drops the pooled connections (and
their idle timers). Any answer other than the expected status raises
`UnexpectedResponse` with the server's body, so a missing endpoint stops a
run with a clear message instead of producing a figure.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import treq
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

JsonDict = dict[str, Any]

# Long-polls, registrations with bcrypt and createRoom on a loaded server all
# finish well within this; a hung request fails the run instead of stalling it.
REQUEST_TIMEOUT = 120.0


class UnexpectedResponse(Exception):
    """The server answered a benchmark request with an unexpected status."""

    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:500]!r}")
        self.status = status
        self.body = body


def path_segment(value: str) -> str:
    """`value` escaped for use as one path segment (room IDs, aliases, event IDs)."""
    return quote(value, safe="")


class MatrixHttp:
    """JSON requests to one server's client API (paths under /_matrix/client/v3)."""

    def __init__(self, reactor: Any, base_url: str, *, max_connections: int = 64) -> None:
        self.base_url = base_url.rstrip("/")
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = max_connections
        self._http = treq.client.HTTPClient(Agent(reactor, pool=self._pool))
        self._reactor = reactor

    def url(self, path: str, query: dict[str, str] | None = None) -> str:
        if not path.startswith("/_matrix/"):
            path = "/_matrix/client/v3" + path
        return self.base_url + path + (f"?{urlencode(query)}" if query else "")

    async def request(
        self,
        method: str,
        path: str,
        body: JsonDict | None = None,
        *,
        token: str | None = None,
        query: dict[str, str] | None = None,
        expect: int = 200,
    ) -> JsonDict:
        headers = {b"Content-Type": [b"application/json"]}
        if token is not None:
            headers[b"Authorization"] = [f"Bearer {token}".encode()]
        data = json.dumps(body).encode() if body is not None else None
        d: Deferred[Any] = self._http.request(
            method,
            self.url(path, query),
            data=data,
            headers=Headers(headers),
            timeout=REQUEST_TIMEOUT,
        )
        response = await d
        content: bytes = await treq.content(response)
        if response.code != expect:
            raise UnexpectedResponse(method, path, response.code, content)
        parsed: JsonDict = json.loads(content) if content else {}
        return parsed

    async def close(self) -> None:
        await self._pool.closeCachedConnections()

    # -- the calls the workload makes

    async def register(self, username: str, password: str) -> JsonDict:
        return await self.request(
            "POST",
            "/register",
            {"username": username, "password": password, "auth": {"type": "m.login.dummy"}},
        )

    async def create_room(self, token: str, **body: Any) -> str:
        answer = await self.request("POST", "/createRoom", body, token=token)
        return str(answer["room_id"])

    async def join(self, token: str, room_id: str) -> None:
        await self.request("POST", f"/join/{path_segment(room_id)}", {}, token=token)

    async def invite(self, token: str, room_id: str, user_id: str) -> None:
        await self.request(
            "POST", f"/rooms/{path_segment(room_id)}/invite", {"user_id": user_id}, token=token
        )

    async def send_text(self, token: str, room_id: str, txn_id: str, body: str) -> str:
        answer = await self.request(
            "PUT",
            f"/rooms/{path_segment(room_id)}/send/m.room.message/{path_segment(txn_id)}",
            {"msgtype": "m.text", "body": body},
            token=token,
        )
        return str(answer["event_id"])

    async def sync(
        self,
        token: str,
        *,
        since: str | None = None,
        timeout_ms: int = 0,
        filter_json: JsonDict | None = None,
    ) -> JsonDict:
        query = {"timeout": str(timeout_ms)}
        if since is not None:
            query["since"] = since
        if filter_json is not None:
            query["filter"] = json.dumps(filter_json, separators=(",", ":"))
        return await self.request("GET", "/sync", token=token, query=query)

    async def messages(
        self, token: str, room_id: str, *, from_token: str | None, limit: int, direction: str = "b"
    ) -> JsonDict:
        query = {"dir": direction, "limit": str(limit)}
        if from_token is not None:
            query["from"] = from_token
        return await self.request(
            "GET", f"/rooms/{path_segment(room_id)}/messages", token=token, query=query
        )
