-- Which version of the schema (homeserver.storage.schema.SCHEMA_VERSION) this
-- database is at. One row, rewritten by homeserver/storage/prepare.py in the
-- same transaction as each migration step.
CREATE TABLE schema_version (
    -- Always 'X': with UNIQUE, this keeps the table to one row.
    lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE,
    version INTEGER NOT NULL,
    CHECK (lock = 'X')
);
