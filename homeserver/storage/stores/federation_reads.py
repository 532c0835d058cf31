"""FederationReadStore: walks of the room DAG that other servers' reads need.

- the auth chain of events (their auth events, recursively), for GET
  /state, /state_ids and /event_auth;
- the events before some events, breadth-first over prev_events, deepest
  first (GET /backfill, as Synapse's `get_backfill_events`);
- the events between `earliest_events` and `latest_events` (POST
  /get_missing_events, as Synapse's `get_missing_events`);
- the backward extremities of a room with the depth of the events that point
  at them, to choose where our own backfill starts.

The walks read only `event_edges` / `event_auth_edges` joined to `events`
(timeline events only: an outlier has no place in the room's history) and
return IDs; the caller loads and filters the events.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stores.state import chunks, placeholders


def _auth_chain_txn(txn: Transaction, event_ids: Sequence[str]) -> list[str]:
    chain: set[str] = set()
    frontier = list(dict.fromkeys(event_ids))
    while frontier:
        found: set[str] = set()
        for chunk in chunks(frontier):
            txn.execute(
                "SELECT auth_event_id FROM event_auth_edges"
                f" WHERE event_id IN ({placeholders(len(chunk))})",
                chunk,
            )
            found.update(row[0] for row in txn.fetchall())
        frontier = sorted(found - chain)
        chain.update(found)
    return sorted(chain)


def _timeline_positions_txn(
    txn: Transaction, room_id: str, event_ids: Sequence[str]
) -> dict[str, tuple[int, int]]:
    positions: dict[str, tuple[int, int]] = {}
    for chunk in chunks(event_ids):
        txn.execute(
            "SELECT event_id, depth, stream_ordering FROM events"
            f" WHERE event_id IN ({placeholders(len(chunk))}) AND room_id = ? AND NOT outlier",
            [*chunk, room_id],
        )
        positions.update((row[0], (int(row[1]), int(row[2]))) for row in txn.fetchall())
    return positions


def _prev_positions_txn(
    txn: Transaction, room_id: str, event_id: str
) -> list[tuple[str, int, int]]:
    txn.execute(
        "SELECT p.event_id, p.depth, p.stream_ordering FROM event_edges e"
        " JOIN events p ON p.event_id = e.prev_event_id"
        " WHERE e.event_id = ? AND p.room_id = ? AND NOT p.outlier",
        (event_id, room_id),
    )
    return [(row[0], int(row[1]), int(row[2])) for row in txn.fetchall()]


def _backfill_txn(txn: Transaction, room_id: str, seeds: Sequence[str], limit: int) -> list[str]:
    # Deepest first, so that with a small limit the events closest to the
    # seeds come back, whatever the shape of the DAG.
    queue: list[tuple[int, int, str]] = [
        (-depth, -stream, event_id)
        for event_id, (depth, stream) in _timeline_positions_txn(txn, room_id, seeds).items()
    ]
    heapq.heapify(queue)
    found: list[str] = []
    seen: set[str] = set()
    while queue and len(found) < limit:
        _, _, event_id = heapq.heappop(queue)
        if event_id in seen:
            continue
        seen.add(event_id)
        found.append(event_id)
        for prev_id, depth, stream in _prev_positions_txn(txn, room_id, event_id):
            if prev_id not in seen:
                heapq.heappush(queue, (-depth, -stream, prev_id))
    return found


def _missing_events_txn(
    txn: Transaction,
    room_id: str,
    earliest: Sequence[str],
    latest: Sequence[str],
    limit: int,
    min_depth: int,
) -> list[str]:
    seen = set(earliest)
    front = [e for e in dict.fromkeys(latest) if e not in seen]
    seen.update(front)
    found: list[str] = []
    while front and len(found) < limit:
        next_front: list[str] = []
        for event_id in front:
            for prev_id, depth, _ in sorted(_prev_positions_txn(txn, room_id, event_id)):
                if prev_id in seen or depth < min_depth:
                    continue
                seen.add(prev_id)
                next_front.append(prev_id)
                found.append(prev_id)
                if len(found) == limit:
                    break
            if len(found) == limit:
                break
        front = next_front
    # Walked from the latest backwards: reversed, they come roughly oldest first.
    found.reverse()
    return found


def _backward_extremity_depths_txn(txn: Transaction, room_id: str) -> dict[str, int]:
    txn.execute(
        "SELECT b.event_id, MIN(ev.depth) FROM event_backward_extremities b"
        " JOIN event_edges e ON e.prev_event_id = b.event_id"
        " JOIN events ev ON ev.event_id = e.event_id"
        " WHERE b.room_id = ? AND ev.room_id = ? AND NOT ev.outlier"
        " GROUP BY b.event_id",
        (room_id, room_id),
    )
    # An extremity lies just before the shallowest event that points at it.
    return {row[0]: int(row[1]) - 1 for row in txn.fetchall()}


class FederationReadStore:
    """DAG walks for other servers' reads and for our backfill (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_auth_chain_ids(self, event_ids: Collection[str]) -> list[str]:
        """The auth events of these events, recursively (the given ones only if in the chain)."""
        if not event_ids:
            return []
        return await self._db.run_interaction(
            "get_auth_chain_ids", _auth_chain_txn, list(event_ids)
        )

    async def get_backfill_ids(
        self, room_id: str, event_ids: Collection[str], limit: int
    ) -> list[str]:
        """Up to `limit` timeline events: the given ones and those before them, deepest first.

        Given events we don't hold in the room's timeline are ignored.
        """
        if not event_ids or limit <= 0:
            return []
        return await self._db.run_interaction(
            "get_backfill_ids", _backfill_txn, room_id, sorted(set(event_ids)), limit
        )

    async def get_missing_event_ids(
        self,
        room_id: str,
        earliest: Collection[str],
        latest: Collection[str],
        limit: int,
        min_depth: int,
    ) -> list[str]:
        """Up to `limit` timeline events before `latest` and not before/among `earliest`.

        Breadth-first from `latest`'s prev_events, not past `earliest` nor
        below `min_depth`; oldest first (roughly).
        """
        if not latest or limit <= 0:
            return []
        return await self._db.run_interaction(
            "get_missing_event_ids",
            _missing_events_txn,
            room_id,
            sorted(set(earliest)),
            list(latest),
            limit,
            min_depth,
        )

    async def get_backward_extremity_depths(self, room_id: str) -> dict[str, int]:
        """The room's backward extremities -> the depth they must have (one less than the
        shallowest timeline event that lists them as a prev_event)."""
        return await self._db.run_interaction(
            "get_backward_extremity_depths", _backward_extremity_depths_txn, room_id
        )
