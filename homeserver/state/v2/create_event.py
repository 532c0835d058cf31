"""Finding the room's `m.room.create` event from another event, per room version.

Up to room v11 the create event is one of every other event's `auth_events`.
From room v12 (MSC4291, `room_id_from_create_event`) it is not listed there:
the room ID is `!` followed by the create event's reference hash, and its
event ID is `$` followed by the same hash.
"""

from __future__ import annotations

from homeserver.state.auth_common import CREATE
from homeserver.state.auth_rules import create_event_id_for_room
from homeserver.state.loader import FetchEvent
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion


def create_event_for(
    room_version: RoomVersion, event: EventBase, fetch_event: FetchEvent
) -> EventBase | None:
    """The room's create event as seen from `event`: from the room ID in room v12+,
    else from `event`'s auth events. None for a create event itself, or when
    the create event cannot be fetched."""
    if event.type == CREATE:
        return None
    if room_version.auth.room_id_from_create_event:
        try:
            create_id = create_event_id_for_room(event.room_id)
        except ValueError:
            return None
        create = fetch_event(create_id)
        return create if create is not None and create.type == CREATE else None
    for auth_id in event.auth_event_ids:
        auth_event = fetch_event(auth_id)
        if auth_event is not None and auth_event.type == CREATE and auth_event.state_key == "":
            return auth_event
    return None
