"""Registration and session options: who may register, guests, token lifetimes.

Top-level keys, as Synapse names them: enable_registration,
enable_registration_without_verification, allow_guest_access,
refreshable_access_token_lifetime, refresh_token_lifetime,
nonrefreshable_access_token_lifetime, login_via_existing_session.

Open registration without any verification (a captcha, an email address or a
registration token) invites spam, so, as Synapse does, `enable_registration:
true` is refused at start unless one of those is configured or the operator
says `enable_registration_without_verification: true`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.config._schema import ConfigError
from homeserver.config._units import DURATION_SCHEMA, parse_duration_ms

_OPTIONAL_DURATION: dict[str, Any] = {**DURATION_SCHEMA, "type": ["integer", "string", "null"]}

SCHEMA: dict[str, Any] = {
    "enable_registration": {"type": "boolean", "default": False},
    "enable_registration_without_verification": {"type": "boolean", "default": False},
    "allow_guest_access": {"type": "boolean", "default": False},
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

        def optional(key: str) -> int | None:
            value = doc[key]
            return None if value is None else parse_duration_ms(value)

        existing = doc["login_via_existing_session"]
        return cls(
            enable_registration=doc["enable_registration"],
            allow_guest_access=doc["allow_guest_access"],
            refreshable_access_token_lifetime_ms=parse_duration_ms(
                doc["refreshable_access_token_lifetime"]
            ),
            refresh_token_lifetime_ms=optional("refresh_token_lifetime"),
            nonrefreshable_access_token_lifetime_ms=optional("nonrefreshable_access_token_lifetime"),
            login_via_existing_session=existing["enabled"],
            login_via_existing_session_requires_ui_auth=existing["require_ui_auth"],
            login_token_lifetime_ms=parse_duration_ms(existing["token_timeout"]),
        )
