"""Account changes that need the user's confirmation: new password, deactivation.

Spec: client-server API "Account management" (POST /account/password,
POST /account/deactivate). Both run user-interactive auth re-authenticating
the requester (`UserInteractiveAuth.validate_user`). As with registration,
the new password is hashed into the UIA session rather than stored with it.
Without an access token, POST /account/password is a password reset: its
UIA flow is m.login.email.identity with an address bound to the account
(requested through /account/password/email/requestToken); without email
configured it answers 401 M_MISSING_TOKEN, as nothing else could work.

Deactivation forgets the password, deletes every device and token and
unbinds every 3PID (one transaction), and with `erase` marks the account
erased and clears its profile; the account's ID is never reused. Leaving
rooms and removing pushers belong here too once those exist.

`set_password` is the admin API's way in (no UIA).
"""

from __future__ import annotations

from typing import Any

from homeserver.config.auth import AuthConfig
from homeserver.handlers.auth import Requester
from homeserver.handlers.passwords import PasswordHasher, PasswordPolicy, check_password_field
from homeserver.handlers.registration_stages import EMAIL_IDENTITY
from homeserver.handlers.threepids import ThreepidHandler
from homeserver.handlers.ui_auth import ClientInfo, InteractiveAuthIncomplete, UserInteractiveAuth
from homeserver.storage.stores import Storage
from homeserver.types.errors import Codes, MatrixError

JsonDict = dict[str, Any]

_NEW_PASSWORD_HASH = "new_password_hash"


def _bool_param(params: JsonDict, key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise MatrixError(Codes.INVALID_PARAM, f"'{key}' must be a boolean")
    return value


class AccountHandler:
    def __init__(
        self,
        storage: Storage,
        uia: UserInteractiveAuth,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
        config: AuthConfig,
        threepids: ThreepidHandler,
    ) -> None:
        self._storage = storage
        self._threepids = threepids
        self._uia = uia
        self._hasher = hasher
        self._policy = policy
        self._config = config

    async def change_password(
        self, requester: Requester | None, body: JsonDict, client: ClientInfo
    ) -> None:
        """POST /account/password."""
        if not (self._config.password_localdb_enabled and self._config.password_reauth_enabled):
            raise MatrixError(Codes.FORBIDDEN, "Password change disabled")
        if requester is None and not self._threepids.email_enabled:
            raise MatrixError(Codes.MISSING_TOKEN, "Missing access token.", status=401)
        if requester is not None and requester.is_guest:
            raise MatrixError(Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")
        new_password = body.get("new_password")
        if new_password is not None:
            new_password = check_password_field(new_password, "new_password")
            self._policy.validate(new_password)
        _bool_param(body, "logout_devices", True)

        uia_body = {key: value for key, value in body.items() if key != "new_password"}
        description = "modify your account password"
        try:
            if requester is not None:
                result = await self._uia.validate_user(requester, client, uia_body, description)
                user_id = requester.user_id
            else:
                result = await self._uia.check([[EMAIL_IDENTITY]], client, uia_body, description)
                user_id = await self._reset_target(result.completed[EMAIL_IDENTITY])
        except InteractiveAuthIncomplete as incomplete:
            if new_password is not None:
                await self._uia.set_session_data(
                    incomplete.session_id, _NEW_PASSWORD_HASH, await self._hasher.hash(new_password)
                )
            raise
        if new_password is not None:
            password_hash = await self._hasher.hash(new_password)
        else:
            password_hash = await self._uia.get_session_data(result.session_id, _NEW_PASSWORD_HASH)
        if password_hash is None:
            raise MatrixError(Codes.MISSING_PARAM, "Missing params: new_password")

        await self.set_password(
            user_id, password_hash, _bool_param(result.params, "logout_devices", True), requester
        )

    async def _reset_target(self, threepid: Any) -> str:
        """The account a password reset's validated email address is bound to."""
        user_id = await self._threepids.user_for(threepid["medium"], threepid["address"])
        if user_id is None:
            raise MatrixError(Codes.NOT_FOUND, "Email address not found")
        return user_id

    async def set_password(
        self,
        user_id: str,
        password_hash: str,
        logout_devices: bool,
        requester: Requester | None = None,
    ) -> None:
        """Set the password hash; with `logout_devices`, end every session but the requester's
        own (when the requester is the user)."""
        await self._storage.users.set_password_hash(user_id, password_hash)
        if logout_devices:
            own = requester is not None and requester.user_id == user_id
            await self._storage.devices.delete_all_devices(
                user_id, requester.device_id if own and requester else None
            )
            await self._storage.tokens.delete_tokens_for_user(
                user_id, except_token_hash=requester.access_token_id if own and requester else None
            )

    async def deactivate(self, requester: Requester, body: JsonDict, client: ClientInfo) -> str:
        """POST /account/deactivate; the `id_server_unbind_result` ("success": nothing was bound)."""
        _bool_param(body, "erase", False)
        result = await self._uia.validate_user(requester, client, body, "deactivate your account")
        erase = _bool_param(result.params, "erase", False)
        await self._storage.users.deactivate(requester.user_id, erase=erase)
        return "success"
