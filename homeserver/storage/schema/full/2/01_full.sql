-- The schema at version 2, for creating a fresh database in one step. It must
-- match applying delta/1 .. delta/2 (tests/storage/test_prepare.py checks);
-- each table's comments are in the delta that created it.

CREATE TABLE schema_version (
    lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE,
    version INTEGER NOT NULL,
    CHECK (lock = 'X')
);

CREATE TABLE stream_positions (
    stream_name TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    stream_position BIGINT NOT NULL,
    PRIMARY KEY (stream_name, instance_name)
);
