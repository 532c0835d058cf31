"""Account data and room tags: what a user keeps on the server for their clients.

Spec: client-server API "Client Config" (GET/PUT /user/{userId}/account_data/
{type} and /user/{userId}/rooms/{roomId}/account_data/{type}) and "Room
Tagging" (GET /user/{userId}/rooms/{roomId}/tags, PUT/DELETE .../tags/{tag}).

- Only the user reads and writes their own account data (403 M_FORBIDDEN).
- Types the server manages (`m.fully_read`, `m.push_rules`) are refused
  with 405 M_BAD_JSON ("Server Behaviour"), globally and per room.
- Room tags are the room's `m.tag` account data, `{"tags": {tag: {...}}}`;
  a tag name is at most 255 bytes and its `order`, if given, a number in
  [0, 1].
- Every change is told to the notifier, so waiting /syncs of the user return.
"""

from __future__ import annotations

import math
from typing import Any

from homeserver.handlers.auth import Requester
from homeserver.handlers.notifier import Notifier
from homeserver.storage.stores.account_data import TAG, AccountDataStore
from homeserver.types.errors import Codes, MatrixError
from homeserver.types.identifiers import InvalidIdentifier, parse_room_id

JsonDict = dict[str, Any]

SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})
MAX_TYPE_BYTES = 255
"""Account data types are event types: client-server API "Size limits"."""
MAX_TAG_BYTES = 255


def _check_own(requester: Requester, user_id: str, verb: str) -> None:
    if user_id != requester.user_id:
        raise MatrixError(Codes.FORBIDDEN, f"Cannot {verb} account data for other users.")


def _check_room_id(room_id: str) -> None:
    try:
        parse_room_id(room_id)
    except InvalidIdentifier as e:
        raise MatrixError(Codes.INVALID_PARAM, str(e)) from None


def _check_writable_type(data_type: str) -> None:
    if data_type in SERVER_MANAGED_TYPES:
        raise MatrixError(
            Codes.BAD_JSON, f"Cannot set {data_type} through this API.", status=405
        )
    if not data_type or len(data_type.encode("utf-8")) > MAX_TYPE_BYTES:
        raise MatrixError(
            Codes.INVALID_PARAM, f"Account data type must be 1 to {MAX_TYPE_BYTES} bytes"
        )


def _tags_of(content: JsonDict | None) -> JsonDict:
    """The tags in an m.tag content (none if it is not of the documented shape)."""
    tags = (content or {}).get("tags")
    return dict(tags) if isinstance(tags, dict) else {}


def _check_tag(tag: str, body: JsonDict) -> None:
    if not tag or len(tag.encode("utf-8")) > MAX_TAG_BYTES:
        raise MatrixError(Codes.INVALID_PARAM, f"Tag names are 1 to {MAX_TAG_BYTES} bytes")
    if "order" in body:
        order = body["order"]
        if (
            isinstance(order, bool)
            or not isinstance(order, int | float)
            or not math.isfinite(order)
            or not 0 <= order <= 1
        ):
            raise MatrixError(Codes.INVALID_PARAM, "'order' must be a number between 0 and 1")


class AccountDataHandler:
    def __init__(self, store: AccountDataStore, notifier: Notifier) -> None:
        self._store = store
        self._notifier = notifier

    # -- account data

    async def set_account_data(
        self,
        requester: Requester,
        user_id: str,
        room_id: str | None,
        data_type: str,
        content: JsonDict,
    ) -> None:
        """PUT global (room_id None) or room account data of the requester."""
        _check_own(requester, user_id, "add")
        if room_id is not None:
            _check_room_id(room_id)
        _check_writable_type(data_type)
        position = await self._store.set_account_data(user_id, room_id, data_type, content)
        self._notifier.notify_account_data(user_id, position)

    async def get_account_data(
        self, requester: Requester, user_id: str, room_id: str | None, data_type: str
    ) -> JsonDict:
        """GET global (room_id None) or room account data; 404 M_NOT_FOUND if never set."""
        _check_own(requester, user_id, "get")
        if room_id is not None:
            _check_room_id(room_id)
        content = await self._store.get_account_data(user_id, room_id, data_type)
        if content is None:
            what = "Account data" if room_id is None else "Room account data"
            raise MatrixError(Codes.NOT_FOUND, f"{what} not found.")
        return content

    # -- tags

    async def get_tags(self, requester: Requester, user_id: str, room_id: str) -> JsonDict:
        """The user's tags on the room, tag -> its data ({} when there are none)."""
        _check_own(requester, user_id, "get")
        _check_room_id(room_id)
        return _tags_of(await self._store.get_account_data(user_id, room_id, TAG))

    async def add_tag(
        self, requester: Requester, user_id: str, room_id: str, tag: str, body: JsonDict
    ) -> None:
        """Add a tag to the room, or replace its data."""
        _check_own(requester, user_id, "add")
        _check_room_id(room_id)
        _check_tag(tag, body)

        def with_tag(content: JsonDict | None) -> JsonDict:
            tags = _tags_of(content)
            tags[tag] = body
            return {**(content or {}), "tags": tags}

        position = await self._store.edit_account_data(user_id, room_id, TAG, with_tag)
        if position is not None:
            self._notifier.notify_account_data(user_id, position)

    async def remove_tag(self, requester: Requester, user_id: str, room_id: str, tag: str) -> None:
        """Remove a tag from the room (removing a tag the room does not have is not an error)."""
        _check_own(requester, user_id, "remove")
        _check_room_id(room_id)

        def without_tag(content: JsonDict | None) -> JsonDict | None:
            tags = _tags_of(content)
            if tag not in tags:
                return None
            del tags[tag]
            return {**(content or {}), "tags": tags}

        position = await self._store.edit_account_data(user_id, room_id, TAG, without_tag)
        if position is not None:
            self._notifier.notify_account_data(user_id, position)
