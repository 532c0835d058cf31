"""State resolution v2, step 3: the mainline ordering.

Spec: rooms v2, "Definitions › Mainline ordering". The mainline of a power
levels event P = P_0 is [P_0, P_1, ..., P_n], where P_{i+1} is the
`m.room.power_levels` event in the `auth_events` of P_i. For another event
e = e_0, walk e_1, e_2, ... the same way (e_0 itself is not part of the walk);
the *mainline position* of e is the index i of the first e_j (j >= 1) that is
in the mainline of P, or ∞ if there is none. The ordering is: x < y if

1. the mainline position of x is **greater** than that of y; or
2. the positions are the same, but x's origin_server_ts is less; or
3. both are the same, but x's event_id is less.

P is the power levels event of the partially resolved state (step 2). If that
state has none, every event has position ∞ and only rules 2 and 3 apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from homeserver.state.loader import FetchEvent
from homeserver.types.events import EventBase

POWER_LEVELS = "m.room.power_levels"


def power_levels_auth_event(event: EventBase, fetch_event: FetchEvent) -> EventBase | None:
    """The `m.room.power_levels` event among the event's `auth_events`, if any."""
    for auth_id in event.auth_event_ids:
        auth_event = fetch_event(auth_id)
        if (
            auth_event is not None
            and auth_event.type == POWER_LEVELS
            and auth_event.state_key == ""
        ):
            return auth_event
    return None


def mainline(power_levels_id: str | None, fetch_event: FetchEvent) -> list[str]:
    """The mainline [P_0, ..., P_n] of the power levels event P_0 (empty if None)."""
    out: list[str] = []
    seen: set[str] = set()
    current = fetch_event(power_levels_id) if power_levels_id is not None else None
    while current is not None and current.event_id not in seen:
        seen.add(current.event_id)
        out.append(current.event_id)
        current = power_levels_auth_event(current, fetch_event)
    return out


class MainlinePositions:
    """Mainline positions relative to one mainline, memoised per power levels event."""

    __slots__ = ("_fetch_event", "_index", "_memo")

    def __init__(self, mainline_ids: list[str], fetch_event: FetchEvent) -> None:
        self._fetch_event = fetch_event
        self._index = {event_id: i for i, event_id in enumerate(mainline_ids)}
        # power levels event ID -> position of the walk that starts *at* it.
        self._memo: dict[str, float] = {}

    def position(self, event: EventBase) -> float:
        """The mainline position of `event` (`math.inf` when its walk misses the mainline)."""
        path: list[str] = []
        seen: set[str] = set()
        result = math.inf
        current = power_levels_auth_event(event, self._fetch_event)
        while current is not None and current.event_id not in seen:
            event_id = current.event_id
            if event_id in self._memo:
                result = self._memo[event_id]
                break
            if event_id in self._index:
                result = self._index[event_id]
                break
            seen.add(event_id)
            path.append(event_id)
            current = power_levels_auth_event(current, self._fetch_event)
        for event_id in path:
            self._memo[event_id] = result
        return result


def mainline_order(
    event_ids: Iterable[str], power_levels_id: str | None, fetch_event: FetchEvent
) -> list[str]:
    """Sort events by the mainline ordering based on `power_levels_id`, smallest first.

    Events that cannot be fetched are left out.
    """
    positions = MainlinePositions(mainline(power_levels_id, fetch_event), fetch_event)
    keyed: list[tuple[float, int, str]] = []
    for event_id in event_ids:
        event = fetch_event(event_id)
        if event is None:
            continue
        keyed.append((-positions.position(event), event.origin_server_ts, event_id))
    keyed.sort()
    return [event_id for _, _, event_id in keyed]
