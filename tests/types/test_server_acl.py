"""Server ACL matching: the spec's order of checks, globs, ports, IP literals, malformed content."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.types.server_acl import (
    ServerAcl,
    glob_to_regex,
    host_of,
    is_ip_literal,
    server_allowed_by_acl,
)


@pytest.mark.parametrize(
    ("server_name", "host"),
    [
        ("example.com", "example.com"),
        ("example.com:8448", "example.com"),
        ("1.2.3.4:80", "1.2.3.4"),
        ("[::1]", "[::1]"),
        ("[2001:db8::1]:8448", "[2001:db8::1]"),
    ],
)
def test_host_of_drops_the_port(server_name: str, host: str) -> None:
    assert host_of(server_name) == host


@pytest.mark.parametrize(
    ("host", "literal"),
    [
        ("1.2.3.4", True),
        ("[::1]", True),
        ("::1", True),
        ("example.com", False),
        ("1.2.3.4.example.com", False),
        ("256.1.1.1", False),
    ],
)
def test_ip_literals_are_recognised(host: str, literal: bool) -> None:
    assert is_ip_literal(host) is literal


@pytest.mark.parametrize(
    ("glob", "value", "matches"),
    [
        ("*", "anything.at.all", True),
        ("*", "", True),
        ("*.evil.com", "a.evil.com", True),
        ("*.evil.com", "evil.com", False),
        ("evil.com", "EVIL.COM", True),
        ("ev?l.com", "evil.com", True),
        ("ev?l.com", "evl.com", False),
        ("ev?l.com", "eviil.com", False),
        # Regex metacharacters in a glob are literal.
        ("a.b", "axb", False),
        ("a+b", "a+b", True),
        ("(x)", "(x)", True),
        ("[ab]", "a", False),
        # A match covers the whole name, not a part of it.
        ("evil.com", "notevil.com", False),
        ("evil.com", "evil.com.au", False),
    ],
)
def test_globs(glob: str, value: str, matches: bool) -> None:
    assert bool(glob_to_regex(glob).fullmatch(value)) is matches


def test_no_acl_allows_everyone() -> None:
    assert server_allowed_by_acl("anyone.example", None)


@pytest.mark.parametrize(
    ("content", "server_name", "allowed"),
    [
        # The usual shape: allow everyone but the denied.
        ({"allow": ["*"], "deny": ["evil.com"]}, "good.com", True),
        ({"allow": ["*"], "deny": ["evil.com"]}, "evil.com", False),
        # The port is never considered.
        ({"allow": ["*"], "deny": ["evil.com"]}, "evil.com:8448", False),
        ({"allow": ["*"], "deny": ["evil.com"]}, "evil.com:1234", False),
        ({"allow": ["good.com"]}, "good.com:8448", True),
        # Deny wins over allow.
        ({"allow": ["evil.com"], "deny": ["evil.com"]}, "evil.com", False),
        ({"allow": ["*"], "deny": ["*.evil.com"]}, "sub.evil.com", False),
        ({"allow": ["*"], "deny": ["*.evil.com"]}, "evil.com", True),
        # Case-insensitive.
        ({"allow": ["*"], "deny": ["Evil.Com"]}, "eVIL.com", False),
        # Not in allow: denied. No allow at all: everyone denied.
        ({"allow": ["good.com"]}, "other.com", False),
        ({"deny": ["evil.com"]}, "good.com", False),
        ({}, "good.com", False),
        # IP literals: allowed unless allow_ip_literals is false.
        ({"allow": ["*"]}, "1.2.3.4", True),
        ({"allow": ["*"], "allow_ip_literals": False}, "1.2.3.4", False),
        ({"allow": ["*"], "allow_ip_literals": False}, "1.2.3.4:8448", False),
        ({"allow": ["*"], "allow_ip_literals": False}, "[::1]:8448", False),
        ({"allow": ["*"], "allow_ip_literals": False}, "example.com", True),
        ({"allow": ["*"], "allow_ip_literals": True}, "[::1]", True),
        # IP literals are matched like any name by the lists.
        ({"allow": ["*"], "deny": ["1.2.3.*"]}, "1.2.3.4:80", False),
        # "Defaults to true if missing or otherwise not a boolean."
        ({"allow": ["*"], "allow_ip_literals": "false"}, "1.2.3.4", True),
        ({"allow": ["*"], "allow_ip_literals": 0}, "1.2.3.4", True),
        # Malformed lists count as empty; non-string entries are ignored.
        ({"allow": "*"}, "good.com", False),
        ({"allow": ["*"], "deny": "evil.com"}, "evil.com", True),
        ({"allow": [1, None, "good.com"]}, "good.com", True),
        ({"allow": ["*"], "deny": [{"x": 1}, "evil.com"]}, "evil.com", False),
    ],
)
def test_acl_cases(content: dict[str, Any], server_name: str, allowed: bool) -> None:
    assert server_allowed_by_acl(server_name, content) is allowed
    assert ServerAcl.from_content(content).allows(server_name) is allowed
