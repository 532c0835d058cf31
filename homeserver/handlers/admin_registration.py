"""Registering an account with the shared secret (`/_synapse/admin/v1/register`).

Joins the request checks of `SharedSecretRegistration` (nonce, MAC, fields)
to the registration handler: the account is created even when public
registration is closed, as `admin` if asked, and gets a session unless the
body says `inhibit_login` (Synapse reuses its /register answer here too).
"""

from __future__ import annotations

from typing import Any

from homeserver.handlers.login import LoginHandler
from homeserver.handlers.passwords import PasswordHasher
from homeserver.handlers.registration import RegisterParams, RegisterResult, RegistrationHandler
from homeserver.handlers.shared_secret_registration import SharedSecretRegistration


class SharedSecretRegistrar:
    def __init__(
        self,
        checker: SharedSecretRegistration,
        registration: RegistrationHandler,
        login: LoginHandler,
        hasher: PasswordHasher,
    ) -> None:
        self._checker = checker
        self._registration = registration
        self._login = login
        self._hasher = hasher

    def new_nonce(self) -> str:
        """GET: a one-time nonce (400 when shared-secret registration is disabled)."""
        return self._checker.new_nonce()

    async def register(self, body: dict[str, Any]) -> RegisterResult:
        """POST: check the request, create the account, open its session."""
        request = self._checker.check_request(body)
        params = RegisterParams.from_dict(body)
        password_hash = await self._hasher.hash(request.password)
        user_id = await self._registration.register_user(
            request.localpart,
            password_hash=password_hash,
            admin=request.admin,
            user_type=request.user_type,
            displayname=request.displayname,
        )
        if params.inhibit_login:
            return RegisterResult(user_id, None)
        login = await self._login.open_session(
            user_id,
            params.device_id,
            params.initial_device_display_name,
            refreshable=params.refresh_token,
        )
        return RegisterResult(user_id, login)
