-- Positions on the "events" stream (events.stream_ordering), handed out by
-- homeserver.storage.streams; SQLite counts them in memory instead.
CREATE SEQUENCE events_stream_seq;
