"""The `email` block: the SMTP server that validation emails go through, and their sender.

Synapse's names. Without an `email` block the server sends no email and
cannot validate email addresses (`enabled` is false); with one, `notif_from` is
required. Port 25 is the default, or 465 when `force_tls` (implicit TLS) is set.
With `enable_tls` (the default) STARTTLS is used when the server offers it;
`require_transport_security` refuses to send without it. `smtp_user` and
`smtp_pass` turn on SMTP AUTH, which is then required.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from typing import Any

from homeserver.config._schema import ConfigError
from homeserver.config._units import DURATION_SCHEMA, parse_duration_ms

DEFAULT_SUBJECTS = {
    "email_validation": "[%(server_name)s] Validate your email",
    "password_reset": "[%(server_name)s] Password reset",
}

SCHEMA: dict[str, Any] = {
    "email": {
        "type": ["object", "null"],
        "default": None,
        "additionalProperties": False,
        "required": ["notif_from"],
        "properties": {
            "smtp_host": {"type": "string", "minLength": 1, "default": "localhost"},
            "smtp_port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535, "default": None},
            "smtp_user": {"type": ["string", "null"], "default": None},
            "smtp_pass": {"type": ["string", "null"], "default": None},
            "force_tls": {"type": "boolean", "default": False},
            "require_transport_security": {"type": "boolean", "default": False},
            "enable_tls": {"type": "boolean", "default": True},
            "tlsname": {"type": ["string", "null"], "default": None},
            "notif_from": {"type": "string", "minLength": 1},
            "app_name": {"type": "string", "default": "Matrix"},
            "validation_token_lifetime": {**DURATION_SCHEMA, "default": "1h"},
            "subjects": {
                "type": "object",
                "additionalProperties": False,
                "default": {},
                "properties": {
                    key: {"type": "string", "default": value}
                    for key, value in DEFAULT_SUBJECTS.items()
                },
            },
        },
    },
}
REQUIRED: list[str] = []


@dataclass(frozen=True, slots=True)
class EmailConfig:
    # False when there is no `email` block: no email is sent, addresses can't be validated.
    enabled: bool
    smtp_host: str
    smtp_port: int
    smtp_user: str | None
    smtp_pass: str | None
    force_tls: bool
    require_transport_security: bool
    enable_tls: bool
    # The name expected in the SMTP server's certificate; defaults to smtp_host.
    tlsname: str | None
    # The From header; `%(app)s` is replaced with app_name.
    notif_from: str | None
    app_name: str
    validation_token_lifetime_ms: int
    subject_email_validation: str
    subject_password_reset: str

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> EmailConfig:
        section = doc["email"]
        if section is None:
            return cls(
                enabled=False,
                smtp_host="localhost",
                smtp_port=25,
                smtp_user=None,
                smtp_pass=None,
                force_tls=False,
                require_transport_security=False,
                enable_tls=True,
                tlsname=None,
                notif_from=None,
                app_name="Matrix",
                validation_token_lifetime_ms=parse_duration_ms("1h"),
                subject_email_validation=DEFAULT_SUBJECTS["email_validation"],
                subject_password_reset=DEFAULT_SUBJECTS["password_reset"],
            )
        errors = []
        if section["force_tls"] and not section["enable_tls"]:
            errors.append("email.force_tls: requires email.enable_tls to be true")
        if section["require_transport_security"] and not section["enable_tls"]:
            errors.append("email.require_transport_security: requires email.enable_tls to be true")
        if not email.utils.parseaddr(section["notif_from"])[1]:
            errors.append(f"email.notif_from: {section['notif_from']!r} is not an email address")
        if (section["smtp_user"] is None) != (section["smtp_pass"] is None):
            errors.append("email.smtp_user: smtp_user and smtp_pass must be set together")
        if errors:
            raise ConfigError(errors)
        port = section["smtp_port"]
        if port is None:
            port = 465 if section["force_tls"] else 25
        return cls(
            enabled=True,
            smtp_host=section["smtp_host"],
            smtp_port=port,
            smtp_user=section["smtp_user"],
            smtp_pass=section["smtp_pass"],
            force_tls=section["force_tls"],
            require_transport_security=section["require_transport_security"],
            enable_tls=section["enable_tls"],
            tlsname=section["tlsname"],
            notif_from=section["notif_from"],
            app_name=section["app_name"],
            validation_token_lifetime_ms=parse_duration_ms(section["validation_token_lifetime"]),
            subject_email_validation=section["subjects"]["email_validation"],
            subject_password_reset=section["subjects"]["password_reset"],
        )
