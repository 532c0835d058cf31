"""OpenID: POST /user/{userId}/openid/request_token, then GET /_matrix/federation/v1/openid/userinfo."""

from __future__ import annotations

from urllib.parse import quote

from homeserver.handlers.openid import TOKEN_LIFETIME_MS
from homeserver.server import HomeServer
from homeserver.storage.stores.openid import hash_token
from tests.homeserver_harness import HomeServerFactory, TestClient
from tests.room_helpers import register

USERINFO = "/_matrix/federation/v1/openid/userinfo"


def request_token_path(user_id: str) -> str:
    return f"/user/{quote(user_id, safe='')}/openid/request_token"


async def _userinfo(client: TestClient, token: str) -> tuple[int, dict[str, str]]:
    response = await client.get(USERINFO, query={"access_token": token})
    return response.status, response.json


async def test_a_token_stands_for_its_user_until_it_expires(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    response = await client.post(request_token_path(alice.user_id), {}, token=alice.access_token)
    assert response.status == 200, response
    answer = response.json
    assert answer["token_type"] == "Bearer"
    assert answer["matrix_server_name"] == "test"
    assert answer["expires_in"] == 3600
    token = answer["access_token"]
    assert isinstance(token, str) and len(token) >= 20

    # The third party asks, with no X-Matrix signature, as often as it likes.
    assert await _userinfo(client, token) == (200, {"sub": "@alice:test"})
    assert await _userinfo(client, token) == (200, {"sub": "@alice:test"})
    # Not the user's access token, nor an OpenID token the other way round.
    status, body = await _userinfo(client, alice.access_token)
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    response = await client.get("/account/whoami", token=token)
    assert response.status == 401

    homeserver.clock.advance(TOKEN_LIFETIME_MS / 1000 - 1)
    assert await _userinfo(client, token) == (200, {"sub": "@alice:test"})
    homeserver.clock.advance(1)
    status, body = await _userinfo(client, token)
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


async def test_each_request_makes_a_new_token(client: TestClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    tokens = []
    for user in (alice, alice, bob):
        response = await client.post(request_token_path(user.user_id), {}, token=user.access_token)
        tokens.append(response.json["access_token"])
    assert len(set(tokens)) == 3
    assert [(await _userinfo(client, t))[1]["sub"] for t in tokens] == [
        alice.user_id,
        alice.user_id,
        bob.user_id,
    ]


async def test_expired_tokens_are_cleared_when_new_ones_are_issued(
    homeserver: HomeServer, client: TestClient
) -> None:
    alice = await register(client, "alice")
    path = request_token_path(alice.user_id)
    await client.post(path, {}, token=alice.access_token)
    homeserver.clock.advance(TOKEN_LIFETIME_MS / 1000)
    fresh = (await client.post(path, {}, token=alice.access_token)).json["access_token"]

    def count_txn(txn: object) -> list[str]:
        txn.execute("SELECT token FROM openid_tokens")  # type: ignore[attr-defined]
        return [row[0] for row in txn.fetchall()]  # type: ignore[attr-defined]

    # Only the new token is left, and it is stored hashed, never as issued.
    assert await homeserver.database.run_interaction("openid_tokens", count_txn) == [
        hash_token(fresh)
    ]


async def test_who_may_ask_for_a_token(homeserver_factory: HomeServerFactory) -> None:
    hs = await homeserver_factory.start(allow_guest_access=True)
    client = homeserver_factory.client(hs)
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    # Only for oneself.
    response = await client.post(request_token_path(bob.user_id), {}, token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")
    response = await client.post(request_token_path(alice.user_id), {})
    assert (response.status, response.json["errcode"]) == (401, "M_MISSING_TOKEN")
    guest = await client.register_guest()
    response = await client.post(
        request_token_path(guest["user_id"]), {}, token=guest["access_token"]
    )
    assert (response.status, response.json["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    response = await client.post(request_token_path(alice.user_id), [], token=alice.access_token)
    assert (response.status, response.json["errcode"]) == (400, "M_BAD_JSON")


async def test_userinfo_without_a_token(client: TestClient) -> None:
    response = await client.get(USERINFO)
    assert (response.status, response.json["errcode"]) == (401, "M_MISSING_TOKEN")
    status, body = await _userinfo(client, "unknown")
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
