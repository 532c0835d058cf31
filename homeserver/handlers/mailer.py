"""Sending email through the configured SMTP server, and the 3PID validation emails.

Spec: client-server API "Adding Account Administrative Contact Information"
and the `requestToken` endpoints: the homeserver emails a link that proves the
address is the user's. The links are the ones Synapse sends, so they land on
the paths its clients and operators know:

    registration    <public_baseurl>_matrix/client/unstable/registration/email/submit_token
    add_threepid    <public_baseurl>_matrix/client/unstable/add_threepid/email/submit_token
    password_reset  <public_baseurl>_synapse/client/password_reset/email/submit_token

each with `?token=...&client_secret=...&sid=...`.

    mailer = Mailer(reactor, clock, config.email, config.server)
    await mailer.send_validation_email(ADD_THREEPID, "alice@example.org",
                                       token=token, client_secret=secret, sid=sid)

Messages are multipart/alternative (plain text and HTML) built from plain
template functions (`render_validation_email`), with every inserted value
escaped for HTML. Delivery uses Twisted's ESMTP client: STARTTLS when the
server offers it (unless `enable_tls` is off), required with
`require_transport_security`; implicit TLS with `force_tls`; SMTP AUTH when
`smtp_user` is set. A failed delivery is logged and raised as a 500 M_UNKNOWN
MatrixError, as Synapse answers.
"""

from __future__ import annotations

import email.utils
import html
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import optionsForClientTLS
from twisted.mail.smtp import ESMTPSender, ESMTPSenderFactory, SMTPConnectError
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from homeserver.clock import Clock
from homeserver.config.email import EmailConfig
from homeserver.config.server import ServerConfig
from homeserver.types.errors import Codes, MatrixError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0

# What a validation email is for.
REGISTRATION = "registration"
ADD_THREEPID = "add_threepid"
PASSWORD_RESET = "password_reset"

SUBMIT_TOKEN_PATHS = {
    REGISTRATION: "_matrix/client/unstable/registration/email/submit_token",
    ADD_THREEPID: "_matrix/client/unstable/add_threepid/email/submit_token",
    PASSWORD_RESET: "_synapse/client/password_reset/email/submit_token",
}


def validation_link(base_url: str, purpose: str, token: str, client_secret: str, sid: str) -> str:
    """The link a validation email carries; `base_url` ends with '/'."""
    query = urlencode({"token": token, "client_secret": client_secret, "sid": sid})
    return f"{base_url}{SUBMIT_TOKEN_PATHS[purpose]}?{query}"


# ---------------------------------------------------------------------------
# Templates


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    text: str
    html: str


_WORDING = {
    REGISTRATION: (
        "We received a request to create an account on {server_name} with this email"
        " address. To confirm that the address is yours, open this link:",
        "Confirm your email address",
        "If you did not ask for this, ignore this email: no account will use this address.",
    ),
    ADD_THREEPID: (
        "We received a request to add this email address to an account on {server_name}."
        " To confirm that the address is yours, open this link:",
        "Confirm your email address",
        "If you did not ask for this, ignore this email: the address will not be added.",
    ),
    PASSWORD_RESET: (
        "We received a request to reset the password of the account on {server_name}"
        " that uses this email address. To choose a new password, open this link:",
        "Reset your password",
        "If you did not ask for this, ignore this email: your password will not change.",
    ),
}

_TEXT_TEMPLATE = """\
Hello,

{intro}

{link}

{ignore}

{app_name} at {server_name}
"""

