"""RoomStorage: the facade over the stores that hold rooms, their events and their state.

The composition root builds it once the database is started:

    events_stream = await build_events_stream(db, instance_name="master")
    room_storage = RoomStorage(db, events_stream)

and hands `room_storage` to the handlers (the event persister first). Each
store is a few hundred lines with one concern: `events` (events, DAG,
extremities, orderings, the batch write), `state` (state groups, state at
events, current state), `rooms` (room versions, memberships), `redactions`
(which redactions point at which events), `pagination` (a room's history
in topological order and by timestamp), `forgotten` (the rooms each user
has forgotten), `directory` (local room aliases, published rooms),
`room_stats` (what the published room directory shows of each room),
`federation_sender` (which of our events each other server is owed),
`federation_received` (answers to received federation transactions, soft-failed events),
`federation_reads` (DAG walks for other servers' reads and for backfill).
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.storage.database import Database
from homeserver.storage.stores.directory import DirectoryStore
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.federation_reads import FederationReadStore
from homeserver.storage.stores.federation_received import FederationReceivedStore
from homeserver.storage.stores.federation_sender import FederationSenderStore
from homeserver.storage.stores.forgotten_rooms import ForgottenRoomStore
from homeserver.storage.stores.pagination import PaginationStore
from homeserver.storage.stores.redactions import RedactionStore
from homeserver.storage.stores.room_stats import RoomStatsStore
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.state import StateStore
from homeserver.storage.streams import (
    StreamIdGenerator,
    build_stream_id_generator,
    create_stream_id_generator,
)

EVENTS_STREAM = "events"


async def build_events_stream(
    db: Database, *, instance_name: str = "master", writers: Sequence[str] | None = None
) -> StreamIdGenerator:
    """The "events" stream generator (events.stream_ordering), started from the database."""
    return await build_stream_id_generator(
        db,
        EVENTS_STREAM,
        instance_name=instance_name,
        writers=list(writers) if writers is not None else [instance_name],
        tables=[("events", "stream_ordering"), ("current_state_delta_stream", "stream_ordering")],
        sequence_name="events_stream_seq",
    )


def create_events_stream(db: Database, *, instance_name: str = "master") -> StreamIdGenerator:
    """The "events" stream generator, not yet loaded (`await stream.load()` after db start)."""
    return create_stream_id_generator(
        db,
        EVENTS_STREAM,
        instance_name=instance_name,
        writers=[instance_name],
        tables=[("events", "stream_ordering"), ("current_state_delta_stream", "stream_ordering")],
        sequence_name="events_stream_seq",
    )


class RoomStorage:
    """One store per concern, sharing one database."""

    events: EventStore
    state: StateStore
    rooms: RoomStore
    redactions: RedactionStore
    pagination: PaginationStore
    forgotten: ForgottenRoomStore
    directory: DirectoryStore
    room_stats: RoomStatsStore
    federation_sender: FederationSenderStore
    federation_received: FederationReceivedStore
    federation_reads: FederationReadStore

    def __init__(self, db: Database, events_stream: StreamIdGenerator) -> None:
        self.state = StateStore(db)
        self.rooms = RoomStore(db)
        self.events = EventStore(db, events_stream, self.state)
        self.redactions = RedactionStore(db)
        self.pagination = PaginationStore(db, self.events)
        self.forgotten = ForgottenRoomStore(db)
        self.directory = DirectoryStore(db)
        self.room_stats = RoomStatsStore(db)
        self.federation_sender = FederationSenderStore(db)
        self.federation_received = FederationReceivedStore(db)
        self.federation_reads = FederationReadStore(db)
