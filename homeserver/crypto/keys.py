"""This server's ed25519 signing keys: generating, reading and writing the key file.

The file format is Synapse's (one key per line: `ed25519 <version> <unpadded
base64 seed>`), so a signing key can move between the two servers.
"""

from __future__ import annotations

import os
import secrets
import string

from signedjson.key import (
    generate_signing_key,
    get_verify_key,
    read_signing_keys,
    write_signing_keys,
)
from signedjson.types import SigningKey, VerifyKey


class SigningKeyError(Exception):
    """The key file is missing, unreadable or malformed."""


def key_id(key: SigningKey | VerifyKey) -> str:
    """`ed25519:<version>`, the key's name in signatures and key listings."""
    return f"{key.alg}:{key.version}"


def read_signing_key_file(path: str) -> list[SigningKey]:
    """The keys in `path`, newest last as written. Raises SigningKeyError."""
    try:
        with open(path, encoding="utf-8") as f:
            keys = read_signing_keys(f)
    except OSError as e:
        raise SigningKeyError(f"{path}: cannot read the signing key: {e.strerror}") from e
    except Exception as e:  # signedjson raises ValueError/KeyError/DecodeError on bad lines
        raise SigningKeyError(f"{path}: not a valid signing key file: {e}") from e
    if not keys:
        raise SigningKeyError(f"{path}: the signing key file holds no key")
    return list(keys)


def write_new_signing_key(path: str, version: str | None = None) -> SigningKey:
    """Generate a key and write it to `path` (readable by the owner only).

    The version defaults to `a_` and four random letters or digits, as Synapse
    names its keys, so two servers' first keys are unlikely to share a name.
    """
    if version is None:
        alphabet = string.ascii_letters + string.digits
        version = "a_" + "".join(secrets.choice(alphabet) for _ in range(4))
    key = generate_signing_key(version)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        write_signing_keys(f, [key])
    return key


__all__ = [
    "SigningKeyError",
    "get_verify_key",
    "key_id",
    "read_signing_key_file",
    "write_new_signing_key",
]
