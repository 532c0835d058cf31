"""The UIA engine: sessions, flows, pluggable stage checkers, failures and expiry."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.handlers.ui_auth import (
    ClientInfo,
    DummyStageChecker,
    InteractiveAuthIncomplete,
    StageContext,
    StageFailed,
    UserInteractiveAuth,
)
from homeserver.storage.database import Database
from homeserver.storage.stores import Storage
from homeserver.types.errors import MatrixError
from tests.homeserver_harness import TestClock

CLIENT = ClientInfo("/_matrix/client/v3/register", "POST", "10.0.0.1", "UA")


class FakeCaptcha:
    """A stage as another module would plug one in: params, and a check that can fail."""

    stage_type = "m.login.recaptcha"

    def __init__(self) -> None:
        self.contexts: list[StageContext] = []

    def params(self) -> dict[str, Any]:
        return {"public_key": "site-key"}

    async def check(self, authdict: dict[str, Any], context: StageContext) -> Any:
        self.contexts.append(context)
        if authdict.get("response") != "human":
            raise StageFailed("M_CAPTCHA_INVALID", "Captcha is not correct")
        return True


FLOWS = [["m.login.recaptcha", "m.login.dummy"]]


def engine(database: Database, reactor: Any) -> tuple[UserInteractiveAuth, FakeCaptcha, TestClock]:
    storage = Storage(database)
    captcha = FakeCaptcha()
    clock = TestClock(reactor)
    uia = UserInteractiveAuth(
        clock, storage.ui_auth, storage.users, [DummyStageChecker(), captcha], password_reauth_enabled=True
    )
    return uia, captcha, clock


async def challenge(uia: UserInteractiveAuth, body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(InteractiveAuthIncomplete) as info:
        await uia.check(FLOWS, CLIENT, body, "register")
    assert info.value.status == 401
    return info.value.to_dict()


async def test_stages_complete_in_turn_with_params_and_retries(database: Database, reactor: Any) -> None:
    uia, captcha, _ = engine(database, reactor)
    first = await challenge(uia, {"username": "a"})
    assert first["flows"] == [{"stages": FLOWS[0]}]
    assert first["params"] == {"m.login.recaptcha": {"public_key": "site-key"}}
    session = first["session"]

    failed = await challenge(uia, {"auth": {"type": "m.login.recaptcha", "response": "bot", "session": session}})
    assert failed["errcode"] == "M_CAPTCHA_INVALID" and failed["completed"] == []
    assert captcha.contexts[0] == StageContext(session, CLIENT)

    passed = await challenge(uia, {"auth": {"type": "m.login.recaptcha", "response": "human", "session": session}})
    assert passed["completed"] == ["m.login.recaptcha"] and "errcode" not in passed

    result = await uia.check(FLOWS, CLIENT, {"auth": {"type": "m.login.dummy", "session": session}}, "register")
    assert result.session_id == session
    assert result.completed == {"m.login.recaptcha": True, "m.login.dummy": True}
    # The parameters of the first call, kept with the session.
    assert result.params == {"username": "a"}


async def test_session_data_and_binding(database: Database, reactor: Any) -> None:
    uia, _, _ = engine(database, reactor)
    session = (await challenge(uia, {}))["session"]
    await uia.set_session_data(session, "k", {"v": 1})
    assert await uia.get_session_data(session, "k") == {"v": 1}
    assert await uia.get_session_data("nope", "k", "default") == "default"
    with pytest.raises(MatrixError) as info:
        await uia.set_session_data("nope", "k", 1)
    assert info.value.status == 400
    other = ClientInfo("/_matrix/client/v3/delete_devices", "POST", "10.0.0.1", None)
    with pytest.raises(MatrixError) as info:
        await uia.check(FLOWS, other, {"auth": {"session": session}}, "x")
    assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")


async def test_bad_submissions(database: Database, reactor: Any) -> None:
    uia, _, _ = engine(database, reactor)
    for body, status in (
        ({"auth": {"type": "m.login.dummy", "session": "unknown"}}, 400),
        ({"auth": {"type": "m.login.password"}}, 400),
        ({"auth": {"type": 5}}, 400),
        ({"auth": {"session": 5}}, 400),
        ({"auth": []}, 400),
    ):
        with pytest.raises(MatrixError) as info:
            await uia.check(FLOWS, CLIENT, body, "x")
        assert info.value.status == status, body
        assert not isinstance(info.value, InteractiveAuthIncomplete)


async def test_sessions_expire_after_48_hours(database: Database, reactor: Any) -> None:
    uia, _, clock = engine(database, reactor)
    session = (await challenge(uia, {}))["session"]
    clock.advance(47 * 3600)
    await challenge(uia, {"auth": {"session": session}})
    assert await uia.expire_sessions() == 0
    clock.advance(2 * 3600)
    with pytest.raises(MatrixError):
        await uia.check(FLOWS, CLIENT, {"auth": {"session": session}}, "x")
    assert await uia.expire_sessions() == 1


def test_every_stage_of_a_flow_needs_a_checker(database: Database, reactor: Any) -> None:
    uia, _, _ = engine(database, reactor)
    uia.require_stages(FLOWS)
    with pytest.raises(ValueError, match="m.login.terms"):
        uia.require_stages([["m.login.terms", "m.login.dummy"]])
