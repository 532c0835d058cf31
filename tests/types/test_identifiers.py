"""Identifier grammar (appendices, "Identifier Grammar"): valid forms and each way to be wrong."""

from __future__ import annotations

import pytest

from homeserver.types.identifiers import (
    EventID,
    InvalidIdentifier,
    RoomAlias,
    RoomID,
    ServerName,
    UserID,
    domain_of,
    is_valid_namespaced_identifier,
    is_valid_opaque_identifier,
    is_valid_server_name,
    is_valid_user_id,
    parse_event_id,
    parse_room_alias,
    parse_room_id,
    parse_server_name,
    parse_user_id,
    validate_localpart,
)
from homeserver.types.room_versions import KNOWN_ROOM_VERSIONS

HASH_URLSAFE = "Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"  # 43 chars, from the spec
HASH_STD = "acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk"  # 43 chars, standard alphabet


# --- server names --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("matrix.org", ServerName("matrix.org", None, "dns")),
        ("matrix.org:8888", ServerName("matrix.org", 8888, "dns")),
        ("1.2.3.4", ServerName("1.2.3.4", None, "ipv4")),
        ("1.2.3.4:1234", ServerName("1.2.3.4", 1234, "ipv4")),
        ("[1234:5678::abcd]", ServerName("[1234:5678::abcd]", None, "ipv6")),
        ("[1234:5678::abcd]:5678", ServerName("[1234:5678::abcd]", 5678, "ipv6")),
        ("[::ffff:1.2.3.4]", ServerName("[::ffff:1.2.3.4]", None, "ipv6")),
        ("localhost", ServerName("localhost", None, "dns")),
        ("MATRIX.org", ServerName("MATRIX.org", None, "dns")),
        ("a-b.c:65535", ServerName("a-b.c", 65535, "dns")),
    ],
)
def test_spec_server_name_examples_parse(text: str, expected: ServerName) -> None:
    """The spec's example server names (and a few more) parse into host, port and kind."""
    assert parse_server_name(text) == expected
    assert str(parse_server_name(text)) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        (":8448", "empty hostname"),
        ("matrix.org:", "port must be 1 to 5 digits"),
        ("matrix.org:123456", "port must be 1 to 5 digits"),
        ("matrix.org:70000", "greater than 65535"),
        ("matrix.org:80a", "port must be 1 to 5 digits"),
        ("matrix_org", "only contain letters, digits"),
        ("mätrix.org", "only contain letters, digits"),
        ("matrix..org", "empty label"),
        (".matrix.org", "empty label"),
        ("256.1.1.1", "greater than 255"),
        ("[1234:5678::abcd", "no closing"),
        ("[1234:5678::abcd]x", "unexpected characters"),
        ("[12345::zz]", "hex digits"),
        ("[1:2:3:4:5:6:7:8:9]", "not a valid IPv6 address"),
        ("a" * 256, "longer than 255"),
    ],
)
def test_bad_server_names_say_why(text: str, problem: str) -> None:
    """Each kind of malformed server name is refused with a message naming the problem."""
    with pytest.raises(InvalidIdentifier, match=problem):
        parse_server_name(text)
    assert not is_valid_server_name(text)


# --- user IDs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["@alice:example.org", "@a.b_c=d-e/f+g:example.org:8448", "@0:1.2.3.4", "@x:[::1]:8448"],
)
def test_strict_user_ids_accepted(text: str) -> None:
    """User IDs in the current grammar parse under both the strict and historical grammars."""
    assert is_valid_user_id(text, strict=True)
    user = parse_user_id(text)
    assert str(user) == text


def test_user_id_parts() -> None:
    """A user ID splits at the first ':' (IPv6 domains keep theirs)."""
    assert parse_user_id("@bob:[::1]:8448") == UserID("bob", "[::1]:8448")


