"""Password options: whether passwords are used, how they are hashed, what they must look like.

Top-level keys, as Synapse names them: `bcrypt_rounds` and `password_config`
(enabled, localdb_enabled, pepper, policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA: dict[str, Any] = {
    "bcrypt_rounds": {"type": "integer", "minimum": 4, "maximum": 31, "default": 12},
    "password_config": {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": {
            "enabled": {"enum": [True, False, "only_for_reauth"], "default": True},
            "localdb_enabled": {"type": "boolean", "default": True},
            "pepper": {"type": "string", "default": ""},
            "policy": {
                "type": "object",
                "additionalProperties": False,
                "default": {},
                "properties": {
                    "enabled": {"type": "boolean", "default": False},
                    "minimum_length": {"type": "integer", "minimum": 0, "default": 0},
                    "require_digit": {"type": "boolean", "default": False},
                    "require_symbol": {"type": "boolean", "default": False},
                    "require_lowercase": {"type": "boolean", "default": False},
                    "require_uppercase": {"type": "boolean", "default": False},
                },
            },
        },
    },
}
REQUIRED: list[str] = []


@dataclass(frozen=True, slots=True)
class PasswordPolicyConfig:
    enabled: bool
    minimum_length: int
    require_digit: bool
    require_symbol: bool
    require_lowercase: bool
    require_uppercase: bool


@dataclass(frozen=True, slots=True)
class AuthConfig:
    bcrypt_rounds: int
    # Passwords are accepted by POST /login.
    password_login_enabled: bool
    # Passwords are accepted to confirm an action (user-interactive auth).
    password_reauth_enabled: bool
    # Passwords are checked against (and changed in) this server's database.
    password_localdb_enabled: bool
    # Appended to every password before hashing; changing it invalidates every hash.
    pepper: str
    policy: PasswordPolicyConfig

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> AuthConfig:
        passwords = doc["password_config"]
        policy = passwords["policy"]
        enabled = passwords["enabled"]
        return cls(
            bcrypt_rounds=doc["bcrypt_rounds"],
            password_login_enabled=enabled is True,
            password_reauth_enabled=enabled in (True, "only_for_reauth"),
            password_localdb_enabled=passwords["localdb_enabled"],
            pepper=passwords["pepper"],
            policy=PasswordPolicyConfig(
                enabled=policy["enabled"],
                minimum_length=policy["minimum_length"],
                require_digit=policy["require_digit"],
                require_symbol=policy["require_symbol"],
                require_lowercase=policy["require_lowercase"],
                require_uppercase=policy["require_uppercase"],
            ),
        )
