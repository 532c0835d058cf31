"""Registration and session options: who may register, guests, token lifetimes, 3PIDs.

Top-level keys, as Synapse names them: enable_registration,
enable_registration_without_verification, allow_guest_access,
registrations_require_3pid, registration_requires_token,
disable_msisdn_registration, enable_3pid_changes, account_threepid_delegates,
refreshable_access_token_lifetime, refresh_token_lifetime,
nonrefreshable_access_token_lifetime, login_via_existing_session.

Registration flows follow from them as Synapse builds them: a flow with only
m.login.dummy unless a 3PID is required, one with m.login.email.identity when
email is configured, and m.login.msisdn ones when a phone number delegate is;
m.login.registration_token, m.login.recaptcha and m.login.terms go in front
of every flow when their options ask for them. Requiring email without an
`email` block, or msisdn without a delegate, is refused at start.

Open registration without any verification (a captcha, an email address or a
registration token) invites spam, so, as Synapse does, `enable_registration:
true` is refused at start unless one of those is configured or the operator
says `enable_registration_without_verification: true`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from homeserver.config._schema import ConfigError
from homeserver.config._units import DURATION_SCHEMA, parse_duration_ms

_OPTIONAL_DURATION: dict[str, Any] = {**DURATION_SCHEMA, "type": ["integer", "string", "null"]}

SCHEMA: dict[str, Any] = {
    "enable_registration": {"type": "boolean", "default": False},
    "enable_registration_without_verification": {"type": "boolean", "default": False},
    "allow_guest_access": {"type": "boolean", "default": False},
    "registrations_require_3pid": {
        "type": "array",
        "items": {"enum": ["email", "msisdn"]},
        "uniqueItems": True,
        "default": [],
    },
    "registration_requires_token": {"type": "boolean", "default": False},
    "disable_msisdn_registration": {"type": "boolean", "default": False},
    "enable_3pid_changes": {"type": "boolean", "default": True},
    "account_threepid_delegates": {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": {"msisdn": {"type": ["string", "null"], "default": None}},
    },
    "refreshable_access_token_lifetime": {**DURATION_SCHEMA, "default": "5m"},
    "refresh_token_lifetime": {**_OPTIONAL_DURATION, "default": None},
    "nonrefreshable_access_token_lifetime": {**_OPTIONAL_DURATION, "default": None},
    "login_via_existing_session": {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": {
            "enabled": {"type": "boolean", "default": False},
            "require_ui_auth": {"type": "boolean", "default": True},
            "token_timeout": {**DURATION_SCHEMA, "default": "5m"},
        },
    },
}
REQUIRED: list[str] = []

# Options of other sections that count as verification of new accounts.
_VERIFICATION_OPTIONS = (
    "enable_registration_captcha",
    "registration_requires_token",
    "registrations_require_3pid",
)


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    enable_registration: bool
    allow_guest_access: bool
    # Media ("email", "msisdn") every new account must prove it has.
    registrations_require_3pid: tuple[str, ...]
    registration_requires_token: bool
    disable_msisdn_registration: bool
    # Users may add and remove their own 3PIDs (POST /account/3pid/add, /delete).
    enable_3pid_changes: bool
    # The identity server (base URL) that validates phone numbers; None: not supported.
    msisdn_delegate: str | None
    refreshable_access_token_lifetime_ms: int
    # None: never expires.
    refresh_token_lifetime_ms: int | None
    nonrefreshable_access_token_lifetime_ms: int | None
    # POST /_matrix/client/v1/login/get_token (MSC3882): served only when enabled.
    login_via_existing_session: bool
    login_via_existing_session_requires_ui_auth: bool
    login_token_lifetime_ms: int

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> RegistrationConfig:
        if (
            doc["enable_registration"]
            and not doc["enable_registration_without_verification"]
            and not any(doc.get(option) for option in _VERIFICATION_OPTIONS)
        ):
            raise ConfigError(
                [
                    "enable_registration: open registration without verification (a captcha,"
                    " an email address or a registration token) invites spam; set"
                    " enable_registration_without_verification: true to allow it anyway"
                ]
            )
        if parse_duration_ms(doc["refreshable_access_token_lifetime"]) <= 0:
            raise ConfigError(["refreshable_access_token_lifetime: must be more than 0"])
        msisdn_delegate = doc["account_threepid_delegates"]["msisdn"]
        errors = []
        if msisdn_delegate is not None:
            parts = urlsplit(msisdn_delegate)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                errors.append(
                    f"account_threepid_delegates.msisdn: {msisdn_delegate!r} is not an http(s) URL"
                )
            if not doc.get("public_baseurl"):
                errors.append("account_threepid_delegates.msisdn: requires public_baseurl")
        required = doc["registrations_require_3pid"]
        if "email" in required and doc.get("email") is None:
            errors.append("registrations_require_3pid: email requires the email block")
        if "msisdn" in required and (msisdn_delegate is None or doc["disable_msisdn_registration"]):
            errors.append(
                "registrations_require_3pid: msisdn requires account_threepid_delegates.msisdn"
                " (and disable_msisdn_registration: false)"
            )
        if errors:
            raise ConfigError(errors)

        def optional(key: str) -> int | None:
            value = doc[key]
            return None if value is None else parse_duration_ms(value)

        existing = doc["login_via_existing_session"]
        return cls(
            enable_registration=doc["enable_registration"],
            allow_guest_access=doc["allow_guest_access"],
            registrations_require_3pid=tuple(required),
            registration_requires_token=doc["registration_requires_token"],
            disable_msisdn_registration=doc["disable_msisdn_registration"],
            enable_3pid_changes=doc["enable_3pid_changes"],
            msisdn_delegate=msisdn_delegate.rstrip("/") if msisdn_delegate else None,
            refreshable_access_token_lifetime_ms=parse_duration_ms(
                doc["refreshable_access_token_lifetime"]
            ),
            refresh_token_lifetime_ms=optional("refresh_token_lifetime"),
            nonrefreshable_access_token_lifetime_ms=optional("nonrefreshable_access_token_lifetime"),
            login_via_existing_session=existing["enabled"],
            login_via_existing_session_requires_ui_auth=existing["require_ui_auth"],
            login_token_lifetime_ms=parse_duration_ms(existing["token_timeout"]),
        )
