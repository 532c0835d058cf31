"""The shared-secret registration MAC (against vectors from openssl) and the request checks."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock as FakeReactor

from homeserver.clock import Clock
from homeserver.config import ConfigError, HomeServerConfig
from homeserver.handlers.admin_register_mac import mac_matches, registration_mac
from homeserver.handlers.shared_secret_registration import (
    RegistrationRequest,
    SharedSecretRegistration,
)
from homeserver.types.errors import Codes, MatrixError

# Each computed with the shell line from Synapse's docs/admin_api/register_api.md:
#   printf '%s\0%s\0%s\0%s' NONCE USER PASSWORD admin | openssl sha1 -hmac SECRET
VECTORS = [
    (("shared_secret", "thisisanonce", "pepper_roni", "pizza", True, None),
     "48715842ad67d5dc9a9ee938a3bda4fcfae8d7c7"),
    (("s3cret", "abc", "bob", "hunter2", False, "bot"),
     "222ae6672fac8fa1a30289ed2825bd4fc6622c74"),
    (("sécret", "nonce", "zoë", "pässword", False, None),
     "24bb9600daf0872f4801a975554f8127225cdaa7"),
]


@pytest.mark.parametrize(("args", "mac"), VECTORS)
def test_mac_matches_the_documented_construction(args: tuple[Any, ...], mac: str) -> None:
    assert registration_mac(*args) == mac


def test_mac_comparison() -> None:
    assert mac_matches("ab12", "ab12")
    assert not mac_matches("ab12", "ab13")
    assert not mac_matches("ab12", "AB12")
    assert not mac_matches("ab12", "äb12")


def make(secret: str | None = "s3cret") -> tuple[FakeReactor, SharedSecretRegistration]:
    reactor = FakeReactor()
    return reactor, SharedSecretRegistration(Clock(reactor), secret)


def body_for(registrar: SharedSecretRegistration, **fields: Any) -> dict[str, Any]:
    nonce = registrar.new_nonce()
    body = {"nonce": nonce, "username": "Alice", "password": "hunter2", "admin": False}
    body.update(fields)
    body.setdefault(
        "mac",
        registration_mac(
            "s3cret", nonce, body["username"], body["password"], bool(body["admin"]),
            body.get("user_type"),
        ),
    )
    return body


def error_of(registrar: SharedSecretRegistration, body: dict[str, Any]) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        registrar.check_request(body)
    return info.value


def test_valid_request_is_accepted_with_the_localpart_lowercased() -> None:
    _, registrar = make()
    body = body_for(registrar, admin=True, user_type="bot", displayname="Alice A.")
    assert registrar.check_request(body) == RegistrationRequest(
        localpart="alice", password="hunter2", admin=True, user_type="bot", displayname="Alice A."
    )


def test_nonce_is_single_use() -> None:
    _, registrar = make()
    body = body_for(registrar)
    registrar.check_request(body)
    error = error_of(registrar, body)
    assert (error.status, error.message) == (400, "unrecognised nonce")


def test_nonce_is_spent_even_by_a_wrong_mac() -> None:
    _, registrar = make()
    body = body_for(registrar, mac="0" * 40)
    error = error_of(registrar, body)
    assert (error.status, error.errcode, error.message) == (403, Codes.FORBIDDEN, "HMAC incorrect")
    good = dict(body, mac=registration_mac("s3cret", body["nonce"], "Alice", "hunter2", False))
    assert error_of(registrar, good).message == "unrecognised nonce"


def test_nonce_expires_after_60_seconds() -> None:
    reactor, registrar = make()
    fresh = body_for(registrar)
    reactor.advance(60)
    registrar.check_request(fresh)  # 60 s old: still valid
    stale = body_for(registrar)
    reactor.advance(61)
    assert error_of(registrar, stale).message == "unrecognised nonce"


def test_mac_covers_every_field() -> None:
    _, registrar = make()
    for change in ({"username": "mallory"}, {"password": "other"}, {"admin": True},
                   {"user_type": "support"}):
        body = body_for(registrar)
        body.update(change)
        assert error_of(registrar, body).errcode == Codes.FORBIDDEN, change


@pytest.mark.parametrize(
    ("change", "errcode", "message"),
    [
        ({"nonce": None}, Codes.BAD_JSON, "nonce must be specified"),
        ({"username": None}, Codes.BAD_JSON, "username must be specified"),
        ({"password": None}, Codes.BAD_JSON, "password must be specified"),
        ({"mac": None}, Codes.BAD_JSON, "mac must be specified"),
        ({"username": "a\x00b"}, Codes.INVALID_PARAM, "Invalid username"),
        ({"username": "a" * 513}, Codes.INVALID_PARAM, "Invalid username"),
        ({"password": 12}, Codes.INVALID_PARAM, "Invalid password"),
        ({"user_type": "wizard"}, Codes.INVALID_PARAM, "Invalid user type"),
        ({"admin": "yes"}, Codes.INVALID_PARAM, "admin must be a boolean"),
    ],
)
def test_malformed_requests_are_400(change: dict[str, Any], errcode: str, message: str) -> None:
    _, registrar = make()
    body = body_for(registrar, mac="0" * 40)
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    error = error_of(registrar, body)
    assert (error.status, error.errcode, error.message) == (400, errcode, message)


def test_disabled_without_a_secret() -> None:
    _, registrar = make(None)
    assert not registrar.enabled
    with pytest.raises(MatrixError) as info:
        registrar.new_nonce()
    assert info.value.status == 400
    assert "not enabled" in info.value.message
    assert "not enabled" in error_of(registrar, {"nonce": "x"}).message


def config_with(tmp_path: Any, **options: Any) -> HomeServerConfig:
    document = {
        "server_name": "example.com",
        "signing_key_path": "key",
        "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
        "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
        **options,
    }
    return HomeServerConfig.from_dict(document, str(tmp_path / "homeserver.yaml"))


def test_config_secret_inline_from_file_or_generated(tmp_path: Any) -> None:
    assert config_with(tmp_path).registration_secret.registration_shared_secret is None
    inline = config_with(tmp_path, registration_shared_secret="abc")
    assert inline.registration_secret.registration_shared_secret == "abc"

    (tmp_path / "secret.txt").write_text("  from-file\n")
    from_file = config_with(tmp_path, registration_shared_secret_path="secret.txt")
    assert from_file.registration_secret.registration_shared_secret == "from-file"

    generated = config_with(tmp_path, registration_shared_secret_path="new-secret")
    secret = generated.registration_secret.registration_shared_secret
    assert secret and len(secret) >= 40
    assert (tmp_path / "new-secret").read_text().strip() == secret
    assert (tmp_path / "new-secret").stat().st_mode & 0o077 == 0
    # Read back, not regenerated, on the next start.
    again = config_with(tmp_path, registration_shared_secret_path="new-secret")
    assert again.registration_secret.registration_shared_secret == secret


def test_config_refuses_both_secret_options(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as info:
        config_with(tmp_path, registration_shared_secret="a", registration_shared_secret_path="b")
    assert info.value.lines == [
        "registration_shared_secret_path: cannot be used together with registration_shared_secret"
    ]
