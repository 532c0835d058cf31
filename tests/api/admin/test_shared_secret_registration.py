"""GET/POST /_synapse/admin/v1/register on a real server, and register_new_matrix_user against it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet import threads

from homeserver.handlers.admin_register_mac import registration_mac
from tests.homeserver_harness import TestClient

PATH = "/_synapse/admin/v1/register"
SECRET = "a shared secret"
REPO = Path(__file__).resolve().parents[3]


async def _register(client: TestClient, username: str, password: str, admin: bool, **extra: Any) -> Any:
    nonce = (await client.get(PATH)).json["nonce"]
    mac = registration_mac(SECRET, nonce, username, password, admin)
    body = {"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac}
    return await client.post(PATH, {**body, **extra})


async def test_register_with_the_shared_secret(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(registration_shared_secret=SECRET, enable_registration=False)
    client = homeserver_factory.client(hs)
    response = await _register(client, "Boss", "pw", True, displayname="The Boss")
    assert response.status == 200, response
    assert response.json["user_id"] == "@boss:test"
    token = response.json["access_token"]
    assert (await client.get("/_synapse/admin/v1/server_version", token=token)).status == 200
    profile = await client.get("/profile/@boss:test")
    assert profile.json["displayname"] == "The Boss"

    taken = await _register(client, "boss", "pw", False)
    assert (taken.status, taken.json["errcode"]) == (400, "M_USER_IN_USE")
    invalid = await _register(client, "bad name", "pw", False)
    assert (invalid.status, invalid.json["errcode"]) == (400, "M_INVALID_USERNAME")
    inhibited = await _register(client, "quiet", "pw", False, inhibit_login=True)
    assert inhibited.json == {"user_id": "@quiet:test", "home_server": "test"}

    nonce = (await client.get(PATH)).json["nonce"]
    wrong = await client.post(
        PATH, {"nonce": nonce, "username": "x", "password": "y", "mac": "00" * 20}
    )
    assert (wrong.status, wrong.json["errcode"]) == (403, "M_FORBIDDEN")
    reused = await client.post(
        PATH, {"nonce": nonce, "username": "x", "password": "y", "mac": "00" * 20}
    )
    assert reused.status == 400


async def test_disabled_without_a_secret(client: TestClient) -> None:
    assert (await client.get(PATH)).status == 400
    response = await client.post(PATH, {"nonce": "x"})
    assert response.status == 400


async def test_register_new_matrix_user_against_a_running_server(homeserver_factory: Any) -> None:
    hs = await homeserver_factory.start(registration_shared_secret=SECRET)
    client = homeserver_factory.client(hs)
    command = [
        sys.executable, str(REPO / "scripts" / "register_new_matrix_user"),
        "-k", SECRET, "-u", "opal", "-p", "opal password", "--admin", client.base_url,
    ]
    # The server runs on this thread's reactor: the script waits in another thread.
    result = await threads.deferToThread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    assert "Success!" in result.stdout
    user = await hs.storage.users.get_user("@opal:test")
    assert user is not None and user.admin
    await client.login("opal", "opal password")
