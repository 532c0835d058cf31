"""What the authorization-rule modules share: the error, state keys, names, identifiers.

Spec: server-server API "Authorisation rules" and the room versions' rules
(rooms/v1.md .. v12.md); appendices "User Identifiers" and "Server Name" for
the identifier checks the rules ask for ("valid user IDs", "the domain of the
sender").

Pure: no I/O. `AuthError` is a `MatrixError` with `M_FORBIDDEN`, so a handler
can hand it straight to the client; its message names the rule that failed in
the spec's words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from homeserver.types.errors import Codes, MatrixError

StateKey = tuple[str, str]
"""(event type, state key) of a state event."""


class AuthError(MatrixError):
    """An event is not allowed by the authorization rules; the message says which rule."""

    def __init__(self, message: str) -> None:
        super().__init__(Codes.FORBIDDEN, message)


# Event types the rules look at.
CREATE: Final = "m.room.create"
MEMBER: Final = "m.room.member"
JOIN_RULES: Final = "m.room.join_rules"
POWER_LEVELS: Final = "m.room.power_levels"
THIRD_PARTY_INVITE: Final = "m.room.third_party_invite"
ALIASES: Final = "m.room.aliases"
REDACTION: Final = "m.room.redaction"

CREATE_KEY: Final[StateKey] = (CREATE, "")
POWER_LEVELS_KEY: Final[StateKey] = (POWER_LEVELS, "")
JOIN_RULES_KEY: Final[StateKey] = (JOIN_RULES, "")

# `membership` values.
JOIN: Final = "join"
INVITE: Final = "invite"
LEAVE: Final = "leave"
BAN: Final = "ban"
KNOCK: Final = "knock"

# `join_rule` values.
PUBLIC: Final = "public"
KNOCK_RULE: Final = "knock"
RESTRICTED: Final = "restricted"
KNOCK_RESTRICTED: Final = "knock_restricted"
INVITE_RULE: Final = "invite"

# m.room.member content key naming the user who authorised a restricted join (v8+).
AUTHORISING_USER: Final = "join_authorised_via_users_server"

# Appendices "Server Name": hostname [":" port], hostname an IPv4 literal, a
# bracketed IPv6 literal or a DNS name of letters, digits, "-" and ".".
_SERVER_NAME = re.compile(
    r"(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})"
    r"(?::[0-9]{1,5})?",
    re.ASCII,
)
# Appendices "User Identifiers", historical grammar: a localpart of printable
# ASCII other than ":" (the strict grammar's lower-case set is a subset; rooms
# carry users created before it).
_HISTORICAL_LOCALPART = re.compile(r"[\x21-\x39\x3b-\x7e]+", re.ASCII)
_MAX_USER_ID_BYTES = 255


def is_valid_user_id(value: object) -> bool:
    """Whether `value` is a user ID `@localpart:server_name` (historical localparts allowed)."""
    if not isinstance(value, str) or not value.startswith("@"):
        return False
    if len(value.encode("utf-8")) > _MAX_USER_ID_BYTES:
        return False
    localpart, sep, server_name = value[1:].partition(":")
    return bool(
        sep and _HISTORICAL_LOCALPART.fullmatch(localpart) and _SERVER_NAME.fullmatch(server_name)
    )


def domain_of(identifier: str) -> str:
    """The server name of a `@user:server`, `!room:server` or `$event:server` ID ("" if none)."""
    return identifier.partition(":")[2]


def membership_of(content: Mapping[str, Any]) -> str | None:
    """The `membership` of m.room.member content, or None if it is missing or not a string."""
    membership = content.get("membership")
    return membership if isinstance(membership, str) else None
