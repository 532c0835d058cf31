-- Access tokens. Only the SHA-256 of each token is stored, so a copy of the
-- database does not let anyone act as the users.
CREATE TABLE access_tokens (
    -- Hex SHA-256 of the token; also the token's id in logs and requesters.
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT,
    created_ts BIGINT NOT NULL,
    -- Milliseconds since the epoch after which the token is refused (with
    -- soft_logout); NULL: never expires.
    valid_until_ms BIGINT,
    -- The refresh token issued together with this access token, if any.
    refresh_token_hash TEXT,
    -- Whether the token has been used once: the first use of a refreshed
    -- access token revokes the refresh token it was refreshed with.
    used BOOLEAN NOT NULL DEFAULT FALSE,
    -- Last request made with the token (written in batches).
    last_used_ts BIGINT
);
CREATE INDEX access_tokens_user_device ON access_tokens (user_id, device_id);
CREATE INDEX access_tokens_refresh_token ON access_tokens (refresh_token_hash);

-- Refresh tokens (hashed like access tokens). Each refresh issues a new pair;
-- the old refresh token then points at the new one and stays usable until
-- the new pair is used (spec: POST /refresh), when its row is deleted.
CREATE TABLE refresh_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- Milliseconds since the epoch after which it is refused; NULL: never.
    expiry_ts BIGINT,
    -- The refresh token issued when this one was used, if it was.
    next_token_hash TEXT
);
CREATE INDEX refresh_tokens_user_device ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_next ON refresh_tokens (next_token_hash);

-- Short-lived, single-use tokens for m.login.token (hashed as above).
CREATE TABLE login_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    expiry_ts BIGINT NOT NULL
);
CREATE INDEX login_tokens_expiry ON login_tokens (expiry_ts);
