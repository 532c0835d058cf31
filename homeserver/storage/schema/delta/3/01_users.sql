-- Local accounts, one row per user ever registered here (deactivated ones
-- included: a user ID is never handed out twice).
CREATE TABLE users (
    -- The full user ID, @localpart:server_name.
    name TEXT NOT NULL PRIMARY KEY,
    -- bcrypt hash of the password (with the configured pepper); NULL when the
    -- account cannot log in with a password (guests, deactivated accounts).
    password_hash TEXT,
    -- When the account was created, in milliseconds since the epoch.
    creation_ts BIGINT NOT NULL,
    is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    -- Server administrator (for the admin API).
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE,
    -- Deactivated with erase: true; their content is to be hidden from new readers.
    erased BOOLEAN NOT NULL DEFAULT FALSE,
    -- NULL for ordinary users; otherwise Synapse's user types ('support', 'bot').
    user_type TEXT
);
-- Logins look user IDs up case-insensitively (IDs from before the strict grammar).
CREATE INDEX users_lower_name ON users (lower(name));

-- The counter behind generated (numeric) localparts, for guests and for
-- registrations without a username. One row.
CREATE TABLE user_id_counter (
    -- Always 'X': with UNIQUE, this keeps the table to one row.
    lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE,
    next_id BIGINT NOT NULL,
    CHECK (lock = 'X')
);
INSERT INTO user_id_counter (next_id) VALUES (1);