_HTML_TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{subject}</title></head>
<body style="font-family: sans-serif; max-width: 40em;">
<p>Hello,</p>
<p>{intro}</p>
<p><a href="{link}">{action}</a></p>
<p style="font-size: smaller;">Or copy this address into your browser: {link}</p>
<p>{ignore}</p>
<p style="color: #666;">{app_name} at {server_name}</p>
</body>
</html>
"""


def render_validation_email(
    purpose: str, *, link: str, subject: str, app_name: str, server_name: str
) -> RenderedEmail:
    """The plain-text and HTML bodies of a validation email (HTML values escaped)."""
    intro, action, ignore = _WORDING[purpose]
    intro = intro.format(server_name=server_name)
    text = _TEXT_TEMPLATE.format(
        intro=intro, link=link, ignore=ignore, app_name=app_name, server_name=server_name
    )
    e = html.escape
    body = _HTML_TEMPLATE.format(
        subject=e(subject),
        intro=e(intro),
        link=e(link, quote=True),
        action=e(action),
        ignore=e(ignore),
        app_name=e(app_name),
        server_name=e(server_name),
    )
    return RenderedEmail(text=text, html=body)


def _interpolate(template: str, values: dict[str, str]) -> str:
    """`template % values`, or the template itself if it has no valid placeholders for them."""
    try:
        return template % values
    except (KeyError, TypeError, ValueError):
        return template


# ---------------------------------------------------------------------------
# Delivery


class _Sender(ESMTPSender):
    """ESMTPSender whose timeout uses the injected reactor and which fails on a lost connection.

    Twisted's sender only reports a connection lost mid-conversation through
    its factory's clientConnectionLost, which endpoints never call; without
    this, a server hanging up (or a failed TLS handshake) would leave the send
    waiting forever.
    """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        factory = self.factory
        if not factory.sendFinished:
            factory.sendFinished = True
            error = SMTPConnectError(-1, f"Connection to the SMTP server lost: {reason.value}")
            factory.result.errback(error)


class _SenderFactory(ESMTPSenderFactory):
    protocol = _Sender

    def __init__(self, reactor: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reactor = reactor

    def buildProtocol(self, addr: Any) -> _Sender:
        sender: _Sender = super().buildProtocol(addr)
        sender.callLater = self._reactor.callLater  # type: ignore[method-assign]
        return sender


ClientTLSOptions = Callable[[str], IOpenSSLClientConnectionCreator]


class Mailer:
    def __init__(
        self,
        reactor: Any,
        clock: Clock,
        email_config: EmailConfig,
        server_config: ServerConfig,
        *,
        client_tls_options: ClientTLSOptions = optionsForClientTLS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        """`client_tls_options(hostname)` makes the TLS settings (tests pass their own CA)."""
        self._reactor = reactor
        self._clock = clock
        self._config = email_config
        self._server_name = server_config.server_name
        self._base_url = server_config.public_baseurl or f"https://{server_config.server_name}/"
        self._client_tls_options = client_tls_options
        self._timeout = timeout

    @property
    def enabled(self) -> bool:
        """Whether email is configured (without it, addresses can't be validated)."""
        return self._config.enabled

    async def send_validation_email(
        self, purpose: str, email_address: str, *, token: str, client_secret: str, sid: str
    ) -> None:
        """Email `email_address` the link that validates it, for `purpose`.

        `purpose` is REGISTRATION, ADD_THREEPID or PASSWORD_RESET. Raises
        MatrixError (500 M_UNKNOWN) if the email could not be handed to the
        SMTP server.
        """
        subject_template = (
            self._config.subject_password_reset
            if purpose == PASSWORD_RESET
            else self._config.subject_email_validation
        )
        subject = _interpolate(
            subject_template, {"server_name": self._server_name, "app": self._config.app_name}
        )
        link = validation_link(self._base_url, purpose, token, client_secret, sid)
        rendered = render_validation_email(
            purpose,
            link=link,
            subject=subject,
            app_name=self._config.app_name,
            server_name=self._server_name,
        )
        await self.send_email(email_address, subject, rendered.text, rendered.html)

    def build_message(self, email_address: str, subject: str, text: str, html_body: str) -> bytes:
        """The message as sent: headers, then the text and HTML alternatives."""
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self._from_header()
        message["To"] = email_address
        message["Date"] = email.utils.formatdate(self._clock.time(), usegmt=True)
        domain = self._server_name.rsplit(":", 1)[0] if "]" not in self._server_name else "localhost"
        message["Message-ID"] = f"<{secrets.token_hex(16)}@{domain}>"
        # Ask mail systems not to send automatic replies (RFC 3834; Exchange's own header).
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"
        message.set_content(text)
        message.add_alternative(html_body, subtype="html")
        # "\n" line ends: Twisted's SMTP client turns each into CRLF as it sends.
        return message.as_bytes()

    def _from_header(self) -> str:
        assert self._config.notif_from is not None
        return _interpolate(self._config.notif_from, {"app": self._config.app_name})

    async def send_email(self, email_address: str, subject: str, text: str, html_body: str) -> None:
        """Send one multipart email to `email_address`; raises MatrixError if it fails."""
        if not self._config.enabled:
            raise MatrixError(Codes.UNKNOWN, "Email is not configured on this server", status=400)
        to_address = email.utils.parseaddr(email_address)[1]
        if not to_address or any(c in email_address for c in "\r\n\x00"):
            raise MatrixError(Codes.INVALID_PARAM, "Invalid email address")
        from_address = email.utils.parseaddr(self._from_header())[1]
        message = self.build_message(email_address, subject, text, html_body)
        logger.info("Sending email to %s", to_address)
        try:
            await self._sendmail(from_address, to_address, message)
        except Exception as e:
            logger.warning(
                "Could not send email to %s through %s:%s: %s",
                to_address,
                self._config.smtp_host,
                self._config.smtp_port,
                e,
            )
            raise MatrixError(
                Codes.UNKNOWN, "An error was encountered when sending the email", status=500
            ) from e

    async def _sendmail(self, from_address: str, to_address: str, message: bytes) -> None:
        config = self._config
        tls_name = (config.tlsname or config.smtp_host) if config.enable_tls else None
        tls_options = self._client_tls_options(tls_name) if tls_name else None
        result: defer.Deferred[Any] = defer.Deferred()
        factory: Any = _SenderFactory(
            self._reactor,
            config.smtp_user.encode("utf-8") if config.smtp_user is not None else None,
            config.smtp_pass.encode("utf-8") if config.smtp_pass is not None else None,
            from_address,
            to_address,
            BytesIO(message),
            result,
            retries=0,
            timeout=self._timeout,
            contextFactory=tls_options,
            heloFallback=True,
            requireAuthentication=config.smtp_user is not None,
            requireTransportSecurity=config.require_transport_security,
            hostname=tls_name,
        )
        if config.force_tls:
            assert tls_options is not None  # the config makes force_tls require enable_tls
            factory = TLSMemoryBIOFactory(tls_options, True, factory)
        endpoint = HostnameEndpoint(
            self._reactor, config.smtp_host, config.smtp_port, timeout=self._timeout
        )
        await endpoint.connect(factory)
        await result
