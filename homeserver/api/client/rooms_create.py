"""POST /createRoom and POST /rooms/{roomId}/upgrade: new rooms."""

from __future__ import annotations

from homeserver.api.http import (
    Auth,
    JsonDict,
    Servlet,
    SiteRequest,
    client_patterns,
    parse_json_object,
)
from homeserver.api.params import body_str
from homeserver.handlers.auth import Requester
from homeserver.handlers.room_creation import CreateRoomRequest, RoomCreationHandler
from homeserver.handlers.room_upgrade import RoomUpgradeHandler
from homeserver.types.errors import Codes, MatrixError


class CreateRoomServlet(Servlet):
    """POST /_matrix/client/v3/createRoom: a new room; {room_id} (and the alias made for it)."""

    PATTERNS = client_patterns("/createRoom")
    AUTH = Auth.USER

    def __init__(self, creation: RoomCreationHandler) -> None:
        self._creation = creation

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        body = CreateRoomRequest.from_json(
            parse_json_object(request), default_room_version=self._creation.default_room_version
        )
        room_id, alias = await self._creation.create_room(requester, body)
        answer: JsonDict = {"room_id": room_id}
        if alias is not None:
            answer["room_alias"] = alias  # Synapse's extra, which some clients read
        return 200, answer


class UpgradeRoomServlet(Servlet):
    """POST /_matrix/client/v3/rooms/{roomId}/upgrade: {new_version, additional_creators?}."""

    PATTERNS = client_patterns("/rooms/(?P<room_id>[^/]+)/upgrade")
    AUTH = Auth.USER

    def __init__(self, upgrades: RoomUpgradeHandler) -> None:
        self._upgrades = upgrades

    async def on_POST(
        self, request: SiteRequest, requester: Requester, room_id: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        new_version = body_str(body, "new_version", required=True)
        assert new_version is not None
        additional_creators = body.get("additional_creators", [])
        if not isinstance(additional_creators, list) or not all(
            isinstance(user_id, str) for user_id in additional_creators
        ):
            raise MatrixError(Codes.BAD_JSON, "'additional_creators' must be a list of user IDs")
        new_room_id = await self._upgrades.upgrade_room(
            requester, room_id, new_version, additional_creators
        )
        return 200, {"replacement_room": new_room_id}
