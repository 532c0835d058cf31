"""The account stores (users, devices, tokens, UIA sessions, profiles) on both engines."""

from __future__ import annotations

import pytest

from homeserver.storage.database import Database
from homeserver.storage.stores import Storage
from homeserver.storage.stores.tokens import NewAccessToken, NewRefreshToken, RefreshOutcome


@pytest.fixture
def storage(database: Database) -> Storage:
    return Storage(database)


async def test_users_are_unique_ignoring_case(storage: Storage) -> None:
    assert await storage.users.create_user("@Old:test", "hash", 1000, displayname="Old")
    assert not await storage.users.create_user("@old:test", None, 2000)
    assert not await storage.users.create_user("@Old:test", None, 2000)
    assert await storage.users.is_name_taken("@OLD:test")
    (user,) = await storage.users.get_users_case_insensitive("@oLd:test")
    assert (user.user_id, user.password_hash, user.creation_ts) == ("@Old:test", "hash", 1000)
    assert not (user.is_guest or user.admin or user.deactivated or user.erased)
    assert await storage.users.get_user("@old:test") is None
    assert (await storage.profiles.get_profile("@Old:test")).displayname == "Old"


async def test_user_flags_and_generated_localparts(storage: Storage) -> None:
    assert [await storage.users.next_generated_localpart() for _ in range(3)] == [1, 2, 3]
    await storage.users.create_user("@1:test", None, 0, is_guest=True, user_type="bot")
    assert await storage.users.upgrade_guest("@1:test", "h")
    assert not await storage.users.upgrade_guest("@1:test", "h")
    await storage.users.set_admin("@1:test", True)
    user = await storage.users.get_user("@1:test")
    assert (user.is_guest, user.admin, user.password_hash, user.user_type) == (False, True, "h", "bot")


async def test_access_tokens_resolve_with_their_user(storage: Storage) -> None:
    await storage.users.create_user("@a:test", None, 0, is_guest=True)
    await storage.devices.add_session("@a:test", "D", None, 0, NewAccessToken("t1", 5000))
    info = await storage.tokens.lookup_access_token("t1", 1000)
    assert (info.user_id, info.device_id, info.valid_until_ms, info.is_guest) == ("@a:test", "D", 5000, True)
    assert await storage.tokens.lookup_access_token("other", 1000) is None
    await storage.tokens.delete_access_token("t1")
    assert await storage.tokens.lookup_access_token("t1", 1000) is None


async def test_refresh_rotation(storage: Storage) -> None:
    await storage.users.create_user("@a:test", None, 0)
    await storage.devices.add_session(
        "@a:test", "D", None, 0, NewAccessToken("a0", 100), NewRefreshToken("r0", None)
    )
    outcome, info = await storage.tokens.refresh("r0", 50, NewAccessToken("a1", 200), NewRefreshToken("r1", None))
    assert outcome is RefreshOutcome.REFRESHED and info.device_id == "D"
    assert await storage.tokens.lookup_access_token("a0", 50) is None
    # r0 still works while a1/r1 are unused; doing so replaces them.
    outcome, _ = await storage.tokens.refresh("r0", 60, NewAccessToken("a2", 200), NewRefreshToken("r2", None))
    assert outcome is RefreshOutcome.REFRESHED
    assert await storage.tokens.lookup_access_token("a1", 60) is None
    assert await storage.tokens.get_refresh_token("r1") is None
    # First use of a2 spends r0.
    assert await storage.tokens.lookup_access_token("a2", 70) is not None
    outcome, _ = await storage.tokens.refresh("r0", 80, NewAccessToken("a3", 200), NewRefreshToken("r3", None))
    assert outcome is RefreshOutcome.UNKNOWN
    # An expired access token does not count as a use.
    outcome, _ = await storage.tokens.refresh("r2", 90, NewAccessToken("a4", 100), NewRefreshToken("r4", None))
    assert await storage.tokens.lookup_access_token("a4", 500) is not None
    assert await storage.tokens.get_refresh_token("r2") is not None


async def test_expired_refresh_token(storage: Storage) -> None:
    await storage.users.create_user("@a:test", None, 0)
    await storage.devices.add_session(
        "@a:test", "D", None, 0, NewAccessToken("a0", 100), NewRefreshToken("r0", 1000)
    )
    outcome, _ = await storage.tokens.refresh("r0", 1000, NewAccessToken("a1", None), NewRefreshToken("r1", None))
    assert outcome is RefreshOutcome.EXPIRED
    assert await storage.tokens.lookup_access_token("a0", 50) is not None


