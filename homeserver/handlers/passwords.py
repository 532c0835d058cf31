"""Password hashing (bcrypt, off the reactor thread) and the password policy.

Hashes are Synapse's: bcrypt over the NFKC-normalised password followed by the
configured pepper, so a database carried over from Synapse keeps working.
bcrypt only reads the first 72 bytes of its input; bcrypt 5 refuses longer
inputs instead of ignoring the rest, so the input is cut to 72 bytes here, as
older bcrypt (and therefore Synapse's stored hashes) did.

bcrypt is deliberately slow (about 0.25 s at 12 rounds), so hashing and
checking run on the reactor's thread pool, never on the reactor thread.
"""

from __future__ import annotations

import string
import unicodedata
from typing import Any

import bcrypt
from twisted.internet import threads

from homeserver.config.auth import PasswordPolicyConfig
from homeserver.types.errors import Codes, MatrixError

# bcrypt's input limit.
_BCRYPT_MAX_BYTES = 72
# Longer passwords are refused outright (as Synapse does) rather than hashed.
MAX_PASSWORD_LENGTH = 512


class PasswordHasher:
    def __init__(self, reactor: Any, rounds: int, pepper: str) -> None:
        self._reactor = reactor
        self._rounds = rounds
        self._pepper = pepper

    def _secret(self, password: str) -> bytes:
        normalised = unicodedata.normalize("NFKC", password)
        return (normalised + self._pepper).encode("utf-8")[:_BCRYPT_MAX_BYTES]

    async def hash(self, password: str) -> str:
        """A new bcrypt hash of `password`."""
        secret = self._secret(password)

        def work() -> str:
            return bcrypt.hashpw(secret, bcrypt.gensalt(self._rounds)).decode("ascii")

        return await threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), work)

    async def verify(self, password: str, stored_hash: str) -> bool:
        """Whether `password` matches `stored_hash`; False for a malformed hash."""
        secret = self._secret(password)

        def work() -> bool:
            try:
                return bool(bcrypt.checkpw(secret, stored_hash.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                return False

        return await threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), work)


class PasswordPolicy:
    """Checks new passwords against `password_config.policy` (M_WEAK_PASSWORD)."""

    def __init__(self, config: PasswordPolicyConfig) -> None:
        self._config = config

    def validate(self, password: str) -> None:
        """Raise 400 M_WEAK_PASSWORD naming the first rule `password` breaks."""
        policy = self._config
        if not policy.enabled:
            return
        if len(password) < policy.minimum_length:
            self._refuse(f"The password must be at least {policy.minimum_length} characters long")
        if policy.require_digit and not any(c.isdigit() for c in password):
            self._refuse("The password must include at least one digit")
        if policy.require_symbol and not any(_is_symbol(c) for c in password):
            self._refuse("The password must include at least one symbol")
        if policy.require_uppercase and not any(c.isupper() for c in password):
            self._refuse("The password must include at least one uppercase letter")
        if policy.require_lowercase and not any(c.islower() for c in password):
            self._refuse("The password must include at least one lowercase letter")

    @staticmethod
    def _refuse(message: str) -> None:
        raise MatrixError(Codes.WEAK_PASSWORD, message)


def _is_symbol(c: str) -> bool:
    return c in string.punctuation or not (c.isalnum() or c.isspace())


def check_password_field(password: Any, name: str = "password") -> str:
    """`password` if it is a string of acceptable length; 400 otherwise."""
    if not isinstance(password, str):
        raise MatrixError(Codes.INVALID_PARAM, f"{name} must be a string")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise MatrixError(
            Codes.INVALID_PARAM, f"{name} is too long (max {MAX_PASSWORD_LENGTH} characters)"
        )
    return password
