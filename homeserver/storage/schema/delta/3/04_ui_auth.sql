-- User-interactive authentication sessions, kept in the database so a
-- session survives a restart (and works whichever process answers).
CREATE TABLE ui_auth_sessions (
    session_id TEXT NOT NULL PRIMARY KEY,
    -- Milliseconds since the epoch; sessions expire a fixed time after this.
    creation_ts BIGINT NOT NULL,
    -- The operation the session authorises: the request path and method.
    uri TEXT NOT NULL,
    method TEXT NOT NULL,
    -- What the user is told the session is for.
    description TEXT NOT NULL,
    -- JSON: the request's parameters, as the client last sent them (secrets removed).
    clientdict TEXT NOT NULL,
    -- JSON: data the server keeps with the session (a password hash, the user registered).
    serverdict TEXT NOT NULL
);
CREATE INDEX ui_auth_sessions_creation ON ui_auth_sessions (creation_ts);

-- The stages each session has completed, with what each stage established (JSON).
CREATE TABLE ui_auth_sessions_credentials (
    session_id TEXT NOT NULL,
    stage_type TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (session_id, stage_type)
);