async def test_devices_take_their_tokens_with_them(storage: Storage) -> None:
    await storage.users.create_user("@a:test", None, 0)
    assert await storage.devices.add_session("@a:test", "D1", "One", 0, NewAccessToken("t1", None))
    assert not await storage.devices.add_session("@a:test", "D1", "Ignored", 0, NewAccessToken("t1b", None))
    await storage.devices.add_session("@a:test", "D2", None, 0, NewAccessToken("t2", None), NewRefreshToken("r2", None))
    await storage.devices.add_session("@a:test", "D3", None, 0, NewAccessToken("t3", None))
    assert [d.display_name for d in await storage.devices.get_devices("@a:test")] == ["One", None, None]
    await storage.devices.delete_devices("@a:test", ["D2", "UNKNOWN"])
    assert await storage.tokens.lookup_access_token("t2", 0) is None
    assert await storage.tokens.get_refresh_token("r2") is None
    assert await storage.devices.delete_all_devices("@a:test", except_device_id="D1") == ["D3"]
    assert [d.device_id for d in await storage.devices.get_devices("@a:test")] == ["D1"]
    assert await storage.tokens.lookup_access_token("t1b", 0) is not None
    assert await storage.devices.update_display_name("@a:test", "D1", "Renamed")
    assert not await storage.devices.update_display_name("@a:test", "D9", "x")


async def test_tokens_for_user_except_one(storage: Storage) -> None:
    await storage.users.create_user("@a:test", None, 0)
    await storage.devices.add_session("@a:test", "D1", None, 0, NewAccessToken("t1", None), NewRefreshToken("r1", None))
    await storage.devices.add_session("@a:test", "D2", None, 0, NewAccessToken("t2", None), NewRefreshToken("r2", None))
    await storage.tokens.delete_tokens_for_user("@a:test", except_token_hash="t1")
    assert await storage.tokens.lookup_access_token("t1", 0) is not None
    assert await storage.tokens.get_refresh_token("r1") is not None
    assert await storage.tokens.lookup_access_token("t2", 0) is None
    assert await storage.tokens.get_refresh_token("r2") is None


async def test_deactivation_in_one_transaction(storage: Storage) -> None:
    await storage.users.create_user("@a:test", "hash", 0, displayname="A")
    await storage.profiles.set_field("@a:test", "org.example.x", 1)
    await storage.devices.add_session("@a:test", "D", None, 0, NewAccessToken("t", None))
    await storage.users.deactivate("@a:test", erase=True)
    user = await storage.users.get_user("@a:test")
    assert (user.deactivated, user.erased, user.password_hash) == (True, True, None)
    assert await storage.devices.get_devices("@a:test") == []
    assert await storage.tokens.lookup_access_token("t", 0) is None
    assert (await storage.profiles.get_profile("@a:test")).as_dict() == {}


async def test_login_tokens_are_single_use(storage: Storage) -> None:
    await storage.tokens.add_login_token("l1", "@a:test", 0, 1000)
    await storage.tokens.add_login_token("l2", "@a:test", 0, 1000)
    await storage.tokens.add_login_token("l3", "@a:test", 0, 5000)
    assert await storage.tokens.consume_login_token("l1", 500) == "@a:test"
    assert await storage.tokens.consume_login_token("l1", 500) is None
    assert await storage.tokens.consume_login_token("l2", 1000) is None
    await storage.tokens.delete_expired_login_tokens(2000)
    assert await storage.tokens.consume_login_token("l3", 2000) == "@a:test"


async def test_ui_auth_sessions(storage: Storage) -> None:
    store = storage.ui_auth
    await store.create_session("s", 1000, "/p", "POST", "why", {"username": "é"})
    session = await store.get_session("s")
    assert (session.uri, session.method, session.clientdict, session.serverdict) == ("/p", "POST", {"username": "é"}, {})
    await store.set_clientdict("s", {"b": 2})
    assert await store.set_session_data("s", "k", [1])
    assert not await store.set_session_data("missing", "k", 1)
    await store.mark_stage_complete("s", "m.login.dummy", True)
    await store.mark_stage_complete("s", "m.login.password", "@a:test")
    await store.mark_stage_complete("s", "m.login.password", "@b:test")
    assert await store.get_completed_stages("s") == {"m.login.dummy": True, "m.login.password": "@b:test"}
    session = await store.get_session("s")
    assert (session.clientdict, session.serverdict) == ({"b": 2}, {"k": [1]})
    assert await store.delete_sessions_before(1000) == 0
    assert await store.delete_sessions_before(1001) == 1
    assert await store.get_session("s") is None
    assert await store.get_completed_stages("s") == {}


async def test_profiles(storage: Storage) -> None:
    assert await storage.profiles.get_profile("@nobody:test") is None
    assert not await storage.profiles.set_field("@nobody:test", "displayname", "x")
    assert not await storage.profiles.set_field("@nobody:test", "org.example.k", "x")
    await storage.users.create_user("@a:test", None, 0)
    assert await storage.profiles.set_field("@a:test", "avatar_url", "mxc://a/b")
    assert await storage.profiles.set_field("@a:test", "m.tz", "UTC")
    assert await storage.profiles.set_field("@a:test", "org.example.k", {"nested": [1, None]})
    assert await storage.profiles.set_field("@a:test", "org.example.k", {"nested": [2]})
    profile = await storage.profiles.get_profile("@a:test")
    assert profile.as_dict() == {"avatar_url": "mxc://a/b", "m.tz": "UTC", "org.example.k": {"nested": [2]}}
    await storage.profiles.delete_field("@a:test", "avatar_url")
    await storage.profiles.delete_field("@a:test", "m.tz")
    assert (await storage.profiles.get_profile("@a:test")).as_dict() == {"org.example.k": {"nested": [2]}}
