"""A real client library, matrix-nio, against a server on 127.0.0.1 (both database engines).

nio runs its own asyncio loop in a worker thread while the server answers on
the test's Twisted reactor. nio registers, logs in with a password, lists and
renames devices, refreshes its token and logs out. nio has no call for
refresh tokens, so that step goes through nio's own HTTP session
(`AsyncClient.send`) and `restore_login`, as an application using nio would.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from twisted.internet import threads

PASSWORD = "nio password 1"


async def _scenario(base_url: str) -> dict[str, Any]:
    import nio

    seen: dict[str, Any] = {}
    registering = nio.AsyncClient(base_url, "nico")
    try:
        registered = await registering.register("nico", PASSWORD, device_name="nio register")
        assert isinstance(registered, nio.RegisterResponse), registered
        seen["registered"] = registered.user_id
    finally:
        await registering.close()

    client = nio.AsyncClient(base_url, "nico")
    try:
        login = await client.login(PASSWORD, device_name="nio login")
        assert isinstance(login, nio.LoginResponse), login
        seen["login_device"] = login.device_id

        devices = await client.devices()
        assert isinstance(devices, nio.DevicesResponse), devices
        seen["devices"] = sorted(d.display_name for d in devices.devices)
        renamed = await client.update_device(login.device_id, {"display_name": "renamed by nio"})
        assert isinstance(renamed, nio.UpdateDeviceResponse), renamed
        devices = await client.devices()
        assert isinstance(devices, nio.DevicesResponse)
        seen["renamed"] = sorted(d.display_name for d in devices.devices)

        # A refreshable session, then one refresh.
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "nico"},
            "password": PASSWORD,
            "refresh_token": True,
        }
        response = await client.send("POST", "/_matrix/client/v3/login", json.dumps(body))
        session = await response.json()
        old_token = session["access_token"]
        response = await client.send(
            "POST", "/_matrix/client/v3/refresh", json.dumps({"refresh_token": session["refresh_token"]})
        )
        refreshed = await response.json()
        seen["refresh_status"] = response.status
        client.restore_login(session["user_id"], session["device_id"], refreshed["access_token"])
        whoami = await client.whoami()
        assert isinstance(whoami, nio.WhoamiResponse), whoami
        seen["whoami"] = (whoami.user_id, whoami.device_id)
        seen["new_token_differs"] = refreshed["access_token"] != old_token

        logout = await client.logout()
        assert isinstance(logout, nio.LogoutResponse), logout
        after = await client.whoami()
        seen["after_logout"] = getattr(after, "status_code", None)
    finally:
        await client.close()
    return seen


async def test_nio_registers_logs_in_manages_devices_refreshes_and_logs_out(
    homeserver_factory: Any,
) -> None:
    hs = await homeserver_factory.start()
    base_url = homeserver_factory.client(hs).base_url
    seen = await threads.deferToThread(asyncio.run, _scenario(base_url))
    assert seen["registered"] == "@nico:test"
    assert seen["devices"] == ["nio login", "nio register"]
    assert seen["renamed"] == ["nio register", "renamed by nio"]
    assert seen["refresh_status"] == 200 and seen["new_token_differs"]
    assert seen["whoami"][0] == "@nico:test"
    assert seen["after_logout"] == "M_UNKNOWN_TOKEN"
    devices = await hs.storage.devices.get_devices("@nico:test")
    assert sorted(d.display_name for d in devices) == ["nio register", "renamed by nio"]
