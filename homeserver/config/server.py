"""The `server` options: identity, public URL, files, request limits, .well-known.

Top-level keys: server_name, public_baseurl, signing_key_path, pid_file,
media_store_path, max_request_size, serve_client_wellknown,
serve_server_wellknown, extra_well_known_client_content, default_identity_server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from homeserver.config._schema import ConfigError

SIZE_PATTERN = r"^[0-9]+[KMG]?$"

SCHEMA: dict[str, Any] = {
    "server_name": {"type": "string", "minLength": 1},
    "public_baseurl": {"type": ["string", "null"], "default": None},
    "signing_key_path": {"type": "string", "minLength": 1},
    "pid_file": {"type": ["string", "null"], "default": None},
    "media_store_path": {"type": "string", "default": "media_store"},
    "max_request_size": {
        "type": ["integer", "string"],
        "pattern": SIZE_PATTERN,
        "minimum": 1,
        "default": "50M",
    },
    "serve_client_wellknown": {"type": "boolean", "default": False},
    "serve_server_wellknown": {"type": "boolean", "default": False},
    "extra_well_known_client_content": {"type": "object", "default": {}},
    "default_identity_server": {"type": ["string", "null"], "default": None},
}
REQUIRED = ["server_name", "signing_key_path"]

_SERVER_NAME = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9.\-]{1,255})(?::[0-9]{1,5})?$"
)


def parse_size(value: int | str) -> int:
    """Bytes for `1024`, `"10K"`, `"50M"` or `"1G"` (binary multiples, as Synapse reads them)."""
    if isinstance(value, int):
        return value
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    if value[-1] in units:
        return int(value[:-1]) * units[value[-1]]
    return int(value)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    server_name: str
    public_baseurl: str | None
    signing_key_path: str
    pid_file: str | None
    media_store_path: str
    max_request_size: int
    serve_client_wellknown: bool
    serve_server_wellknown: bool
    extra_well_known_client_content: dict[str, Any]
    default_identity_server: str | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> ServerConfig:
        server_name = doc["server_name"]
        if not _SERVER_NAME.match(server_name):
            raise ConfigError([f"server_name: {server_name!r} is not a valid server name"])
        public_baseurl = doc["public_baseurl"]
        if public_baseurl is not None:
            parts = urlsplit(public_baseurl)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(
                    [f"public_baseurl: {public_baseurl!r} is not an http:// or https:// URL"]
                )
            if not public_baseurl.endswith("/"):
                public_baseurl += "/"
        if (doc["serve_client_wellknown"] or doc["serve_server_wellknown"]) and not public_baseurl:
            raise ConfigError(["public_baseurl: required when a .well-known file is served"])
        return cls(
            server_name=server_name,
            public_baseurl=public_baseurl,
            signing_key_path=resolve_path(doc["signing_key_path"]),
            pid_file=resolve_path(doc["pid_file"]) if doc["pid_file"] else None,
            media_store_path=resolve_path(doc["media_store_path"]),
            max_request_size=parse_size(doc["max_request_size"]),
            serve_client_wellknown=doc["serve_client_wellknown"],
            serve_server_wellknown=doc["serve_server_wellknown"],
            extra_well_known_client_content=doc["extra_well_known_client_content"],
            default_identity_server=doc["default_identity_server"],
        )
