"""A running server publishes its signing keys on the federation listener."""

from __future__ import annotations

from typing import Any

from signedjson.key import encode_verify_key_base64

from homeserver.crypto.keys import get_verify_key, key_id
from homeserver.crypto.server_keys import parse_key_response


async def test_server_key_answer_is_self_signed_and_lists_the_key_file(
    homeserver: Any, client: Any
) -> None:
    response = await client.get("/_matrix/key/v2/server")
    assert response.status == 200
    now = homeserver.clock.time_msec()
    parsed = parse_key_response(response.json, homeserver.config.server.server_name, now)
    assert parsed.valid_until_ts > now
    signing_key = homeserver.signing_key
    published = response.json["verify_keys"]
    assert list(published) == [key_id(signing_key)]
    assert key_id(signing_key) in response.json["signatures"][homeserver.config.server.server_name]
    expected = encode_verify_key_base64(get_verify_key(signing_key))
    assert published[key_id(signing_key)] == {"key": expected}


async def test_notary_serves_our_own_keys(homeserver: Any, client: Any) -> None:
    server_name = homeserver.config.server.server_name
    response = await client.get(f"/_matrix/key/v2/query/{server_name}")
    assert response.status == 200
    (answer,) = response.json["server_keys"]
    assert answer["server_name"] == server_name
    assert key_id(homeserver.signing_key) in answer["verify_keys"]
