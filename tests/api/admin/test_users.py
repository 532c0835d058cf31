"""The user admin API at Synapse's paths: list, query, create/modify, deactivate, reset
password, devices, server version; and 403 M_FORBIDDEN for everyone but admins."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.homeserver_harness import TestClient, make_admin

V2 = "/_synapse/admin/v2/users"


def user_path(user_id: str, suffix: str = "") -> str:
    return f"{V2}/{quote(user_id)}{suffix}"


async def _setup(homeserver_factory: Any, **overrides: Any) -> tuple[Any, TestClient, str]:
    hs = await homeserver_factory.start(allow_guest_access=True, **overrides)
    client = homeserver_factory.client(hs)
    return hs, client, await make_admin(hs, client)


async def test_every_admin_endpoint_refuses_non_admins(homeserver_factory: Any) -> None:
    hs, client, admin = await _setup(homeserver_factory)
    user = (await client.register("usr"))["access_token"]
    guest = (await client.register_guest())["access_token"]
    requests = [
        ("GET", V2, None),
        ("GET", user_path("@usr:test"), None),
        ("PUT", user_path("@new:test"), {"password": "x"}),
        ("GET", user_path("@usr:test", "/devices"), None),
        ("POST", "/_synapse/admin/v1/deactivate/%40usr%3Atest", {}),
        ("POST", "/_synapse/admin/v1/reset_password/%40usr%3Atest", {"new_password": "x"}),
        ("GET", "/_synapse/admin/v1/server_version", None),
        ("GET", "/_synapse/admin/v1/registration_tokens", None),
        ("POST", "/_synapse/admin/v1/registration_tokens/new", {}),
        ("GET", "/_synapse/admin/v1/registration_tokens/abc", None),
        ("PUT", "/_synapse/admin/v1/registration_tokens/abc", {}),
        ("DELETE", "/_synapse/admin/v1/registration_tokens/abc", None),
    ]
    for method, path, body in requests:
        for token in (user, guest):
            response = await client.request(method, path, body, token=token)
            assert (response.status, response.json["errcode"]) == (403, "M_FORBIDDEN"), path
        missing = await client.request(method, path, body)
        assert (missing.status, missing.json["errcode"]) == (401, "M_MISSING_TOKEN"), path
    version = await client.get("/_synapse/admin/v1/server_version", token=admin)
    assert isinstance(version.json["server_version"], str)


async def test_list_filters_and_pages(homeserver_factory: Any) -> None:
    hs, client, admin = await _setup(homeserver_factory)
    for name in ("alice", "bob", "carol"):
        await client.register(name)
    await client.put(
        "/profile/@bob:test/displayname", {"displayname": "Bobby 100%"},
        token=(await client.login("bob"))["access_token"],
    )
    guest = await client.register_guest()
    gone = await client.register("gone")
    await client.post(
        f"/_synapse/admin/v1/deactivate/{quote(gone['user_id'])}", {"erase": True}, token=admin
    )

    everyone = (await client.get(V2, token=admin)).json
    names = [u["name"] for u in everyone["users"]]
    assert names == sorted(names) and "@gone:test" not in names and guest["user_id"] in names
    assert everyone["total"] == len(names) == 5 and "next_token" not in everyone
    alice = next(u for u in everyone["users"] if u["name"] == "@alice:test")
    assert alice["displayname"] == "alice" and alice["admin"] is False
    assert alice["creation_ts"] > 10**12  # milliseconds in the list, as Synapse

    page = (await client.get(V2, query={"from": "1", "limit": "2"}, token=admin)).json
    assert [u["name"] for u in page["users"]] == names[1:3]
    assert page["next_token"] == "3" and page["total"] == 5
    cases = [
        ({"guests": "false"}, 4),
        ({"deactivated": "true"}, 6),
        ({"admins": "true"}, 1),
        ({"name": "BOBBY 100%"}, 1),
        ({"name": "%"}, 1),
        ({"user_id": "o"}, 3),
    ]
    for query, total in cases:
        assert (await client.get(V2, query=query, token=admin)).json["total"] == total, query
    backwards = await client.get(V2, query={"order_by": "creation_ts", "dir": "b"}, token=admin)
    assert backwards.json["users"][0]["name"] == guest["user_id"]
    for query in ({"from": "-1"}, {"limit": "x"}, {"guests": "yes"}, {"order_by": "nope"}, {"dir": "x"}):
        bad = await client.get(V2, query=query, token=admin)
        assert (bad.status, bad.json["errcode"]) == (400, "M_INVALID_PARAM"), query


async def test_create_query_and_modify_a_user(homeserver_factory: Any) -> None:
    hs, client, admin = await _setup(homeserver_factory)
    created = await client.put(
        user_path("@dora:test"),
        {
            "password": "pw one",
            "displayname": "Dora",
            "admin": False,
            "threepids": [{"medium": "email", "address": "Dora@Example.org"}],
            "user_type": "bot",
        },
        token=admin,
    )
    assert created.status == 201, created
    user = created.json
    assert (user["name"], user["displayname"], user["user_type"]) == ("@dora:test", "Dora", "bot")
    assert [t["address"] for t in user["threepids"]] == ["dora@example.org"]
    assert user["creation_ts"] < 10**11  # seconds here, as Synapse
    session = await client.login("dora", "pw one")

    modified = await client.put(
        user_path("@dora:test"),
        {
            "password": "pw two",
            "logout_devices": False,
            "displayname": "Dora E.",
            "admin": True,
            "threepids": [{"medium": "msisdn", "address": "447700900123"}],
        },
        token=admin,
    )
    assert modified.status == 200, modified
    assert modified.json["admin"] is True and modified.json["displayname"] == "Dora E."
    assert [t["medium"] for t in modified.json["threepids"]] == ["msisdn"]
    assert (await client.get("/account/whoami", token=session["access_token"])).status == 200
    await client.login("dora", "pw two")
    # Login by phone number: country and number normalised to the msisdn.
    phone = await client.post(
        "/login",
        {
            "type": "m.login.password",
            "password": "pw two",
            "identifier": {"type": "m.id.phone", "country": "GB", "phone": "07700 900123"},
        },
    )
    assert phone.status == 200 and phone.json["user_id"] == "@dora:test"
    bad_phone = await client.post(
        "/login",
        {"type": "m.login.password", "password": "x", "identifier": {"type": "m.id.phone"}},
    )
    assert bad_phone.json["errcode"] == "M_INVALID_PARAM"

    deactivated = await client.put(user_path("@dora:test"), {"deactivated": True}, token=admin)
    assert deactivated.json["deactivated"] is True and deactivated.json["threepids"] == []
    no_password = await client.put(user_path("@dora:test"), {"deactivated": False}, token=admin)
    assert no_password.status == 400
    back = await client.put(
        user_path("@dora:test"), {"deactivated": False, "password": "pw three"}, token=admin
    )
    assert back.json["deactivated"] is False
    await client.login("dora", "pw three")

    got = await client.get(user_path("@dora:test"), token=admin)
    assert got.json["name"] == "@dora:test"
    missing = await client.get(user_path("@nobody:test"), token=admin)
    assert (missing.status, missing.json["errcode"]) == (404, "M_NOT_FOUND")
    remote = await client.get(user_path("@someone:elsewhere"), token=admin)
    assert remote.status == 400
    invalid = await client.get(user_path("not-a-user-id"), token=admin)
    assert (invalid.status, invalid.json["errcode"]) == (400, "M_INVALID_PARAM")


async def test_put_refusals(homeserver_factory: Any) -> None:
    hs, client, admin = await _setup(homeserver_factory)
    for body in (
        {"admin": "yes"},
        {"deactivated": 1},
        {"logout_devices": "no"},
        {"password": 5},
        {"user_type": "robot"},
        {"threepids": [{"medium": "email"}]},
        {"threepids": [{"medium": "fax", "address": "1"}]},
        {"threepids": "a@b.c"},
        {"displayname": 5},
        {"locked": True},
    ):
        response = await client.put(user_path("@eric:test"), body, token=admin)
        assert response.status == 400 and response.json["errcode"].startswith("M_"), body
    invalid_localpart = await client.put(user_path("@Bad Name:test"), {}, token=admin)
    assert invalid_localpart.status == 400
    demote = await client.put(user_path("@root:test"), {"admin": False}, token=admin)
    assert demote.status == 400
    not_json = await client.request("PUT", user_path("@eric:test"), b"{", token=admin)
    assert (not_json.status, not_json.json["errcode"]) == (400, "M_NOT_JSON")
    email = {"threepids": [{"medium": "email", "address": "e@example.org"}]}
    assert (await client.put(user_path("@eric:test"), email, token=admin)).status == 201
    taken = await client.put(user_path("@fay:test"), email, token=admin)
    assert (taken.status, taken.json["errcode"]) == (400, "M_THREEPID_IN_USE")
    assert (await client.get(user_path("@fay:test"), token=admin)).status == 404


async def test_deactivate_reset_password_and_devices(homeserver_factory: Any) -> None:
    hs, client, admin = await _setup(homeserver_factory)
    fred = await client.register("fred", initial_device_display_name="Phone")
    devices = await client.get(user_path("@fred:test", "/devices"), token=admin)
    assert devices.json["total"] == 1
    assert devices.json["devices"][0]["display_name"] == "Phone"

    reset = await client.post(
        "/_synapse/admin/v1/reset_password/%40fred%3Atest", {"new_password": "fresh one"}, token=admin
    )
    assert reset.status == 200, reset
    assert (await client.get("/account/whoami", token=fred["access_token"])).status == 401
    await client.login("fred", "fresh one")
    kept = await client.post(
        "/_synapse/admin/v1/reset_password/%40fred%3Atest",
        {"new_password": "fresher", "logout_devices": False},
        token=admin,
    )
    assert kept.status == 200
    assert (await client.get(user_path("@fred:test", "/devices"), token=admin)).json["total"] == 1
    for body, errcode in (({}, "M_MISSING_PARAM"), ({"new_password": 1}, "M_INVALID_PARAM")):
        bad = await client.post("/_synapse/admin/v1/reset_password/%40fred%3Atest", body, token=admin)
        assert (bad.status, bad.json["errcode"]) == (400, errcode)
    unknown = await client.post(
        "/_synapse/admin/v1/reset_password/%40nobody%3Atest", {"new_password": "x"}, token=admin
    )
    assert unknown.status == 404

    # An empty body is fine for deactivation.
    gone = await client.request(
        "POST", "/_synapse/admin/v1/deactivate/%40fred%3Atest", b"", token=admin
    )
    assert gone.json == {"id_server_unbind_result": "success"}
    refused = await client.post(
        "/login", {"type": "m.login.password", "user": "fred", "password": "fresher"}
    )
    assert (refused.status, refused.json["errcode"]) == (403, "M_USER_DEACTIVATED")
    for body in ({"erase": "yes"},):
        bad = await client.post("/_synapse/admin/v1/deactivate/%40root%3Atest", body, token=admin)
        assert bad.status == 400
    unknown_user = await client.post(
        "/_synapse/admin/v1/deactivate/%40nobody%3Atest", {}, token=admin
    )
    assert unknown_user.status == 404
    unknown_devices = await client.get(user_path("@nobody:test", "/devices"), token=admin)
    assert unknown_devices.status == 404
