"""An SMTP server for tests, in process on 127.0.0.1: it keeps what it receives.

Built from Twisted's own ESMTP server. Options: a TLS certificate (offered
through STARTTLS, or required from the first byte with `implicit_tls`), and a
set of accounts that then must log in with SMTP AUTH (LOGIN or PLAIN).
`make_certificate()` makes a self-signed certificate for `localhost` and
127.0.0.1, and the client settings that trust it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, protocol, ssl
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.mail import smtp
from twisted.mail.imap4 import LOGINCredentials, PLAINCredentials
from zope.interface import implementer


@dataclass
class Received:
    mail_from: str
    rcpt_to: str
    data: bytes
    # The SMTP AUTH account the client logged in as, if it did.
    username: str | None
    # Whether the connection was encrypted when the message arrived.
    secure: bool

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, server: SMTPServer, proto: smtp.ESMTP, user: smtp.User, username: str | None) -> None:
        self._server = server
        self._proto = proto
        self._user = user
        self._username = username
        self._lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self._lines.append(line)

    def eomReceived(self) -> defer.Deferred[None]:
        secure = bool(getattr(self._proto, "startedTLS", False)) or self._server.implicit_tls
        self._server.inbox.append(
            Received(
                mail_from=str(self._user.orig),
                rcpt_to=str(self._user.dest),
                data=b"\n".join(self._lines) + b"\n",
                username=self._username,
                secure=secure,
            )
        )
        return defer.succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, server: SMTPServer, proto: smtp.ESMTP, username: str | None) -> None:
        self._server = server
        self._proto = proto
        self._username = username

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: from the test client"

    def validateFrom(self, helo: Any, origin: smtp.Address) -> smtp.Address:
        return origin

    def validateTo(self, user: smtp.User) -> Any:
        return lambda: _Message(self._server, self._proto, user, self._username)


class _Realm:
    def __init__(self, server: SMTPServer, proto: smtp.ESMTP) -> None:
        self._server = server
        self._proto = proto

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
        username = avatar_id.decode() if isinstance(avatar_id, bytes) else None
        return smtp.IMessageDelivery, _Delivery(self._server, self._proto, username), lambda: None


class SMTPServer(protocol.ServerFactory):
    def __init__(
        self,
        *,
        tls: Any = None,
        implicit_tls: bool = False,
        accounts: dict[str, str] | None = None,
    ) -> None:
        self.inbox: list[Received] = []
        self.implicit_tls = implicit_tls
        self._tls = tls
        self._accounts = accounts
        self._connections: list[smtp.ESMTP] = []
        self._port: Any = None

    def buildProtocol(self, addr: Any) -> smtp.ESMTP:
        challengers = {b"LOGIN": LOGINCredentials, b"PLAIN": PLAINCredentials} if self._accounts else None
        proto = smtp.ESMTP(challengers, None if self.implicit_tls else self._tls)
        proto.factory = self
        proto.host = b"smtp.test"
        proto.timeout = None  # no idle timer left on the reactor
        if self._accounts:
            checker = InMemoryUsernamePasswordDatabaseDontUse(
                **{name: password.encode() for name, password in self._accounts.items()}
            )
            proto.portal = Portal(_Realm(self, proto), [checker])
        else:
            proto.delivery = _Delivery(self, proto, None)
        self._connections.append(proto)
        return proto

    def listen(self, reactor: Any) -> int:
        """Start listening on 127.0.0.1; the port number."""
        if self.implicit_tls:
            assert self._tls is not None
            self._port = reactor.listenSSL(0, self, self._tls, interface="127.0.0.1")
        else:
            self._port = reactor.listenTCP(0, self, interface="127.0.0.1")
        return int(self._port.getHost().port)

    async def close(self) -> None:
        for proto in self._connections:
            if proto.transport is not None and proto.transport.connected:
                proto.transport.abortConnection()
        if self._port is not None:
            await self._port.stopListening()


@dataclass
class TestCertificate:
    server_options: Any
    trust_root: ssl.Certificate
    pem: bytes = field(repr=False)

    def client_options(self, hostname: str) -> Any:
        return ssl.optionsForClientTLS(hostname, trustRoot=self.trust_root)


def make_certificate() -> TestCertificate:
    """A self-signed certificate for localhost and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    return TestCertificate(
        server_options=_ServerContextFactory(certificate, key),
        trust_root=ssl.Certificate.loadPEM(cert_pem),
        pem=cert_pem,
    )


@implementer(IOpenSSLContextFactory)
class _ServerContextFactory:
    """Server TLS settings from cryptography objects (pyOpenSSL's own types are deprecated)."""

    def __init__(self, certificate: Any, key: Any) -> None:
        from OpenSSL import SSL

        self._context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._context.use_certificate(certificate)
        self._context.use_privatekey(key)

    def getContext(self) -> Any:
        return self._context
