"""Server discovery: the /.well-known/matrix/client and /.well-known/matrix/server answers.

Spec: client-server API "Server Discovery" and server-server API "Resolving
server names". Both are built from config and are absent (None) when the
operator has not asked for them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from homeserver.config.server import ServerConfig


class DiscoveryHandler:
    def __init__(self, server_config: ServerConfig) -> None:
        self._config = server_config

    def client_well_known(self) -> dict[str, Any] | None:
        """`{"m.homeserver": {"base_url": ...}, ...}`, or None when not served."""
        if not self._config.serve_client_wellknown or not self._config.public_baseurl:
            return None
        answer: dict[str, Any] = dict(self._config.extra_well_known_client_content)
        answer["m.homeserver"] = {"base_url": self._config.public_baseurl}
        if self._config.default_identity_server:
            answer["m.identity_server"] = {"base_url": self._config.default_identity_server}
        return answer

    def server_well_known(self) -> dict[str, Any] | None:
        """`{"m.server": "host:port"}` from public_baseurl (port 443 by default), or None."""
        if not self._config.serve_server_wellknown or not self._config.public_baseurl:
            return None
        parts = urlsplit(self._config.public_baseurl)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        return {"m.server": f"{host}:{parts.port or 443}"}
