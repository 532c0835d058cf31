"""GET /devices, GET/PUT/DELETE /devices/{deviceId} and POST /delete_devices."""

from __future__ import annotations

from homeserver.api.client._base import client_info
from homeserver.api.http import (
    Auth,
    JsonDict,
    Servlet,
    SiteRequest,
    client_patterns,
    parse_json_object,
)
from homeserver.api.params import body_str_list
from homeserver.handlers.auth import Requester
from homeserver.handlers.devices import DeviceHandler
from homeserver.handlers.ui_auth import UserInteractiveAuth
from homeserver.storage.stores.devices import DeviceInfo
from homeserver.types.errors import Codes, MatrixError


def device_json(device: DeviceInfo) -> JsonDict:
    """A device as the spec's `Device` object, plus Synapse's extras.

    Unknown values are null rather than left out, as Synapse answers: clients
    such as matrix-nio require the keys.
    """
    answer: JsonDict = {"device_id": device.device_id, "user_id": device.user_id}
    for key in ("display_name", "last_seen_ip", "last_seen_ts", "last_seen_user_agent"):
        answer[key] = getattr(device, key)
    return answer


def _body_or_empty(request: SiteRequest) -> JsonDict:
    """The JSON body; old clients send DELETE without one, which counts as `{}`."""
    try:
        return parse_json_object(request)
    except MatrixError as e:
        if e.errcode == Codes.NOT_JSON:
            return {}
        raise


class DevicesServlet(Servlet):
    """GET /_matrix/client/v3/devices: the requester's devices."""

    PATTERNS = client_patterns("/devices")
    AUTH = Auth.USER_OR_GUEST

    def __init__(self, devices: DeviceHandler) -> None:
        self._devices = devices

    async def on_GET(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        devices = await self._devices.get_devices(requester.user_id)
        return 200, {"devices": [device_json(device) for device in devices]}


class DeviceServlet(Servlet):
    """GET/PUT/DELETE /_matrix/client/v3/devices/{deviceId}: one device of the requester.

    PUT renames it (404 if it does not exist); DELETE deletes it and its
    tokens, after user-interactive auth (so guests cannot).
    """

    PATTERNS = client_patterns("/devices/(?P<device_id>[^/]+)")
    AUTH = {"GET": Auth.USER_OR_GUEST, "PUT": Auth.USER_OR_GUEST, "DELETE": Auth.USER}

    def __init__(self, devices: DeviceHandler, uia: UserInteractiveAuth) -> None:
        self._devices = devices
        self._uia = uia

    async def on_GET(
        self, request: SiteRequest, requester: Requester, device_id: str
    ) -> tuple[int, JsonDict]:
        return 200, device_json(await self._devices.get_device(requester.user_id, device_id))

    async def on_PUT(
        self, request: SiteRequest, requester: Requester, device_id: str
    ) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        await self._devices.update_display_name(
            requester.user_id, device_id, body.get("display_name")
        )
        return 200, {}

    async def on_DELETE(
        self, request: SiteRequest, requester: Requester, device_id: str
    ) -> tuple[int, JsonDict]:
        body = _body_or_empty(request)
        await self._uia.validate_user(
            requester, client_info(request), body, "remove a device from your account"
        )
        await self._devices.delete_devices(requester.user_id, [device_id])
        return 200, {}


class DeleteDevicesServlet(Servlet):
    """POST /_matrix/client/v3/delete_devices: delete several devices (user-interactive auth)."""

    PATTERNS = client_patterns("/delete_devices")
    AUTH = Auth.USER

    def __init__(self, devices: DeviceHandler, uia: UserInteractiveAuth) -> None:
        self._devices = devices
        self._uia = uia

    async def on_POST(self, request: SiteRequest, requester: Requester) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        body_str_list(body, "devices")
        result = await self._uia.validate_user(
            requester, client_info(request), body, "remove devices from your account"
        )
        await self._devices.delete_devices(requester.user_id, body_str_list(result.params, "devices"))
        return 200, {}
