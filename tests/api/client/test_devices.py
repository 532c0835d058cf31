"""Device management: listing, last seen, renaming, deleting with user-interactive auth."""

from __future__ import annotations

from typing import Any

from tests.homeserver_harness import TestClient


async def test_list_and_get_devices_with_last_seen(homeserver: Any, client: TestClient) -> None:
    alice = await client.register("alice", initial_device_display_name="Phone")
    token = alice["access_token"]
    # Seen before the batch is written: merged from memory...
    listed = (await client.get("/devices", token=token, headers={"User-Agent": "Agent/2"})).json[
        "devices"
    ]
    assert len(listed) == 1
    device = listed[0]
    assert device["device_id"] == alice["device_id"]
    assert device["display_name"] == "Phone"
    assert device["last_seen_ip"] == "127.0.0.1"
    assert isinstance(device["last_seen_ts"], int)
    assert device["last_seen_user_agent"] == "Agent/2"
    # ... and after it is written, from the database.
    await homeserver.client_ips.flush()
    stored = await homeserver.storage.devices.get_device("@alice:test", alice["device_id"])
    assert stored.last_seen_ip == "127.0.0.1"
    assert stored.last_seen_user_agent == "Agent/2"
    one = await client.get(f"/devices/{alice['device_id']}", token=token)
    assert one.json["device_id"] == alice["device_id"]
    missing = await client.get("/devices/NOPE", token=token)
    assert (missing.status, missing.json["errcode"]) == (404, "M_NOT_FOUND")


async def test_devices_are_per_user(client: TestClient) -> None:
    alice = await client.register("alice")
    bob = await client.register("bob")
    response = await client.get(f"/devices/{alice['device_id']}", token=bob["access_token"])
    assert response.status == 404
    rename = await client.put(
        f"/devices/{alice['device_id']}", {"display_name": "x"}, token=bob["access_token"]
    )
    assert rename.status == 404


async def test_rename_device(client: TestClient) -> None:
    alice = await client.register("alice")
    path, token = f"/devices/{alice['device_id']}", alice["access_token"]
    assert (await client.put(path, {"display_name": "Laptop"}, token=token)).json == {}
    assert (await client.get(path, token=token)).json["display_name"] == "Laptop"
    assert (await client.put(path, {}, token=token)).status == 200
    assert (await client.get(path, token=token)).json["display_name"] == "Laptop"
    too_long = await client.put(path, {"display_name": "x" * 101}, token=token)
    assert (too_long.status, too_long.json["errcode"]) == (400, "M_TOO_LARGE")
    wrong_type = await client.put(path, {"display_name": 3}, token=token)
    assert wrong_type.json["errcode"] == "M_INVALID_PARAM"
    unknown = await client.put("/devices/NOPE", {"display_name": "x"}, token=token)
    assert (unknown.status, unknown.json["errcode"]) == (404, "M_NOT_FOUND")


async def test_delete_device_needs_the_password(client: TestClient) -> None:
    alice = await client.register("alice")
    phone = await client.login("alice")
    path, token = f"/devices/{phone['device_id']}", alice["access_token"]

    challenge = await client.delete(path, token=token)  # no body at all
    assert challenge.status == 401
    assert challenge.json["flows"] == [{"stages": ["m.login.password"]}]
    session = challenge.json["session"]

    wrong = client.password_auth("@alice:test", session, password="wrong")
    failed = await client.delete(path, {"auth": wrong}, token=token)
    assert failed.status == 401
    assert failed.json["errcode"] == "M_FORBIDDEN"
    assert failed.json["session"] == session and failed.json["completed"] == []
    assert (await client.get("/account/whoami", token=phone["access_token"])).status == 200

    done = await client.delete(path, {"auth": client.password_auth("@alice:test", session)}, token=token)
    assert done.status == 200, done
    assert (await client.get("/account/whoami", token=phone["access_token"])).status == 401
    assert (await client.get(path, token=token)).status == 404


async def test_another_users_password_does_not_confirm(client: TestClient) -> None:
    alice = await client.register("alice")
    await client.register("bob")
    response = await client.delete(
        f"/devices/{alice['device_id']}",
        {"auth": client.password_auth("@bob:test")},
        token=alice["access_token"],
    )
    assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN")


async def test_delete_devices_in_bulk(client: TestClient) -> None:
    alice = await client.register("alice")
    one = await client.login("alice")
    two = await client.login("alice")
    token = alice["access_token"]
    body = {"devices": [one["device_id"], two["device_id"], "UNKNOWN"]}
    challenge = await client.post("/delete_devices", body, token=token)
    assert challenge.status == 401
    done = await client.post(
        "/delete_devices",
        {**body, "auth": client.password_auth("alice", challenge.json["session"])},
        token=token,
    )
    assert done.status == 200, done
    listed = (await client.get("/devices", token=token)).json["devices"]
    assert [d["device_id"] for d in listed] == [alice["device_id"]]
    missing = await client.post("/delete_devices", {}, token=token)
    assert (missing.status, missing.json["errcode"]) == (400, "M_MISSING_PARAM")
    bad = await client.post("/delete_devices", {"devices": [1]}, token=token)
    assert bad.json["errcode"] == "M_INVALID_PARAM"
