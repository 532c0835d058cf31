-- The devices (sessions) of local users. Last-seen columns are written in
-- batches by homeserver/handlers/client_ips.py, so they may lag a few seconds.
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    -- Milliseconds since the epoch; NULL until the device makes a request.
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    PRIMARY KEY (user_id, device_id)
);
