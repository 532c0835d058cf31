"""Third-party identifiers: validating email addresses and phone numbers, binding them.

Spec: client-server API "Adding Account Administrative Contact Information",
the `requestToken` endpoints, "Password management" and the
m.login.email.identity / m.login.msisdn UIA stages. Behaviour is Synapse's:

- requestToken takes `client_secret` (checked), `email`, `send_attempt` and
  an optional http(s) `next_link`. An address already bound is 400
  M_THREEPID_IN_USE for registration and adding; an unknown one is 400
  M_THREEPID_NOT_FOUND for password reset. Requests are limited per client
  address and per email address (`rc_3pid_validation`, 429).
- One session per (address, client secret) until validated: a request whose
  send_attempt is not higher than the last one's sends nothing and answers
  the same `sid`. Each email carries a new token, valid for
  `email.validation_token_lifetime`; following the link validates the session.
- A validated session is spent when used (UIA stage, or /account/3pid/add).
- Without an `email` block, email validation is off (400); phone numbers go
  through `account_threepid_delegates.msisdn` (homeserver.handlers.identity_server)
  and are refused with 400 when it is not configured.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from homeserver.clock import Clock
from homeserver.config.email import EmailConfig
from homeserver.config.registration import RegistrationConfig
from homeserver.handlers.identity_server import IdentityServerClient
from homeserver.handlers.mailer import ADD_THREEPID, PASSWORD_RESET, REGISTRATION, Mailer
from homeserver.handlers.ratelimit import Ratelimiter
from homeserver.storage.stores import Storage
from homeserver.storage.stores.threepids import Threepid, ValidationOutcome, ValidationSession
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.threepids import (
    EMAIL,
    MEDIA,
    MSISDN,
    InvalidThreepid,
    canonicalise_address,
    canonicalise_email,
    is_valid_client_secret,
    phone_number_to_msisdn,
)

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

_ALPHABET = string.ascii_letters + string.digits
# Unvalidated sessions are forgotten this long after they started.
SESSION_LIFETIME_MS = 24 * 60 * 60 * 1000


class ValidationFailed(Exception):
    """Following an emailed link did not validate anything; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_OUTCOME_MESSAGES = {
    ValidationOutcome.UNKNOWN_SESSION: "Unknown session_id",
    ValidationOutcome.WRONG_CLIENT_SECRET: "This client_secret does not match the provided session_id",
    ValidationOutcome.UNKNOWN_TOKEN: "Validation token not found or has expired",
    ValidationOutcome.EXPIRED: "Link has expired",
}


@dataclass(frozen=True, slots=True)
class ValidatedThreepid:
    medium: str
    address: str
    validated_at: int


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_client_secret(value: Any) -> str:
    if value is None:
        raise MatrixError(Codes.MISSING_PARAM, "Missing parameter: client_secret")
    if not is_valid_client_secret(value):
        raise MatrixError(Codes.INVALID_PARAM, "Invalid client_secret parameter")
    assert isinstance(value, str)
    return value


def _required_str(body: JsonDict, key: str) -> str:
    value = body.get(key)
    if value is None:
        raise MatrixError(Codes.MISSING_PARAM, f"Missing parameter: {key}")
    if not isinstance(value, str):
        raise MatrixError(Codes.INVALID_PARAM, f"'{key}' must be a string")
    return value


def _send_attempt(body: JsonDict) -> int:
    value = body.get("send_attempt")
    if value is None:
        raise MatrixError(Codes.MISSING_PARAM, "Missing parameter: send_attempt")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise MatrixError(Codes.INVALID_PARAM, "'send_attempt' must be a non-negative integer")
    return value


def _next_link(body: JsonDict) -> str | None:
    value = body.get("next_link")
    if value is None:
        return None
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise MatrixError(Codes.INVALID_PARAM, "next_link uses a disallowed scheme")
    return value


def check_email(value: Any) -> str:
    if not isinstance(value, str):
        raise MatrixError(Codes.INVALID_PARAM, "'email' must be a string")
    try:
        return canonicalise_email(value)
    except InvalidThreepid as e:
        raise MatrixError(Codes.INVALID_PARAM, str(e)) from None


def check_phone(country: Any, number: Any) -> str:
    """The msisdn of an m.id.phone identifier or msisdn requestToken body."""
    if not isinstance(country, str) or not isinstance(number, str):
        raise MatrixError(Codes.INVALID_PARAM, "'country' and 'phone_number' must be strings")
    try:
        return phone_number_to_msisdn(country, number)
    except InvalidThreepid as e:
        raise MatrixError(Codes.INVALID_PARAM, str(e)) from None


