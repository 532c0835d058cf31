"""Matrix identifiers: server names, user IDs, room IDs, event IDs, room aliases.

Spec: appendices "Identifier Grammar": "Server Name", "Common Identifier
Format", "User Identifiers" (and "Historical User IDs"), "Room IDs",
"Room Aliases", "Event IDs", "Common Namespaced Identifier Grammar",
"Opaque Identifiers"; room versions' "Event IDs" sections for the hash forms.

Parsing returns small frozen value objects; every failure raises
`InvalidIdentifier` (a `ValueError`) whose message names the identifier kind
and the exact problem. Two user ID grammars exist: the strict one for user IDs
this server creates (`parse_user_id(..., strict=True)` /
`validate_localpart`), and the historical one every server must still accept
over federation (the default).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from homeserver.types.room_versions import EventFormat, RoomVersion

# "The length of a user ID, including the @ sigil and the domain, MUST NOT
# exceed 255 bytes" (likewise room IDs, aliases, event IDs).
MAX_IDENTIFIER_BYTES = 255

_PORT_RE = re.compile(r"[0-9]{1,5}")
_IPV4_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DNS_LABEL_RE = re.compile(r"[0-9A-Za-z-]+")
_STRICT_LOCALPART_RE = re.compile(r"[a-z0-9._=\-/+]+")
_NAMESPACED_RE = re.compile(r"[a-z][a-z0-9._\-]*")
_OPAQUE_RE = re.compile(r"[0-9A-Za-z._~\-]+")
# The reference hash is 32 bytes: 43 characters of unpadded base64.
_HASH_STD_RE = re.compile(r"[A-Za-z0-9+/]{43}")
_HASH_URLSAFE_RE = re.compile(r"[A-Za-z0-9_\-]{43}")


class InvalidIdentifier(ValueError):
    """An identifier that does not match its grammar; the message says what is wrong."""


def _fail(kind: str, value: str, problem: str) -> InvalidIdentifier:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return InvalidIdentifier(f"invalid {kind} {shown!r}: {problem}")


def _check_common(kind: str, value: object, sigil: str) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifier(f"invalid {kind}: expected a string, got {type(value).__name__}")
    if not value.startswith(sigil):
        raise _fail(kind, value, f"must start with {sigil!r}")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise _fail(kind, value, "contains a surrogate code point")
    if len(value.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise _fail(kind, value, f"longer than {MAX_IDENTIFIER_BYTES} bytes")
    return value


# --- server names -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerName:
    """A parsed server name: `host` is as written (IPv6 with its brackets)."""

    host: str
    port: int | None
    kind: str  # "dns", "ipv4" or "ipv6"

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


def parse_server_name(value: str, *, kind: str = "server name") -> ServerName:
    """Parse `hostname [":" port]` (appendices, "Server Name").

    hostname is a DNS name (labels of letters, digits and `-` separated by
    single dots, at most 255 characters), a dotted-quad IPv4 literal with each
    part 0..255, or a bracketed IPv6 literal (RFC 3513). The port is 1-5
    digits, at most 65535. Case is kept: server names are case-sensitive.
    """
    if not isinstance(value, str):
        raise InvalidIdentifier(f"invalid {kind}: expected a string, got {type(value).__name__}")
    if not value:
        raise InvalidIdentifier(f"invalid {kind}: empty")
    port: int | None = None
    if value.startswith("["):
        close = value.find("]")
        if close == -1:
            raise _fail(kind, value, "IPv6 literal has no closing ']'")
        host, rest = value[: close + 1], value[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _fail(kind, value, "unexpected characters after the IPv6 literal")
            port = _parse_port(kind, value, rest[1:])
        inner = host[1:-1]
        if not _IPV6_CHARS_RE.fullmatch(inner):
            raise _fail(kind, value, "IPv6 literal may only contain hex digits, ':' and '.'")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise _fail(kind, value, f"{inner!r} is not a valid IPv6 address") from None
        return ServerName(host, port, "ipv6")

    host, sep, port_text = value.partition(":")
    if sep:
        port = _parse_port(kind, value, port_text)
    if not host:
        raise _fail(kind, value, "empty hostname")
    if _IPV4_RE.fullmatch(host):
        if any(int(part) > 255 for part in host.split(".")):
            raise _fail(kind, value, "IPv4 literal has a part greater than 255")
        return ServerName(host, port, "ipv4")
    if len(host) > 255:
        raise _fail(kind, value, "DNS name longer than 255 characters")
    for label in host.split("."):
        if not label:
            raise _fail(
                kind, value, "DNS name has an empty label (leading, trailing or double '.')"
            )
        if not _DNS_LABEL_RE.fullmatch(label):
            raise _fail(kind, value, "DNS name may only contain letters, digits, '-' and '.'")
    return ServerName(host, port, "dns")


def _parse_port(kind: str, value: str, text: str) -> int:
    if not _PORT_RE.fullmatch(text):
        raise _fail(kind, value, "port must be 1 to 5 digits")
    port = int(text)
    if port > 65535:
        raise _fail(kind, value, "port is greater than 65535")
    return port


def is_valid_server_name(value: str) -> bool:
    """Whether `value` is a valid server name."""
    try:
        parse_server_name(value)
    except InvalidIdentifier:
        return False
    return True


# --- sigil:localpart:domain identifiers ----------------------------------------


def _split_domain(kind: str, value: str) -> tuple[str, str]:
    localpart, sep, domain = value[1:].partition(":")
    if not sep:
        raise _fail(kind, value, "missing ':' between the local part and the server name")
    if "\x00" in localpart:
        raise _fail(kind, value, "local part contains NUL")
    try:
        parse_server_name(domain)
    except InvalidIdentifier as e:
        raise _fail(kind, value, f"bad server name: {e}") from None
    return localpart, domain


def domain_of(identifier: str) -> str:
    """The server name part of `@user:server`, `!room:server`, `#alias:server`, `$ev:server`.

    Splits at the first ':' (local parts cannot contain one). Raises
    `InvalidIdentifier` if there is no server name (e.g. v3+ event IDs).
    """
    _, sep, domain = identifier.partition(":")
    if not sep or not domain:
        raise InvalidIdentifier(f"identifier {identifier!r} has no server name")
    return domain


@dataclass(frozen=True, slots=True)
class UserID:
    """`@localpart:domain` (appendices, "User Identifiers")."""

    localpart: str
    domain: str

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.domain}"

    def is_compliant(self) -> bool:
        """Whether the local part is non-empty and within U+0021..U+007E.

        Non-compliant (historical) user IDs are accepted in events, but
        "SHOULD NOT" be forwarded to clients outside an event's context.
        """
        return bool(self.localpart) and all(0x21 <= ord(c) <= 0x7E for c in self.localpart)


def validate_localpart(localpart: str) -> None:
    """Check a local part for a user ID this server creates (the strict grammar).

    Allowed: one or more of `a-z 0-9 . _ = - / +`. Raises `InvalidIdentifier`.
    (The 255-byte limit applies to the whole user ID: see `parse_user_id`.)
    """
    if not localpart:
        raise InvalidIdentifier("invalid user ID local part '': empty")
    if not _STRICT_LOCALPART_RE.fullmatch(localpart):
        bad = dict.fromkeys(c for c in localpart if not _STRICT_LOCALPART_RE.fullmatch(c))
        raise InvalidIdentifier(
            f"invalid user ID local part {localpart!r}: characters {''.join(bad)!r} are not "
            "allowed (only a-z, 0-9, '.', '_', '=', '-', '/', '+')"
        )


def parse_user_id(value: str, *, strict: bool = False) -> UserID:
    """Parse `@localpart:domain`.

    strict=False (default): the historical grammar every server must accept
    over federation: the local part is any code points but ':' and NUL, and
    may be empty. strict=True: the current grammar, for user IDs created
    here (`validate_localpart`). Both: a valid server name and at most 255
    bytes in all.
    """
    kind = "user ID"
    _check_common(kind, value, "@")
    localpart, domain = _split_domain(kind, value)
    if strict:
        try:
            validate_localpart(localpart)
        except InvalidIdentifier as e:
            raise _fail(kind, value, str(e).split(": ", 1)[1]) from None
    return UserID(localpart, domain)


def is_valid_user_id(value: str, *, strict: bool = False) -> bool:
    """Whether `value` parses with `parse_user_id`."""
    try:
        parse_user_id(value, strict=strict)
    except InvalidIdentifier:
        return False
    return True


@dataclass(frozen=True, slots=True)
class RoomAlias:
    """`#localpart:domain` (appendices, "Room Aliases")."""

    localpart: str
    domain: str

    def __str__(self) -> str:
        return f"#{self.localpart}:{self.domain}"


def parse_room_alias(value: str) -> RoomAlias:
    """Parse `#localpart:domain`: non-empty local part without ':' or NUL, at most 255 bytes."""
    kind = "room alias"
    _check_common(kind, value, "#")
    localpart, domain = _split_domain(kind, value)
    if not localpart:
        raise _fail(kind, value, "empty local part")
    return RoomAlias(localpart, domain)


@dataclass(frozen=True, slots=True)
class RoomID:
    """`!opaque:domain` (v1..v11) or `!hash` (v12+; `domain` is None)."""

    opaque: str
    domain: str | None

    def __str__(self) -> str:
        return f"!{self.opaque}" if self.domain is None else f"!{self.opaque}:{self.domain}"


def parse_room_id(value: str, room_version: RoomVersion | None = None) -> RoomID:
    """Parse a room ID (appendices, "Room IDs").

    With a domain: `!opaque:domain`, opaque non-empty without ':' or NUL.
    Without (v12+): `!` + the create event's reference hash, 43 characters
    of URL-safe unpadded base64. `room_version` (if given) decides which
    form is required; otherwise either is accepted. At most 255 bytes.
    """
    kind = "room ID"
    _check_common(kind, value, "!")
    hash_form = room_version is not None and (room_version.event_format.format is EventFormat.V4)
    if ":" not in value:
        if room_version is not None and not hash_form:
            raise _fail(
                kind, value, f"room version {room_version.identifier} room IDs need ':server'"
            )
        if not _HASH_URLSAFE_RE.fullmatch(value[1:]):
            raise _fail(
                kind,
                value,
                "a room ID without a server name must be '!' followed by 43 URL-safe "
                "base64 characters (a reference hash)",
            )
        return RoomID(value[1:], None)
    if hash_form:
        assert room_version is not None
        raise _fail(
            kind, value, f"room version {room_version.identifier} room IDs have no server name"
        )
    opaque, domain = _split_domain(kind, value)
    if not opaque:
        raise _fail(kind, value, "empty local part")
    return RoomID(opaque, domain)


@dataclass(frozen=True, slots=True)
class EventID:
    """`$opaque:domain` (v1/v2) or `$hash` (v3+; `domain` is None)."""

    opaque: str
    domain: str | None

    def __str__(self) -> str:
        return f"${self.opaque}" if self.domain is None else f"${self.opaque}:{self.domain}"


def parse_event_id(value: str, room_version: RoomVersion | None = None) -> EventID:
    """Parse an event ID (appendices, "Event IDs"; room versions' "Event IDs").

    v1/v2: `$opaque:domain`. v3: `$` + 43 characters of standard unpadded
    base64. v4+: `$` + 43 characters of URL-safe unpadded base64. Without
    `room_version`, any of these forms. At most 255 bytes.
    """
    kind = "event ID"
    _check_common(kind, value, "$")
    fmt = None if room_version is None else room_version.event_format.format
    if fmt is EventFormat.V1 or (fmt is None and ":" in value):
        opaque, domain = _split_domain(kind, value)
        if not opaque:
            raise _fail(kind, value, "empty local part")
        return EventID(opaque, domain)
    body = value[1:]
    if fmt is EventFormat.V2:
        if not _HASH_STD_RE.fullmatch(body):
            raise _fail(
                kind, value, "must be '$' followed by 43 standard base64 characters (room v3)"
            )
    elif fmt is None:
        if not (_HASH_STD_RE.fullmatch(body) or _HASH_URLSAFE_RE.fullmatch(body)):
            raise _fail(
                kind,
                value,
                "must be '$opaque:server' or '$' followed by a 43-character base64 reference hash",
            )
    elif not _HASH_URLSAFE_RE.fullmatch(body):
        raise _fail(kind, value, "must be '$' followed by 43 URL-safe base64 characters")
    return EventID(body, None)


# --- other grammars ------------------------------------------------------------


def is_valid_namespaced_identifier(value: str) -> bool:
    """The Common Namespaced Identifier Grammar: 1..255 of `[a-z0-9._-]`, starting `[a-z]`."""
    return 1 <= len(value) <= 255 and _NAMESPACED_RE.fullmatch(value) is not None


def is_valid_opaque_identifier(value: str, max_length: int = 255) -> bool:
    """The Opaque Identifier Grammar: 1..max_length of `[0-9A-Za-z._~-]`."""
    return 1 <= len(value) <= max_length and _OPAQUE_RE.fullmatch(value) is not None