@pytest.mark.parametrize(
    "text",
    ["@Alice:example.org", "@:example.org", "@al ice:example.org", "@é:example.org", "@a\x01:x"],
)
def test_historical_user_ids_accepted_but_not_strict(text: str) -> None:
    """Upper case, empty, spaces, non-ASCII, control chars: accepted historically, refused strictly."""
    assert is_valid_user_id(text)
    assert not is_valid_user_id(text, strict=True)


def test_strict_refusal_names_the_bad_characters() -> None:
    """The strict grammar's error lists the characters that are not allowed."""
    with pytest.raises(InvalidIdentifier, match=r"characters 'A!' are not allowed"):
        parse_user_id("@Alice!:example.org", strict=True)


def test_compliance_of_historical_user_ids() -> None:
    """Local parts outside U+0021..U+007E, or empty, are flagged as non-compliant."""
    assert parse_user_id("@Alice:example.org").is_compliant()
    assert not parse_user_id("@:example.org").is_compliant()
    assert not parse_user_id("@a b:example.org").is_compliant()
    assert not parse_user_id("@ü:example.org").is_compliant()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice:example.org", "must start with '@'"),
        ("@alice", "missing ':'"),
        ("@alice:", "bad server name"),
        ("@alice:exa mple.org", "bad server name"),
        ("@al\x00ice:example.org", "NUL"),
        ("@\ud800:example.org", "surrogate"),
        ("@" + "a" * 250 + ":example.org", "longer than 255 bytes"),
        ("@" + "é" * 130 + ":example.org", "longer than 255 bytes"),
    ],
)
def test_bad_user_ids_say_why(text: str, problem: str) -> None:
    """Each malformed user ID is refused (even historically) with the reason in the message."""
    with pytest.raises(InvalidIdentifier, match=problem):
        parse_user_id(text)


def test_non_string_identifier_refused() -> None:
    """A non-string is refused with its type named, not with a TypeError."""
    with pytest.raises(InvalidIdentifier, match="expected a string, got int"):
        parse_user_id(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("localpart", "ok"), [("alice", True), ("", False), ("a:b", False), ("a*", False)]
)
def test_validate_localpart(localpart: str, ok: bool) -> None:
    """validate_localpart applies the registration grammar to a bare local part."""
    if ok:
        validate_localpart(localpart)
    else:
        with pytest.raises(InvalidIdentifier):
            validate_localpart(localpart)


def test_user_id_byte_limit_is_exactly_255() -> None:
    """A 255-byte user ID is allowed; 256 bytes is not."""
    domain = ":example.org"
    ok = "@" + "a" * (255 - 1 - len(domain)) + domain
    assert len(ok.encode()) == 255
    parse_user_id(ok, strict=True)
    with pytest.raises(InvalidIdentifier, match="255 bytes"):
        parse_user_id("@a" + ok[1:], strict=True)


# --- room IDs, aliases, event IDs ---------------------------------------------------


def test_room_id_forms() -> None:
    """`!opaque:domain` (v1..v11) and `!hash` (v12) both parse when no version is given."""
    assert parse_room_id("!abc:example.org") == RoomID("abc", "example.org")
    assert parse_room_id("!" + HASH_URLSAFE) == RoomID(HASH_URLSAFE, None)
    assert str(parse_room_id("!" + HASH_URLSAFE)) == "!" + HASH_URLSAFE


def test_room_id_form_follows_room_version() -> None:
    """v12 room IDs must be the domainless hash form; earlier versions must have a domain."""
    v11, v12 = KNOWN_ROOM_VERSIONS["11"], KNOWN_ROOM_VERSIONS["12"]
    parse_room_id("!abc:example.org", v11)
    parse_room_id("!" + HASH_URLSAFE, v12)
    with pytest.raises(InvalidIdentifier, match="room version 12 room IDs have no server name"):
        parse_room_id("!abc:example.org", v12)
    with pytest.raises(InvalidIdentifier, match="room version 11 room IDs need ':server'"):
        parse_room_id("!" + HASH_URLSAFE, v11)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("#abc:example.org", "must start with '!'"),
        ("!abc", "43 URL-safe base64"),
        ("!" + HASH_STD, "43 URL-safe base64"),
        ("!:example.org", "empty local part"),
        ("!abc:bad_server", "bad server name"),
        ("!" + "a" * 300 + ":x", "255 bytes"),
    ],
)
def test_bad_room_ids_say_why(text: str, problem: str) -> None:
    """Each malformed room ID is refused with its reason."""
    with pytest.raises(InvalidIdentifier, match=problem):
        parse_room_id(text)


