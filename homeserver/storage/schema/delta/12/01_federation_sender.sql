-- Outgoing federation (homeserver/federation/sender.py): what each other
-- server should have of our events, and whether it is answering.

-- One row per server we have sent (or tried to send) events to.
CREATE TABLE destinations (
    destination TEXT NOT NULL PRIMARY KEY,
    -- When the last failed attempt was (ms since the epoch); 0 when the last
    -- attempt succeeded or none failed.
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    -- How long after retry_last_ts the next attempt may be made (ms); 0 when
    -- the destination is not being backed off.
    retry_interval BIGINT NOT NULL DEFAULT 0,
    -- When the current run of failures began (ms); NULL while it answers.
    failure_ts BIGINT,
    -- The "events" stream position up to which the destination has been sent
    -- everything it should have (the newest event per room, see
    -- destination_rooms): rows of destination_rooms above it are owed.
    last_successful_stream_ordering BIGINT NOT NULL
);

-- For each destination and room: the newest of our events in the room that
-- the destination should have. Catch-up after an outage or a restart sends
-- (at most) this one event per room, or our newer forward extremities; the
-- destination fills the gap before it with get_missing_events.
CREATE TABLE destination_rooms (
    destination TEXT NOT NULL,
    room_id TEXT NOT NULL,
    -- The event's position on the "events" stream.
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (destination, room_id)
);
CREATE INDEX destination_rooms_stream ON destination_rooms (destination, stream_ordering);

-- How far along the "events" stream the federation sender of each process
-- has assigned our events to destinations (written with the destination_rooms
-- rows, so a crash never skips an event).
CREATE TABLE federation_sender_positions (
    instance_name TEXT NOT NULL PRIMARY KEY,
    stream_ordering BIGINT NOT NULL
);
