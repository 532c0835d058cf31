"""Token formats and hashing (homeserver.handlers.auth)."""

from __future__ import annotations

import base64
import zlib

from homeserver.handlers.auth import _base62, generate_token, hash_token


def test_tokens_have_synapses_shape_and_checksum() -> None:
    token = generate_token("syt", "@alice:example.com")
    prefix, localpart, random_part, crc = token.split("_")
    assert prefix == "syt"
    assert base64.urlsafe_b64decode(localpart + "==") == b"alice"
    assert len(random_part) == 20
    assert crc == _base62(zlib.crc32(f"{prefix}_{localpart}_{random_part}".encode()), 6)
    assert generate_token("syt", "@alice:example.com") != token


def test_only_hashes_are_stored() -> None:
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
