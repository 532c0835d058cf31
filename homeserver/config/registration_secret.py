"""The shared secret of admin registration (`/_synapse/admin/v1/register`).

`registration_shared_secret` gives it inline; `registration_shared_secret_path`
names a file holding it (surrounding whitespace ignored). As Synapse does, a
file named by the path that does not exist yet is created with a new random
secret (readable by the owner only), so `register_new_matrix_user -c` works on
a fresh install. Without either option the endpoint is disabled.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

from homeserver.config._schema import ConfigError

SCHEMA: dict[str, Any] = {
    "registration_shared_secret": {"type": ["string", "null"], "default": None},
    "registration_shared_secret_path": {"type": ["string", "null"], "default": None},
}
REQUIRED: list[str] = []


def _read_or_create(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(36)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret


@dataclass(frozen=True, slots=True)
class RegistrationSecretConfig:
    # None when shared-secret registration is disabled.
    registration_shared_secret: str | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> RegistrationSecretConfig:
        secret = doc["registration_shared_secret"]
        path = doc["registration_shared_secret_path"]
        if path:
            if secret:
                raise ConfigError(
                    ["registration_shared_secret_path: cannot be used together with registration_shared_secret"]
                )
            full_path = resolve_path(path)
            try:
                secret = _read_or_create(full_path)
            except OSError as e:
                raise ConfigError(
                    [f"registration_shared_secret_path: cannot read or create {full_path}: {e.strerror}"]
                ) from e
            if not secret:
                raise ConfigError([f"registration_shared_secret_path: {full_path} is empty"])
        return cls(registration_shared_secret=secret or None)
