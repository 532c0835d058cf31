"""Registration tokens: the admin API's rules and the m.login.registration_token stage.

Spec: client-server API "Token-authenticated registration" (the UIA stage and
GET /_matrix/client/v1/register/m.login.registration_token/validity).
Managing tokens follows Synapse's admin API (`/_synapse/admin/v1/registration_tokens`):

- a token is 1 to 64 characters of `[A-Za-z0-9._~-]`; without one, a random
  token of `length` (default 16, at most 64) is made;
- `uses_allowed` is a non-negative integer or null (no limit), `expiry_time`
  an integer (ms since the epoch, not in the past) or null (never);
- every refusal is 400 M_INVALID_PARAM, an unknown token 404 M_NOT_FOUND.

The stage takes a pending use of the token when it passes (so a token with
one use left cannot register two accounts at once) and remembers the token in
the UIA session; the registration turns it into a completed use when it
creates the account (`complete`), and an expired session gives it back.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from homeserver.clock import Clock
from homeserver.handlers.registration_stages import REGISTRATION_TOKEN
from homeserver.handlers.ui_auth import StageContext, StageFailed, UserInteractiveAuth
from homeserver.storage.stores.registration_tokens import RegistrationToken, RegistrationTokenStore
from homeserver.types.errors import Codes, MatrixError

JsonDict = dict[str, Any]

ALLOWED_CHARACTERS = string.ascii_letters + string.digits + "._~-"
MAX_TOKEN_LENGTH = 64
DEFAULT_TOKEN_LENGTH = 16
# The UIA session data key holding the token a registration passed with.
SESSION_KEY = "registration_token"


def _invalid(message: str) -> MatrixError:
    return MatrixError(Codes.INVALID_PARAM, message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class RegistrationTokenHandler:
    def __init__(self, clock: Clock, store: RegistrationTokenStore) -> None:
        self._clock = clock
        self._store = store

    def _check_uses_allowed(self, value: Any) -> int | None:
        if value is None:
            return None
        if not _is_int(value) or not 0 <= value < 2**31:
            raise _invalid("uses_allowed must be a non-negative integer or null")
        return int(value)

    def _check_expiry_time(self, value: Any) -> int | None:
        if value is None:
            return None
        if not _is_int(value) or not -(2**63) <= value < 2**63:
            raise _invalid("expiry_time must be an integer or null")
        if value < self._clock.time_msec():
            raise _invalid("expiry_time must not be in the past")
        return int(value)

    async def create(self, body: JsonDict) -> RegistrationToken:
        """POST /_synapse/admin/v1/registration_tokens/new."""
        token = body.get("token")
        if token is not None:
            if not isinstance(token, str):
                raise _invalid("token must be a string")
            if not 0 < len(token) <= MAX_TOKEN_LENGTH:
                raise _invalid("token must not be empty and must not be longer than 64 characters")
            if not set(token) <= set(ALLOWED_CHARACTERS):
                raise _invalid("token must consist only of characters matched by the regex [A-Za-z0-9._~-]")
        else:
            length = body.get("length", DEFAULT_TOKEN_LENGTH)
            if not _is_int(length):
                raise _invalid("length must be an integer")
            if not 0 < length <= MAX_TOKEN_LENGTH:
                raise _invalid("length must be greater than zero and not greater than 64")
        uses_allowed = self._check_uses_allowed(body.get("uses_allowed"))
        expiry_time = self._check_expiry_time(body.get("expiry_time"))
        if token is None:
            while True:
                token = "".join(secrets.choice(ALLOWED_CHARACTERS) for _ in range(length))
                if await self._store.create(token, uses_allowed, expiry_time):
                    break
        elif not await self._store.create(token, uses_allowed, expiry_time):
            raise _invalid(f"Token already exists: {token}")
        return RegistrationToken(token, uses_allowed, 0, 0, expiry_time)

    async def list_tokens(self, valid: bool | None) -> list[RegistrationToken]:
        return await self._store.list_tokens(valid, self._clock.time_msec())

    async def get(self, token: str) -> RegistrationToken:
        found = await self._store.get(token)
        if found is None:
            raise MatrixError(Codes.NOT_FOUND, f"No such registration token: {token}")
        return found

    async def update(self, token: str, body: JsonDict) -> RegistrationToken:
        """PUT /_synapse/admin/v1/registration_tokens/{token}: only the keys given change."""
        changes: dict[str, int | None] = {}
        if "uses_allowed" in body:
            changes["uses_allowed"] = self._check_uses_allowed(body["uses_allowed"])
        if "expiry_time" in body:
            changes["expiry_time"] = self._check_expiry_time(body["expiry_time"])
        updated = await self._store.update(token, changes) if changes else await self._store.get(token)
        if updated is None:
            raise MatrixError(Codes.NOT_FOUND, f"No such registration token: {token}")
        return updated

    async def delete(self, token: str) -> None:
        if not await self._store.delete(token):
            raise MatrixError(Codes.NOT_FOUND, f"No such registration token: {token}")

    async def is_valid(self, token: str) -> bool:
        return await self._store.is_valid(token, self._clock.time_msec())

    async def complete(self, token: str) -> None:
        """A registration that passed the stage with `token` created its account."""
        await self._store.complete(token)


class RegistrationTokenStageChecker:
    """m.login.registration_token: `token` must be valid; takes a pending use of it."""

    stage_type = REGISTRATION_TOKEN

    def __init__(self, clock: Clock, store: RegistrationTokenStore, uia: UserInteractiveAuth) -> None:
        self._clock = clock
        self._store = store
        self._uia = uia

    def params(self) -> JsonDict | None:
        return None

    async def check(self, authdict: JsonDict, context: StageContext) -> Any:
        token = authdict.get("token")
        if token is None:
            raise MatrixError(Codes.MISSING_PARAM, "Missing registration token")
        if not isinstance(token, str):
            raise MatrixError(Codes.INVALID_PARAM, "Registration token must be a string")
        stored = await self._uia.get_session_data(context.session_id, SESSION_KEY)
        if stored is not None:
            # Passed before: don't take a second use.
            if stored != token:
                raise MatrixError(Codes.INVALID_PARAM, "Registration token has changed")
            return token
        if not await self._store.take_pending(token, self._clock.time_msec()):
            raise StageFailed(Codes.UNAUTHORIZED, "Invalid registration token")
        await self._uia.set_session_data(context.session_id, SESSION_KEY, token)
        return token
