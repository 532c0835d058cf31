"""Registering accounts: POST /register (users and guests), username checks, creating users.

Spec: client-server API "Account registration" and "Guest Access". Behaviour
follows Synapse where the spec leaves a choice:

- Usernames are lower-cased, then must match the strict localpart grammar,
  not start with `_`, fit a 255-byte user ID, and not be numeric (numeric
  localparts are generated, for guests and for registrations without a
  username); 400 M_INVALID_USERNAME otherwise, 400 M_USER_IN_USE if taken.
  They are checked before the user-interactive auth starts.
- Registration runs UIA with the configured flows
  (homeserver.handlers.registration_stages.registration_flows). The password
  is never kept with the UIA session: its bcrypt hash is, so the client may
  leave it out of later calls.
- A UIA session registers one account: retrying a completed registration
  logs the same account in again instead of failing.
- An email address or phone number validated in the UIA session is bound to
  the new account (400 M_THREEPID_IN_USE, before the account is created, if
  another account has it); a registration token's pending use becomes a
  completed one.
- Guests (kind=guest, if allow_guest_access) skip UIA; a guest upgrades by
  registering with `guest_access_token` and its own localpart as username.
- Requests are limited per client address (`rc_registration`, 429
  M_LIMIT_EXCEEDED): every request is checked, and each account created
  counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.clock import Clock
from homeserver.config.registration import RegistrationConfig
from homeserver.handlers.auth import AuthHandler
from homeserver.handlers.devices import check_device_display_name, check_device_id
from homeserver.handlers.login import LoginHandler, LoginResult
from homeserver.handlers.passwords import PasswordHasher, PasswordPolicy, check_password_field
from homeserver.handlers.ratelimit import Ratelimiter
from homeserver.handlers.registration_stages import EMAIL_IDENTITY, MSISDN_STAGE, REGISTRATION_TOKEN
from homeserver.handlers.registration_tokens import SESSION_KEY as TOKEN_SESSION_KEY
from homeserver.handlers.registration_tokens import RegistrationTokenHandler
from homeserver.handlers.threepids import ThreepidHandler, ValidatedThreepid
from homeserver.handlers.ui_auth import (
    DUMMY,
    ClientInfo,
    InteractiveAuthIncomplete,
    UserInteractiveAuth,
)
from homeserver.storage.stores import Storage
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import MAX_IDENTIFIER_BYTES, InvalidIdentifier, validate_localpart

JsonDict = dict[str, Any]

# Keys of the UIA session's server-side data.
_PASSWORD_HASH = "password_hash"
_REGISTERED_USER_ID = "registered_user_id"
_GUEST_USER_ID = "guest_user_id"

_MAX_USERNAME_LENGTH = 512


@dataclass(frozen=True, slots=True)
class RegisterParams:
    """The parameters of POST /register, checked."""

    username: str | None
    password: str | None
    device_id: str | None
    initial_device_display_name: str | None
    inhibit_login: bool
    refresh_token: bool
    guest_access_token: str | None

    @classmethod
    def from_dict(cls, body: JsonDict) -> RegisterParams:
        username = body.get("username")
        if username is not None and (
            not isinstance(username, str) or len(username) > _MAX_USERNAME_LENGTH
        ):
            raise MatrixError(Codes.INVALID_PARAM, "Invalid username")
        password = body.get("password")
        if password is not None:
            password = check_password_field(password)
        guest_token = body.get("guest_access_token")
        if guest_token is not None and not isinstance(guest_token, str):
            raise MatrixError(Codes.INVALID_PARAM, "'guest_access_token' must be a string")
        flags = {}
        for key in ("inhibit_login", "refresh_token"):
            value = body.get(key, False)
            if not isinstance(value, bool):
                raise MatrixError(Codes.INVALID_PARAM, f"'{key}' must be a boolean")
            flags[key] = value
        return cls(
            username=username,
            password=password,
            device_id=check_device_id(body.get("device_id")),
            initial_device_display_name=check_device_display_name(
                body.get("initial_device_display_name")
            ),
            inhibit_login=flags["inhibit_login"],
            refresh_token=flags["refresh_token"],
            guest_access_token=guest_token,
        )


@dataclass(frozen=True, slots=True)
class RegisterResult:
    user_id: str
    # None with inhibit_login.
    login: LoginResult | None


def _invalid_username(message: str) -> MatrixError:
    return MatrixError(Codes.INVALID_USERNAME, message)


class RegistrationHandler:
    def __init__(
        self,
        server_name: str,
        clock: Clock,
        config: RegistrationConfig,
        storage: Storage,
        uia: UserInteractiveAuth,
        login: LoginHandler,
        auth: AuthHandler,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
        limiter: Ratelimiter,
        threepids: ThreepidHandler,
        tokens: RegistrationTokenHandler,
        flows: Sequence[Sequence[str]] = ((DUMMY,),),
    ) -> None:
        """`flows`: the UIA flows of registration (each stage needs a checker on `uia`)."""
        self._server_name = server_name
        self._clock = clock
        self._config = config
        self._storage = storage
        self._uia = uia
        self._login = login
        self._auth = auth
        self._hasher = hasher
        self._policy = policy
        self._limiter = limiter
        self._threepids = threepids
        self._tokens = tokens
        self.flows: list[list[str]] = [list(flow) for flow in flows]
        uia.require_stages(self.flows)

    async def check_username(self, localpart: str, *, guest_user_id: str | None = None) -> str:
        """The user ID for `localpart` if it may be registered (by the guest `guest_user_id`)."""
        if not localpart:
            raise _invalid_username("User ID cannot be empty")
        try:
            validate_localpart(localpart)
        except InvalidIdentifier:
            raise _invalid_username(
                "User ID can only contain characters a-z, 0-9, or '=_-./+'"
            ) from None
        if localpart.startswith("_"):
            raise _invalid_username("User ID may not begin with _")
        user_id = f"@{localpart}:{self._server_name}"
        if len(user_id.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
            raise _invalid_username(f"User ID may not be longer than {MAX_IDENTIFIER_BYTES} characters")
        if user_id != guest_user_id:
            if await self._storage.users.is_name_taken(user_id):
                raise MatrixError(Codes.USER_IN_USE, "User ID already taken.")
            if localpart.isdigit():
                raise _invalid_username("Numeric user IDs are reserved for guest users.")
        return user_id

    async def check_username_available(self, username: str) -> None:
        """GET /register/available."""
        if not self._config.enable_registration:
            raise MatrixError(Codes.FORBIDDEN, "Registration has been disabled")
        await self.check_username(username)

    async def register_user(
        self,
        localpart: str | None,
        *,
        password_hash: str | None = None,
        is_guest: bool = False,
        admin: bool = False,
        user_type: str | None = None,
        displayname: str | None = None,
    ) -> str:
        """Create an account (a generated numeric localpart if None); its user ID.

        For any registration path (client API, shared secret, admin API). The
        localpart is checked; its display name defaults to the localpart
        (none for guests).
        """
        now = self._clock.time_msec()
        if localpart is not None:
            user_id = await self.check_username(localpart)
            if displayname is None and not is_guest:
                displayname = localpart
            created = await self._storage.users.create_user(
                user_id,
                password_hash,
                now,
                is_guest=is_guest,
                admin=admin,
                user_type=user_type,
                displayname=displayname,
            )
            if not created:
                raise MatrixError(Codes.USER_IN_USE, "User ID already taken.")
            return user_id
        while True:
            generated = str(await self._storage.users.next_generated_localpart())
            user_id = f"@{generated}:{self._server_name}"
            created = await self._storage.users.create_user(
                user_id,
                password_hash,
                now,
                is_guest=is_guest,
                admin=admin,
                user_type=user_type,
                displayname=displayname if displayname is not None or is_guest else generated,
            )
            if created:
                return user_id

    async def register(self, kind: str, body: JsonDict, client: ClientInfo) -> RegisterResult:
        """POST /register with `kind` ("user" or "guest") and the request body."""
        self._limiter.check(client.ip, consume=False)
        if kind == "guest":
            return await self._register_guest(body, client.ip)
        if kind != "user":
            raise MatrixError(Codes.INVALID_PARAM, f"Invalid kind: {kind}")
        if not self._config.enable_registration:
            raise MatrixError(Codes.FORBIDDEN, "Registration has been disabled")
        request = RegisterParams.from_dict(body)
        if request.password is not None:
            self._policy.validate(request.password)

        session_id = self._uia.session_id_of(body)
        registered = guest_user_id = None
        if session_id is not None:
            registered = await self._uia.get_session_data(session_id, _REGISTERED_USER_ID)
            guest_user_id = await self._uia.get_session_data(session_id, _GUEST_USER_ID)
        if request.guest_access_token is not None:
            guest_user_id = await self._guest_to_upgrade(request)
        if request.username is not None and registered is None:
            await self.check_username(request.username.lower(), guest_user_id=guest_user_id)

        # Secrets never go into the session's stored parameters.
        uia_body = {k: v for k, v in body.items() if k not in ("password", "guest_access_token")}
        try:
            result = await self._uia.check(self.flows, client, uia_body, "register a new account")
        except InteractiveAuthIncomplete as incomplete:
            await self._remember(incomplete.session_id, request.password, guest_user_id)
            raise
        session_id = result.session_id
        params = RegisterParams.from_dict(result.params)

        user_id = await self._uia.get_session_data(session_id, _REGISTERED_USER_ID)
        if user_id is None:
            password_hash = await self._uia.get_session_data(session_id, _PASSWORD_HASH)
            if password_hash is None and request.password is not None:
                password_hash = await self._hasher.hash(request.password)
            if password_hash is None:
                raise MatrixError(Codes.MISSING_PARAM, "Missing params: password")
            localpart = params.username.lower() if params.username is not None else None
            threepids = await self._validated_threepids(result.completed)
            if guest_user_id is not None:
                user_id = await self._upgrade_guest(guest_user_id, localpart, password_hash)
            else:
                user_id = await self.register_user(localpart, password_hash=password_hash)
                self._limiter.record(client.ip)
            await self._uia.set_session_data(session_id, _REGISTERED_USER_ID, user_id)
            await self._after_registration(user_id, session_id, result.completed, threepids)
        if params.inhibit_login:
            return RegisterResult(user_id, None)
        login = await self._login.open_session(
            user_id,
            params.device_id,
            params.initial_device_display_name,
            refreshable=params.refresh_token,
        )
        return RegisterResult(user_id, login)

    async def _validated_threepids(self, completed: dict[str, Any]) -> list[ValidatedThreepid]:
        """The identifiers the session validated; 400 M_THREEPID_IN_USE if one is taken."""
        found = []
        for stage in (EMAIL_IDENTITY, MSISDN_STAGE):
            result = completed.get(stage)
            if not isinstance(result, dict):
                continue
            threepid = ValidatedThreepid(result["medium"], result["address"], result["validated_at"])
            if await self._threepids.user_for(threepid.medium, threepid.address) is not None:
                raise MatrixError(Codes.THREEPID_IN_USE, f"{threepid.medium} is already in use")
            found.append(threepid)
        return found

    async def _after_registration(
        self,
        user_id: str,
        session_id: str,
        completed: dict[str, Any],
        threepids: list[ValidatedThreepid],
    ) -> None:
        for threepid in threepids:
            await self._threepids.bind(user_id, threepid)
        if REGISTRATION_TOKEN in completed:
            token = await self._uia.get_session_data(session_id, TOKEN_SESSION_KEY)
            if isinstance(token, str):
                await self._tokens.complete(token)
                # The use is completed: expiring the session must not give it back.
                await self._uia.mark_stage_complete(session_id, REGISTRATION_TOKEN, True)

    async def _remember(self, session_id: str, password: str | None, guest_user_id: str | None) -> None:
        """Keep what later calls of an unfinished registration may leave out."""
        if password is not None and await self._uia.get_session_data(session_id, _PASSWORD_HASH) is None:
            await self._uia.set_session_data(
                session_id, _PASSWORD_HASH, await self._hasher.hash(password)
            )
        if guest_user_id is not None:
            await self._uia.set_session_data(session_id, _GUEST_USER_ID, guest_user_id)

    async def _guest_to_upgrade(self, request: RegisterParams) -> str:
        """The guest account whose access token the request carries, for upgrading."""
        assert request.guest_access_token is not None
        try:
            requester = await self._auth.authenticate(request.guest_access_token)
        except MatrixError:
            requester = None
        if requester is None or not requester.is_guest:
            raise MatrixError(Codes.FORBIDDEN, "Invalid guest access token")
        return requester.user_id

    async def _upgrade_guest(self, guest_user_id: str, localpart: str | None, password_hash: str) -> str:
        if localpart is None or f"@{localpart}:{self._server_name}" != guest_user_id:
            raise MatrixError(
                Codes.FORBIDDEN,
                "Cannot register taken user ID without valid guest credentials for that user.",
            )
        if not await self._storage.users.upgrade_guest(guest_user_id, password_hash):
            raise MatrixError(Codes.FORBIDDEN, "Invalid guest access token")
        await self._storage.profiles.set_field(guest_user_id, "displayname", localpart)
        return guest_user_id

    async def _register_guest(self, body: JsonDict, client_ip: str) -> RegisterResult:
        if not self._config.allow_guest_access:
            raise MatrixError(Codes.FORBIDDEN, "Guest access is disabled")
        params = RegisterParams.from_dict(body)
        user_id = await self.register_user(None, is_guest=True)
        self._limiter.record(client_ip)
        login = await self._login.open_session(
            user_id,
            params.device_id,
            params.initial_device_display_name,
            refreshable=params.refresh_token,
        )
        return RegisterResult(user_id, login)
