"""Locating and loading the shared test vectors (../shared/vectors, see VECTORS.md).

The shared folder sits next to the repository; `HOMESERVER_SHARED_DIR`
overrides its location.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from signedjson.key import decode_signing_key_base64, decode_verify_key_base64
from signedjson.types import SigningKey, VerifyKey


def shared_dir() -> Path:
    override = os.environ.get("HOMESERVER_SHARED_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared"


def vectors_dir() -> Path:
    return shared_dir() / "vectors"


@cache
def load_json(relative: str) -> Any:
    return json.loads((vectors_dir() / relative).read_text(encoding="utf-8"))


def load_ndjson(relative: str) -> list[dict[str, Any]]:
    lines = (vectors_dir() / relative).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def spec_signing_key() -> SigningKey:
    """The Ed25519 key of the spec's "Cryptographic Test Vectors" (server `domain`, `ed25519:1`)."""
    key = load_json("spec-appendix/signing-vectors.json")["key"]
    version = key["key_id"].split(":", 1)[1]
    return decode_signing_key_base64("ed25519", version, key["seed_base64"])


def matrix_org_verify_key() -> tuple[str, str, VerifyKey]:
    """matrix.org's published key that signed the tardis events: (server, key_id, key)."""
    info = load_json("tardis/expected.json")["origin_key"]
    version = info["key_id"].split(":", 1)[1]
    key = decode_verify_key_base64("ed25519", version, info["verify_key_base64"])
    return info["server_name"], info["key_id"], key
