"""OpenIdHandler: OpenID tokens, which let a third party learn who a user is.

Spec: client-server API "OpenID" (POST /user/{userId}/openid/request_token)
and server-server API "OpenID" (GET /_matrix/federation/v1/openid/userinfo).
A user asks for a token and hands it to a third party (an integration
manager, a widget), which exchanges it at this server for the user's ID.
As Synapse: tokens are 24 random letters, live one hour, and are accepted
any number of times until they expire.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from homeserver.clock import Clock
from homeserver.handlers.auth import Requester
from homeserver.storage.stores.openid import OpenIdStore
from homeserver.types.errors import Codes, MatrixError

TOKEN_LIFETIME_MS = 3600 * 1000
TOKEN_TYPE = "Bearer"
_TOKEN_ALPHABET = string.ascii_letters
_TOKEN_LENGTH = 24


class OpenIdHandler:
    def __init__(
        self,
        server_name: str,
        clock: Clock,
        store: OpenIdStore,
        *,
        token_lifetime_ms: int = TOKEN_LIFETIME_MS,
    ) -> None:
        self._server_name = server_name
        self._clock = clock
        self._store = store
        self._lifetime_ms = token_lifetime_ms

    async def request_token(self, requester: Requester, user_id: str) -> dict[str, Any]:
        """A new token for the requester; 403 M_FORBIDDEN if `user_id` is someone else."""
        if user_id != requester.user_id:
            raise MatrixError(Codes.FORBIDDEN, "Cannot request tokens for other users.")
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_LENGTH))
        now_ms = self._clock.time_msec()
        await self._store.insert_token(token, user_id, now_ms + self._lifetime_ms, now_ms)
        return {
            "access_token": token,
            "token_type": TOKEN_TYPE,
            "matrix_server_name": self._server_name,
            "expires_in": self._lifetime_ms // 1000,
        }

    async def get_user_for_token(self, token: str) -> str:
        """The user a token was issued to; 401 M_UNKNOWN_TOKEN if unknown or expired."""
        user_id = await self._store.get_user_for_token(token, self._clock.time_msec())
        if user_id is None:
            raise MatrixError(Codes.UNKNOWN_TOKEN, "Access Token unknown or expired")
        return user_id
