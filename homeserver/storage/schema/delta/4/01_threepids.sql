-- Third-party identifiers (email addresses, phone numbers as msisdn) bound to
-- local accounts. An identifier belongs to at most one account. Email
-- addresses are stored canonicalised (lower-case), msisdns as digits only.
CREATE TABLE user_threepids (
    user_id TEXT NOT NULL,
    -- 'email' or 'msisdn'.
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    -- When the address was proven to be the user's, and when it was added
    -- (milliseconds since the epoch).
    validated_at BIGINT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

-- Email validation sessions run by this server (POST .../email/requestToken):
-- one per (address, client_secret) until it is validated by the emailed link.
CREATE TABLE threepid_validation_sessions (
    session_id TEXT NOT NULL PRIMARY KEY,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    -- The client's secret, which every later step must repeat.
    client_secret TEXT NOT NULL,
    -- The highest send_attempt seen: a request with one no higher sends nothing.
    last_send_attempt BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- When the emailed link was followed; NULL until then.
    validated_at BIGINT
);
CREATE INDEX threepid_validation_sessions_lookup
    ON threepid_validation_sessions (medium, address, client_secret);
CREATE INDEX threepid_validation_sessions_created ON threepid_validation_sessions (created_ts);

-- The tokens emailed for a session (one per email sent). Only the SHA-256 of
-- each token is stored, like access tokens.
CREATE TABLE threepid_validation_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    session_id TEXT NOT NULL,
    -- Where the browser is sent once the link is followed (the client's
    -- next_link, with the session ID added), if anywhere.
    next_link TEXT,
    -- Milliseconds since the epoch after which the link no longer works.
    expires_ts BIGINT NOT NULL
);
CREATE INDEX threepid_validation_tokens_session ON threepid_validation_tokens (session_id);
