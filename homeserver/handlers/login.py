"""Logging in: checking credentials, issuing sessions, login tokens, the password UIA stage.

Spec: client-server API "Login" (POST /login, m.login.password with the
m.id.user identifier or the deprecated top-level `user`, m.login.token) and
"POST /login/get_token". Identifier types plug in as resolvers
(`add_identifier_resolver`): m.id.user is built in; m.id.thirdparty and
m.id.phone (normalised to an msisdn) come from homeserver.handlers.threepids.
Errors are Synapse's: 403 M_FORBIDDEN "Invalid username or password"
whatever was wrong with the credentials, 403 M_USER_DEACTIVATED for a
deactivated account, 400 for a malformed submission.

Rate limits (spec "Rate limiting", Synapse's `rc_login`): every POST /login
counts against its client address; a successful login counts against the
account; a wrong password counts against the account (or the identifier, when
it names no account), and once that bucket is full further attempts are
refused with 429 before the password is even checked, for logins and for
password confirmation in user-interactive auth alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeserver.clock import Clock
from homeserver.config.auth import AuthConfig
from homeserver.config.registration import RegistrationConfig
from homeserver.handlers.auth import AuthHandler, IssuedTokens, generate_token, hash_token
from homeserver.handlers.devices import (
    check_device_display_name,
    check_device_id,
    generate_device_id,
)
from homeserver.handlers.passwords import PasswordHasher
from homeserver.handlers.ratelimit import Ratelimiter
from homeserver.handlers.ui_auth import PASSWORD, StageContext, StageFailed
from homeserver.storage.stores import Storage
from homeserver.storage.stores.users import UserInfo
from homeserver.types.errors import Codes, MatrixError

JsonDict = dict[str, Any]

TOKEN = "m.login.token"
# Resolves an identifier dict to the user ID it names (any case), or None.
IdentifierResolver = Callable[[JsonDict], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class LoginRatelimiters:
    """rc_login: per client address, per account, and failed attempts per account."""

    address: Ratelimiter
    account: Ratelimiter
    failed_attempts: Ratelimiter


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: str
    device_id: str
    tokens: IssuedTokens


def _invalid_credentials() -> MatrixError:
    return MatrixError(Codes.FORBIDDEN, "Invalid username or password")


def identifier_of(submission: JsonDict) -> JsonDict:
    """The submission's `identifier`, or one built from the deprecated top-level fields."""
    identifier = submission.get("identifier")
    if identifier is not None:
        if not isinstance(identifier, dict):
            raise MatrixError(Codes.INVALID_PARAM, "'identifier' must be an object")
        if not isinstance(identifier.get("type"), str):
            raise MatrixError(Codes.MISSING_PARAM, "'identifier' has no string 'type'")
        return identifier
    if "user" in submission:
        return {"type": "m.id.user", "user": submission["user"]}
    if "medium" in submission and "address" in submission:
        return {
            "type": "m.id.thirdparty",
            "medium": submission["medium"],
            "address": submission["address"],
        }
    raise MatrixError(Codes.MISSING_PARAM, "Missing parameter: identifier")


def _identifier_key(identifier: JsonDict) -> tuple[str, ...]:
    """What failed logins naming no account are counted against."""
    parts = [identifier.get(key) for key in ("type", "user", "medium", "address", "country", "phone")]
    return tuple(str(part).lower() for part in parts if part is not None)


