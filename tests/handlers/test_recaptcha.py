"""reCAPTCHA verification against a fake verify service on 127.0.0.1 (real reactor and sockets)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.web import resource, server

from homeserver.clock import Clock
from homeserver.config import ConfigError, HomeServerConfig
from homeserver.config.captcha import DEFAULT_SITEVERIFY_API, CaptchaConfig
from homeserver.handlers.recaptcha import RecaptchaVerifier
from homeserver.types.errors import Codes, MatrixError
from tests.conftest import run_on_reactor


class FakeVerifier(resource.Resource):
    """Answers POSTs as `mode` says, and records the form fields it was sent."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.mode = "success"
        self.forms: list[dict[str, str]] = []
        self.content_types: list[bytes | None] = []
        self.hanging: list[server.Request] = []

    def render_POST(self, request: server.Request) -> bytes | int:
        assert request.args is not None
        self.forms.append({k.decode(): v[0].decode() for k, v in request.args.items()})
        self.content_types.append(request.getHeader(b"content-type"))
        if self.mode == "hang":
            self.hanging.append(request)
            request.notifyFinish().addErrback(lambda _: None)
            return server.NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        if self.mode == "success":
            return json.dumps({"success": True, "hostname": "client.example"}).encode()
        if self.mode == "failure":
            return json.dumps({"success": False, "error-codes": ["invalid-input-response"]}).encode()
        if self.mode == "truthy":
            return json.dumps({"success": "yes"}).encode()
        if self.mode == "no-success":
            return json.dumps({"hostname": "client.example"}).encode()
        if self.mode == "error-500":
            request.setResponseCode(500)
            return b"<html>Internal error</html>"
        if self.mode == "huge":
            return b'{"success": true, "padding": "' + b"x" * 200_000 + b'"}'
        raise AssertionError(self.mode)


class Service:
    def __init__(self, reactor: Any) -> None:
        self.resource = FakeVerifier()
        site = server.Site(self.resource, timeout=None)
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}/recaptcha/api/siteverify"


@pytest.fixture
def service(reactor: Any) -> Iterator[Service]:
    service = Service(reactor)
    yield service
    for request in service.resource.hanging:
        request.channel.transport.abortConnection()  # type: ignore[union-attr]
    run_on_reactor(defer.maybeDeferred(service.port.stopListening))


def captcha_config(url: str, *, enabled: bool = True) -> CaptchaConfig:
    return CaptchaConfig(
        enable_registration_captcha=enabled,
        recaptcha_public_key="site-key",
        recaptcha_private_key="private-key",
        recaptcha_siteverify_api=url,
    )


def verifier_for(reactor: Any, url: str, timeout: float = 5.0) -> RecaptchaVerifier:
    return RecaptchaVerifier(reactor, Clock(reactor), captcha_config(url), timeout=timeout)


async def error_of(verifier: RecaptchaVerifier, auth: dict[str, Any]) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        await verifier.check_auth(auth, "203.0.113.9")
    return info.value


async def test_success_posts_secret_response_and_remoteip_as_a_form(
    reactor: Any, service: Service
) -> None:
    verifier = verifier_for(reactor, service.url)
    assert verifier.is_enabled()
    assert verifier.public_key == "site-key"
    auth = {"type": "m.login.recaptcha", "response": "the-answer", "session": "s"}
    assert await verifier.check_auth(auth, "203.0.113.9") is True
    assert service.resource.forms == [
        {"secret": "private-key", "response": "the-answer", "remoteip": "203.0.113.9"}
    ]
    assert service.resource.content_types == [b"application/x-www-form-urlencoded"]


@pytest.mark.parametrize(
    ("mode", "logged"),
    [
        ("failure", "Failed reCAPTCHA"),
        ("truthy", "Failed reCAPTCHA"),
        ("no-success", "Failed reCAPTCHA from hostname client.example"),
        ("error-500", "HTTP 500 answer is not JSON"),
        ("huge", "answer larger than 65536 bytes"),
    ],
)
async def test_anything_but_success_true_is_401_unauthorized(
    reactor: Any, service: Service, mode: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homeserver.handlers.recaptcha")
    service.resource.mode = mode
    error = await error_of(verifier_for(reactor, service.url), {"response": "r"})
    assert (error.status, error.errcode) == (401, Codes.UNAUTHORIZED)
    assert error.message == "Captcha authentication failed"
    assert logged in caplog.text


async def test_missing_response_is_400_captcha_needed_without_asking_the_service(
    reactor: Any, service: Service
) -> None:
    verifier = verifier_for(reactor, service.url)
    for auth in ({"type": "m.login.recaptcha"}, {"response": 5}, {"response": ""}):
        error = await error_of(verifier, auth)
        assert (error.status, error.errcode) == (400, Codes.CAPTCHA_NEEDED)
    assert service.resource.forms == []


async def test_a_service_that_does_not_answer_times_out_as_401(
    reactor: Any, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    service.resource.mode = "hang"
    started = reactor.seconds()
    error = await error_of(verifier_for(reactor, service.url, timeout=0.3), {"response": "r"})
    assert (error.status, error.errcode) == (401, Codes.UNAUTHORIZED)
    assert 0.3 <= reactor.seconds() - started < 3
    assert len(service.resource.forms) == 1
    assert "gave no answer in 0.3s" in caplog.text


async def test_connection_refused_is_401(reactor: Any, caplog: pytest.LogCaptureFixture) -> None:
    closed = Service(reactor)
    await closed.port.stopListening()
    error = await error_of(verifier_for(reactor, closed.url), {"response": "r"})
    assert (error.status, error.errcode) == (401, Codes.UNAUTHORIZED)
    assert "Connection refused" in caplog.text


def test_disabled_unless_enabled_with_a_private_key(reactor: Any) -> None:
    off = RecaptchaVerifier(reactor, Clock(reactor), captcha_config("http://x/", enabled=False))
    assert not off.is_enabled()


def config_with(tmp_path: Any, **options: Any) -> HomeServerConfig:
    document = {
        "server_name": "example.com",
        "signing_key_path": "key",
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
        **options,
    }
    return HomeServerConfig.from_dict(document, str(tmp_path / "homeserver.yaml"))


def test_config_defaults_and_keys_from_files(tmp_path: Any) -> None:
    captcha = config_with(tmp_path).captcha
    assert captcha == CaptchaConfig(False, None, None, DEFAULT_SITEVERIFY_API)
    assert DEFAULT_SITEVERIFY_API == "https://www.recaptcha.net/recaptcha/api/siteverify"

    (tmp_path / "private.key").write_text("secret-from-file\n")
    captcha = config_with(
        tmp_path,
        enable_registration_captcha=True,
        recaptcha_public_key="pub",
        recaptcha_private_key_path="private.key",
    ).captcha
    assert captcha.recaptcha_private_key == "secret-from-file"
    assert captcha.enable_registration_captcha


def test_config_needs_both_keys_when_enabled(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as info:
        config_with(tmp_path, enable_registration_captcha=True, recaptcha_public_key="pub")
    assert info.value.lines == [
        "recaptcha_private_key: required when enable_registration_captcha is true"
    ]
    with pytest.raises(ConfigError) as info:
        config_with(tmp_path, recaptcha_siteverify_api="ftp://example.com/")
    assert info.value.lines == [
        "recaptcha_siteverify_api: 'ftp://example.com/' is not an http:// or https:// URL"
    ]
