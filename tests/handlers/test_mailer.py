"""Validation emails sent to an in-process SMTP server on 127.0.0.1, and read back."""

from __future__ import annotations

import dataclasses
import email.utils
import html
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from homeserver.clock import Clock
from homeserver.config import ConfigError, HomeServerConfig
from homeserver.config.email import EmailConfig
from homeserver.handlers.mailer import (
    ADD_THREEPID,
    PASSWORD_RESET,
    REGISTRATION,
    Mailer,
    render_validation_email,
    validation_link,
)
from homeserver.types.errors import Codes, MatrixError
from tests.handlers.smtp_server import SMTPServer, make_certificate

CERTIFICATE = make_certificate()


def load(**email_options: Any) -> HomeServerConfig:
    document: dict[str, Any] = {
        "server_name": "example.com",
        "public_baseurl": "https://matrix.example.com",
        "signing_key_path": "key",
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
    }
    if email_options:
        document["email"] = {"notif_from": "%(app)s homeserver <noreply@example.com>", **email_options}
    return HomeServerConfig.from_dict(document, "/etc/hs/homeserver.yaml")


def mailer_for(reactor: Any, port: int, **email_options: Any) -> Mailer:
    options = {"smtp_host": "127.0.0.1", "smtp_port": port, "enable_tls": False, **email_options}
    config = load(**options)
    return Mailer(
        reactor,
        Clock(reactor),
        config.email,
        config.server,
        client_tls_options=CERTIFICATE.client_options,
        timeout=5,
    )


async def send(mailer: Mailer, purpose: str = ADD_THREEPID, to: str = "alice@example.org") -> None:
    await mailer.send_validation_email(
        purpose, to, token="tok/+en", client_secret="c&s=1", sid="sid42"
    )


def link_in(text: str) -> str:
    (link,) = [word for word in text.split() if word.startswith("https://")]
    return link


async def test_add_threepid_email_carries_the_link_and_headers(reactor: Any) -> None:
    server = SMTPServer()
    port = server.listen(reactor)
    try:
        await send(mailer_for(reactor, port, app_name="Chat"))
    finally:
        await server.close()

    (received,) = server.inbox
    assert received.mail_from == "noreply@example.com"
    assert received.rcpt_to == "alice@example.org"
    message = received.message()
    assert message["To"] == "alice@example.org"
    assert message["From"] == "Chat homeserver <noreply@example.com>"
    assert message["Subject"] == "[example.com] Validate your email"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@example.com>")
    sent_at = email.utils.parsedate_to_datetime(message["Date"]).timestamp()
    assert abs(sent_at - reactor.seconds()) < 60
    assert message.get_content_type() == "multipart/alternative"

    text = message.get_body(("plain",)).get_content()
    link = link_in(text)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc) == ("https", "matrix.example.com")
    assert parts.path == "/_matrix/client/unstable/add_threepid/email/submit_token"
    assert parse_qs(parts.query) == {
        "token": ["tok/+en"], "client_secret": ["c&s=1"], "sid": ["sid42"]
    }
    body_html = message.get_body(("html",)).get_content()
    assert f'<a href="{html.escape(link, quote=True)}">' in body_html
    assert "example.com" in text and "add this email address" in text


@pytest.mark.parametrize(
    ("purpose", "path", "subject"),
    [
        (REGISTRATION, "/_matrix/client/unstable/registration/email/submit_token",
         "[example.com] Validate your email"),
        (PASSWORD_RESET, "/_synapse/client/password_reset/email/submit_token",
         "[example.com] Password reset"),
    ],
)
async def test_other_purposes_link_to_synapses_paths(
    reactor: Any, purpose: str, path: str, subject: str
) -> None:
    server = SMTPServer()
    port = server.listen(reactor)
    try:
        await send(mailer_for(reactor, port), purpose)
    finally:
        await server.close()
    message = server.inbox[0].message()
    assert message["Subject"] == subject
    assert urlsplit(link_in(message.get_body(("plain",)).get_content())).path == path


async def test_smtp_auth_logs_in_with_the_configured_account(reactor: Any) -> None:
    server = SMTPServer(accounts={"mailer": "s3cret"})
    port = server.listen(reactor)
    try:
        await send(mailer_for(reactor, port, smtp_user="mailer", smtp_pass="s3cret"))
        with pytest.raises(MatrixError) as info:
            await send(mailer_for(reactor, port, smtp_user="mailer", smtp_pass="wrong"))
        # A server that wants a login refuses a client that has none.
        with pytest.raises(MatrixError):
            await send(mailer_for(reactor, port))
    finally:
        await server.close()
    assert [r.username for r in server.inbox] == ["mailer"]
    assert (info.value.status, info.value.errcode) == (500, Codes.UNKNOWN)
    assert info.value.message == "An error was encountered when sending the email"


async def test_starttls_is_used_when_offered(reactor: Any) -> None:
    server = SMTPServer(tls=CERTIFICATE.server_options)
    port = server.listen(reactor)
    try:
        await send(mailer_for(reactor, port, enable_tls=True, tlsname="localhost"))
        await send(mailer_for(reactor, port, enable_tls=False))
    finally:
        await server.close()
    assert [r.secure for r in server.inbox] == [True, False]


