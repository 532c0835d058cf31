"""Server key answers: publishing ours and checking other servers'.

Spec: server-server API, "Retrieving server keys" > "Publishing Keys", and
the `valid_until_ts` rules of room versions 5+ ("Servers MUST use the lesser
of valid_until_ts and 7 days into the future").

`LocalServerKeys` holds this server's keys: the signing keys of the key file
(all of them current, published under `verify_keys`, and each signing the
answer) and the config's `old_signing_keys` (published under
`old_verify_keys`). Its answer's `valid_until_ts` is now plus
`key_refresh_interval`.

`parse_key_response` checks an answer about another server, whether fetched
from it directly or relayed by a notary: it names the server we asked about,
is signed by that server with one of the keys it lists, and says until when
its keys are valid. It works out each key's validity for the KeyRing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from signedjson.key import decode_verify_key_bytes, encode_verify_key_base64, get_verify_key
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64

from homeserver.clock import Clock
from homeserver.config.federation import OldSigningKey
from homeserver.types.canonical_json import CANONICALJSON_MAX_INT
from homeserver.types.signing import SignatureError, key_id_of, sign_json, verify_signed_by

# The longest a key may be trusted after we fetched it, whatever the answer says.
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class FetchedKey:
    """A server's public key and the last moment (ms) signatures made with it can be trusted."""

    verify_key: VerifyKey
    valid_until_ts: int


class KeyResponseError(ValueError):
    """A key answer that cannot be used; the message says why."""


class LocalServerKeys:
    """This server's signing keys, and its answer to GET /_matrix/key/v2/server."""

    def __init__(
        self,
        server_name: str,
        signing_keys: Sequence[SigningKey],
        old_signing_keys: Mapping[str, OldSigningKey],
        key_refresh_interval_ms: int,
        clock: Clock,
    ) -> None:
        if not signing_keys:
            raise ValueError("at least one signing key is needed")
        self.server_name = server_name
        self.signing_keys = tuple(signing_keys)
        self._old = dict(old_signing_keys)
        self._refresh_ms = key_refresh_interval_ms
        self._clock = clock

    @property
    def signing_key(self) -> SigningKey:
        """The key requests and events are signed with: the last one in the key file."""
        return self.signing_keys[-1]

    def verify_keys(self) -> dict[str, FetchedKey]:
        """Every key of ours by ID: current keys valid for ever, old ones until they expired."""
        keys = {
            key_id: FetchedKey(old.verify_key, old.expired_ts) for key_id, old in self._old.items()
        }
        for key in self.signing_keys:
            keys[key_id_of(key)] = FetchedKey(get_verify_key(key), CANONICALJSON_MAX_INT)
        return keys

    def sign(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `obj` signed by this server with every current key."""
        result = dict(obj)
        for key in self.signing_keys:
            result = sign_json(result, self.server_name, key)
        return result

    def server_keys_response(self) -> dict[str, Any]:
        """The signed answer to GET /_matrix/key/v2/server, valid for key_refresh_interval."""
        current = {key_id_of(key): get_verify_key(key) for key in self.signing_keys}
        old = {
            key_id: {
                "key": encode_verify_key_base64(entry.verify_key),
                "expired_ts": entry.expired_ts,
            }
            for key_id, entry in sorted(self._old.items())
            if key_id not in current
        }
        return self.sign(
            {
                "server_name": self.server_name,
                "verify_keys": {
                    key_id: {"key": encode_verify_key_base64(key)}
                    for key_id, key in current.items()
                },
                "old_verify_keys": old,
                "valid_until_ts": self._clock.time_msec() + self._refresh_ms,
            }
        )


@dataclass(frozen=True, slots=True)
class ParsedKeyResponse:
    server_name: str
    valid_until_ts: int
    """The answer's own valid_until_ts, as given."""
    keys: dict[str, FetchedKey]
    """Every ed25519 key of the answer, current and old, with the validity we grant it."""


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _decode_key(key_id: str, entry: Any, where: str) -> VerifyKey:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
        raise KeyResponseError(f"{where}.{key_id} has no 'key' string")
    try:
        return decode_verify_key_bytes(key_id, decode_base64(entry["key"]))
    except Exception:  # binascii.Error, nacl ValueError for a bad length
        raise KeyResponseError(f"{where}.{key_id} is not a base64 ed25519 public key") from None


def parse_key_response(response: Any, expected_server: str, received_ts: int) -> ParsedKeyResponse:
    """Check a /_matrix/key/v2/server answer about `expected_server`; KeyResponseError if unusable.

    Checks: a JSON object whose `server_name` is the server asked about,
    with an integer `valid_until_ts`, `verify_keys` (and optionally
    `old_verify_keys`) of well-formed keys, and a signature by that server
    with at least one of its `verify_keys`, every such signature verifying.
    Keys of other algorithms are skipped. A current key is valid until the
    lesser of `valid_until_ts` and 7 days after `received_ts`; an old key
    until its `expired_ts` (capped the same way).
    """
    if not isinstance(response, Mapping):
        raise KeyResponseError("the answer is not a JSON object")
    if response.get("server_name") != expected_server:
        raise KeyResponseError(
            f"the answer is about {response.get('server_name')!r}, not {expected_server!r}"
        )
    valid_until = response.get("valid_until_ts")
    if not _is_int(valid_until):
        raise KeyResponseError("valid_until_ts is missing or not an integer")
    verify_keys = response.get("verify_keys")
    if not isinstance(verify_keys, Mapping):
        raise KeyResponseError("verify_keys is missing or not an object")
    old_keys = response.get("old_verify_keys", {})
    if not isinstance(old_keys, Mapping):
        raise KeyResponseError("old_verify_keys is not an object")

    cap = received_ts + MAX_KEY_VALIDITY_MS
    keys: dict[str, FetchedKey] = {}
    for key_id, entry in old_keys.items():
        if not key_id.startswith("ed25519:"):
            continue
        expired_ts = entry.get("expired_ts") if isinstance(entry, Mapping) else None
        if not _is_int(expired_ts):
            raise KeyResponseError(f"old_verify_keys.{key_id} has no integer expired_ts")
        keys[key_id] = FetchedKey(
            _decode_key(key_id, entry, "old_verify_keys"), min(expired_ts, cap)
        )
    current: dict[str, VerifyKey] = {}
    for key_id, entry in verify_keys.items():
        if not key_id.startswith("ed25519:"):
            continue
        current[key_id] = _decode_key(key_id, entry, "verify_keys")
        keys[key_id] = FetchedKey(current[key_id], min(valid_until, cap))
    try:
        verify_signed_by(response, expected_server, current)
    except SignatureError as e:
        raise KeyResponseError(f"not validly self-signed: {e}") from None
    return ParsedKeyResponse(expected_server, valid_until, keys)