class LoginHandler:
    def __init__(
        self,
        server_name: str,
        clock: Clock,
        storage: Storage,
        auth: AuthHandler,
        hasher: PasswordHasher,
        auth_config: AuthConfig,
        registration_config: RegistrationConfig,
        limiters: LoginRatelimiters,
    ) -> None:
        self._server_name = server_name
        self._limiters = limiters
        self._clock = clock
        self._storage = storage
        self._auth = auth
        self._hasher = hasher
        self._auth_config = auth_config
        self._registration_config = registration_config
        self._resolvers: dict[str, IdentifierResolver] = {"m.id.user": self._resolve_user}

    def add_identifier_resolver(self, identifier_type: str, resolver: IdentifierResolver) -> None:
        """Accept another identifier type (m.id.thirdparty, ...) in logins and UIA."""
        self._resolvers[identifier_type] = resolver

    @property
    def password_login_enabled(self) -> bool:
        return self._auth_config.password_login_enabled and self._auth_config.password_localdb_enabled

    def login_flows(self) -> list[JsonDict]:
        """GET /login: the login types offered, password first (some clients take the first)."""
        flows: list[JsonDict] = []
        if self.password_login_enabled:
            flows.append({"type": PASSWORD})
        if self._registration_config.login_via_existing_session:
            flows.append({"type": TOKEN, "get_login_token": True})
        return flows

    async def _resolve_user(self, identifier: JsonDict) -> str | None:
        user = identifier.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(Codes.INVALID_PARAM, "'user' must be a non-empty string")
        return user if user.startswith("@") else f"@{user}:{self._server_name}"

    async def find_user(self, identifier: JsonDict) -> UserInfo | None:
        """The local account an identifier names (case-insensitively, as Synapse), or None."""
        resolver = self._resolvers.get(identifier["type"])
        if resolver is None:
            raise MatrixError(Codes.INVALID_PARAM, "Unknown login identifier type")
        user_id = await resolver(identifier)
        if user_id is None:
            return None
        matches = await self._storage.users.get_users_case_insensitive(user_id)
        if len(matches) == 1:
            return matches[0]
        exact = [user for user in matches if user.user_id == user_id]
        return exact[0] if exact else None

    async def check_password(self, submission: JsonDict, *, reauth: bool = False) -> str:
        """The user a m.login.password submission proves to be; 403 if it proves nothing."""
        config = self._auth_config
        allowed = config.password_reauth_enabled if reauth else config.password_login_enabled
        if not (allowed and config.password_localdb_enabled):
            raise MatrixError(Codes.UNKNOWN, "Password login has been disabled.", status=400)
        password = submission.get("password")
        if not isinstance(password, str):
            raise MatrixError(Codes.INVALID_PARAM, "Bad parameter: password")
        identifier = identifier_of(submission)
        user = await self.find_user(identifier)
        failures = self._limiters.failed_attempts
        key = user.user_id.lower() if user is not None else _identifier_key(identifier)
        failures.check(key, consume=False)
        if user is None:
            failures.record(key)
            raise _invalid_credentials()
        if user.password_hash is None:
            if user.deactivated:
                raise MatrixError(Codes.USER_DEACTIVATED, "This account has been deactivated")
            failures.record(key)
            raise _invalid_credentials()
        if not await self._hasher.verify(password, user.password_hash):
            failures.record(key)
            raise _invalid_credentials()
        if user.deactivated:
            raise MatrixError(Codes.USER_DEACTIVATED, "This account has been deactivated")
        return user.user_id

    async def check_login_token(self, token: Any) -> str:
        """The user a login token was issued for, spending it; 403 if unknown, used or expired."""
        if not isinstance(token, str):
            raise MatrixError(Codes.INVALID_PARAM, "Bad parameter: token")
        user_id = await self._storage.tokens.consume_login_token(
            hash_token(token), self._clock.time_msec()
        )
        if user_id is None:
            raise MatrixError(Codes.FORBIDDEN, "Invalid login token")
        user = await self._storage.users.get_user(user_id)
        if user is None or user.deactivated:
            raise MatrixError(Codes.USER_DEACTIVATED, "This account has been deactivated")
        return user_id

    async def create_login_token(self, user_id: str) -> tuple[str, int]:
        """A single-use m.login.token for `user_id`, and how long it is valid (ms)."""
        lifetime = self._registration_config.login_token_lifetime_ms
        token = generate_token("syl", user_id)
        now = self._clock.time_msec()
        await self._storage.tokens.add_login_token(hash_token(token), user_id, now, now + lifetime)
        return token, lifetime

    async def login(self, submission: JsonDict, client_ip: str) -> LoginResult:
        """POST /login: check the credentials, then open a session on a (new) device."""
        self._limiters.address.check(client_ip)
        login_type = submission.get("type")
        if login_type == PASSWORD and self.password_login_enabled:
            user_id = await self.check_password(submission)
        elif login_type == TOKEN:
            user_id = await self.check_login_token(submission.get("token"))
        else:
            raise MatrixError(Codes.UNKNOWN, "Bad login type.", status=400)
        self._limiters.account.check(user_id.lower())
        refresh = submission.get("refresh_token", False)
        if not isinstance(refresh, bool):
            raise MatrixError(Codes.INVALID_PARAM, "'refresh_token' must be a boolean")
        return await self.open_session(
            user_id,
            check_device_id(submission.get("device_id")),
            check_device_display_name(submission.get("initial_device_display_name")),
            refreshable=refresh,
        )

    async def open_session(
        self,
        user_id: str,
        device_id: str | None,
        initial_display_name: str | None,
        *,
        refreshable: bool,
    ) -> LoginResult:
        """Tokens for a device of `user_id` (the given one, made if new, or a new one)."""
        device_id = device_id or generate_device_id()
        tokens = await self._auth.create_session(
            user_id, device_id, initial_display_name, refreshable=refreshable
        )
        return LoginResult(user_id, device_id, tokens)


class PasswordStageChecker:
    """UIA m.login.password: the submission's credentials; establishes the user ID."""

    stage_type = PASSWORD

    def __init__(self, login: LoginHandler) -> None:
        self._login = login

    def params(self) -> JsonDict | None:
        return None

    async def check(self, authdict: JsonDict, context: StageContext) -> Any:
        try:
            return await self._login.check_password(authdict, reauth=True)
        except MatrixError as e:
            if e.status == 403:
                raise StageFailed(e.errcode, e.message) from e
            raise
