"""The `listeners` option: which ports serve which resources, with or without TLS.

Also the top-level `tls_certificate_path` and `tls_private_key_path`, which
every TLS listener uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.config._schema import ConfigError

RESOURCE_NAMES = ["client", "federation", "keys", "media", "metrics", "health"]

SCHEMA: dict[str, Any] = {
    "listeners": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["port", "resources"],
            "properties": {
                "port": {"type": "integer", "minimum": 0, "maximum": 65535},
                "bind_addresses": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "default": ["::1", "127.0.0.1"],
                },
                "type": {"enum": ["http"], "default": "http"},
                "tls": {"type": "boolean", "default": False},
                "x_forwarded": {"type": "boolean", "default": False},
                "resources": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["names"],
                        "properties": {
                            "names": {
                                "type": "array",
                                "items": {"enum": RESOURCE_NAMES},
                            },
                            "compress": {"type": "boolean", "default": False},
                        },
                    },
                },
            },
        },
    },
    "tls_certificate_path": {"type": ["string", "null"], "default": None},
    "tls_private_key_path": {"type": ["string", "null"], "default": None},
}
REQUIRED = ["listeners"]


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    port: int
    bind_addresses: tuple[str, ...]
    tls: bool
    x_forwarded: bool
    # The union of all resource names listed for this port.
    resources: frozenset[str]
    # The resource names whose responses are gzipped for clients that accept it.
    compressed_resources: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ListenersConfig:
    listeners: tuple[ListenerConfig, ...]
    tls_certificate_path: str | None
    tls_private_key_path: str | None

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> ListenersConfig:
        listeners = tuple(
            ListenerConfig(
                port=item["port"],
                bind_addresses=tuple(item["bind_addresses"]),
                tls=item["tls"],
                x_forwarded=item["x_forwarded"],
                resources=frozenset(
                    name for resource in item["resources"] for name in resource["names"]
                ),
                compressed_resources=frozenset(
                    name
                    for resource in item["resources"]
                    if resource["compress"]
                    for name in resource["names"]
                ),
            )
            for item in doc["listeners"]
        )
        cert = doc["tls_certificate_path"]
        key = doc["tls_private_key_path"]
        if any(listener.tls for listener in listeners):
            missing = [
                name
                for name, value in (("tls_certificate_path", cert), ("tls_private_key_path", key))
                if not value
            ]
            if missing:
                raise ConfigError(
                    [f"{name}: required when a listener has tls: true" for name in missing]
                )
        return cls(
            listeners=listeners,
            tls_certificate_path=resolve_path(cert) if cert else None,
            tls_private_key_path=resolve_path(key) if key else None,
        )
