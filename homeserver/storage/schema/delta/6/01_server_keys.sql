-- Other servers' signing keys, learned from their GET /_matrix/key/v2/server
-- answers (fetched directly or through a notary): one row per key.
CREATE TABLE server_signing_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    -- Unpadded base64 of the ed25519 public key.
    verify_key TEXT NOT NULL,
    -- Milliseconds since the epoch: signatures made up to then may be checked
    -- with this key. For a current key, the answer's valid_until_ts but at
    -- most 7 days after it was fetched; for an old key, its expired_ts.
    valid_until_ts BIGINT NOT NULL,
    -- Who gave us the answer: server_name itself, or a notary's name.
    from_server TEXT NOT NULL,
    -- When we got the answer (ms).
    fetched_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The signed answers themselves, newest per server and source, kept so this
-- server can serve them again as a notary (/_matrix/key/v2/query).
CREATE TABLE server_key_responses (
    server_name TEXT NOT NULL,
    -- Who gave us the answer: server_name itself, or a notary's name.
    from_server TEXT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    -- The answer's own valid_until_ts (ms), uncapped.
    valid_until_ts BIGINT NOT NULL,
    -- JSON: the answer as received, with its signatures.
    response_json TEXT NOT NULL,
    PRIMARY KEY (server_name, from_server)
);
