-- The answers we gave to federation transactions
-- (PUT /_matrix/federation/v1/send/{txnId}), so that a transaction the origin
-- sends again (it retries until it gets a 200) gets the same answer without
-- its PDUs and EDUs being processed twice. Written by
-- homeserver/storage/stores/federation_received.py; rows older than a day are
-- deleted (an origin retries a transaction within minutes, not days).
--   response_code, response_json: the HTTP status and JSON body we answered.
--   received_ts: when we answered (milliseconds since the epoch).
CREATE TABLE received_transactions (
    origin TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    response_code INTEGER NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, transaction_id)
);
CREATE INDEX received_transactions_ts ON received_transactions (received_ts);
