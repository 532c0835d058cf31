-- Rooms and their events: the event DAG (prev_events, auth_events), forward and
-- backward extremities, and the two orderings readers use. Written by
-- homeserver/storage/stores/events.py in one transaction per batch of events.

-- Every room this server has events of.
CREATE TABLE rooms (
    room_id TEXT NOT NULL PRIMARY KEY,
    room_version TEXT NOT NULL,
    -- The sender of the m.room.create event; NULL until that event is stored.
    creator TEXT,
    create_event_id TEXT
);

-- Every event we hold, including outliers and rejected events.
--   stream_ordering: position on the "events" stream, in persist order; sync
--     reads "what is new since X" with it. Unique across all rooms.
--   depth: the event's `depth` field. The topological ordering used by
--     pagination is (depth, stream_ordering).
--   outlier: we hold the event but not the state at it (an auth event or an
--     invite fetched on its own); it is in no timeline and in no extremity.
--   rejected_reason: NULL if accepted; otherwise why it failed the checks on
--     receipt. Rejected events are kept (other events may point at them) but
--     never change the room's state or extremities.
--   redacts: for m.room.redaction, the event it redacts (top level before room
--     v11, content.redacts from v11).
--   json: the event in its federation (PDU) form, as canonical JSON.
CREATE TABLE events (
    event_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    room_version TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    depth BIGINT NOT NULL,
    stream_ordering BIGINT NOT NULL UNIQUE,
    origin_server_ts BIGINT NOT NULL,
    -- When we stored it (milliseconds since the epoch).
    received_ts BIGINT NOT NULL,
    outlier BOOLEAN NOT NULL,
    rejected_reason TEXT,
    redacts TEXT,
    json TEXT NOT NULL
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_topological ON events (room_id, depth, stream_ordering);
CREATE INDEX events_redacts ON events (redacts) WHERE redacts IS NOT NULL;

-- prev_events of each stored event (the room DAG), by event and by parent.
CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- auth_events of each stored event (the auth DAG).
CREATE TABLE event_auth_edges (
    event_id TEXT NOT NULL,
    auth_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_event_id)
);

-- The room's forward extremities: accepted, non-outlier events that no
-- accepted, non-outlier event lists in its prev_events. New local events point
-- at them; the room's current state is the resolution of the states after them.
CREATE TABLE event_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Backward extremities: events listed in prev_events of a stored non-outlier
-- event that we do not hold as non-outliers (where backfill starts).
CREATE TABLE event_backward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
