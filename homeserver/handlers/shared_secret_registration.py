"""Shared-secret registration: one-time nonces and the checks on a registration request.

Synapse's admin API `/_synapse/admin/v1/register`, which `register_new_matrix_user`
uses: `GET` hands out a nonce, valid once and for 60 seconds; `POST` carries
the nonce, username, password, admin flag, optional user type and display
name, and the MAC of them (homeserver.handlers.admin_register_mac). This
module decides whether such a request may register a user; creating the
account is the registration handler's job.

    registrar = SharedSecretRegistration(clock, config.registration_secret.registration_shared_secret)
    {"nonce": registrar.new_nonce()}            # GET
    request = registrar.check_request(body)     # POST: a RegistrationRequest, or MatrixError

The errors are Synapse's: 400 when disabled, for an unknown or expired nonce
(the nonce is spent even then) and for malformed fields; 403 M_FORBIDDEN for a
wrong MAC. Nonces live in this process's memory, so with several processes
both calls must reach the same one.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from homeserver.clock import Clock
from homeserver.handlers.admin_register_mac import mac_matches, registration_mac
from homeserver.types.errors import Codes, MatrixError

NONCE_LIFETIME_SECONDS = 60
# Synapse's user types (synapse.api.constants.UserTypes).
USER_TYPES = ("support", "bot")
_MAX_FIELD_LENGTH = 512


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """A checked request: register `localpart` (already lowercased) with these details."""

    localpart: str
    password: str
    admin: bool
    user_type: str | None
    displayname: str | None


class SharedSecretRegistration:
    def __init__(
        self,
        clock: Clock,
        shared_secret: str | None,
        *,
        user_types: Iterable[str] = USER_TYPES,
    ) -> None:
        self._clock = clock
        self._secret = shared_secret
        self._user_types = frozenset(user_types)
        # nonce -> time it was handed out
        self._nonces: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._secret)

    def _disabled(self) -> MatrixError:
        return MatrixError(Codes.UNKNOWN, "Shared secret registration is not enabled", status=400)

    def _forget_expired(self) -> None:
        now = self._clock.time()
        for nonce, issued in list(self._nonces.items()):
            if now - issued > NONCE_LIFETIME_SECONDS:
                del self._nonces[nonce]

    def new_nonce(self) -> str:
        """A fresh nonce for `GET /_synapse/admin/v1/register`."""
        if not self.enabled:
            raise self._disabled()
        self._forget_expired()
        nonce = secrets.token_hex(64)
        self._nonces[nonce] = self._clock.time()
        return nonce

    def check_request(self, body: dict[str, Any]) -> RegistrationRequest:
        """Check the body of `POST /_synapse/admin/v1/register`; raises MatrixError if refused."""
        if not self.enabled:
            raise self._disabled()
        assert self._secret is not None
        self._forget_expired()

        nonce = body.get("nonce")
        if nonce is None:
            raise MatrixError(Codes.BAD_JSON, "nonce must be specified")
        if not isinstance(nonce, str) or self._nonces.pop(nonce, None) is None:
            raise MatrixError(Codes.UNKNOWN, "unrecognised nonce", status=400)

        username = _text_field(body, "username")
        password = _text_field(body, "password")

        admin = body.get("admin")
        if admin is not None and not isinstance(admin, bool):
            raise MatrixError(Codes.INVALID_PARAM, "admin must be a boolean")
        user_type = body.get("user_type")
        if user_type is not None and user_type not in self._user_types:
            raise MatrixError(Codes.INVALID_PARAM, "Invalid user type")
        displayname = body.get("displayname")
        if displayname is not None and not isinstance(displayname, str):
            raise MatrixError(Codes.INVALID_PARAM, "displayname must be a string")

        mac = body.get("mac")
        if mac is None:
            raise MatrixError(Codes.BAD_JSON, "mac must be specified")
        if not isinstance(mac, str):
            raise MatrixError(Codes.INVALID_PARAM, "mac must be a string")
        expected = registration_mac(self._secret, nonce, username, password, bool(admin), user_type)
        if not mac_matches(expected, mac):
            raise MatrixError(Codes.FORBIDDEN, "HMAC incorrect")

        return RegistrationRequest(
            localpart=username.lower(),
            password=password,
            admin=bool(admin),
            user_type=user_type,
            displayname=displayname,
        )


def _text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise MatrixError(Codes.BAD_JSON, f"{name} must be specified")
    if not isinstance(value, str) or len(value) > _MAX_FIELD_LENGTH or "\x00" in value:
        raise MatrixError(Codes.INVALID_PARAM, f"Invalid {name}")
    return value
