"""The 3PID and registration token stores on both engines."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from homeserver.storage.database import Database
from homeserver.storage.stores import Storage
from homeserver.storage.stores.threepids import ValidationOutcome, ValidationSession


@pytest.fixture
def storage(database: Database) -> Storage:
    return Storage(database)


def _session(session_id: str = "sid", attempt: int = 1) -> ValidationSession:
    return ValidationSession(session_id, "email", "a@b.c", "secret", attempt, 1000, None)


async def test_an_identifier_belongs_to_one_account(storage: Storage) -> None:
    threepids = storage.threepids
    assert await threepids.add_user_threepid("@a:t", "email", "a@b.c", 1, 2)
    assert await threepids.add_user_threepid("@a:t", "email", "a@b.c", 1, 2)
    assert not await threepids.add_user_threepid("@b:t", "email", "a@b.c", 1, 2)
    assert await threepids.get_user_by_threepid("email", "a@b.c") == "@a:t"
    assert [t.address for t in await threepids.get_user_threepids("@a:t")] == ["a@b.c"]
    assert not await threepids.remove_user_threepid("@b:t", "email", "a@b.c")
    assert await threepids.remove_user_threepid("@a:t", "email", "a@b.c")
    assert await threepids.get_user_by_threepid("email", "a@b.c") is None


async def test_validation_outcomes(storage: Storage) -> None:
    threepids = storage.threepids
    await threepids.start_or_continue_session(_session(), "hash1", "https://next", 5000)
    await threepids.start_or_continue_session(_session(attempt=2), "hash2", None, 9000)
    found = await threepids.get_session(medium="email", client_secret="secret", address="a@b.c")
    assert found is not None and found.last_send_attempt == 2 and found.created_ts == 1000
    assert await threepids.validate_session("nope", "secret", "hash1", 0) == (
        ValidationOutcome.UNKNOWN_SESSION, None
    )
    assert (await threepids.validate_session("sid", "other", "hash1", 0))[0] is (
        ValidationOutcome.WRONG_CLIENT_SECRET
    )
    assert (await threepids.validate_session("sid", "secret", "hash3", 0))[0] is (
        ValidationOutcome.UNKNOWN_TOKEN
    )
    assert (await threepids.validate_session("sid", "secret", "hash1", 6000))[0] is (
        ValidationOutcome.EXPIRED
    )
    assert await threepids.validate_session("sid", "secret", "hash1", 4000) == (
        ValidationOutcome.VALIDATED, "https://next"
    )
    validated = await threepids.get_session(
        medium="email", client_secret="secret", session_id="sid", validated=True
    )
    assert validated is not None and validated.validated_at == 4000
    assert await threepids.delete_sessions_before(2000, 10_000) == 1
    assert await threepids.get_session(medium="email", client_secret="secret") is None


async def test_registration_token_uses_cannot_be_overspent(storage: Storage) -> None:
    tokens = storage.registration_tokens
    assert await tokens.create("tok", 2, None)
    assert not await tokens.create("tok", 5, None)
    taken = await defer.gatherResults(
        [defer.ensureDeferred(tokens.take_pending("tok", 0)) for _ in range(5)]
    )
    assert sorted(taken) == [False, False, False, True, True]
    await tokens.complete("tok")
    token = await tokens.get("tok")
    assert token is not None and (token.pending, token.completed) == (1, 1)
    assert not await tokens.is_valid("tok", 0)
    assert [t.token for t in await tokens.list_tokens(False, 0)] == ["tok"]
    await tokens.create("later", None, 100)
    assert [t.token for t in await tokens.list_tokens(True, 50)] == ["later"]
    assert [t.token for t in await tokens.list_tokens(True, 150)] == []
    updated = await tokens.update("tok", {"uses_allowed": None})
    assert updated is not None and updated.uses_allowed is None
    assert await tokens.is_valid("tok", 0)
    assert await tokens.update("nope", {"uses_allowed": 1}) is None
    assert await tokens.delete("tok") and not await tokens.delete("tok")


async def test_expired_uia_sessions_give_pending_uses_back(storage: Storage) -> None:
    await storage.registration_tokens.create("tok", 1, None)
    assert await storage.registration_tokens.take_pending("tok", 0)
    for session_id, result in (("s1", "tok"), ("s2", True)):
        await storage.ui_auth.create_session(session_id, 0, "/register", "POST", "", {})
        await storage.ui_auth.mark_stage_complete(session_id, "m.login.registration_token", result)
    assert await storage.ui_auth.delete_sessions_before(10) == 2
    token = await storage.registration_tokens.get("tok")
    assert token is not None and token.pending == 0


