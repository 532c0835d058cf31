"""The registration, session-token and password options."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.config import ConfigError, HomeServerConfig
from tests.config.test_config import minimal


def load(**options: Any) -> HomeServerConfig:
    return HomeServerConfig.from_dict({**minimal(), **options}, "/etc/hs/homeserver.yaml")


def test_defaults_are_synapses() -> None:
    config = load()
    registration, auth = config.registration, config.auth
    assert not registration.enable_registration and not registration.allow_guest_access
    assert registration.refreshable_access_token_lifetime_ms == 5 * 60 * 1000
    assert registration.refresh_token_lifetime_ms is None
    assert registration.nonrefreshable_access_token_lifetime_ms is None
    assert not registration.login_via_existing_session
    assert registration.login_via_existing_session_requires_ui_auth
    assert registration.login_token_lifetime_ms == 5 * 60 * 1000
    assert auth.bcrypt_rounds == 12 and auth.pepper == ""
    assert auth.password_login_enabled and auth.password_reauth_enabled and auth.password_localdb_enabled
    assert not auth.policy.enabled


def test_open_registration_needs_verification_or_an_explicit_yes() -> None:
    with pytest.raises(ConfigError) as info:
        load(enable_registration=True)
    (line,) = info.value.lines
    assert line.startswith("enable_registration: open registration without verification")
    assert load(enable_registration=True, enable_registration_without_verification=True).registration.enable_registration
    captcha = load(
        enable_registration=True,
        enable_registration_captcha=True,
        recaptcha_public_key="pub",
        recaptcha_private_key="priv",
    )
    assert captcha.registration.enable_registration


def test_durations_take_units() -> None:
    registration = load(
        refreshable_access_token_lifetime="10m",
        refresh_token_lifetime="1d",
        nonrefreshable_access_token_lifetime=60000,
        login_via_existing_session={"enabled": True, "token_timeout": "30s"},
    ).registration
    assert registration.refreshable_access_token_lifetime_ms == 600_000
    assert registration.refresh_token_lifetime_ms == 86_400_000
    assert registration.nonrefreshable_access_token_lifetime_ms == 60_000
    assert registration.login_token_lifetime_ms == 30_000
    with pytest.raises(ConfigError):
        load(refresh_token_lifetime="soon")
    with pytest.raises(ConfigError):
        load(refreshable_access_token_lifetime=0)


def test_password_config() -> None:
    auth = load(
        bcrypt_rounds=4,
        password_config={"enabled": "only_for_reauth", "pepper": "p", "policy": {"enabled": True, "minimum_length": 9}},
    ).auth
    assert (auth.bcrypt_rounds, auth.pepper) == (4, "p")
    assert not auth.password_login_enabled and auth.password_reauth_enabled
    assert auth.policy.enabled and auth.policy.minimum_length == 9 and not auth.policy.require_digit
    assert not load(password_config={"enabled": False}).auth.password_reauth_enabled
    with pytest.raises(ConfigError) as info:
        load(password_config={"policy": {"minimum_lenght": 3}})
    assert info.value.lines == ["password_config.policy.minimum_lenght: unknown option"]
    with pytest.raises(ConfigError):
        load(bcrypt_rounds=3)
