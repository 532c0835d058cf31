"""The opaque tokens clients hold: sync positions and room pagination positions.

A `SyncToken` ("s{events}_{account_data}") is a position on each stream
/sync follows: `next_batch`, the `since` of the next /sync, and the `from`/
`to` of /messages (whose room part is the events stream position). New
streams are appended at the end; a token missing trailing parts (an older
client's, or a bare "s{events}") reads them as 0.

A `RoomToken` is a position within one room's history for /messages:
"t{depth}-{stream}" (topological: between events, ordered by (depth,
stream_ordering); the stream part is negative for backfilled history, as in
"t6--2"), or "s{stream}" (a stream position, as in a sync token).
A token names the gap *after* the event at that position: paginating
backwards from it returns that event first; forwards, the event after it.

Malformed tokens raise `InvalidToken`; handlers answer 400 M_INVALID_PARAM.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


class InvalidToken(ValueError):
    """A token that does not parse."""


def _non_negative(text: str, token: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise InvalidToken(f"invalid token {token!r}")
    return int(text)


def _integer(text: str, token: str) -> int:
    """A stream position in a room token: backfilled history sits at negative positions."""
    if text.startswith("-"):
        return -_non_negative(text[1:], token)
    return _non_negative(text, token)


@dataclass(frozen=True, slots=True)
class SyncToken:
    """A position on every stream /sync reports."""

    events: int
    account_data: int = 0

    STREAMS = ("events", "account_data")

    @classmethod
    def parse(cls, token: str) -> SyncToken:
        if not token.startswith("s"):
            raise InvalidToken(f"invalid token {token!r}")
        parts = token[1:].split("_")
        if len(parts) > len(cls.STREAMS):
            raise InvalidToken(f"invalid token {token!r}")
        values = [_non_negative(p, token) for p in parts]
        values += [0] * (len(cls.STREAMS) - len(values))
        return cls(*values)

    def __str__(self) -> str:
        return "s" + "_".join(str(getattr(self, name)) for name in self.STREAMS)

    def copy_and_replace(self, stream: str, position: int) -> SyncToken:
        if stream not in self.STREAMS:
            raise KeyError(stream)
        return replace(self, **{stream: position})

    def is_after(self, other: SyncToken) -> bool:
        """Whether some stream is further on here than in `other`."""
        return any(getattr(self, n) > getattr(other, n) for n in self.STREAMS)


@dataclass(frozen=True, slots=True)
class RoomToken:
    """A position in a room's history: (depth, stream) when topological, else stream only."""

    stream: int
    depth: int | None = None

    @classmethod
    def parse(cls, token: str) -> RoomToken:
        """A "t{depth}-{stream}" or "s{stream}" token, or the room part of a sync token."""
        if token.startswith("t"):
            depth, sep, stream = token[1:].partition("-")
            if not sep:
                raise InvalidToken(f"invalid token {token!r}")
            return cls(_integer(stream, token), _non_negative(depth, token))
        return cls(SyncToken.parse(token).events)

    def __str__(self) -> str:
        if self.depth is None:
            return f"s{self.stream}"
        return f"t{self.depth}-{self.stream}"
