"""The MAC of shared-secret registration (`POST /_synapse/admin/v1/register`).

Synapse's admin API: the hex HMAC-SHA1, keyed with `registration_shared_secret`,
of the nonce, the username, the password, `admin` or `notadmin` and, when
given, the user type, each UTF-8 encoded and separated by NUL bytes. The
server and `register_new_matrix_user` both compute it here, so this module
uses the standard library only.
"""

from __future__ import annotations

import hashlib
import hmac


def registration_mac(
    shared_secret: str,
    nonce: str,
    username: str,
    password: str,
    admin: bool,
    user_type: str | None = None,
) -> str:
    """The lowercase hex MAC that proves the request was made by someone holding the secret."""
    parts = [nonce, username, password, "admin" if admin else "notadmin"]
    if user_type:
        parts.append(user_type)
    message = b"\x00".join(part.encode("utf-8") for part in parts)
    return hmac.new(shared_secret.encode("utf-8"), message, hashlib.sha1).hexdigest()


def mac_matches(expected: str, given: str) -> bool:
    """Compare MACs in constant time; a non-ASCII `given` never matches."""
    try:
        given_bytes = given.encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), given_bytes)