def test_room_aliases() -> None:
    """Aliases allow any local part except ':' and NUL; the domain must be a server name."""
    assert parse_room_alias("#Room Name ✨:example.org") == RoomAlias("Room Name ✨", "example.org")
    for text, problem in [
        ("!a:example.org", "must start with '#'"),
        ("#:example.org", "empty local part"),
        ("#room", "missing ':'"),
        ("#ro\x00om:example.org", "NUL"),
        ("#" + "r" * 250 + ":example.org", "255 bytes"),
    ]:
        with pytest.raises(InvalidIdentifier, match=problem):
            parse_room_alias(text)


@pytest.mark.parametrize(
    ("version", "text", "expected"),
    [
        ("1", "$abc:example.org", EventID("abc", "example.org")),
        (
            "2",
            "$a4ecee13e2accdadf56c1025:example.com",
            EventID("a4ecee13e2accdadf56c1025", "example.com"),
        ),
        ("3", "$" + HASH_STD, EventID(HASH_STD, None)),
        ("4", "$" + HASH_URLSAFE, EventID(HASH_URLSAFE, None)),
        ("12", "$" + HASH_URLSAFE, EventID(HASH_URLSAFE, None)),
    ],
)
def test_event_id_forms_per_room_version(version: str, text: str, expected: EventID) -> None:
    """v1/v2 `$local:server`, v3 standard base64 hash, v4+ URL-safe hash."""
    assert parse_event_id(text, KNOWN_ROOM_VERSIONS[version]) == expected
    assert parse_event_id(text) == expected  # also accepted without a version


@pytest.mark.parametrize(
    ("version", "text", "problem"),
    [
        ("1", "$" + HASH_URLSAFE, "missing ':'"),
        ("3", "$" + HASH_URLSAFE, "43 standard base64"),
        ("4", "$" + HASH_STD, "43 URL-safe base64"),
        ("4", "$abc:example.org", "43 URL-safe base64"),
        ("10", "$short", "43 URL-safe base64"),
        (None, "abc:example.org", "must start with '\\$'"),
        (None, "$short", "43-character base64"),
        (None, "$:example.org", "empty local part"),
    ],
)
def test_bad_event_ids_say_why(version: str | None, text: str, problem: str) -> None:
    """Event IDs in the wrong form for their room version are refused with the reason."""
    rv = KNOWN_ROOM_VERSIONS[version] if version else None
    with pytest.raises(InvalidIdentifier, match=problem):
        parse_event_id(text, rv)


def test_domain_of() -> None:
    """domain_of returns the server part of sigil IDs and refuses domainless ones."""
    assert domain_of("@a:example.org:8448") == "example.org:8448"
    assert domain_of("$e:[::1]") == "[::1]"
    with pytest.raises(InvalidIdentifier, match="no server name"):
        domain_of("$" + HASH_URLSAFE)


def test_namespaced_and_opaque_grammars() -> None:
    """The common namespaced and opaque identifier grammars accept and refuse as specified."""
    assert is_valid_namespaced_identifier("m.login.password")
    assert is_valid_namespaced_identifier("com.example.x-y_z")
    assert not is_valid_namespaced_identifier("M.login")
    assert not is_valid_namespaced_identifier("1abc")
    assert not is_valid_namespaced_identifier("a" * 256)
    assert is_valid_opaque_identifier("Ab0-._~")
    assert not is_valid_opaque_identifier("")
    assert not is_valid_opaque_identifier("a/b")
    assert not is_valid_opaque_identifier("a" * 256)
