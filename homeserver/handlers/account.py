"""Account changes that need the user's confirmation: new password, deactivation.

Spec: client-server API "Account management" (POST /account/password,
POST /account/deactivate). Both run user-interactive auth re-authenticating
the requester (`UserInteractiveAuth.validate_user`). As with registration,
the new password is hashed into the UIA session rather than stored with it.
Password reset by email (no access token, m.login.email.identity) is the
3PID work's; without a token the endpoint answers 401 M_MISSING_TOKEN.

Deactivation forgets the password, deletes every device and token (one
transaction), and with `erase` marks the account erased and clears its
profile; the account's ID is never reused. Leaving rooms, removing 3PIDs and
pushers belong here too once those exist.
"""

from __future__ import annotations

from typing import Any

from homeserver.config.auth import AuthConfig
from homeserver.handlers.auth import Requester
from homeserver.handlers.passwords import PasswordHasher, PasswordPolicy, check_password_field
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
    ) -> None:
        self._storage = storage
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
        if requester is None:
            raise MatrixError(Codes.MISSING_TOKEN, "Missing access token.", status=401)
        if requester.is_guest:
            raise MatrixError(Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")
        new_password = body.get("new_password")
        if new_password is not None:
            new_password = check_password_field(new_password, "new_password")
            self._policy.validate(new_password)
        _bool_param(body, "logout_devices", True)

        uia_body = {key: value for key, value in body.items() if key != "new_password"}
        try:
            result = await self._uia.validate_user(
                requester, client, uia_body, "modify your account password"
            )
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

        await self._storage.users.set_password_hash(requester.user_id, password_hash)
        if _bool_param(result.params, "logout_devices", True):
            await self._storage.devices.delete_all_devices(requester.user_id, requester.device_id)
            await self._storage.tokens.delete_tokens_for_user(
                requester.user_id, except_token_hash=requester.access_token_id
            )

    async def deactivate(self, requester: Requester, body: JsonDict, client: ClientInfo) -> str:
        """POST /account/deactivate; the `id_server_unbind_result` ("success": nothing was bound)."""
        _bool_param(body, "erase", False)
        result = await self._uia.validate_user(requester, client, body, "deactivate your account")
        erase = _bool_param(result.params, "erase", False)
        await self._storage.users.deactivate(requester.user_id, erase=erase)
        return "success"
