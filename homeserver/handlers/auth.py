"""Access tokens: who a request is from (`Requester`), issuing tokens, refreshing them.

Spec: client-server API "Client Authentication" ("Using access tokens",
"Refreshing access tokens", "Soft logout"). Tokens look like Synapse's
(`syt_<base64 localpart>_<random>_<crc>` for access tokens, `syr_` for
refresh tokens, `syl_` for login tokens) so operators recognise them in
reports, but only their SHA-256 is stored. Authenticating a token:

- unknown (never issued, logged out, device deleted, account deactivated):
  401 M_UNKNOWN_TOKEN with soft_logout false;
- expired (valid_until_ms passed): 401 M_UNKNOWN_TOKEN with soft_logout true,
  so the client refreshes or logs in again keeping its device;
- otherwise a `Requester`, and the request is noted for last-seen tracking.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
import zlib
from dataclasses import dataclass

from homeserver.clock import Clock
from homeserver.config.registration import RegistrationConfig
from homeserver.handlers.client_ips import ClientIpTracker
from homeserver.storage.stores import Storage
from homeserver.storage.stores.tokens import NewAccessToken, NewRefreshToken, RefreshOutcome
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import parse_user_id

_ALPHABET = string.ascii_letters + string.digits
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


@dataclass(frozen=True, slots=True)
class Requester:
    """Who made an authenticated request."""

    user_id: str
    device_id: str | None
    is_guest: bool
    # The hash of the access token used: identifies the session without the secret.
    access_token_id: str | None


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A new access token, with its refresh token and lifetime when refreshable."""

    access_token: str
    refresh_token: str | None
    expires_in_ms: int | None


def hash_token(token: str) -> str:
    """The form in which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _base62(n: int, width: int) -> str:
    digits = ""
    while n:
        n, rem = divmod(n, 62)
        digits = _BASE62[rem] + digits
    return digits.rjust(width, "0")


def generate_token(prefix: str, user_id: str) -> str:
    """`<prefix>_<base64 localpart>_<20 random characters>_<crc32 in base62>`."""
    localpart = parse_user_id(user_id).localpart
    encoded = base64.urlsafe_b64encode(localpart.encode("utf-8")).decode("ascii").rstrip("=")
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(20))
    base = f"{prefix}_{encoded}_{random_part}"
    return f"{base}_{_base62(zlib.crc32(base.encode('ascii')), 6)}"


def _unknown_token(message: str = "Invalid access token passed.", *, soft_logout: bool = False) -> MatrixError:
    return MatrixError(Codes.UNKNOWN_TOKEN, message, status=401, soft_logout=soft_logout)


class AuthHandler:
    def __init__(
        self,
        clock: Clock,
        storage: Storage,
        client_ips: ClientIpTracker,
        config: RegistrationConfig,
    ) -> None:
        self._clock = clock
        self._storage = storage
        self._client_ips = client_ips
        self._config = config

    async def authenticate(
        self, token: str, ip: str | None = None, user_agent: str | None = None
    ) -> Requester:
        """The requester an access token stands for; 401 M_UNKNOWN_TOKEN if it stands for none.

        With `ip`, the request counts as the device's latest (last-seen tracking).
        """
        token_hash = hash_token(token)
        now = self._clock.time_msec()
        info = await self._storage.tokens.lookup_access_token(token_hash, now)
        if info is None or info.deactivated:
            raise _unknown_token()
        if info.valid_until_ms is not None and info.valid_until_ms <= now:
            raise _unknown_token("Access token has expired", soft_logout=True)
        if ip is not None:
            self._client_ips.record(info.user_id, info.device_id, token_hash, ip, user_agent)
        return Requester(
            user_id=info.user_id,
            device_id=info.device_id,
            is_guest=info.is_guest,
            access_token_id=token_hash,
        )

    def _new_pair(
        self, user_id: str, refreshable: bool
    ) -> tuple[IssuedTokens, NewAccessToken, NewRefreshToken | None]:
        now = self._clock.time_msec()
        access_token = generate_token("syt", user_id)
        if refreshable:
            lifetime: int | None = self._config.refreshable_access_token_lifetime_ms
            refresh_token: str | None = generate_token("syr", user_id)
        else:
            lifetime = self._config.nonrefreshable_access_token_lifetime_ms
            refresh_token = None
        valid_until = None if lifetime is None else now + lifetime
        access = NewAccessToken(hash_token(access_token), valid_until)
        refresh = None
        if refresh_token is not None:
            refresh_lifetime = self._config.refresh_token_lifetime_ms
            refresh = NewRefreshToken(
                hash_token(refresh_token),
                None if refresh_lifetime is None else now + refresh_lifetime,
            )
        return IssuedTokens(access_token, refresh_token, lifetime), access, refresh

    async def create_session(
        self,
        user_id: str,
        device_id: str,
        initial_display_name: str | None,
        *,
        refreshable: bool,
    ) -> IssuedTokens:
        """Tokens for `device_id` of `user_id`, creating the device if it is new."""
        issued, access, refresh = self._new_pair(user_id, refreshable)
        await self._storage.devices.add_session(
            user_id, device_id, initial_display_name, self._clock.time_msec(), access, refresh
        )
        return issued

    async def refresh(self, refresh_token: str) -> IssuedTokens:
        """POST /refresh: a new pair for a refresh token (spec: "Refreshing access tokens")."""
        token_hash = hash_token(refresh_token)
        current = await self._storage.tokens.get_refresh_token(token_hash)
        if current is None:
            raise _unknown_token("Unknown or already used refresh token")
        issued, access, refresh = self._new_pair(current.user_id, refreshable=True)
        assert refresh is not None
        outcome, _ = await self._storage.tokens.refresh(
            token_hash, self._clock.time_msec(), access, refresh
        )
        if outcome is RefreshOutcome.UNKNOWN:
            raise _unknown_token("Unknown or already used refresh token")
        if outcome is RefreshOutcome.EXPIRED:
            raise _unknown_token("The refresh token has expired", soft_logout=True)
        return issued

    async def logout_token(self, requester: Requester) -> None:
        """Forget the access token of a request that has no device."""
        if requester.access_token_id is not None:
            await self._storage.tokens.delete_access_token(requester.access_token_id)
