"""Password hashing (Synapse-compatible bcrypt, off the reactor thread) and the password policy."""

from __future__ import annotations

from typing import Any

import bcrypt
import pytest

from homeserver.config.auth import PasswordPolicyConfig
from homeserver.handlers.passwords import PasswordHasher, PasswordPolicy, check_password_field
from homeserver.types.errors import MatrixError


async def test_hash_then_verify(reactor: Any) -> None:
    hasher = PasswordHasher(reactor, rounds=4, pepper="")
    stored = await hasher.hash("s3cret")
    assert stored.startswith("$2b$04$")
    assert await hasher.verify("s3cret", stored)
    assert not await hasher.verify("S3cret", stored)


async def test_hashes_are_synapses_nfkc_password_plus_pepper(reactor: Any) -> None:
    # Synapse: bcrypt.hashpw(normalize("NFKC", password) + pepper, ...)
    synapse_hash = bcrypt.hashpw("ﬁle".replace("ﬁ", "fi").encode() + b"pep", bcrypt.gensalt(4))
    hasher = PasswordHasher(reactor, rounds=4, pepper="pep")
    assert await hasher.verify("ﬁle", synapse_hash.decode())  # U+FB01 normalises to "fi"
    assert not await PasswordHasher(reactor, rounds=4, pepper="").verify("file", synapse_hash.decode())


async def test_long_passwords_use_their_first_72_bytes(reactor: Any) -> None:
    hasher = PasswordHasher(reactor, rounds=4, pepper="")
    stored = await hasher.hash("a" * 100)
    assert await hasher.verify("a" * 72 + "different tail", stored)


async def test_malformed_stored_hash_never_matches(reactor: Any) -> None:
    hasher = PasswordHasher(reactor, rounds=4, pepper="")
    assert not await hasher.verify("x", "not a bcrypt hash")
    assert not await hasher.verify("x", "é")


def policy(**rules: Any) -> PasswordPolicy:
    defaults = dict(
        enabled=True,
        minimum_length=0,
        require_digit=False,
        require_symbol=False,
        require_lowercase=False,
        require_uppercase=False,
    )
    return PasswordPolicy(PasswordPolicyConfig(**{**defaults, **rules}))


@pytest.mark.parametrize(
    ("rules", "weak", "strong"),
    [
        ({"minimum_length": 8}, "1234567", "12345678"),
        ({"require_digit": True}, "abcdef", "abc1"),
        ({"require_symbol": True}, "abc123", "abc!"),
        ({"require_lowercase": True}, "ABC", "ABc"),
        ({"require_uppercase": True}, "abc", "aBc"),
    ],
)
def test_each_policy_rule(rules: dict[str, Any], weak: str, strong: str) -> None:
    with pytest.raises(MatrixError) as info:
        policy(**rules).validate(weak)
    assert (info.value.status, info.value.errcode) == (400, "M_WEAK_PASSWORD")
    policy(**rules).validate(strong)


def test_disabled_policy_accepts_anything() -> None:
    policy(enabled=False, minimum_length=100, require_digit=True).validate("")


def test_password_field_type_and_length() -> None:
    assert check_password_field("x" * 512) == "x" * 512
    for bad in (None, 5, "x" * 513):
        with pytest.raises(MatrixError) as info:
            check_password_field(bad)
        assert info.value.errcode == "M_INVALID_PARAM"
