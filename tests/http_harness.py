"""Driving a twisted.web Site in memory: raw HTTP bytes in, a parsed response out.

Used by API tests that need no database: the real Site, SiteRequest and Router
run, with an in-memory transport instead of a socket, so the test is
deterministic and needs no reactor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from homeserver.api.http import Site


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class Connection:
    """One HTTP connection to `site`; `send` writes raw bytes, `response` parses what came back."""

    def __init__(self, site: Site) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def response(self) -> Response | None:
        raw = self.transport.value()
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            return None
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", len(body)))
        if len(body) < length:
            return None
        return Response(status, headers, body[:length])


def request(
    site: Site,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Response:
    """Send one request and return its response (which must be complete by then)."""
    conn = Connection(site)
    all_headers = {"Host": "localhost", "Content-Length": str(len(body))}
    all_headers.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
    conn.send(head.encode("latin-1") + b"\r\n" + body)
    response = conn.response()
    assert response is not None, "no complete response"
    return response