async def test_required_transport_security_refuses_a_server_without_starttls(reactor: Any) -> None:
    server = SMTPServer()
    port = server.listen(reactor)
    try:
        with pytest.raises(MatrixError) as info:
            await send(mailer_for(
                reactor, port, enable_tls=True, tlsname="localhost", require_transport_security=True
            ))
        # Without the requirement, the same server gets the email in plain text.
        await send(mailer_for(reactor, port, enable_tls=True, tlsname="localhost"))
    finally:
        await server.close()
    assert info.value.status == 500
    assert [r.secure for r in server.inbox] == [False]


async def test_implicit_tls(reactor: Any) -> None:
    server = SMTPServer(tls=CERTIFICATE.server_options, implicit_tls=True)
    port = server.listen(reactor)
    try:
        await send(mailer_for(reactor, port, enable_tls=True, force_tls=True, tlsname="localhost"))
    finally:
        await server.close()
    (received,) = server.inbox
    assert received.secure
    assert received.rcpt_to == "alice@example.org"


async def test_untrusted_certificate_fails_instead_of_hanging(reactor: Any) -> None:
    server = SMTPServer(tls=CERTIFICATE.server_options, implicit_tls=True)
    port = server.listen(reactor)
    config = load(smtp_host="127.0.0.1", smtp_port=port, force_tls=True, tlsname="localhost")
    mailer = Mailer(reactor, Clock(reactor), config.email, config.server, timeout=5)
    started = reactor.seconds()
    try:
        with pytest.raises(MatrixError) as info:
            await send(mailer)
    finally:
        await server.close()
    assert info.value.status == 500
    assert reactor.seconds() - started < 4
    assert server.inbox == []


async def test_unreachable_server_is_a_500(reactor: Any) -> None:
    server = SMTPServer()
    port = server.listen(reactor)
    await server.close()
    with pytest.raises(MatrixError) as info:
        await send(mailer_for(reactor, port))
    assert (info.value.status, info.value.errcode) == (500, Codes.UNKNOWN)


async def test_bad_recipient_and_disabled_email_are_refused_before_sending(reactor: Any) -> None:
    mailer = mailer_for(reactor, 1)
    for address in ("", "not an address <>", "a@example.org\r\nBcc: evil@example.org"):
        with pytest.raises(MatrixError) as info:
            await send(mailer, to=address)
        assert info.value.errcode == Codes.INVALID_PARAM, address
    config = load()
    disabled = Mailer(reactor, Clock(reactor), config.email, config.server)
    assert not disabled.enabled
    with pytest.raises(MatrixError) as info:
        await send(disabled)
    assert info.value.status == 400


def test_templates_escape_html_and_link_is_urlencoded() -> None:
    link = validation_link("https://hs.example/", ADD_THREEPID, "a b", "<x>", "1&2")
    assert link == (
        "https://hs.example/_matrix/client/unstable/add_threepid/email/submit_token"
        "?token=a+b&client_secret=%3Cx%3E&sid=1%262"
    )
    rendered = render_validation_email(
        REGISTRATION, link=link, subject="S", app_name="<b>App</b>", server_name="hs.example"
    )
    assert "<b>App</b>" not in rendered.html
    assert "&lt;b&gt;App&lt;/b&gt;" in rendered.html
    assert "sid=1%262" in rendered.text
    assert 'href="https://hs.example/_matrix/client/unstable/add_threepid/email/submit_token' \
           '?token=a+b&amp;client_secret=%3Cx%3E&amp;sid=1%262"' in rendered.html


def test_config_defaults_and_checks() -> None:
    assert load().email.enabled is False
    email_config = load(smtp_host="mail.example.com").email
    assert email_config == EmailConfig(
        enabled=True,
        smtp_host="mail.example.com",
        smtp_port=25,
        smtp_user=None,
        smtp_pass=None,
        force_tls=False,
        require_transport_security=False,
        enable_tls=True,
        tlsname=None,
        notif_from="%(app)s homeserver <noreply@example.com>",
        app_name="Matrix",
        validation_token_lifetime_ms=3_600_000,
        subject_email_validation="[%(server_name)s] Validate your email",
        subject_password_reset="[%(server_name)s] Password reset",
    )
    assert load(force_tls=True).email.smtp_port == 465
    assert load(validation_token_lifetime="2d").email.validation_token_lifetime_ms == 172_800_000
    assert dataclasses.replace(email_config, smtp_port=1).smtp_port == 1

    with pytest.raises(ConfigError) as info:
        load(force_tls=True, enable_tls=False)
    assert info.value.lines == ["email.force_tls: requires email.enable_tls to be true"]
    with pytest.raises(ConfigError) as info:
        HomeServerConfig.from_dict(
            {
                "server_name": "example.com",
                "signing_key_path": "key",
                "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
                "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
                "email": {"smtp_host": "localhost"},
            },
            "/etc/hs/homeserver.yaml",
        )
    assert info.value.lines == ["email.notif_from: required option is missing"]
