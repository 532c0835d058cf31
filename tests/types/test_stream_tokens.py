"""Tests for homeserver.types.stream_tokens: sync and room tokens round-trip and reject junk."""

from __future__ import annotations

import pytest

from homeserver.types.stream_tokens import InvalidToken, RoomToken, SyncToken


def test_sync_token_round_trips() -> None:
    token = SyncToken(events=42, account_data=7)
    assert str(token) == "s42_7"
    assert SyncToken.parse("s42_7") == token


def test_missing_trailing_streams_read_as_zero() -> None:
    assert SyncToken.parse("s42") == SyncToken(events=42, account_data=0)


def test_copy_and_replace_and_is_after() -> None:
    token = SyncToken(5, 5)
    later = token.copy_and_replace("account_data", 6)
    assert later == SyncToken(5, 6)
    assert later.is_after(token) and not token.is_after(later)
    assert not token.is_after(token)
    with pytest.raises(KeyError):
        token.copy_and_replace("presence", 1)


def test_room_tokens() -> None:
    assert str(RoomToken(stream=9, depth=3)) == "t3-9"
    assert RoomToken.parse("t3-9") == RoomToken(stream=9, depth=3)
    assert RoomToken.parse("s9") == RoomToken(stream=9)
    # Backfilled history has negative stream positions.
    assert str(RoomToken(stream=-2, depth=6)) == "t6--2"
    assert RoomToken.parse("t6--2") == RoomToken(stream=-2, depth=6)
    # A sync token's room part is its events position.
    assert RoomToken.parse("s9_4") == RoomToken(stream=9)


@pytest.mark.parametrize(
    "token",
    ["", "s", "x1", "s1_2_3", "s-1", "s1_", "t3", "t-9", "t3-", "ta-1", "t3---1", "t3--", "s1" + "0" * 19, "s1 _2"],
)
def test_junk_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        RoomToken.parse(token)
    if not token.startswith("t"):
        with pytest.raises(InvalidToken):
            SyncToken.parse(token)
