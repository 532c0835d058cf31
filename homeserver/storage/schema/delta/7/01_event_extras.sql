-- What clients need of an event beyond the event itself.

-- For an accepted state event: the event it replaced in the state before it
-- (the same type and state_key), NULL if the key was new. Clients get its
-- content as `unsigned.prev_content` and its ID as `unsigned.replaces_state`.
ALTER TABLE events ADD COLUMN replaces_state TEXT;

-- The transaction ID a client sent a local event with, so a retried
-- PUT /rooms/{roomId}/send/{eventType}/{txnId} (and /state, /redact) returns
-- the first event, and the sender's own device sees `unsigned.transaction_id`.
-- A transaction is scoped to the device that sent it; requests without a
-- device (application services, admin tokens) are scoped to the access token.
--   scope: "d:<device_id>" or "t:<access token hash>".
-- Written in the transaction that stores the event, so a client retrying after
-- a crash finds the event it was never told about.
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    room_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, scope, room_id, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);
CREATE INDEX event_txn_ids_inserted ON event_txn_ids (inserted_ts);
