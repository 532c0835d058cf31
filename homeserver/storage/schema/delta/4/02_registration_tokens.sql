-- Registration tokens (the m.login.registration_token UIA stage), managed by
-- admins through /_synapse/admin/v1/registration_tokens as in Synapse.
CREATE TABLE registration_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    -- How many accounts may be registered with it; NULL: no limit.
    uses_allowed INTEGER,
    -- Registrations that passed the token stage but are not finished yet
    -- (they hold a use until they finish or their UIA session expires).
    pending INTEGER NOT NULL DEFAULT 0,
    -- Registrations finished with it.
    completed INTEGER NOT NULL DEFAULT 0,
    -- Milliseconds since the epoch after which it is refused; NULL: never.
    expiry_time BIGINT
);
