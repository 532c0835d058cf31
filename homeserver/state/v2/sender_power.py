"""State resolution v2: the power level of an event's sender, "when looking at
[its] auth_events" (spec: rooms v2, "Reverse topological power ordering").

The level is read from the `m.room.power_levels` and `m.room.create` events
among the event's own `auth_events`, with the auth rules' reading of power
levels (`homeserver.state.power_levels.PowerLevels`): `users[sender]`, else
`users_default`; without a power levels event the creator has 100 and everyone
else 0; from room v12 (MSC4289) the creators have infinite power, and the
create event comes from the room ID since `auth_events` no longer lists it.
"""

from __future__ import annotations

from homeserver.state.auth_common import CREATE, POWER_LEVELS
from homeserver.state.loader import FetchEvent
from homeserver.state.power_levels import PowerLevel, PowerLevels
from homeserver.state.v2.create_event import create_event_for
from homeserver.types.events import EventBase
from homeserver.types.room_versions import RoomVersion


def sender_power_level(
    room_version: RoomVersion, event: EventBase, fetch_event: FetchEvent
) -> PowerLevel:
    """The sender's power level per the event's own auth events (`math.inf` for v12 creators)."""
    create: EventBase | None = None
    if room_version.auth.room_id_from_create_event:
        create = create_event_for(room_version, event, fetch_event)
    power_levels: EventBase | None = None
    for auth_id in event.auth_event_ids:
        auth_event = fetch_event(auth_id)
        if auth_event is None or auth_event.state_key != "":
            continue
        if auth_event.type == CREATE and create is None:
            create = auth_event
        elif auth_event.type == POWER_LEVELS and power_levels is None:
            power_levels = auth_event
    return PowerLevels.from_events(room_version, create, power_levels).user_level(event.sender)
