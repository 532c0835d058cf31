"""Server ACLs: whether a room's m.room.server_acl lets a server take part in it.

Spec: client-server API "Server Access Control Lists (ACLs) for rooms" (the
m.room.server_acl event: `allow`, `deny`, `allow_ip_literals`, and the order
in which they apply), appendices "Glob-style matching" (`*` is zero or more
characters, `?` exactly one; ACL globs are case-insensitive), and the
server-server API "Server Access Control Lists (ACLs)" (which requests the
ACL applies to; the callers decide that).

The server name is matched without its port: `evil.com`, `evil.com:8448` and
`evil.com:1234` are all `evil.com`. Malformed content is read as Synapse reads
it: `allow_ip_literals` that is not a boolean counts as true, `allow`/`deny`
that are not lists count as empty, and entries that are not strings are
ignored (so an ACL whose `allow` is broken denies every server, as the spec
warns).

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SERVER_ACL = "m.room.server_acl"


def glob_to_regex(glob: str) -> re.Pattern[str]:
    """A regex matching the whole of a string against a case-insensitive glob."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def host_of(server_name: str) -> str:
    """The server name without its port (`[::1]:8448` -> `[::1]`, `a.b:80` -> `a.b`)."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name if end == -1 else server_name[: end + 1]
    host, _, _ = server_name.partition(":")
    return host


def is_ip_literal(host: str) -> bool:
    """Whether a host (no port) is an IPv4 literal or a bracketed IPv6 literal."""
    if host.startswith("["):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _patterns(value: Any) -> tuple[re.Pattern[str], ...]:
    if not isinstance(value, list):
        return ()
    return tuple(glob_to_regex(entry) for entry in value if isinstance(entry, str))


@dataclass(frozen=True, slots=True)
class ServerAcl:
    """A parsed m.room.server_acl content."""

    allow: tuple[re.Pattern[str], ...]
    deny: tuple[re.Pattern[str], ...]
    allow_ip_literals: bool

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> ServerAcl:
        allow_ip_literals = content.get("allow_ip_literals", True)
        return cls(
            allow=_patterns(content.get("allow")),
            deny=_patterns(content.get("deny")),
            # "Defaults to true if missing or otherwise not a boolean."
            allow_ip_literals=allow_ip_literals if isinstance(allow_ip_literals, bool) else True,
        )

    def allows(self, server_name: str) -> bool:
        """Whether the ACL lets `server_name` (with or without a port) take part."""
        host = host_of(server_name)
        # "If the server name is an IP address (v4 or v6) literal, and
        # allow_ip_literals is present and false, deny."
        if not self.allow_ip_literals and is_ip_literal(host):
            return False
        # "If the server name matches an entry in the deny list, deny."
        if any(pattern.fullmatch(host) for pattern in self.deny):
            return False
        # "If the server name matches an entry in the allow list, allow."
        # "Otherwise, deny."
        return any(pattern.fullmatch(host) for pattern in self.allow)


def server_allowed_by_acl(server_name: str, acl_content: Mapping[str, Any] | None) -> bool:
    """Whether a room whose m.room.server_acl has this content (None: no ACL) admits the server.

    "If there is no m.room.server_acl event in the room state, allow."
    """
    if acl_content is None:
        return True
    return ServerAcl.from_content(acl_content).allows(server_name)