class ThreepidHandler:
    def __init__(
        self,
        clock: Clock,
        storage: Storage,
        mailer: Mailer,
        email_config: EmailConfig,
        registration_config: RegistrationConfig,
        ip_limiter: Ratelimiter,
        address_limiter: Ratelimiter,
        identity_server: IdentityServerClient | None,
    ) -> None:
        self._clock = clock
        self._storage = storage
        self._mailer = mailer
        self._email_config = email_config
        self._registration = registration_config
        self._ip_limiter = ip_limiter
        self._address_limiter = address_limiter
        self.identity_server = identity_server

    @property
    def email_enabled(self) -> bool:
        return self._mailer.enabled

    # -- requestToken

    async def request_email_token(self, purpose: str, body: JsonDict, client_ip: str) -> JsonDict:
        """POST /register/email/requestToken (REGISTRATION), /account/3pid/email/requestToken
        (ADD_THREEPID) or /account/password/email/requestToken (PASSWORD_RESET)."""
        if purpose == ADD_THREEPID and not self._registration.enable_3pid_changes:
            raise MatrixError(Codes.FORBIDDEN, "3PID changes are disabled on this server", status=400)
        if not self._mailer.enabled:
            if purpose == ADD_THREEPID:
                raise MatrixError(
                    Codes.THREEPID_MEDIUM_NOT_SUPPORTED,
                    "Adding an email to your account is disabled on this server",
                )
            raise MatrixError(Codes.UNKNOWN, "Email-based validation is disabled on this server", status=400)
        client_secret = check_client_secret(body.get("client_secret"))
        address = check_email(_required_str(body, "email"))
        send_attempt = _send_attempt(body)
        next_link = _next_link(body)
        self._ratelimit(client_ip, EMAIL, address)

        owner = await self._storage.threepids.get_user_by_threepid(EMAIL, address)
        if purpose == PASSWORD_RESET:
            if owner is None:
                raise MatrixError(Codes.THREEPID_NOT_FOUND, "Email not found")
        elif owner is not None:
            raise MatrixError(Codes.THREEPID_IN_USE, "Email is already in use")
        sid = await self._send_validation(purpose, address, client_secret, send_attempt, next_link)
        return {"sid": sid}

    async def request_msisdn_token(self, purpose: str, body: JsonDict, client_ip: str) -> JsonDict:
        """The msisdn requestToken endpoints, through the configured identity server."""
        if purpose == ADD_THREEPID and not self._registration.enable_3pid_changes:
            raise MatrixError(Codes.FORBIDDEN, "3PID changes are disabled on this server", status=400)
        client_secret = check_client_secret(body.get("client_secret"))
        country = _required_str(body, "country")
        phone_number = _required_str(body, "phone_number")
        send_attempt = _send_attempt(body)
        next_link = _next_link(body)
        msisdn = check_phone(country, phone_number)
        self._ratelimit(client_ip, MSISDN, msisdn)
        owner = await self._storage.threepids.get_user_by_threepid(MSISDN, msisdn)
        if purpose == PASSWORD_RESET:
            if owner is None:
                raise MatrixError(Codes.THREEPID_NOT_FOUND, "Phone number not found")
        elif owner is not None:
            raise MatrixError(Codes.THREEPID_IN_USE, "Phone number is already in use")
        if self.identity_server is None or (
            purpose == REGISTRATION and self._registration.disable_msisdn_registration
        ):
            raise MatrixError(
                Codes.THREEPID_MEDIUM_NOT_SUPPORTED,
                "Phone numbers are not supported by this homeserver",
            )
        return await self.identity_server.request_msisdn_token(
            country, phone_number, client_secret, send_attempt, next_link
        )

    def _ratelimit(self, client_ip: str, medium: str, address: str) -> None:
        self._ip_limiter.check(client_ip)
        self._address_limiter.check((medium, address))

    async def _send_validation(
        self,
        purpose: str,
        address: str,
        client_secret: str,
        send_attempt: int,
        next_link: str | None,
    ) -> str:
        threepids = self._storage.threepids
        session = await threepids.get_session(
            medium=EMAIL, client_secret=client_secret, address=address, validated=False
        )
        now = self._clock.time_msec()
        if session is not None:
            if send_attempt <= session.last_send_attempt:
                return session.session_id
            session_id = session.session_id
        else:
            session_id = _random(16)
        if next_link is not None:
            next_link += ("&" if "?" in next_link else "?") + "sid=" + quote(session_id)
        token = _random(32)
        await self._mailer.send_validation_email(
            purpose, address, token=token, client_secret=client_secret, sid=session_id
        )
        await threepids.start_or_continue_session(
            ValidationSession(
                session_id=session_id,
                medium=EMAIL,
                address=address,
                client_secret=client_secret,
                last_send_attempt=send_attempt,
                created_ts=session.created_ts if session is not None else now,
                validated_at=None,
            ),
            _hash(token),
            next_link,
            now + self._email_config.validation_token_lifetime_ms,
        )
        return session_id

    # -- the emailed link

    async def submit_email_token(self, sid: str, client_secret: str, token: str) -> str | None:
        """Follow an emailed link: the next_link to redirect to, if any; ValidationFailed if not valid."""
        if not is_valid_client_secret(client_secret):
            raise ValidationFailed("Invalid client_secret parameter")
        outcome, next_link = await self._storage.threepids.validate_session(
            sid, client_secret, _hash(token), self._clock.time_msec()
        )
        if outcome is not ValidationOutcome.VALIDATED:
            raise ValidationFailed(_OUTCOME_MESSAGES[outcome])
        return next_link

    async def submit_msisdn_token(self, body: JsonDict) -> JsonDict:
        """POST add_threepid/msisdn/submit_token: passed on to the identity server."""
        if self.identity_server is None:
            raise MatrixError(
                Codes.THREEPID_MEDIUM_NOT_SUPPORTED, "This homeserver is not validating phone numbers"
            )
        client_secret = check_client_secret(body.get("client_secret"))
        sid = _required_str(body, "sid")
        token = _required_str(body, "token")
        return await self.identity_server.submit_msisdn_token(client_secret, sid, token)

    # -- using validated sessions

    async def take_validated(self, medium: str, sid: Any, client_secret: Any) -> ValidatedThreepid | None:
        """The identifier a validated session proves (spending it), or None."""
        if not isinstance(sid, str) or not is_valid_client_secret(client_secret):
            return None
        if medium == EMAIL:
            if not self._mailer.enabled:
                return None
            session = await self._storage.threepids.get_session(
                medium=EMAIL, client_secret=client_secret, session_id=sid, validated=True
            )
            if session is None or session.validated_at is None:
                return None
            await self._storage.threepids.delete_session(session.session_id)
            return ValidatedThreepid(EMAIL, session.address, session.validated_at)
        if medium == MSISDN and self.identity_server is not None:
            found = await self.identity_server.get_validated_threepid(sid, client_secret)
            if found is None or found["medium"] != MSISDN:
                return None
            try:
                address = canonicalise_address(MSISDN, found["address"])
            except InvalidThreepid:
                return None
            return ValidatedThreepid(MSISDN, address, found["validated_at"])
        return None

    async def add_threepid(self, user_id: str, body: JsonDict) -> None:
        """POST /account/3pid/add (after UIA): bind the identifier a validated session proves."""
        if not self._registration.enable_3pid_changes:
            raise MatrixError(Codes.FORBIDDEN, "3PID changes are disabled on this server", status=400)
        client_secret = check_client_secret(body.get("client_secret"))
        sid = _required_str(body, "sid")
        validated = await self.take_validated(EMAIL, sid, client_secret)
        if validated is None:
            validated = await self.take_validated(MSISDN, sid, client_secret)
        if validated is None:
            raise MatrixError(Codes.THREEPID_AUTH_FAILED, "No validated 3pid session found", status=400)
        await self.bind(user_id, validated)

    async def bind(self, user_id: str, threepid: ValidatedThreepid) -> None:
        """Bind a validated identifier to `user_id`; 400 M_THREEPID_IN_USE if another has it."""
        if not await self._storage.threepids.add_user_threepid(
            user_id, threepid.medium, threepid.address, threepid.validated_at, self._clock.time_msec()
        ):
            raise MatrixError(Codes.THREEPID_IN_USE, f"{threepid.medium} is already in use")

    async def delete_threepid(self, user_id: str, body: JsonDict) -> str:
        """POST /account/3pid/delete; the `id_server_unbind_result`."""
        if not self._registration.enable_3pid_changes:
            raise MatrixError(Codes.FORBIDDEN, "3PID changes are disabled on this server", status=400)
        medium = _required_str(body, "medium")
        address = _required_str(body, "address")
        id_server = body.get("id_server")
        if id_server is not None and not isinstance(id_server, str):
            raise MatrixError(Codes.INVALID_PARAM, "'id_server' must be a string")
        if medium not in MEDIA:
            raise MatrixError(Codes.INVALID_PARAM, f"Unknown medium {medium!r}")
        try:
            address = canonicalise_address(medium, address)
        except InvalidThreepid:
            # Nothing could be bound under an address we cannot even read.
            return "no-support"
        await self._storage.threepids.remove_user_threepid(user_id, medium, address)
        # No identity server was told about the binding, so none needs telling now.
        return "no-support"

    async def get_threepids(self, user_id: str) -> list[Threepid]:
        return await self._storage.threepids.get_user_threepids(user_id)

    async def user_for(self, medium: str, address: str) -> str | None:
        """The account an identifier is bound to (address canonicalised first), or None."""
        try:
            address = canonicalise_address(medium, address)
        except InvalidThreepid:
            return None
        return await self._storage.threepids.get_user_by_threepid(medium, address)

    async def resolve_thirdparty(self, identifier: JsonDict) -> str | None:
        """The account an m.id.thirdparty identifier names (login), or None."""
        medium, address = identifier.get("medium"), identifier.get("address")
        if not isinstance(medium, str) or not isinstance(address, str):
            raise MatrixError(Codes.INVALID_PARAM, "Invalid thirdparty identifier")
        return await self.user_for(medium, address)

    async def resolve_phone(self, identifier: JsonDict) -> str | None:
        """The account an m.id.phone identifier names (login), or None."""
        country, phone = identifier.get("country"), identifier.get("phone")
        if not isinstance(country, str) or not isinstance(phone, str):
            raise MatrixError(Codes.INVALID_PARAM, "Invalid phone-type identifier")
        return await self.user_for(MSISDN, check_phone(country, phone))

    async def expire_sessions(self) -> int:
        now = self._clock.time_msec()
        return await self._storage.threepids.delete_sessions_before(now - SESSION_LIFETIME_MS, now)
