"""Email for API tests: a server whose validation emails go to an in-process SMTP server.

    mail = await MailServer.start(reactor)
    hs = await homeserver_factory.start(**mail.config())
    sid = await request_token(client, "/account/3pid/email/requestToken", "a@example.org")
    link = mail.last_link()                 # the validation link, parsed
    response = await follow(client, link)   # GET it on the test server
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.handlers.smtp_server import SMTPServer
from tests.homeserver_harness import Response, TestClient

CLIENT_SECRET = "s3cret.client_secret-1"


@dataclass(frozen=True)
class Link:
    path: str
    query: dict[str, str]


class MailServer:
    def __init__(self, server: SMTPServer, port: int) -> None:
        self.server = server
        self.port = port

    @classmethod
    async def start(cls, reactor: Any) -> MailServer:
        server = SMTPServer()
        return cls(server, server.listen(reactor))

    async def close(self) -> None:
        await self.server.close()

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Top-level options that send this server's email here."""
        return {
            "public_baseurl": "https://matrix.test/",
            "email": {
                "smtp_host": "127.0.0.1",
                "smtp_port": self.port,
                "enable_tls": False,
                "notif_from": "Test <noreply@test>",
            },
            **overrides,
        }

    @property
    def count(self) -> int:
        return len(self.server.inbox)

    def last_link(self) -> Link:
        message = self.server.inbox[-1].message()
        text = message.get_body(preferencelist=("plain",))
        assert text is not None
        (url,) = [word for word in text.get_content().split() if word.startswith("https://")]
        parts = urlsplit(url)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        return Link(parts.path, query)


async def request_token(
    client: TestClient,
    path: str,
    email: str,
    send_attempt: int = 1,
    client_secret: str = CLIENT_SECRET,
    **extra: Any,
) -> Response:
    body = {"client_secret": client_secret, "email": email, "send_attempt": send_attempt, **extra}
    return await client.post(path, body)


async def follow(client: TestClient, link: Link, method: str = "GET") -> Response:
    return await client.request(method, link.path, query=link.query)


async def validated_sid(client: TestClient, mail: MailServer, path: str, email: str) -> str:
    """A session for `email` whose link has been followed."""
    response = await request_token(client, path, email)
    assert response.status == 200, response
    link = mail.last_link()
    method = "POST" if "password_reset" in link.path else "GET"
    followed = await follow(client, link, method)
    assert followed.status == 200, followed
    return str(response.json["sid"])
