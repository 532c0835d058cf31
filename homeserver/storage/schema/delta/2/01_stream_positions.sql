-- How far each writer process has got on each stream: every position at or
-- below stream_position that instance_name allocated on stream_name has been
-- persisted (or abandoned). Written by homeserver/storage/streams.py on
-- PostgreSQL when a writer starts and after its writes, and read at start so a
-- process knows where the other writers are before they say so over
-- replication. SQLite keeps stream positions in memory and leaves it empty.
CREATE TABLE stream_positions (
    stream_name TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    stream_position BIGINT NOT NULL,
    PRIMARY KEY (stream_name, instance_name)
);
