-- Positions on the "account_data" stream (account_data.stream_id), handed out
-- by homeserver.storage.streams; SQLite counts them in memory instead.
CREATE SEQUENCE account_data_stream_seq;
