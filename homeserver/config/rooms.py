"""Room options: `default_room_version`, the version of rooms created without one;
`enable_room_list_search`, whether the published room directory is served."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.config._schema import ConfigError
from homeserver.types.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS, RoomVersion

SCHEMA: dict[str, Any] = {
    "default_room_version": {
        "type": "string",
        "default": DEFAULT_ROOM_VERSION.identifier,
    },
    "enable_room_list_search": {"type": "boolean", "default": True},
}
REQUIRED: list[str] = []


@dataclass(frozen=True, slots=True)
class RoomsConfig:
    default_room_version: RoomVersion
    enable_room_list_search: bool = True
    """Whether /publicRooms lists the published rooms (false: always empty, and no publishing)."""

    @classmethod
    def from_dict(cls, doc: dict[str, Any], resolve_path: Any) -> RoomsConfig:
        identifier = doc["default_room_version"]
        version = KNOWN_ROOM_VERSIONS.get(identifier)
        if version is None:
            known = ", ".join(KNOWN_ROOM_VERSIONS)
            raise ConfigError(
                [f"default_room_version: {identifier!r} is not a room version this server knows ({known})"]
            )
        return cls(
            default_room_version=version,
            enable_room_list_search=doc["enable_room_list_search"],
        )
